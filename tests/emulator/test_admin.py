"""The /_emulator admin API, as DESIGN.md specifies it."""

from __future__ import annotations

import pytest

from airflow_provider_arr.emulator.state import COUNTERS

from .conftest import Arr, assert_error, wait_until


def test_state_shape(arr: Arr) -> None:
    session_id = arr.v1_create("0:30:00", "premium")
    arr.v2_create("two")
    state = arr.admin.request("GET", "/state").json()
    assert state["active"] == 2
    assert set(state["counts"]) == set(COUNTERS)
    assert (
        state["counts"]["create"] == 2 and state["counts"]["token"] == 1 and state["counts"]["requests"] == 3
    )
    first = state["sessions"][0]
    assert first["id"] == session_id and first["dialect"] == "v1"
    assert (first["status"], first["size"], first["max_lease_time"]) == ("starting", "premium", "00:30:00")
    assert first["created"].endswith("Z")
    assert {"id", "status", "size", "dialect", "created"} <= set(first)
    assert arr.server.admin_state()["active"] == 2


def test_config_get_and_partial_update(arr: Arr) -> None:
    before = arr.admin.request("GET", "/config").json()
    assert before["startup_delay"] == 30
    after = arr.admin.config(startup_delay=1, error_on_start="nope", throttle_rate=None)
    assert after["startup_delay"] == 1 and after["error_on_start"] == "nope"
    assert after["time_scale"] == before["time_scale"]
    assert arr.admin.request("GET", "/config").json() == after


@pytest.mark.parametrize(
    "body",
    [{"unknown": 1}, {"time_scale": 0}, {"time_scale": "x"}, {"error_rate": 3}, {"page_size": None}, []],
)
def test_config_rejects_bad_knobs(arr: Arr, body: object) -> None:
    before = arr.admin.request("GET", "/config").json()
    assert_error(arr.admin.request("POST", "/config", json=body), 400, "BadRequest")
    assert arr.admin.request("GET", "/config").json() == before


def test_faults_add_list_and_clear(arr: Arr) -> None:
    first = arr.admin.fault(operation="get", action="delay", delay=0.1)
    second = arr.admin.fault(operation="any", action="status", status=500, count=3, probability=0.5)
    assert second["id"] == first["id"] + 1
    listed = arr.admin.request("GET", "/faults").json()["faults"]
    assert [rule["id"] for rule in listed] == [first["id"], second["id"]]
    assert listed[1] | {"fired": 0} == second
    assert arr.admin.request("DELETE", "/faults").json() == {"removed": 2}
    assert arr.admin.request("GET", "/state").json()["faults"] == []


@pytest.mark.parametrize(
    ("status", "v1", "v2"),
    [
        ("ready", "Ready", "Ready"),
        ("stopping", "Stopping", "Stopped"),
        ("stopped", "Stopped", "Stopped"),
        ("expired", "Expired", "Expired"),
        ("error", "Error", "Error"),
        ("Starting", "Starting", "Starting"),
    ],
)
def test_force_status(arr: Arr, status: str, v1: str, v2: str) -> None:
    arr.admin.config(startup_delay=3600, stop_delay=3600)
    session_id = arr.v1_create()
    answer = arr.admin.request(
        "POST", f"/sessions/{session_id}/status", json={"status": status, "message": "because"}
    )
    assert answer.status_code == 200 and answer.json()["status"] == status.lower()
    assert arr.v1_get(session_id)["sessionStatus"] == v1
    assert arr.v2_get(session_id)["status"] == v2
    if status in ("expired", "error"):
        assert arr.v1_get(session_id)["message"] == "because"


def test_force_error_without_message_and_back_to_starting(arr: Arr) -> None:
    session_id = arr.v1_create()
    arr.admin.request("POST", f"/sessions/{session_id}/status", json={"status": "error", "message": None})
    assert arr.v1_get(session_id)["message"]
    arr.admin.request("POST", f"/sessions/{session_id}/status", json={"status": "starting"})
    assert arr.v1_get(session_id)["sessionStatus"] == "Starting"
    wait_until(lambda: arr.v1_get(session_id)["sessionStatus"] == "Ready")


def test_force_status_errors(arr: Arr) -> None:
    session_id = arr.v1_create()
    path = f"/sessions/{session_id}/status"
    assert_error(arr.admin.request("POST", "/sessions/nope/status", json={"status": "error"}), 404)
    assert_error(arr.admin.request("POST", path, json={"status": "exploded"}), 400)
    assert_error(arr.admin.request("POST", path, json={"status": 1}), 400)
    assert_error(arr.admin.request("POST", path, json={"status": "ready", "message": 2}), 400)


def test_reset_forgets_sessions_counters_faults_and_knobs(arr: Arr) -> None:
    arr.v1_create()
    arr.admin.fault(operation="get", action="drop")
    arr.admin.config(page_size=1, throttle_rate=100)
    assert arr.admin.request("POST", "/reset").status_code == 200
    state = arr.admin.request("GET", "/state").json()
    assert state["sessions"] == [] and state["faults"] == [] and state["active"] == 0
    assert set(state["counts"].values()) == {0}
    config = arr.admin.request("GET", "/config").json()
    assert config["page_size"] == 10 and config["throttle_rate"] is None
    # Tokens survive: the STS is another service.
    assert arr.v1("GET").status_code == 200


def test_clock_advance(arr: Arr) -> None:
    arr.admin.config(time_scale=1, startup_delay=600)
    session_id = arr.v1_create()
    answer = arr.admin.request("POST", "/clock/advance", json={"seconds": 600})
    assert answer.status_code == 200 and answer.json()["emulated_time"].endswith("Z")
    assert arr.v1_get(session_id)["sessionStatus"] == "Ready"
    assert_error(arr.admin.request("POST", "/clock/advance", json={"seconds": -1}), 400)


def test_admin_answers_carry_ms_cv_and_are_not_counted(arr: Arr) -> None:
    for method, path in (
        ("GET", "/state"),
        ("GET", "/config"),
        ("GET", "/faults"),
        ("POST", "/tokens/expire"),
    ):
        assert arr.admin.request(method, path).headers["MS-CV"]
    assert arr.admin.counts()["requests"] == 1  # the fixture's token
