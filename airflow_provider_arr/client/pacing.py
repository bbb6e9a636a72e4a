"""One adaptive pacer per ARR account, shared by every caller of a process (or event loop).

The service allows about one call per 5 to 10 seconds **per account** and answers 429 beyond,
with or without ``Retry-After``. Each caller spacing its own calls is not enough: fifty waits
in one triggerer, each polling every 10 s, send five calls a second to one account. So every
call to an account first takes a slot from that account's pacer:

- :class:`AdaptiveRate` is the pure logic (no clock, no lock, no sleep): a token bucket that
  hands out send times first come, first served, slows down on 429 and recovers on success.
- :class:`Pacer` (threads) and :class:`AsyncPacer` (asyncio) sleep until the slot and count.
- :func:`sync_pacer` and :func:`async_pacer` share one pacer per account key.

The adaptation is the idea of the AWS SDKs' "adaptive" retry mode (botocore
``retries/adaptive.py``: a client-side token bucket whose fill rate drops on a throttling
answer and climbs back on successes), simplified: additive increase, multiplicative decrease
(AIMD, as TCP), instead of botocore's CUBIC curve and measured send rate. Here the configured
rate is also a ceiling, because it is the service's documented rule, not a guess to probe past.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass

#: The documented rule: one call per 5 seconds (the fast end of "5 to 10 seconds between calls").
DEFAULT_RATE = 0.2
#: Calls that may go back to back after a quiet spell: a session lifecycle's first calls
#: (token, create, first read) are never delayed.
DEFAULT_BURST = 5

#: The share of the configured rate the transports pace at (:func:`paced_rate`). A pacer spaces
#: *sends*; the service's bucket counts *arrivals*, and a call that travels faster than the one
#: before it arrives early: pacing at exactly the service's rate, one call in a few under load
#: is a 429. 10 % under the rate absorbs half a second of such jitter at 0.2 calls/s.
HEADROOM = 0.9
#: Tokens of the service's burst the transports keep back (:func:`paced_burst`). The pacer's
#: bucket starts refilling when a burst is *sent*, the service's when it *arrives*: on a busy
#: machine the burst can arrive a second late, and the first paced call after it, on time,
#: finds the service's bucket still empty. One token kept back is one interval of margin.
BURST_HEADROOM = 1

#: On a 429 the rate is multiplied by this (botocore's CUBIC uses 0.7; halving reacts faster,
#: which matters when the real limit is 0.1/s, half the configured rate: one 429 finds it).
DECREASE_FACTOR = 0.5
#: The rate never drops below this (calls/s; or the configured rate if lower): one call a
#: minute still detects a ready session within a minute, and a 429 costs nothing but a retry.
MIN_RATE = 1.0 / 60.0
#: Each success after a slowdown adds this share of the configured rate back: from the
#: halved rate to the full one in 10 successes (about 100 s at 0.1/s), so a service that
#: really allows only half the configured rate sees one 429 every ~100 s, not one per call.
RECOVERY_STEP = 0.05


@dataclass(frozen=True)
class PacerStats:
    """Counters of one pacer, for logs and benchmarks.

    :param calls: slots handed out (calls paced).
    :param waited: total seconds callers were told to wait before sending.
    :param throttled: 429 answers recorded.
    :param rate: the current (adapted) rate, calls per second.
    :param configured_rate: the ceiling, calls per second.
    """

    calls: int
    waited: float
    throttled: int
    rate: float
    configured_rate: float


class AdaptiveRate:
    """A token bucket whose fill rate adapts to 429 answers; pure logic, the clock is passed in.

    ``burst`` tokens are available at first; one refills every ``1 / rate`` seconds, up to
    ``burst``. :meth:`reserve` always takes a token, possibly one not refilled yet: the bucket
    goes into debt and the caller is told how long to wait, so waiting callers line up one
    ``1 / rate`` apart, in the order they asked (no thundering herd, no retry loop).

    A single caller at the defaults never waits for its first ``burst`` calls, and then at most
    ``1 / rate`` between calls (none at all if it calls less often than the rate).

    :param rate: configured rate, calls per second; also the ceiling of recovery.
    :param burst: capacity of the bucket, >= 1.
    :param now: the current time on the caller's clock (any monotonic clock, in seconds).
    """

    def __init__(self, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST, *, now: float = 0.0) -> None:
        _check(rate, burst)
        self.configured_rate = float(rate)
        self.burst = int(burst)
        self.rate = float(rate)
        self._tokens = float(burst)  # negative: slots reserved ahead of the refill (a queue)
        self._updated = now  # time of _tokens; later than now while Retry-After holds sends
        self._last_slot = -math.inf  # send times handed out never go backwards (FIFO)
        #: Bumped when a Retry-After cancels the slots handed out: their holders reserve again.
        self.generation = 0
        self._hold_until = -math.inf
        self._decreased_at = -math.inf
        self.calls = 0
        self.waited = 0.0
        self.throttled_count = 0

    @property
    def floor(self) -> float:
        """The lowest rate a 429 can bring the bucket to."""
        return min(MIN_RATE, self.configured_rate)

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
            self._updated = now

    def reserve(self, now: float, *, again: bool = False, max_wait: float = math.inf) -> float:
        """Take the next slot: the seconds to wait from ``now`` before sending (0: send now).

        A caller that slept until its slot must check :attr:`generation` did not change
        meanwhile (a ``Retry-After`` cancelled every slot); if it did, it reserves again with
        ``again=True`` (not counted as another call).

        :raises NoTurnInTime: the slot is more than ``max_wait`` seconds away; then nothing is
            taken. (A slot taken and abandoned would push every later caller back by one
            interval: callers giving up at each poll would lengthen the queue faster than time
            shortens it, and nobody would get a turn again.)
        """
        self._refill(now)
        ready_at = self._updated + max(0.0, 1.0 - self._tokens) / self.rate
        # After a rate increase a later debt can convert to an earlier time: keep FIFO.
        ready_at = max(ready_at, self._last_slot, now)
        delay = ready_at - now
        if delay > max_wait:
            raise NoTurnInTime(delay)
        self._tokens -= 1.0
        self._last_slot = ready_at
        if not again:
            self.calls += 1
        self.waited += delay
        return delay

    def throttled(self, now: float, retry_after: float | None = None) -> None:
        """A call was answered 429: slow down, and with ``Retry-After``, hold every send until then.

        The rate is multiplied by :data:`DECREASE_FACTOR` (not below :attr:`floor`), and the
        bucket is emptied: the service has just said the account has no credit left, so
        what the bucket thought was burst credit is gone (the next call waits ``1 / rate``).

        With ``retry_after``, nobody sends before ``now + retry_after``: every slot handed out
        is cancelled (:attr:`generation` changes, their holders reserve again when they wake),
        one call may go at ``now + retry_after``, the next ones one at a time at the new rate.
        """
        self.throttled_count += 1
        self._refill(now)
        # A Retry-After within one interval at the configured rate says the account was only a
        # moment early (our bucket started counting when we sent, the service's when our first
        # call arrived): hold until then, but keep the pace.
        early = retry_after is not None and retry_after <= 1.0 / self.configured_rate
        # Calls in flight when the first 429 came back get 429s too: one slowdown per
        # ``1 / rate``, or a burst of answers would take the rate straight to the floor.
        if not early and now >= self._decreased_at + 1.0 / self.rate:
            self.rate = max(self.floor, self.rate * DECREASE_FACTOR)
            self._decreased_at = now
        if now >= self._hold_until:  # during a hold, the call allowed at its end stays allowed
            self._tokens = min(self._tokens, 0.0)
        if retry_after is not None and retry_after > 0:
            until = now + retry_after
            if until > self._hold_until:
                self._hold_until = until
                self.generation += 1
                self._updated = max(self._updated, until)
                self._tokens = 1.0
                self._last_slot = until

    def succeeded(self, now: float) -> None:
        """A call got through (any answer but 429): recover gradually, never above the configured rate."""
        self._refill(now)
        self.rate = min(self.configured_rate, self.rate + self.configured_rate * RECOVERY_STEP)

    def reconfigure(self, rate: float, burst: int) -> None:
        """Lower the ceiling (and burst) when another caller configures a lower rate; never raises it."""
        _check(rate, burst)
        self.configured_rate = min(self.configured_rate, float(rate))
        self.burst = min(self.burst, int(burst))
        self.rate = min(self.rate, self.configured_rate)
        self._tokens = min(self._tokens, float(self.burst))

    def stats(self) -> PacerStats:
        """A snapshot of the counters."""
        return PacerStats(self.calls, self.waited, self.throttled_count, self.rate, self.configured_rate)


def paced_rate(rate: float) -> float:
    """The rate a transport paces at for a connection's ``rate_limit``: :data:`HEADROOM` of it."""
    return rate * HEADROOM


