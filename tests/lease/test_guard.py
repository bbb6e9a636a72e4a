"""The lease guard against the emulator (x100 clock): the context manager and the trigger.

Settings: steps of 15 emulated minutes (9 s real), 3 minutes of margin (1.8 s), a first lease of
5 minutes (3 s): a 10 s workload outlives the first lease twice over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_arr.exceptions import ArrError
from airflow_provider_arr.guard import OUTCOME_CAP, OUTCOME_ERROR, OUTCOME_RELEASED, LeaseGuard
from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.triggers.lease import EVENT_CAP, EVENT_ENDED, ArrLeaseGuardTrigger
from tests.conftest import Admin

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("arr_conn")]

SCALE = 100.0
STEP = timedelta(minutes=15)
MARGIN = timedelta(minutes=3)
FIRST_LEASE = "0:05:00"


def emulated(admin: Admin, session_id: str) -> dict[str, Any]:
    (session,) = [s for s in admin.state()["sessions"] if s["id"] == session_id]
    return session


def wait_for_status(admin: Admin, session_id: str, status: str, limit: float = 120) -> None:
    """Poll the emulator's admin view (not the API: no rate limit) until ``status``."""
    deadline = time.monotonic() + limit
    while emulated(admin, session_id)["status"] != status:
        assert time.monotonic() < deadline, emulated(admin, session_id)
        time.sleep(0.2)


def guard(hook: ArrHook, session_id: str, **kw: Any) -> LeaseGuard:
    kw.setdefault("cap", timedelta(hours=2))
    return LeaseGuard(hook, session_id, step=STEP, margin=MARGIN, time_scale=SCALE, **kw)


def test_a_workload_longer_than_the_first_lease_completes(admin: Admin) -> None:
    hook = ArrHook()
    session_id = hook.create_session(max_lease_time=FIRST_LEASE)
    started = time.monotonic()
    with guard(hook, session_id) as g:
        time.sleep(10)  # 1000 emulated s: twice the first lease
        guard_reads = admin.counts()["get"]
        guarded_for = time.monotonic() - started
        assert hook.get_session(session_id).is_ready
    assert g.outcome == OUTCOME_RELEASED and g.error is None
    # Reads no closer than 5 s apart (the first comes at once), one update per step.
    assert guard_reads <= 1 + guarded_for / 5
    assert admin.counts()["update"] == len(g.extensions)
    assert len(g.extensions) >= 2
    seen = emulated(admin, session_id)
    assert seen["lease_seconds"] == g.extensions[-1].total_seconds()
    # Each total is the elapsed time plus a step: never more than a step ahead of the session.
    assert seen["lease_seconds"] <= seen["elapsed_seconds"] + STEP.total_seconds()
    updates = admin.counts()["update"]
    hook.ensure_stopped(session_id)  # the teardown
    time.sleep(8)  # longer than the guard's next wake-up would have been
    assert admin.counts()["update"] == updates  # not extended again once the workload ended
    assert admin.active() == 0


