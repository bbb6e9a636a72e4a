"""ArrSessionReadyTrigger's run loop (async) against the emulator over real HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger
from tests.conftest import Admin

pytestmark = pytest.mark.usefixtures("arr_conn")


async def first_event(trigger: ArrSessionReadyTrigger, timeout: float = 30) -> dict[str, Any]:
    async def take() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return await asyncio.wait_for(take(), timeout)


def rebuild(trigger: ArrSessionReadyTrigger) -> ArrSessionReadyTrigger:
    """What a triggerer does: re-create the trigger from its serialized form."""
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_arr.triggers.session.ArrSessionReadyTrigger"
    return ArrSessionReadyTrigger(**kwargs)


def test_serialization_round_trip() -> None:
    trigger = ArrSessionReadyTrigger(
        session_id="s-1", arr_conn_id="other", poll_interval=7.5, deadline=123.0, stop_on_kill=False
    )
    again = rebuild(trigger)
    assert again.serialize() == trigger.serialize()
    assert trigger.serialize()[1] == {
        "session_id": "s-1",
        "arr_conn_id": "other",
        "poll_interval": 7.5,
        "deadline": 123.0,
        "stop_on_kill": False,
        "first_poll_at": None,
    }


async def test_ready_event(admin: Admin) -> None:
    session_id = ArrHook().create_session()
    event = await first_event(rebuild(ArrSessionReadyTrigger(session_id=session_id, poll_interval=5)))
    assert event["status"] == "success" and event["session_status"] == "ready"
    assert event["session_id"] == session_id and event["hostname"]
    assert set(event) == {
        "status",
        "message",
        "session_id",
        "hostname",
        "arr_inspector_port",
        "session_status",
    }


async def test_waits_through_starting(emulator_factory, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import connection_json

    slow = emulator_factory(startup_delay=4, time_scale=1)  # ready after 4 real seconds
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", connection_json(slow.url))
    session_id = ArrHook().create_session()
    started = time.monotonic()
    event = await first_event(ArrSessionReadyTrigger(session_id=session_id, poll_interval=5))
    assert event["status"] == "success"
    assert time.monotonic() - started >= 5  # the second poll came one interval after the first
    assert Admin.of(slow).counts()["get"] == 2


async def test_failed_event_carries_the_service_message(admin: Admin) -> None:
    admin.config(error_on_start="out of GPUs")
    session_id = ArrHook().create_session()
    await asyncio.sleep(0.5)
    event = await first_event(ArrSessionReadyTrigger(session_id=session_id, poll_interval=5))
    assert event["status"] == "failed" and event["session_status"] == "error"
    assert "out of GPUs" in event["message"]


async def test_deadline_gives_a_timeout_event(emulator_factory, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import connection_json

    slow = emulator_factory(startup_delay=3600, time_scale=1)
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", connection_json(slow.url))
    session_id = ArrHook().create_session()
    event = await first_event(
        ArrSessionReadyTrigger(session_id=session_id, poll_interval=5, deadline=time.time() + 1)
    )
    assert event["status"] == "timeout"
    # Read once in time (the usual case), or not at all when a loaded machine took the second.
    if event["session_status"] is None:
        assert event["message"] == f"session {session_id} was not read yet at the deadline"
    else:
        assert event["session_status"] == "starting"
        assert event["message"] == f"session {session_id} was still starting at the deadline"
    ArrHook().stop_session(session_id)


async def test_unknown_session_gives_an_error_event(admin: Admin) -> None:
    event = await first_event(ArrSessionReadyTrigger(session_id="nope", poll_interval=5))
    assert event["status"] == "error" and "404" in event["message"]


async def test_polling_survives_throttling_and_5xx(admin: Admin) -> None:
    session_id = ArrHook().create_session()
    admin.fault(operation="get", action="status", status=429, retry_after=1, count=1)
    admin.fault(operation="get", action="status", status=503, count=1)
    admin.fault(operation="get", action="drop", count=1)
    event = await first_event(ArrSessionReadyTrigger(session_id=session_id, poll_interval=5))
    assert event["status"] == "success"


async def test_on_kill_stops_the_session_but_cancellation_does_not(admin: Admin) -> None:
    admin.config(startup_delay=10**6)  # never ready while we watch
    session_id = ArrHook().create_session()
    trigger = ArrSessionReadyTrigger(session_id=session_id, poll_interval=5)
    task = asyncio.ensure_future(first_event(trigger))
    await asyncio.sleep(0.5)
    task.cancel()  # a triggerer restart cancels the coroutine: the session must live on
    with pytest.raises(asyncio.CancelledError):
        await task
    assert admin.active() == 1
    resumed = rebuild(trigger)
    task = asyncio.ensure_future(first_event(resumed))
    await asyncio.sleep(0.5)
    await resumed.on_kill()  # a user marked the task failed
    task.cancel()
    assert admin.active() == 0
    assert admin.counts()["create"] == 1


async def test_concurrent_triggers_share_one_token(admin: Admin) -> None:
    ids = [ArrHook().create_session() for _ in range(5)]
    tokens_before = admin.counts()["token"]
    events = await asyncio.gather(
        *(first_event(ArrSessionReadyTrigger(session_id=i, poll_interval=5)) for i in ids)
    )
    assert [e["status"] for e in events] == ["success"] * 5
    assert admin.counts()["token"] - tokens_before == 1


async def test_first_poll_waits_until_first_poll_at(admin: Admin) -> None:
    # The sensor has just read the session before deferring: the trigger's first read waits.
    session_id = ArrHook().create_session()
    gets_before = admin.counts()["get"]
    trigger = rebuild(
        ArrSessionReadyTrigger(session_id=session_id, poll_interval=5, first_poll_at=time.time() + 1.5)
    )
    assert trigger.serialize()[1]["first_poll_at"] == trigger.first_poll_at
    task = asyncio.ensure_future(first_event(trigger))
    await asyncio.sleep(1.0)
    assert admin.counts()["get"] == gets_before  # nothing read yet
    assert (await task)["status"] == "success"
    assert admin.counts()["get"] == gets_before + 1


def test_when_the_first_read_comes() -> None:
    """None: at once; a future first_poll_at: then (at most one interval); a past one (a resumed
    wait): at a random moment within one interval, so that resumed waits do not read together;
    never past the deadline."""
    now = 1_800_000_000.0

    def wait(**kwargs: Any) -> float:
        return ArrSessionReadyTrigger(session_id="s", poll_interval=5, **kwargs)._before_first_poll(now)

    assert wait() == 0.0
    assert wait(first_poll_at=now + 2) == 2.0
    assert wait(first_poll_at=now + 60) == 5.0
    assert wait(first_poll_at=now + 2, deadline=now + 1) == 1.0
    resumed = [wait(first_poll_at=now - 30) for _ in range(200)]
    assert all(0.0 <= w <= 5.0 for w in resumed)
    assert max(resumed) - min(resumed) > 2.5  # spread over the interval, not one instant
    assert all(w <= 0.5 for w in (wait(first_poll_at=now - 30, deadline=now + 0.5) for _ in range(50)))
