"""The account watcher with a fake source: which calls it makes, and what each waiter gets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence

import pytest

from airflow_provider_arr.client.watch import AccountWatcher, Update
from airflow_provider_arr.exceptions import ArrNotFoundError, ArrServiceError
from airflow_provider_arr.models import RenderingSession, SessionStatus

FAST = 0.02  # seconds between polls: the tests count calls per poll, never time them
HANG_GUARD = 60.0  # a broken watcher fails the test instead of hanging it


def session(
    session_id: str, status: SessionStatus = SessionStatus.STARTING, message: str | None = None
) -> RenderingSession:
    return RenderingSession(session_id=session_id, status=status, message=message)


class FakeSource:
    """An account: its sessions by id, a list of the active ones (paged), and a call log."""

    def __init__(self, sessions: Sequence[RenderingSession] = (), *, page_size: int | None = None) -> None:
        self.sessions = {s.session_id: s for s in sessions}
        self.page_size = page_size
        self.other_active = 0  # active sessions of the account that nobody here waits for
        self.failing_lists = 0
        self.calls: list[str] = []
        self.closed = 0

    async def list_active(self) -> tuple[list[RenderingSession], int]:
        self.calls.append("list")
        await asyncio.sleep(0)
        if self.failing_lists:
            self.failing_lists -= 1
            raise ArrServiceError("The service failed.", http_status=503)
        active = [s for s in self.sessions.values() if s.status.is_active]
        total = len(active) + self.other_active
        pages = max(1, math.ceil(total / self.page_size)) if self.page_size else 1
        return active, pages

    async def get(self, session_id: str) -> RenderingSession:
        self.calls.append(f"get:{session_id}")
        await asyncio.sleep(0)
        if session_id not in self.sessions:
            raise ArrNotFoundError(f"No session with id '{session_id}' exists.", http_status=404)
        return self.sessions[session_id]

    async def aclose(self) -> None:
        self.closed += 1


def new_watcher(source: FakeSource) -> AccountWatcher:
    # A key of its own per test: the registry is per loop, and pytest-asyncio may reuse loops.
    return AccountWatcher.for_account(("fake", id(source)), lambda: source)


async def take(watcher: AccountWatcher, session_id: str, count: int, interval: float = FAST) -> list[Update]:
    updates = []
    async with contextlib.aclosing(watcher.watch(session_id, interval)) as stream:
        async for update in stream:
            updates.append(update)
            if len(updates) == count:
                break
    return updates


async def guarded(*aws: object) -> list[object]:
    return await asyncio.wait_for(asyncio.gather(*aws), HANG_GUARD)  # type: ignore[arg-type]


async def settle(watcher: AccountWatcher) -> None:
    """Let the watcher's task notice it has nobody left to serve."""
    for _ in range(100):
        if not watcher.polling:
            return
        await asyncio.sleep(FAST)


async def test_one_waiter_alone_reads_by_id_and_never_lists() -> None:
    source = FakeSource([session("a")])
    watcher = new_watcher(source)
    updates = await guarded(take(watcher, "a", 3))
    assert source.calls == ["get:a"] * 3
    assert [(u.source, u.served) for u in updates[0]] == [("get", 1)] * 3  # type: ignore[attr-defined]
    assert updates[0][0].describe() == "status read by id"  # type: ignore[index]


async def test_fifty_waiters_share_one_list_per_poll() -> None:
    ids = [f"s{i}" for i in range(50)]
    source = FakeSource([session(i) for i in ids])
    watcher = new_watcher(source)
    results = await guarded(*(take(watcher, i, 3) for i in ids))
    # Every waiter joined in the same instant: three polls, each one list, no read by id.
    assert source.calls == ["list"] * 3
    assert watcher.stats.polls == 3
    for session_id, updates in zip(ids, results, strict=True):
        assert [u.session_id for u in updates] == [session_id] * 3  # type: ignore[attr-defined]
        assert {(u.source, u.served) for u in updates} == {("list", 50)}  # type: ignore[attr-defined]
    assert results[0][0].describe() == "status from the shared account list (serving 50 sessions)"  # type: ignore[index]