def paced_burst(burst: int) -> int:
    """The burst a transport paces at for a connection's ``rate_burst``: :data:`BURST_HEADROOM`
    fewer tokens, at least 1."""
    return max(1, burst - BURST_HEADROOM)


def _check(rate: float, burst: int) -> None:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
        raise ValueError(f"pacing rate must be a finite number of calls per second > 0, got {rate!r}")
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
        raise ValueError(f"pacing burst must be an integer >= 1, got {burst!r}")


def _is_throttled(status: int | None, throttled: bool | None) -> bool | None:
    """True on a 429, False on an answer that got through, None when it says nothing of the rate."""
    if throttled is not None:
        return throttled
    if status is None or status >= 500:
        # No answer, or a server error: nothing learnt about the account's rate.
        return None
    return status == 429


class NoTurnInTime(Exception):
    """The caller's next turn comes later than it can wait (``delay`` seconds from now)."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"the next turn is {delay:.1f} s away")
        self.delay = delay


class _Pacing:
    """What both pacers share: the bucket behind a lock, the turn-taking, the reports.

    The lock is a thread lock in both: the async pacer's bucket is only touched from its loop's
    thread and never across an ``await``, so it is never contended there, and costs nothing.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.rate = AdaptiveRate(rate, burst, now=clock())

    def _turns(self, max_wait: float) -> Iterator[float]:
        """The waits until this call's slot (FIFO among callers): sleep each, in order.

        A ``Retry-After`` arriving meanwhile cancels every slot given out (the bucket's
        generation changes): the caller then takes a new one.

        :raises NoTurnInTime: when the slot is further away than ``max_wait`` seconds (the
            caller's budget): nothing is waited, and no slot is taken.
        """
        with self._lock:
            generation = self.rate.generation
            delay = self.rate.reserve(self._clock(), max_wait=max_wait)
        waited = 0.0
        while delay > 0:
            yield delay
            waited += delay
            with self._lock:
                if self.rate.generation == generation:
                    return
                generation = self.rate.generation
                delay = self.rate.reserve(self._clock(), again=True, max_wait=max_wait - waited)

    def record(
        self, status: int | None = None, *, throttled: bool | None = None, retry_after: float | None = None
    ) -> None:
        """Report a call's answer: a 429 (or ``throttled=True``) slows the account down,
        another answer below 500 (or ``throttled=False``) lets it recover; a 5xx or ``None``
        (no answer) changes nothing.
        """
        verdict = _is_throttled(status, throttled)
        if verdict is None:
            return
        with self._lock:
            if verdict:
                self.rate.throttled(self._clock(), retry_after)
            else:
                self.rate.succeeded(self._clock())

    def reconfigure(self, rate: float, burst: int) -> None:
        """Lower the configured rate/burst (never raise them): see :func:`sync_pacer`."""
        with self._lock:
            self.rate.reconfigure(rate, burst)

    def stats(self) -> PacerStats:
        """Calls paced, seconds waited, 429s seen, current and configured rate."""
        with self._lock:
            return self.rate.stats()


