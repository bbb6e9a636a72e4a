"""Coalesced polling: every wait of an event loop on one account shares one poll.

Fifty deferred tasks waiting for fifty sessions of one account, each reading its own session
every 10 s, send five calls a second where the service allows one per 5 to 10 s. An
:class:`AccountWatcher` makes one poll per interval for all of them instead:

- one waiter alone is served as before: one read by id per interval, no list;
- with more waiters, one list of the account's active sessions serves them all, as long as the
  list costs fewer calls than reading each waited session (the 2021-01-01 dialect pages its
  list, one call per ``@nextLink`` page: the watcher remembers how many pages the last list took);
- a waited session missing from the list has ended (only active sessions are listed) or is
  unknown: it is read once by id, and the waiter gets that read (its ``Stopped``/``Error``/
  ``Expired`` status with the service's message, or the error, e.g. a 404);
- a failing list fails no waiter: the next interval reads by id (at most
  :data:`FALLBACK_READS` sessions, in turn), the one after lists again.

The watcher polls at the **shortest** poll interval of its waiters (a waiter asking for 30 s
next to one asking for 10 s gets a status every 10 s: the poll is shared, so it costs nothing
more). A waiter joining between two polls is served by the next one: its first status comes
within one interval (plus the account's pacing), never later, and nothing is spread on purpose.
An idle watcher's first poll waits :data:`JOIN_WINDOW` (1 s) for the waits started with it.

The watcher is generic over a :class:`SessionSource` (two coroutines), so it can be driven by a
fake in tests and by the hook's async client in the triggerer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from collections.abc import AsyncGenerator, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from airflow_provider_arr.models import RenderingSession

log = logging.getLogger(__name__)

#: Reads by id at most, at the poll after a failed list (taken in turn among the waited
#: sessions): a thousand reads in a row would spend a thousand times the account's rate, and a
#: list that failed on a 429 would be followed by a storm of them. Small waits are all served.
FALLBACK_READS = 10

#: Seconds an idle watcher waits for more waiters before its first poll (at most one poll
#: interval): a triggerer starts a batch of triggers together, but each first awaits its
#: connection, so they join over a few hundred milliseconds; without the wait the first one
#: alone would be read by id, and the rest listed one interval later.
JOIN_WINDOW = 1.0

#: Where an :class:`Update`'s status came from.
UpdateSource = Literal["list", "get"]


@runtime_checkable
class SessionSource(Protocol):
    """What the watcher needs from a client of one account.

    An optional ``async def aclose(self) -> None`` is awaited when the watcher stops polling.
    """

    async def list_active(self) -> tuple[Sequence[RenderingSession], int]:
        """The account's active sessions (every page), and how many calls (pages) that took."""
        ...

    async def get(self, session_id: str) -> RenderingSession:
        """Read one session by id; raise (e.g. ``ArrNotFoundError``) if it cannot be read."""
        ...


#: Makes a source; called each time a watcher starts polling (after being idle).
SourceFactory = Callable[[], SessionSource]


@dataclass(frozen=True)
class Update:
    """One status for one waiter.

    :param session_id: the session waited for.
    :param session: the session as read, or None if ``error`` is set.
    :param error: why the session could not be read (the read by id failed), else None.
    :param source: ``"list"`` (the shared account list) or ``"get"`` (a read by id).
    :param served: how many waited sessions the read served (1 for a read by id).
    """

    session_id: str
    session: RenderingSession | None
    error: Exception | None
    source: UpdateSource
    served: int

    def describe(self) -> str:
        """Where the status came from, for a log line."""
        if self.source == "list":
            return f"status from the shared account list (serving {self.served} sessions)"
        return "status read by id"


