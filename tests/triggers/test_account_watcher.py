"""Many waits on one throttled account, as one triggerer runs them: real triggers in one event
loop, against the emulator at the service's documented rate (0.2 calls/s, burst 5)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.readiness import EVENT_FAILED, EVENT_READY
from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger
from tests.conftest import Admin, connection_json

pytestmark = pytest.mark.slow
CONN = "arr_watch"
POLL = 5.0  # the shortest interval the sensor allows: one list per 5 s is the documented rate


@pytest.fixture
def account(
    emulator_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, api_version: str
) -> Iterator[tuple[Admin, ArrHook]]:
    """An emulator whose sessions start in 15 real seconds, throttled once the sessions exist.

    The triggers wait through ``arr_watch`` (the documented rate, the default pacer); the hook
    returned makes and stops the sessions through ``arr_watch_setup``, whose pacer is open, so
    that every session exists before the waits start whatever ran before in the process.
    """
    emulator = emulator_factory(startup_delay=150, time_scale=10, page_size=25)
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN.upper()}",
        connection_json(emulator.url, api_version=api_version, retry_wait_min=0.05, retry_wait_max=1),
    )
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN.upper()}_SETUP",
        connection_json(
            emulator.url,
            api_version=api_version,
            retry_wait_min=0.05,
            retry_wait_max=1,
            rate_limit=1000,
            rate_burst=1000,
        ),
    )
    admin = Admin.of(emulator)
    yield admin, ArrHook(arr_conn_id=f"{CONN}_setup")
    admin.config(throttle_rate=None)


def trigger(session_id: str, deadline: float | None = None) -> ArrSessionReadyTrigger:
    return ArrSessionReadyTrigger(
        session_id=session_id, arr_conn_id=CONN, poll_interval=POLL, deadline=deadline
    )


async def outcome(t: ArrSessionReadyTrigger) -> dict[str, Any]:
    async for event in t.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")


def throttle(admin: Admin) -> None:
    admin.config(throttle_rate=0.2, throttle_burst=5)


def stop_all(admin: Admin, hook: ArrHook, ids: list[str]) -> None:
    """Stop the sessions once the test has read its figures (the throttle off: the waits are measured)."""
    admin.config(throttle_rate=None)
    for session_id in ids:
        hook.ensure_stopped(session_id)


async def test_fifty_waits_share_one_list_and_all_see_ready(
    account: tuple[Admin, ArrHook],
    api_version: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    admin, hook = account
    ids = [hook.create_session() for _ in range(50)]  # made before the throttle is on
    throttle(admin)
    before = admin.counts()
    events = await asyncio.wait_for(asyncio.gather(*(outcome(trigger(i)) for i in ids)), 240)
    after = admin.counts()
    assert [e["status"] for e in events] == [EVENT_READY] * 50
    assert after["throttled"] == before["throttled"], "no 429 at all"
    assert after["get"] == before["get"], "every status came from the shared list"
    pages = 2 if api_version == "2021-01-01" else 1
    polls = (after["list"] - before["list"]) / pages
    assert 2 <= polls <= 6, f"{polls} polls for a 15 s start at one poll per 5 s"
    # The trigger's log goes to stdout once Airflow has set up its logging in this process.
    logged = caplog.text + capfd.readouterr().out
    assert "status from the shared account list (serving 50 sessions)" in logged
    stop_all(admin, hook, ids)


async def test_sessions_that_end_while_others_wait_fail_with_the_service_message(
    account: tuple[Admin, ArrHook],
) -> None:
    admin, hook = account
    ids = [hook.create_session() for _ in range(8)]
    throttle(admin)
    admin.force(ids[0], "error", "GPU node lost")
    hook.ensure_stopped(ids[1])
    events = await asyncio.wait_for(asyncio.gather(*(outcome(trigger(i)) for i in ids)), 240)
    assert events[0]["status"] == EVENT_FAILED and "GPU node lost" in events[0]["message"]
    assert events[1]["status"] == EVENT_FAILED and events[1]["session_status"] in ("stopping", "stopped")
    assert [e["status"] for e in events[2:]] == [EVENT_READY] * 6
    assert admin.counts()["throttled"] == 0
    stop_all(admin, hook, ids)


async def test_a_failing_list_falls_back_to_reads_by_id(account: tuple[Admin, ArrHook]) -> None:
    admin, hook = account
    ids = [hook.create_session() for _ in range(6)]
    admin.fault(operation="list", action="status", status=500, count=8)  # the retries of one poll
    events = await asyncio.wait_for(asyncio.gather(*(outcome(trigger(i)) for i in ids)), 240)
    assert [e["status"] for e in events] == [EVENT_READY] * 6
    assert admin.counts()["get"] > 0, "the poll after the failed list read the sessions by id"
    stop_all(admin, hook, ids)


async def test_one_cancelled_wait_leaves_the_others_alone(account: tuple[Admin, ArrHook]) -> None:
    admin, hook = account
    ids = [hook.create_session() for _ in range(10)]
    throttle(admin)
    tasks = [asyncio.create_task(outcome(trigger(i))) for i in ids]
    await asyncio.sleep(POLL)  # every wait has joined the shared poll
    tasks[3].cancel()  # what the triggerer does on a user's kill or a timeout
    done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 240)
    assert isinstance(done[3], asyncio.CancelledError)
    assert [e["status"] for k, e in enumerate(done) if k != 3] == [EVENT_READY] * 9
    assert admin.counts()["throttled"] == 0
    stop_all(admin, hook, ids)


def test_a_restarted_triggerer_resumes_the_waits_in_a_new_event_loop(account: tuple[Admin, ArrHook]) -> None:
    admin, hook = account
    ids = [hook.create_session() for _ in range(6)]
    throttle(admin)
    triggers = [trigger(i) for i in ids]

    async def first_loop() -> None:  # the triggerer dies after a poll or two
        tasks = [asyncio.create_task(outcome(t)) for t in triggers]
        await asyncio.sleep(POLL + 1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def second_loop() -> list[dict[str, Any]]:  # a new triggerer, a new event loop
        resumed = [ArrSessionReadyTrigger(**t.serialize()[1]) for t in triggers]
        return await asyncio.wait_for(asyncio.gather(*(outcome(t) for t in resumed)), 240)

    asyncio.run(first_loop())
    events = asyncio.run(second_loop())
    assert [e["status"] for e in events] == [EVENT_READY] * 6
    assert admin.counts()["throttled"] == 0
    stop_all(admin, hook, ids)