class Pacer(_Pacing):
    """The thread-safe pacer of one account: every call takes a slot, then reports its answer.

    Usage::

        pacer.acquire()                      # sleeps until this call's slot
        response = send()
        pacer.record(response.status, retry_after=parsed_retry_after)

    or ``with pacer.slot() as slot: ...; slot.record(status, retry_after)``.

    :param rate: configured calls per second (the ceiling).
    :param burst: calls that may go back to back after a quiet spell.
    :param clock: a monotonic clock (seconds).
    :param sleep: how to wait (tests pass a fake).
    """

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(rate, burst, clock)
        self._sleep = sleep

    def acquire(self, max_wait: float = math.inf) -> float:
        """Wait for this call's slot; return the seconds waited (see :meth:`_turns`)."""
        waited = 0.0
        for delay in self._turns(max_wait):
            self._sleep(delay)
            waited += delay
        return waited

    @contextlib.contextmanager
    def slot(self) -> Iterator[Pacer]:
        """``acquire()`` on entry; call ``record(...)`` on the yielded pacer once answered."""
        self.acquire()
        yield self


class AsyncPacer(_Pacing):
    """:class:`Pacer` for one event loop: ``await acquire()`` sleeps with asyncio.

    :param rate: configured calls per second (the ceiling).
    :param burst: calls that may go back to back after a quiet spell.
    :param clock: a monotonic clock (seconds); default ``time.monotonic``.
    :param sleep: how to wait (tests pass a fake).
    """

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        super().__init__(rate, burst, clock or time.monotonic)
        self._sleep = sleep

    async def acquire(self, max_wait: float = math.inf) -> float:
        """Wait for this call's slot; return the seconds waited (see :meth:`Pacer.acquire`)."""
        waited = 0.0
        for delay in self._turns(max_wait):
            await self._sleep(delay)
            waited += delay
        return waited

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[AsyncPacer]:
        """``await acquire()`` on entry; call ``record(...)`` on the yielded pacer once answered."""
        await self.acquire()
        yield self