@dataclass(eq=False)
class _Waiter:
    session_id: str
    interval: float
    latest: Update | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class WatcherStats:
    """Calls a watcher made, for logs, tests and benchmarks.

    :param polls: polls made (one per interval while someone waits).
    :param lists: lists attempted; ``pages`` the calls they took.
    :param gets: reads by id.
    :param list_failures: lists that failed (the next poll read by id instead).
    """

    polls: int = 0
    lists: int = 0
    pages: int = 0
    gets: int = 0
    list_failures: int = 0

    @property
    def calls(self) -> int:
        """Every call to the service: list pages and reads by id (failed lists count as one)."""
        return self.pages + self.list_failures + self.gets


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, AccountWatcher]] = (
    weakref.WeakKeyDictionary()
)


class AccountWatcher:
    """The shared poll of one account's sessions in one event loop (see the module's docstring).

    Get it with :meth:`for_account`; wait with :meth:`watch`.

    :param key: the account's identity (e.g. ``(endpoint, account_id)``), for logs.
    :param source_factory: makes the source the poll reads from; called each time polling
        starts, and the source's ``aclose()`` (if any) is awaited when polling stops.
    :param fallback_reads: at most this many reads by id at the poll after a failed list.
    """

    def __init__(
        self, key: Hashable, source_factory: SourceFactory, *, fallback_reads: int = FALLBACK_READS
    ) -> None:
        self.key = key
        self.fallback_reads = fallback_reads
        self._fallback_done: set[str] = set()  # read by id in the current round of fallbacks
        self._factory = source_factory
        self._waiters: dict[_Waiter, None] = {}  # insertion-ordered set
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._pages = 1  # calls the last list took; a first list is assumed to take one
        self._read_by_id_next = False  # the last list failed: read by id at the next poll
        self._list_failing = False  # logged once until a list succeeds again
        self._last_poll: float | None = None
        self.stats = WatcherStats()

    @classmethod
    def for_account(cls, key: Hashable, source_factory: SourceFactory) -> AccountWatcher:
        """The watcher of account ``key`` in the running event loop (call it from a coroutine).

        One per (loop, key): every wait of the loop on that account shares it; a new event
        loop (a restarted triggerer) gets new watchers. If the watcher exists, its own
        ``source_factory`` is kept and the one given here is ignored.
        """
        loop = asyncio.get_running_loop()
        watchers = _watchers.setdefault(loop, {})
        watcher = watchers.get(key)
        if watcher is None:
            watcher = watchers[key] = cls(key, source_factory)
        return watcher

    @property
    def waiting(self) -> int:
        """How many waits are being served."""
        return len(self._waiters)

    @property
    def polling(self) -> bool:
        """Whether the background poll task is running."""
        return self._task is not None

    async def watch(self, session_id: str, poll_interval: float) -> AsyncGenerator[Update, None]:
        """Yield a status of ``session_id`` after each poll, until the caller stops iterating.

        The first comes at once if nobody else is waiting, else with the next shared poll
        (within one interval). If the caller is slower than the polls, it gets the latest
        status (older ones are dropped). Stopping the iteration, or cancelling the task that
        iterates, leaves every other waiter untouched; close the iterator promptly
        (``contextlib.aclosing``) rather than leave it to the garbage collector.

        :param session_id: the session to follow.
        :param poll_interval: seconds between two statuses wanted; the watcher polls at the
            shortest interval of its waiters.
        """
        if not (
            isinstance(poll_interval, int | float) and math.isfinite(poll_interval) and poll_interval > 0
        ):
            raise ValueError(f"poll_interval must be a finite number of seconds > 0, got {poll_interval!r}")
        waiter = _Waiter(session_id, float(poll_interval))
        self._waiters[waiter] = None
        self._wake.set()  # a shorter interval may bring the next poll forward
        try:
            while True:
                self._ensure_polling()
                await waiter.ready.wait()
                waiter.ready.clear()
                assert waiter.latest is not None
                yield waiter.latest
        finally:
            self._waiters.pop(waiter, None)
            self._wake.set()

    def _ensure_polling(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"arr-account-watcher-{self.key!r}"
            )

    def _interval(self) -> float:
        return min(w.interval for w in self._waiters)

    def _idle(self) -> bool:
        """No waiter left: the task ends (decided synchronously, so a newcomer starts a new one)."""
        if self._waiters:
            return False
        self._task = None
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        source: SessionSource | None = None
        try:
            # Waits started together (a triggerer picking up many triggers) share the first poll.
            await asyncio.sleep(min(JOIN_WINDOW, self._interval()) if self._waiters else 0)
            while not self._idle():
                if self._last_poll is not None:
                    due = self._last_poll + self._interval()
                    if loop.time() < due:
                        self._wake.clear()
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), due - loop.time())
                        continue  # woken: a waiter came or went; re-read the interval
                if source is None:
                    source = self._factory()
                await self._poll(source)
                self._last_poll = loop.time()
        except Exception as exc:  # a defect here must not leave waiters hanging
            log.exception("ARR account watcher %r failed", self.key)
            for waiter in list(self._waiters):
                self._deliver_to(waiter, Update(waiter.session_id, None, exc, "get", 0))
        finally:
            if self._task is asyncio.current_task():  # failed or cancelled (not idle)
                self._task = None
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()

    async def _poll(self, source: SessionSource) -> None:
        ids = list(dict.fromkeys(w.session_id for w in self._waiters))
        self.stats.polls += 1
        # A list costs self._pages calls, a read by id one call per waited session.
        if self._pages >= len(ids):
            self._read_by_id_next = False
            await self._get_each(source, ids)
            return
        if self._read_by_id_next:
            self._read_by_id_next = False
            await self._get_each(source, self._next_fallback(ids))
            return
        self.stats.lists += 1
        try:
            sessions, pages = await source.list_active()
        except Exception as exc:
            self.stats.list_failures += 1
            if not self._list_failing:
                log.warning(
                    "ARR list of account %r failed (%s); the waited sessions are read by id at "
                    "the next poll, then the list is tried again (further failures not logged "
                    "until a list succeeds)",
                    self.key,
                    exc,
                )
            self._list_failing = True
            self._read_by_id_next = True
            return
        self._list_failing = False
        self.stats.pages += pages
        self._pages = max(1, pages)
        listed = {s.session_id: s for s in sessions}
        found = [i for i in ids if i in listed]
        for session_id in found:
            self._deliver(Update(session_id, listed[session_id], None, "list", len(found)))
        # Only active sessions are listed: a missing one has ended or is unknown.
        await self._get_each(source, [i for i in ids if i not in listed])

    def _next_fallback(self, ids: list[str]) -> list[str]:
        """The next ``fallback_reads`` waited sessions, in turn, for a poll after a failed list."""
        if len(ids) <= self.fallback_reads:
            return ids
        self._fallback_done &= set(ids)  # forget sessions nobody waits for any more
        pending = [i for i in ids if i not in self._fallback_done]
        if len(pending) < self.fallback_reads:  # a new round
            self._fallback_done.clear()
            pending += [i for i in ids if i not in pending]
        chosen = pending[: self.fallback_reads]
        self._fallback_done.update(chosen)
        return chosen

    async def _get_each(self, source: SessionSource, ids: list[str]) -> None:
        async def one(session_id: str) -> None:
            self.stats.gets += 1
            try:
                session = await source.get(session_id)
            except Exception as exc:
                self._deliver(Update(session_id, None, exc, "get", 1))
            else:
                self._deliver(Update(session_id, session, None, "get", 1))

        await asyncio.gather(*(one(i) for i in ids))

    def _deliver(self, update: Update) -> None:
        for waiter in list(self._waiters):
            if waiter.session_id == update.session_id:
                self._deliver_to(waiter, update)

    @staticmethod
    def _deliver_to(waiter: _Waiter, update: Update) -> None:
        waiter.latest = update
        waiter.ready.set()
