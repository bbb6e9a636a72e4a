"""The 2021-01-01 dialect, per the swagger the official SDK is generated from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from airflow_provider_arr.emulator import EmulatorServer

from .conftest import Arr, assert_error, wait_until

FIELDS = {
    "id",
    "size",
    "status",
    "maxLeaseTimeMinutes",
    "elapsedTimeMinutes",
    "hostname",
    "arrInspectorPort",
    "handshakePort",
    "teraflops",
    "creationTime",
    "error",
}


def test_create_answers_201_with_the_session(arr: Arr) -> None:
    answer = arr.v2("PUT", "/my-session_1", json={"maxLeaseTimeMinutes": 60, "size": "Standard"})
    assert answer.status_code == 201 and answer.headers["MS-CV"]
    session = answer.json()
    assert set(session) == FIELDS
    assert session["id"] == "my-session_1"
    assert (session["size"], session["status"], session["maxLeaseTimeMinutes"]) == (
        "Standard",
        "Starting",
        60,
    )
    assert session["elapsedTimeMinutes"] == 0 and session["error"] is None
    assert (
        session["hostname"] is None
        and session["handshakePort"] is None
        and session["arrInspectorPort"] is None
    )
    assert datetime.fromisoformat(session["creationTime"].replace("Z", "+00:00")).tzinfo is not None


def test_create_is_idempotent_and_conflicts_on_other_settings(arr: Arr) -> None:
    arr.v2_create("same", 60, "Standard")
    again = arr.v2("PUT", "/same", json={"maxLeaseTimeMinutes": 60, "size": "standard"})
    assert again.status_code == 200 and again.json()["id"] == "same"
    assert_error(arr.v2("PUT", "/same", json={"maxLeaseTimeMinutes": 60, "size": "Premium"}), 409, "Conflict")
    assert_error(
        arr.v2("PUT", "/same", json={"maxLeaseTimeMinutes": 61, "size": "Standard"}), 409, "Conflict"
    )
    assert len(arr.admin.request("GET", "/state").json()["sessions"]) == 1


def test_ready_sessions_have_hostname_and_ports(arr: Arr) -> None:
    arr.v2_create("s1", size="Premium")
    wait_until(lambda: arr.v2_get("s1")["status"] == "Ready")
    session = arr.v2_get("s1")
    assert session["hostname"].endswith(".mixedreality.azure.com")
    for port in ("handshakePort", "arrInspectorPort"):
        assert 49152 <= session[port] <= 65534
    assert session["handshakePort"] != session["arrInspectorPort"]
    assert session["teraflops"] > 0 and session["size"] == "Premium"


def test_update_must_grow_the_lease(arr: Arr) -> None:
    arr.v2_create("s1", 30)
    answer = arr.v2("PATCH", "/s1", json={"maxLeaseTimeMinutes": 40})
    assert answer.status_code == 200 and answer.json()["maxLeaseTimeMinutes"] == 40
    for minutes in (40, 35, 0, -5, 1441):
        assert_error(
            arr.v2("PATCH", "/s1", json={"maxLeaseTimeMinutes": minutes}), 422, "UnprocessableEntity"
        )
    assert arr.v2_get("s1")["maxLeaseTimeMinutes"] == 40
    assert arr.v2("PATCH", "/s1", json={"maxLeaseTimeMinutes": 1440}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{}, {"maxLeaseTimeMinutes": "60"}, {"maxLeaseTimeMinutes": 60.5}, {"maxLeaseTimeMinutes": True}, []],
)
def test_bad_update_bodies_are_400(arr: Arr, body: Any) -> None:
    arr.v2_create("s1")
    assert_error(arr.v2("PATCH", "/s1", json=body), 400, "BadRequest")


def test_stop_answers_204_and_stopping_shows_as_stopped(arr: Arr) -> None:
    arr.admin.config(stop_delay=3600)
    arr.v2_create("s1")
    for _ in range(2):
        answer = arr.v2("POST", "/s1/:stop")
        assert answer.status_code == 204 and answer.content == b"" and answer.headers["MS-CV"]
    assert arr.v2_get("s1")["status"] == "Stopped"
    assert arr.admin.request("GET", "/state").json()["sessions"][0]["status"] == "stopping"
    assert arr.v1_get("s1")["sessionStatus"] == "Stopping"
    assert_error(arr.v2("PATCH", "/s1", json={"maxLeaseTimeMinutes": 90}), 409, "Conflict")
    assert arr.v2("GET").json()["sessions"] == []


def test_unknown_sessions_are_404(arr: Arr) -> None:
    assert_error(arr.v2("GET", "/nope"), 404, "NotFound")
    assert_error(arr.v2("PATCH", "/nope", json={"maxLeaseTimeMinutes": 90}), 404, "NotFound")
    assert_error(arr.v2("POST", "/nope/:stop"), 404, "NotFound")


@pytest.mark.parametrize(
    "params", [{}, {"api-version": "2020-01-01"}, {"api-version": ""}, {"api_version": "2021-01-01"}]
)
def test_api_version_is_required(arr: Arr, params: dict[str, str]) -> None:
    arr.v2_create("s1")
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("PUT", "/s2", {"json": {"maxLeaseTimeMinutes": 60, "size": "Standard"}}),
        ("GET", "/s1", {}),
        ("PATCH", "/s1", {"json": {"maxLeaseTimeMinutes": 90}}),
        ("POST", "/s1/:stop", {}),
        ("GET", "", {}),
    ]
    for method, tail, kwargs in calls:
        error = assert_error(arr.v2(method, tail, params=params, **kwargs), 400, "BadRequest")
        assert "api-version" in error["message"]
    assert arr.v2_get("s1")["status"] != "Stopped"


@pytest.mark.parametrize("session_id", ["a.b", "with space", "é", "x" * 257, "a+b"])
def test_invalid_session_ids_are_400(arr: Arr, session_id: str) -> None:
    answer = arr.v2("PUT", f"/{session_id}", json={"maxLeaseTimeMinutes": 60, "size": "Standard"})
    assert_error(answer, 400, "BadRequest")
    assert_error(arr.v2("GET", f"/{session_id}"), 400, "BadRequest")


def test_integral_floats_are_integers(arr: Arr) -> None:
    """JSON Schema counts 60.0 as an integer."""
    assert arr.v2("PUT", "/s1", json={"maxLeaseTimeMinutes": 60.0, "size": "Standard"}).status_code == 201
    assert arr.v2("PATCH", "/s1", json={"maxLeaseTimeMinutes": 90.0}).json()["maxLeaseTimeMinutes"] == 90


def test_longest_session_id_is_accepted(arr: Arr) -> None:
    arr.v2_create("x" * 256)
    assert arr.v2_get("x" * 256)["id"] == "x" * 256


@pytest.mark.parametrize(
    "body",
    [
        {"maxLeaseTimeMinutes": 60},
        {"size": "Standard"},
        {"maxLeaseTimeMinutes": 0, "size": "Standard"},
        {"maxLeaseTimeMinutes": 1441, "size": "Standard"},
        {"maxLeaseTimeMinutes": "60", "size": "Standard"},
        {"maxLeaseTimeMinutes": 60.5, "size": "Standard"},
        {"maxLeaseTimeMinutes": None, "size": "Standard"},
        {"maxLeaseTimeMinutes": 60, "size": "Huge"},
        {"maxLeaseTimeMinutes": 60, "size": ["Standard"]},
        [1, 2],
    ],
)
def test_bad_create_bodies_are_400(arr: Arr, body: Any) -> None:
    assert_error(arr.v2("PUT", "/s1", json=body), 400, "BadRequest")
    assert_error(arr.v2("GET", "/s1"), 404)


def test_list_pages_with_next_link(emulator_factory: Any) -> None:
    server: EmulatorServer = emulator_factory(page_size=2)
    arr = Arr(server)
    ids = [f"s{i}" for i in range(5)]
    for session_id in ids:
        arr.v2_create(session_id)
    arr.v2("POST", "/s1/:stop")
    seen: list[str] = []
    page = arr.v2("GET").json()
    pages = 1
    while "@nextLink" in page:
        link = page["@nextLink"]
        assert (
            link.startswith(f"{server.url}/accounts/{arr.account}/sessions?")
            and "api-version=2021-01-01" in link
        )
        assert len(page["sessions"]) == 2
        seen += [s["id"] for s in page["sessions"]]
        answer = arr.http.get(link, headers={"Authorization": f"Bearer {arr.token}"}, timeout=10)
        assert answer.status_code == 200
        page = answer.json()
        pages += 1
    seen += [s["id"] for s in page["sessions"]]
    assert seen == ["s0", "s2", "s3", "s4"] and pages == 2
    assert all(set(s) == FIELDS for s in page["sessions"])


def test_list_bad_continuation_token_is_400(arr: Arr) -> None:
    answer = arr.v2("GET", params={"api-version": "2021-01-01", "continuationToken": "x"})
    assert_error(answer, 400, "BadRequest")


def test_error_sessions_carry_an_error_object(emulator_factory: Any) -> None:
    arr = Arr(emulator_factory(error_on_start="No capacity in westus2"))
    arr.v2_create("s1")
    wait_until(lambda: arr.v2_get("s1")["status"] == "Error")
    error = arr.v2_get("s1")["error"]
    assert error["message"] == "No capacity in westus2" and error["code"]