async def test_a_session_missing_from_the_list_is_read_once_by_id() -> None:
    failed = session("c", SessionStatus.ERROR, "The VM could not be allocated.")
    source = FakeSource([session("a"), session("b"), failed])
    watcher = new_watcher(source)
    got: dict[str, list[Update]] = {}

    async def until_outcome(session_id: str) -> None:
        got[session_id] = []
        async with contextlib.aclosing(watcher.watch(session_id, FAST)) as stream:
            async for update in stream:
                got[session_id].append(update)
                if update.error is not None or (update.session and not update.session.status.is_active):
                    return
                if len(got[session_id]) == 2:
                    return

    await guarded(until_outcome("a"), until_outcome("b"), until_outcome("c"), until_outcome("unknown"))
    # The ended and the unknown session: one read each, after the first list; then lists only.
    assert source.calls[:3] == ["list", "get:c", "get:unknown"]
    assert source.calls[3:] == ["list"]
    (ended,) = got["c"]
    assert ended.source == "get"
    assert ended.session is not None
    assert ended.session.status is SessionStatus.ERROR
    assert ended.session.message == "The VM could not be allocated."
    (unknown,) = got["unknown"]
    assert isinstance(unknown.error, ArrNotFoundError)
    assert unknown.session is None
    assert [(u.source, u.served) for u in got["a"]] == [("list", 2), ("list", 2)]