_sync_lock = threading.Lock()
_sync_pacers: dict[Hashable, Pacer] = {}
_async_pacers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, AsyncPacer]] = (
    weakref.WeakKeyDictionary()
)


def sync_pacer(key: Hashable, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST) -> Pacer:
    """The process-wide pacer of account ``key`` (e.g. ``(endpoint, account_id)``), for threads.

    Every hook of the process asking with the same key gets the same pacer. If it exists
    already with another configuration, the **lower** rate and the lower burst win: the
    account's limit is one, so the most careful setting holds for everyone.
    """
    _check(rate, burst)
    with _sync_lock:
        pacer = _sync_pacers.get(key)
        if pacer is None:
            pacer = _sync_pacers[key] = Pacer(rate, burst)
            return pacer
    pacer.reconfigure(rate, burst)
    return pacer


def async_pacer(key: Hashable, rate: float = DEFAULT_RATE, burst: int = DEFAULT_BURST) -> AsyncPacer:
    """The pacer of account ``key`` for the running event loop (call it from a coroutine).

    Shared by every coroutine of the loop; weakly keyed by loop, so a new loop (a restarted
    triggerer) gets a fresh pacer. If it exists already with another configuration, the
    **lower** rate and the lower burst win.
    """
    _check(rate, burst)
    loop = asyncio.get_running_loop()
    pacers = _async_pacers.setdefault(loop, {})
    pacer = pacers.get(key)
    if pacer is None:
        pacer = pacers[key] = AsyncPacer(rate, burst, clock=loop.time)
        return pacer
    pacer.reconfigure(rate, burst)
    return pacer
