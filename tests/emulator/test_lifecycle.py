"""Session lifecycle on the emulated clock, shared by both dialects."""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_arr.emulator import EmulatorServer
from airflow_provider_arr.emulator.state import EXPIRED_MESSAGE

from .conftest import Arr, wait_until


def v1_status(arr: Arr, session_id: str) -> str:
    return str(arr.v1_get(session_id)["sessionStatus"])


def test_starting_then_ready_after_the_startup_delay(emulator_factory: Any) -> None:
    arr = Arr(emulator_factory(startup_delay=60, time_scale=200))  # 0.3 s of real time
    session_id = arr.v1_create()
    started = time.monotonic()
    assert v1_status(arr, session_id) == "Starting"
    wait_until(lambda: v1_status(arr, session_id) == "Ready")
    assert time.monotonic() - started >= 0.25
    assert arr.admin.request("GET", "/state").json()["active"] == 1


def test_lease_expiry(emulator_factory: Any) -> None:
    arr = Arr(emulator_factory(startup_delay=1, time_scale=3600))  # one emulated minute = 17 ms
    session_id = arr.v1_create("0:01:00")
    arr.v2_create("two-minutes", minutes=2)
    wait_until(lambda: v1_status(arr, session_id) == "Expired")
    expired = arr.v1_get(session_id)
    assert expired["message"] == EXPIRED_MESSAGE
    assert expired["sessionElapsedTime"] == "00:01:00"  # frozen at the end of the lease
    assert expired["sessionHostname"]  # it was ready before it expired
    wait_until(lambda: arr.v2_get("two-minutes")["status"] == "Expired")
    assert arr.v2_get("two-minutes")["elapsedTimeMinutes"] == 2
    assert arr.v1("GET").json()["sessions"] == []
    assert arr.admin.request("GET", "/state").json()["active"] == 0


def test_extending_the_lease_postpones_expiry(emulator_factory: Any) -> None:
    server: EmulatorServer = emulator_factory(startup_delay=0, time_scale=1)
    arr = Arr(server)
    session_id = arr.v1_create("0:10:00")
    arr.admin.request("POST", "/clock/advance", json={"seconds": 9 * 60})
    assert arr.v1("PATCH", f"/{session_id}", json={"maxLeaseTime": "0:20:00"}).status_code == 200
    arr.admin.request("POST", "/clock/advance", json={"seconds": 5 * 60})
    assert v1_status(arr, session_id) == "Ready"
    arr.admin.request("POST", "/clock/advance", json={"seconds": 6 * 60})
    assert v1_status(arr, session_id) == "Expired"


def test_stop_goes_through_stopping_to_stopped(emulator_factory: Any) -> None:
    arr = Arr(emulator_factory(stop_delay=60, time_scale=200))  # stopping lasts 0.3 s
    session_id = arr.v1_create()
    wait_until(lambda: v1_status(arr, session_id) == "Ready")
    assert arr.v1("DELETE", f"/{session_id}").status_code == 204
    assert v1_status(arr, session_id) == "Stopping"
    state = arr.admin.request("GET", "/state").json()
    assert state["active"] == 0 and state["sessions"][0]["stop_requested"] is True
    wait_until(lambda: v1_status(arr, session_id) == "Stopped")
    stopped = arr.v1_get(session_id)
    assert stopped["message"] is None and stopped["sessionHostname"]


def test_stopping_while_starting_never_becomes_ready(arr: Arr) -> None:
    arr.admin.config(startup_delay=3600)
    session_id = arr.v1_create()
    arr.v1("DELETE", f"/{session_id}")
    wait_until(lambda: v1_status(arr, session_id) == "Stopped")
    arr.admin.request("POST", "/clock/advance", json={"seconds": 7200})
    assert v1_status(arr, session_id) == "Stopped"
    assert arr.v1_get(session_id)["sessionHostname"] is None


def test_error_on_start(emulator_factory: Any) -> None:
    arr = Arr(emulator_factory(error_on_start="Out of GPUs"))
    session_id = arr.v1_create()
    assert v1_status(arr, session_id) == "Starting"
    wait_until(lambda: v1_status(arr, session_id) == "Error")
    failed = arr.v1_get(session_id)
    assert failed["message"] == "Out of GPUs" and failed["sessionHostname"] is None
    assert arr.v1("GET").json()["sessions"] == []
    arr.admin.config(error_on_start=None)
    healthy = arr.v1_create()
    wait_until(lambda: v1_status(arr, healthy) == "Ready")


def test_ended_sessions_stay_readable(arr: Arr) -> None:
    ids = [arr.v1_create() for _ in range(3)]
    arr.v1("DELETE", f"/{ids[0]}")
    arr.admin.force(ids[1], "expired")
    arr.admin.force(ids[2], "error", "GPU fell off")
    arr.admin.advance(30 * 86400)
    assert [v1_status(arr, i) for i in ids] == ["Stopped", "Expired", "Error"]
    assert arr.v1_get(ids[2])["message"] == "GPU fell off"


def test_both_dialects_share_one_store(arr: Arr) -> None:
    v1_id = arr.v1_create("1:30:00", "premium")
    v2 = arr.v2_get(v1_id)
    assert (v2["status"], v2["size"], v2["maxLeaseTimeMinutes"]) == ("Starting", "Premium", 90)
    arr.v2_create("from-2021", minutes=45)
    assert arr.v1_get("from-2021")["sessionMaxLeaseTime"] == "00:45:00"
    assert {s["sessionId"] for s in arr.v1("GET").json()["sessions"]} == {v1_id, "from-2021"}
    assert {s["id"] for s in arr.v2("GET").json()["sessions"]} == {v1_id, "from-2021"}
    assert arr.v2("POST", f"/{v1_id}/:stop").status_code == 204
    wait_until(lambda: v1_status(arr, v1_id) == "Stopped")
    dialects = {s["id"]: s["dialect"] for s in arr.admin.request("GET", "/state").json()["sessions"]}
    assert dialects == {v1_id: "v1", "from-2021": "2021-01-01"}


def test_time_scale_can_change_at_runtime(emulator_factory: Any) -> None:
    arr = Arr(emulator_factory(startup_delay=60, time_scale=1))
    session_id = arr.v1_create()
    time.sleep(0.05)
    assert v1_status(arr, session_id) == "Starting"
    arr.admin.config(time_scale=10_000)
    wait_until(lambda: v1_status(arr, session_id) == "Ready", timeout=1)


def test_elapsed_time_counts_since_creation(emulator_factory: Any) -> None:
    arr = Arr(emulator_factory(startup_delay=0, time_scale=1))
    session_id = arr.v1_create("2:0:0")
    arr.admin.request("POST", "/clock/advance", json={"seconds": 3725})
    assert arr.v1_get(session_id)["sessionElapsedTime"] == "01:02:05"
    assert arr.v2_get(session_id)["elapsedTimeMinutes"] == 62