async def test_a_failing_list_falls_back_to_reads_by_id_then_lists_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = FakeSource([session("a"), session("b")])
    source.failing_lists = 2
    watcher = new_watcher(source)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_arr.client.watch"):
        results = await guarded(take(watcher, "a", 3), take(watcher, "b", 3))
    # list fails -> reads by id -> list fails -> reads by id -> list works.
    assert source.calls == ["list", "get:a", "get:b", "list", "get:a", "get:b", "list"]
    for updates in results:
        assert [u.source for u in updates] == ["get", "get", "list"]  # type: ignore[attr-defined]
        assert all(u.error is None for u in updates)  # type: ignore[attr-defined]
    assert watcher.stats.list_failures == 2
    warnings = [r for r in caplog.records if "list of account" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not at every failure


async def test_a_cancelled_waiter_leaves_the_others_untouched() -> None:
    ids = [f"s{i}" for i in range(10)]
    source = FakeSource([session(i) for i in ids])
    watcher = new_watcher(source)
    first_update = asyncio.Event()

    async def victim() -> None:
        async for _ in watcher.watch("s0", FAST):
            first_update.set()

    victim_task = asyncio.create_task(victim())
    others = [asyncio.create_task(take(watcher, i, 4)) for i in ids[1:]]
    await asyncio.wait_for(first_update.wait(), HANG_GUARD)
    victim_task.cancel()  # as on_kill or a timeout does
    with pytest.raises(asyncio.CancelledError):
        await victim_task
    assert watcher.waiting == 9
    results = await guarded(*others)
    assert all(len(r) == 4 for r in results)  # type: ignore[arg-type]
    # The other waiters got every poll, and the ones after the cancel serve 9 sessions.
    assert results[0][-1].served == 9  # type: ignore[index]
    await settle(watcher)
    assert watcher.waiting == 0
    assert not watcher.polling
    assert source.closed == 1
    # Nobody waits: no more calls. A new waiter starts polling again, with a new source.
    calls = len(source.calls)
    await asyncio.sleep(5 * FAST)
    assert len(source.calls) == calls
    await guarded(take(watcher, "s1", 1))
    assert source.calls[calls:] == ["get:s1"]
    await settle(watcher)
    assert source.closed == 2


async def test_the_same_session_waited_twice_is_read_once_per_poll() -> None:
    source = FakeSource([session("a")])
    watcher = new_watcher(source)
    await guarded(take(watcher, "a", 2), take(watcher, "a", 2))
    assert source.calls == ["get:a", "get:a"]


async def test_2021_paging_makes_the_list_worth_it_only_for_more_waiters_than_pages() -> None:
    ids = [f"s{i}" for i in range(20)]
    source = FakeSource([session(i) for i in ids], page_size=10)
    source.other_active = 80  # 100 active sessions: 10 pages
    watcher = new_watcher(source)
    await guarded(*(take(watcher, i, 2) for i in ids[:3]))
    # The first list (assumed one page) took 10: three sessions are cheaper by id from then on.
    assert source.calls[0] == "list"
    assert source.calls[1:] == ["get:s0", "get:s1", "get:s2"]
    assert watcher.stats.pages == 10
    source.calls.clear()
    await guarded(*(take(watcher, i, 2) for i in ids))
    assert source.calls == ["list", "list"]  # 20 waiters: a 10-page list is cheaper
    source.calls.clear()
    await guarded(*(take(watcher, i, 1) for i in ids[:10]))
    assert source.calls == [f"get:s{i}" for i in range(10)]  # 10 reads: no fewer calls than 10 pages


async def test_the_poll_follows_the_shortest_interval_and_a_newcomer_is_served_by_the_next_poll() -> None:
    source = FakeSource([session("slow"), session("fast")])
    watcher = new_watcher(source)
    got_first = asyncio.Event()
    slow_updates: list[Update] = []

    async def slow() -> None:
        async for update in watcher.watch("slow", 3600.0):
            slow_updates.append(update)
            got_first.set()
            if len(slow_updates) == 4:
                return

    slow_task = asyncio.create_task(slow())
    await asyncio.wait_for(got_first.wait(), HANG_GUARD)
    polls_at_join = watcher.stats.polls
    fast_updates = await guarded(take(watcher, "fast", 3))
    # The newcomer's first status came from the very next poll, not an hour later.
    assert fast_updates[0][0].source == "list"  # type: ignore[index]
    assert watcher.stats.polls >= polls_at_join + 1
    await asyncio.wait_for(slow_task, HANG_GUARD)
    # The one-hour waiter was served at the 20 ms pace while the other waited.
    assert len(slow_updates) == 4


async def test_a_slow_consumer_gets_the_latest_status() -> None:
    source = FakeSource([session("a")])
    watcher = new_watcher(source)
    stream = watcher.watch("a", FAST)
    first = await asyncio.wait_for(anext(stream), HANG_GUARD)
    assert first.session is not None
    assert first.session.status is SessionStatus.STARTING
    source.sessions["a"] = session("a", SessionStatus.READY)
    while watcher.stats.polls < 4:  # several polls while nobody reads the stream
        await asyncio.sleep(FAST)
    latest = await asyncio.wait_for(anext(stream), HANG_GUARD)
    assert latest.session is not None
    assert latest.session.status is SessionStatus.READY
    await stream.aclose()
    assert watcher.waiting == 0


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf")])
async def test_a_bad_interval_is_refused(interval: float) -> None:
    watcher = new_watcher(FakeSource())
    with pytest.raises(ValueError, match="poll_interval"):
        await anext(watcher.watch("a", interval))


def _watcher_in_new_loop(key: str) -> tuple[AccountWatcher, AccountWatcher]:
    source = FakeSource()

    async def get() -> tuple[AccountWatcher, AccountWatcher]:
        return AccountWatcher.for_account(key, lambda: source), AccountWatcher.for_account(
            key, lambda: source
        )

    return asyncio.run(get())


def test_one_watcher_per_account_and_event_loop() -> None:
    first, same = _watcher_in_new_loop("account-1")
    assert first is same
    restarted, _ = _watcher_in_new_loop("account-1")
    assert restarted is not first  # a restarted triggerer (new loop) gets new watchers


async def test_different_accounts_have_different_watchers() -> None:
    source = FakeSource()
    assert AccountWatcher.for_account("x", lambda: source) is not AccountWatcher.for_account(
        "y", lambda: source
    )


async def test_the_poll_task_ends_as_soon_as_the_last_waiter_leaves() -> None:
    source = FakeSource([session("a")])
    watcher = new_watcher(source)
    stream = watcher.watch("a", 3600.0)
    await asyncio.wait_for(anext(stream), HANG_GUARD)
    await asyncio.sleep(5 * FAST)  # the poll task is now asleep until the next poll, in an hour
    await stream.aclose()
    await settle(watcher)
    assert not watcher.polling  # not an hour later, at the next poll
    assert source.closed == 1
    assert source.calls == ["get:a"]


async def test_reads_after_a_failing_list_are_capped_and_taken_in_turn() -> None:
    ids = [f"s{i:02d}" for i in range(25)]
    source = FakeSource([session(i) for i in ids])
    source.failing_lists = 3
    watcher = AccountWatcher(("fake", id(source)), lambda: source, fallback_reads=10)
    tasks = [asyncio.create_task(take(watcher, i, 1)) for i in ids]
    await guarded(*tasks[:20])  # the first 20 were read by id after the first two failed lists
    read = [c.removeprefix("get:") for c in source.calls if c.startswith("get:")]
    assert source.calls.count("list") == 2
    assert read[:20] == ids[:20]  # ten, then the next ten: nobody read twice, nobody skipped
    await guarded(*tasks[20:])
    # Failed list, 10 reads by id, failed list, 10 reads, failed list, the last 5 reads.
    assert [n for n, c in enumerate(source.calls) if c == "list"] == [0, 11, 22]
    assert len(source.calls) == 28
    read = [c.removeprefix("get:") for c in source.calls if c.startswith("get:")]
    assert sorted(read) == ids
