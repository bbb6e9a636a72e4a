"""Fifty waits on one throttled account through the AccountWatcher, against the emulator over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator, Sequence
from typing import Any

import pytest

from airflow_provider_arr.client.watch import AccountWatcher, Update
from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.models import RenderingSession
from tests.conftest import Admin, connection_json

WAITS = 50
POLL_INTERVAL = 10.0  # real seconds; 2021-01-01 lists 50 sessions in 2 pages of 25: 0.2 calls/s


def count_list_pages(exchange: Generator[Any, Any, Any], pages: list[int]) -> Generator[Any, Any, Any]:
    """Pass a protocol exchange through, counting the list pages it requests."""
    request = next(exchange)
    while True:
        if request.operation == "list":
            pages[0] += 1
        response = yield request
        try:
            request = exchange.send(response)
        except StopIteration as stop:
            return stop.value


class HookSource:
    """The watcher's source, on the hook's async client (until the client wires its own)."""

    def __init__(self, conn_id: str) -> None:
        self.hook = ArrHook(arr_conn_id=conn_id)

    async def list_active(self) -> tuple[Sequence[RenderingSession], int]:
        client = await self.hook._async_client()
        pages = [0]
        sessions = await client.run(count_list_pages(client.protocol.list_sessions(), pages))
        return [s for s in sessions if s.status.is_active], pages[0]

    async def get(self, session_id: str) -> RenderingSession:
        return await self.hook.aget_session(session_id)

    async def aclose(self) -> None:
        await self.hook.aclose()


@pytest.mark.slow
async def test_fifty_waits_on_a_throttled_account_all_see_ready_without_429s(
    emulator_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, api_version: str
) -> None:
    # Sessions ready 15 s (real) after creation; the list pages 25 sessions at a time.
    emulator = emulator_factory(startup_delay=150, time_scale=10, page_size=25)
    admin = Admin(emulator.url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_ARR_WATCH",
        connection_json(emulator.url, api_version=api_version, retry_wait_min=0.05, retry_wait_max=1),
    )
    hook = ArrHook(arr_conn_id="arr_watch")
    ids = [hook.create_session() for _ in range(WAITS)]  # created before the throttle is on
    admin.config(throttle_rate=0.2, throttle_burst=5)
    try:
        watcher = AccountWatcher.for_account((emulator.url, api_version), lambda: HookSource("arr_watch"))

        async def wait_ready(session_id: str) -> list[Update]:
            updates = []
            async with contextlib.aclosing(watcher.watch(session_id, POLL_INTERVAL)) as stream:
                async for update in stream:
                    updates.append(update)
                    assert update.error is None, update.error
                    assert update.session is not None
                    if update.session.is_ready:
                        return updates
            raise AssertionError("the stream ended")

        results = await asyncio.wait_for(asyncio.gather(*(wait_ready(i) for i in ids)), 240)
        counts = admin.counts()
    finally:
        admin.config(throttle_rate=None)
        for session_id in ids:
            hook.stop_session(session_id)
    assert len(results) == WAITS
    assert all(updates[-1].session and updates[-1].session.is_ready for updates in results)
    # Every status came from the shared list, serving all 50 waits: no read by id at all.
    assert {(u.source, u.served) for updates in results for u in updates} == {("list", WAITS)}
    assert counts["get"] == 0
    assert counts["list"] == watcher.stats.pages
    assert watcher.stats.polls >= 2  # the sessions were starting at the first poll
    assert counts["throttled"] == 0
