"""The v1 dialect: endpoints, field names, TimeSpans and input validation."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from .conftest import ACCOUNT, Arr, assert_error, wait_until

FIELDS = {
    "message",
    "sessionElapsedTime",
    "sessionHostname",
    "sessionId",
    "sessionMaxLeaseTime",
    "sessionSize",
    "sessionStatus",
}
TIMESPAN = re.compile(r"(\d+\.)?\d\d:\d\d:\d\d(\.\d{7})?")


def test_create_answers_202_with_a_guid_and_a_location(arr: Arr) -> None:
    answer = arr.v1("POST", "/create", json={"maxLeaseTime": "4:0:0", "models": [], "size": "standard"})
    assert answer.status_code == 202
    body = answer.json()
    assert list(body) == ["sessionId"]
    session_id = body["sessionId"]
    assert str(uuid.UUID(session_id)) == session_id
    assert answer.headers["Location"] == f"accounts/{ACCOUNT}/sessions/{session_id}"
    assert answer.headers["MS-CV"]


def test_properties_have_the_documented_fields(arr: Arr) -> None:
    session_id = arr.v1_create("4:0:0", "standard")
    starting = arr.v1_get(session_id)
    assert set(starting) == FIELDS
    assert starting["sessionId"] == session_id
    assert starting["sessionStatus"] == "Starting"
    assert starting["sessionSize"] == "Standard"
    assert starting["sessionMaxLeaseTime"] == "04:00:00"
    assert starting["sessionHostname"] is None and starting["message"] is None
    assert TIMESPAN.fullmatch(starting["sessionElapsedTime"])
    wait_until(lambda: arr.v1_get(session_id)["sessionStatus"] == "Ready")
    ready = arr.v1_get(session_id)
    assert ready["sessionHostname"].endswith(".remoterenderingvm.westus2.mixedreality.azure.com")
    assert ready["sessionElapsedTime"] >= "00:00:30"


@pytest.mark.parametrize("size", ["standard", "Standard", "STANDARD", "premium", "Premium"])
def test_sizes_are_case_insensitive_and_answered_capitalised(arr: Arr, size: str) -> None:
    session_id = arr.v1_create("1:0:0", size)
    assert arr.v1_get(session_id)["sessionSize"] == size.capitalize()


@pytest.mark.parametrize(
    ("lease", "shown"),
    [("4:0:0", "04:00:00"), ("0:30:0", "00:30:00"), ("1.00:00:00", "1.00:00:00"), ("23:59:59", "23:59:59")],
)
def test_leases_are_answered_as_dotnet_timespans(arr: Arr, lease: str, shown: str) -> None:
    session_id = arr.v1_create(lease)
    assert arr.v1_get(session_id)["sessionMaxLeaseTime"] == shown


def test_update_sets_the_total_lease_and_answers_an_empty_200(arr: Arr) -> None:
    session_id = arr.v1_create("1:0:0")
    answer = arr.v1("PATCH", f"/{session_id}", json={"maxLeaseTime": "2:0:0"})
    assert answer.status_code == 200 and answer.content == b""
    assert answer.headers["MS-CV"]
    assert arr.v1_get(session_id)["sessionMaxLeaseTime"] == "02:00:00"
    # v1 documents no rule against a smaller lease.
    assert arr.v1("PATCH", f"/{session_id}", json={"maxLeaseTime": "1:30:0"}).status_code == 200
    assert arr.v1_get(session_id)["sessionMaxLeaseTime"] == "01:30:00"


def test_list_shows_starting_ready_and_stopping_sessions(arr: Arr) -> None:
    assert arr.v1("GET").json() == {"sessions": []}
    a, b, c = arr.v1_create(), arr.v1_create(), arr.v1_create()
    arr.admin.request("POST", "/config", json={"stop_delay": 3600})
    assert arr.v1("DELETE", f"/{b}").status_code == 204
    arr.admin.request("POST", f"/sessions/{c}/status", json={"status": "expired"})
    listed = arr.v1("GET").json()["sessions"]
    assert [s["sessionId"] for s in listed] == [a, b]
    assert {s["sessionStatus"] for s in listed} == {"Starting", "Stopping"}
    assert all(set(s) == FIELDS for s in listed)


def test_delete_answers_204_even_for_ended_sessions(arr: Arr) -> None:
    session_id = arr.v1_create()
    for _ in range(3):
        answer = arr.v1("DELETE", f"/{session_id}")
        assert answer.status_code == 204 and answer.content == b""
        assert answer.headers["MS-CV"]
    arr.admin.request("POST", f"/sessions/{session_id}/status", json={"status": "error", "message": "x"})
    assert arr.v1("DELETE", f"/{session_id}").status_code == 204


def test_unknown_sessions_are_404(arr: Arr) -> None:
    assert_error(arr.v1("GET", "/nope/properties"), 404, "NotFound")
    assert_error(arr.v1("PATCH", "/nope", json={"maxLeaseTime": "1:0:0"}), 404, "NotFound")
    assert_error(arr.v1("DELETE", "/nope"), 404, "NotFound")


def test_updating_an_ended_session_is_409(arr: Arr) -> None:
    session_id = arr.v1_create()
    arr.v1("DELETE", f"/{session_id}")
    assert_error(arr.v1("PATCH", f"/{session_id}", json={"maxLeaseTime": "3:0:0"}), 409, "Conflict")


GOOD: dict[str, Any] = {"maxLeaseTime": "4:0:0", "models": [], "size": "standard"}


@pytest.mark.parametrize(
    "body",
    [
        {**GOOD, "size": "huge"},
        {**GOOD, "size": 1},
        {**GOOD, "size": None},
        {"maxLeaseTime": "4:0:0"},
        {"size": "standard"},
        {**GOOD, "maxLeaseTime": "abc"},
        {**GOOD, "maxLeaseTime": "4:0"},
        {**GOOD, "maxLeaseTime": "0:0:0"},
        {**GOOD, "maxLeaseTime": "-1:00:00"},
        {**GOOD, "maxLeaseTime": "24:00:00"},
        {**GOOD, "maxLeaseTime": "1.00:00:01"},
        {**GOOD, "maxLeaseTime": "2.00:00:00"},
        {**GOOD, "maxLeaseTime": "1:60:00"},
        {**GOOD, "maxLeaseTime": "1:00:60"},
        {**GOOD, "maxLeaseTime": 3600},
        {**GOOD, "maxLeaseTime": None},
        {**GOOD, "models": "x"},
        [],
        "4:0:0",
        None,
    ],
)
def test_bad_create_bodies_are_400(arr: Arr, body: Any) -> None:
    assert_error(arr.v1("POST", "/create", json=body), 400, "BadRequest")
    assert arr.admin.request("GET", "/state").json()["sessions"] == []


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"{'size': 'standard'}", b"\xff\xfe", b"[" * 60_000, b"[" * 100_000]
)
def test_unparsable_bodies_are_400_or_413(arr: Arr, raw: bytes) -> None:
    answer = arr.v1("POST", "/create", data=raw, headers={"Content-Type": "application/json"})
    assert_error(answer, 413 if len(raw) > 65536 else 400)


@pytest.mark.parametrize(
    "body", [{}, {"maxLeaseTime": "0:0:0"}, {"maxLeaseTime": 5}, {"maxLeaseTime": "25:0:0"}]
)
def test_bad_update_bodies_are_400(arr: Arr, body: dict[str, Any]) -> None:
    session_id = arr.v1_create()
    assert_error(arr.v1("PATCH", f"/{session_id}", json=body), 400, "BadRequest")
    assert arr.v1_get(session_id)["sessionMaxLeaseTime"] == "01:00:00"