def test_the_cap_is_never_exceeded_and_outliving_it_is_logged(
    admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    hook = ArrHook()
    session_id = hook.create_session(max_lease_time=FIRST_LEASE)
    caplog.set_level(logging.INFO)
    with guard(hook, session_id, cap=timedelta(minutes=20)) as g:
        wait_for_status(admin, session_id, "expired")  # the workload outlives the cap
    assert g.outcome == OUTCOME_CAP
    assert max(g.extensions) == timedelta(minutes=20)
    assert emulated(admin, session_id)["lease_seconds"] == 20 * 60
    assert "outlives the cap, and the session will EXPIRE at the cap" in caplog.text
    assert admin.active() == 0


def test_a_failing_guard_is_reported_not_swallowed(admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    hook = ArrHook()
    session_id = hook.create_session(max_lease_time=FIRST_LEASE)
    admin.fault(operation="update", action="status", status=500)
    with (
        pytest.raises(ArrError, match=r"lease guard of session .* failed") as info,
        guard(hook, session_id) as g,
    ):
        deadline = time.monotonic() + 60
        while g.outcome is None and time.monotonic() < deadline:
            time.sleep(0.2)
    assert g.outcome == OUTCOME_ERROR
    assert "FAILED" in caplog.text
    assert isinstance(info.value.__cause__, ArrError)
    admin.clear_faults()
    hook.ensure_stopped(session_id)


def test_the_guard_ends_when_the_teardown_stops_the_session(admin: Admin) -> None:
    hook = ArrHook()
    session_id = hook.create_session(max_lease_time=FIRST_LEASE)
    with guard(hook, session_id) as g:
        time.sleep(1)
        hook.ensure_stopped(session_id)  # stopped under the guard (by hand, or a teardown)
        deadline = time.monotonic() + 60
        while g.outcome is None and time.monotonic() < deadline:
            time.sleep(0.2)
    assert g.outcome == "ended" and g.error is None
    assert emulated(admin, session_id)["status"] in ("stopping", "stopped")


# -- the trigger (the operator's shape) ------------------------------------------------------------


def trigger_for(session_id: str, api_version: str, cap: timedelta) -> ArrLeaseGuardTrigger:
    return ArrLeaseGuardTrigger(
        session_id=session_id,
        cap=cap.total_seconds(),
        step=STEP.total_seconds(),
        margin=MARGIN.total_seconds(),
        api_version=api_version,
        time_scale=SCALE,
    )


async def first_event(trigger: ArrLeaseGuardTrigger, timeout: float = 120) -> dict[str, Any]:
    async def take() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return await asyncio.wait_for(take(), timeout)


def test_trigger_serialization_round_trip() -> None:
    trigger = ArrLeaseGuardTrigger(
        session_id="s-1",
        cap=3600,
        step=900,
        margin=180,
        api_version="2021-01-01",
        arr_conn_id="other",
        time_scale=2.0,
        min_interval=7.0,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_arr.triggers.lease.ArrLeaseGuardTrigger"
    assert ArrLeaseGuardTrigger(**kwargs).serialize() == trigger.serialize()
    assert kwargs == {
        "session_id": "s-1",
        "cap": 3600.0,
        "step": 900.0,
        "margin": 180.0,
        "api_version": "2021-01-01",
        "arr_conn_id": "other",
        "time_scale": 2.0,
        "min_interval": 7.0,
    }


async def test_trigger_extends_until_the_teardown_stops_the_session(admin: Admin, api_version: str) -> None:
    hook = ArrHook()
    session_id = await asyncio.to_thread(hook.create_session, max_lease_time=FIRST_LEASE)
    started = time.monotonic()
    task = asyncio.ensure_future(first_event(trigger_for(session_id, api_version, timedelta(hours=2))))
    await asyncio.sleep(10)  # the workload, longer than the first lease
    assert admin.counts()["get"] <= 1 + (time.monotonic() - started) / 5
    assert emulated(admin, session_id)["status"] == "ready"
    await asyncio.to_thread(hook.ensure_stopped, session_id)  # the teardown
    event = await task
    assert event["status"] == EVENT_ENDED, event
    assert event["extensions"] >= 2
    updates = admin.counts()["update"]
    assert updates == event["extensions"]  # one update call per step
    await asyncio.sleep(8)
    assert admin.counts()["update"] == updates


async def test_trigger_stops_at_the_cap(
    admin: Admin, api_version: str, caplog: pytest.LogCaptureFixture
) -> None:
    hook = ArrHook()
    session_id = await asyncio.to_thread(hook.create_session, max_lease_time=FIRST_LEASE)
    caplog.set_level(logging.INFO)
    event = await first_event(trigger_for(session_id, api_version, timedelta(minutes=20)))
    assert event["status"] == EVENT_CAP, event
    assert event["lease"] == "00:20:00"
    assert "EXPIRE" in event["message"] and "cap" in event["message"]
    assert emulated(admin, session_id)["lease_seconds"] == 20 * 60
    await asyncio.to_thread(hook.ensure_stopped, session_id)


# -- a transient failure, while the lease still has time -----------------------------------------------

#: The first extension fails through all of the hook's attempts (6), then the service recovers.
FLAKY = {"operation": "update", "action": "status", "status": 503, "count": 6}
ROOMY = {"step": timedelta(minutes=30), "margin": timedelta(minutes=18)}
FIRST = "0:20:00"  # 12 s real, the first extension due at once: room for a second try


def test_the_guard_tries_again_while_the_lease_lasts(admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    hook = ArrHook()
    session_id = hook.create_session(max_lease_time=FIRST)
    admin.fault(**FLAKY)
    caplog.set_level(logging.INFO)
    with LeaseGuard(hook, session_id, cap=timedelta(hours=2), time_scale=SCALE, **ROOMY) as g:
        deadline = time.monotonic() + 60
        while not g.extensions and g.outcome is None and time.monotonic() < deadline:
            time.sleep(0.2)
    assert g.error is None and g.extensions, g.outcome
    assert "trying again in 5 s" in caplog.text
    hook.ensure_stopped(session_id)


async def test_the_trigger_tries_again_while_the_lease_lasts(admin: Admin, api_version: str) -> None:
    hook = ArrHook()
    session_id = await asyncio.to_thread(hook.create_session, max_lease_time=FIRST)
    admin.fault(**FLAKY)
    trigger = ArrLeaseGuardTrigger(
        session_id=session_id,
        cap=timedelta(minutes=40).total_seconds(),
        step=ROOMY["step"].total_seconds(),
        margin=ROOMY["margin"].total_seconds(),
        api_version=api_version,
        time_scale=SCALE,
    )
    event = await first_event(trigger)
    assert event["status"] == EVENT_CAP, event  # extended (after the retry) up to the cap
    assert event["lease"] == "00:40:00"
    await asyncio.to_thread(hook.ensure_stopped, session_id)
