"""The account pacer: the adaptive token bucket with a fake clock, then the sync and async pacers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from airflow_provider_arr.client import pacing
from airflow_provider_arr.client.pacing import (
    DECREASE_FACTOR,
    AdaptiveRate,
    AsyncPacer,
    NoTurnInTime,
    Pacer,
    async_pacer,
    paced_burst,
    paced_rate,
    sync_pacer,
)
from airflow_provider_arr.emulator.faults import TokenBucket


def rejected_arrivals(rate: float, burst: int, late: float, calls: int = 12) -> int:
    """Send ``calls`` at once through a pacer at ``rate``/``burst``; the service (the emulator's
    bucket, 0.2 calls/s, bursts of 5) sees the first burst arrive ``late`` seconds after it was
    sent and every later call on time: how many arrivals does it reject?"""
    pacer = AdaptiveRate(rate, burst, now=0.0)
    sends = [pacer.reserve(0.0) for _ in range(calls)]
    arrivals = sorted(t + (late if t == 0.0 else 0.0) for t in sends)
    service = TokenBucket(0.2, 5, arrivals[0])
    return sum(service.take(t) > 0 for t in arrivals)


@pytest.mark.parametrize("late", [0.0, 0.4, 1.0, 3.0])
def test_the_transports_headroom_absorbs_a_burst_that_arrives_late(late: float) -> None:
    # Paced at the service's own rate and burst, the first call after a late burst is early.
    assert rejected_arrivals(0.2, 5, late) == (0 if late == 0.0 else 1)
    assert rejected_arrivals(paced_rate(0.2), paced_burst(5), late) == 0
    assert paced_burst(1) == 1, "a burst of one is all a caller has: nothing is kept back"


def test_burst_then_one_call_per_interval() -> None:
    bucket = AdaptiveRate(0.2, 5, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(5)] == [0.0] * 5
    # Back to back after the burst: one slot every 1 / rate, in the order asked.
    assert [bucket.reserve(0.0) for _ in range(3)] == pytest.approx([5.0, 10.0, 15.0])
    assert bucket.stats().calls == 8
    assert bucket.stats().waited == pytest.approx(30.0)


def test_single_caller_at_defaults_never_waits_more_than_one_interval() -> None:
    bucket = AdaptiveRate(now=100.0)
    now = 100.0
    delays = []
    for _ in range(30):
        delay = bucket.reserve(now)
        delays.append(delay)
        now += delay + 0.01  # sends at its slot, then at once asks for the next one
    assert delays[:5] == [0.0] * 5
    assert max(delays) <= 1 / pacing.DEFAULT_RATE + 1e-9
    # A caller slower than the rate (a poll every 10 s) never waits at all.
    bucket = AdaptiveRate(now=0.0)
    assert all(bucket.reserve(10.0 * i) == 0.0 for i in range(50))


def test_slots_are_first_come_first_served() -> None:
    bucket = AdaptiveRate(1.0, 1, now=0.0)
    slots = [t + bucket.reserve(t) for t in (0.0, 0.1, 0.2, 0.3)]
    assert slots == sorted(slots)
    assert slots == pytest.approx([0.0, 1.0, 2.0, 3.0])


def test_429_halves_the_rate_and_empties_the_bucket() -> None:
    bucket = AdaptiveRate(0.2, 5, now=0.0)
    bucket.throttled(0.0, None)
    assert bucket.rate == pytest.approx(0.2 * DECREASE_FACTOR)
    # No burst credit left: the next call waits one interval of the new rate.
    assert bucket.reserve(0.0) == pytest.approx(10.0)
    assert bucket.stats().throttled == 1


def test_a_burst_of_429s_in_flight_slows_down_once() -> None:
    bucket = AdaptiveRate(0.2, 5, now=0.0)
    for _ in range(5):
        bucket.throttled(1.0, None)
    assert bucket.rate == pytest.approx(0.1)
    bucket.throttled(12.0, None)  # a 429 one interval later: slower again
    assert bucket.rate == pytest.approx(0.05)
    assert bucket.stats().throttled == 6


def test_rate_never_drops_below_the_floor() -> None:
    bucket = AdaptiveRate(0.2, 5, now=0.0)
    now = 0.0
    for _ in range(20):
        now += 1000.0
        bucket.throttled(now, None)
    assert bucket.rate == pytest.approx(pacing.MIN_RATE)
    slow = AdaptiveRate(0.001, 1, now=0.0)
    slow.throttled(0.0, None)
    assert slow.rate == pytest.approx(0.001)  # a configured rate below the floor is its own floor


def test_retry_after_holds_everyone_then_one_at_a_time() -> None:
    bucket = AdaptiveRate(0.2, 5, now=0.0)
    queued = [bucket.reserve(0.0) for _ in range(8)]  # 5 now, 3 queued at 5, 10, 15 s
    generation = bucket.generation
    bucket.throttled(1.0, 30.0)
    assert bucket.generation != generation  # the queued slots are cancelled: they reserve again
    assert queued[-1] == pytest.approx(15.0)
    # Nobody before 1 + 30 s, then one at a time at the halved rate (no burst after the hold).
    slots = [2.0 + bucket.reserve(2.0, again=True) for _ in range(3)]
    assert slots == pytest.approx([31.0, 41.0, 51.0])
    assert bucket.stats().calls == 8  # re-reservations are not new calls


def test_a_retry_after_within_one_interval_holds_but_keeps_the_pace() -> None:
    """The service counts from our first call's arrival, we from its sending: a call a moment
    early gets a 429 with a short Retry-After; that is a hold, not a reason to slow down."""
    bucket = AdaptiveRate(0.2, 5, now=0.0)
    for _ in range(6):
        bucket.reserve(0.0)
    bucket.throttled(5.0, 1.0)  # the sixth call (at 5 s) was early by under a second
    assert bucket.stats().rate == pytest.approx(0.2)
    slots = [6.0 + bucket.reserve(6.0, again=True) for _ in range(3)]
    assert slots == pytest.approx([6.0, 11.0, 16.0])


def test_a_shorter_retry_after_does_not_shorten_the_hold() -> None:
    bucket = AdaptiveRate(0.2, 5, now=0.0)
    bucket.throttled(0.0, 60.0)
    generation = bucket.generation
    bucket.throttled(1.0, 5.0)
    assert bucket.generation == generation
    assert bucket.reserve(2.0) == pytest.approx(58.0)


def test_recovery_is_gradual_and_never_above_the_configured_rate() -> None:
    bucket = AdaptiveRate(0.2, 5, now=0.0)
    bucket.throttled(0.0, None)
    rates = []
    for i in range(1, 40):
        bucket.succeeded(10.0 * i)
        rates.append(bucket.rate)
    assert rates[0] < 0.2  # not all at once
    assert rates == sorted(rates)
    assert rates[-1] == pytest.approx(0.2)
    assert max(rates) <= 0.2
    fresh = AdaptiveRate(0.2, 5, now=0.0)
    fresh.succeeded(1.0)
    assert fresh.rate == 0.2


def test_lower_configured_rate_wins() -> None:
    bucket = AdaptiveRate(0.2, 5, now=0.0)
    bucket.reconfigure(0.1, 3)
    assert (bucket.configured_rate, bucket.burst, bucket.rate) == (0.1, 3, 0.1)
    bucket.reconfigure(1.0, 10)
    assert (bucket.configured_rate, bucket.burst) == (0.1, 3)
    assert [bucket.reserve(0.0) for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 10.0])


@pytest.mark.parametrize(("rate", "burst"), [(0, 5), (-1, 5), (float("nan"), 5), (0.2, 0), (0.2, 1.5)])
def test_bad_settings_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="pacing"):
        AdaptiveRate(rate, burst)


class FakeClock:
    """A clock that only moves when someone sleeps; thread-safe."""

    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)


def test_record_reads_the_answer() -> None:
    clock = FakeClock()
    pacer = Pacer(0.2, 5, clock=clock, sleep=clock.sleep)
    pacer.record(200)
    pacer.record(503)  # a server error says nothing of the rate
    pacer.record(None)  # nor does a connection error
    assert pacer.stats().throttled == 0
    pacer.record(429, retry_after=None)
    assert pacer.stats().throttled == 1
    assert pacer.stats().rate == pytest.approx(0.1)
    pacer.record(throttled=False)
    assert pacer.stats().rate > 0.1


def test_sync_pacer_spaces_threads_in_line() -> None:
    clock = FakeClock()
    pacer = Pacer(0.2, 5, clock=clock, sleep=clock.sleep)
    waits: list[float] = []
    barrier = threading.Barrier(20)

    def call() -> None:
        barrier.wait()
        with pacer.slot() as slot:
            waits.append(0.0)
            slot.record(200)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 20 threads at one instant: 5 go at once, 15 sleep 5, 10, ..., 75 s: every slot distinct.
    assert len(waits) == 20
    assert sorted(clock.sleeps) == pytest.approx([5.0 * i for i in range(1, 16)])
    assert pacer.stats().calls == 20


def test_a_caller_out_of_budget_takes_no_slot() -> None:
    # The deployment's starvation: at the floor rate, every waiter of each poll gave up on a
    # slot 60 s away, and each abandoned slot pushed the queue back another 60 s, for good.
    bucket = AdaptiveRate(0.2, 1, now=0.0)
    assert bucket.reserve(0.0) == 0.0
    for _ in range(100):
        with pytest.raises(NoTurnInTime) as info:
            bucket.reserve(0.0, max_wait=1.0)
        assert info.value.delay == pytest.approx(5.0)
    assert bucket.reserve(0.0, max_wait=5.0) == pytest.approx(5.0), "the queue did not grow"
    assert bucket.stats().calls == 2


def test_pacer_out_of_budget_sleeps_nothing_and_takes_no_turn() -> None:
    clock = FakeClock()
    pacer = Pacer(0.2, 1, clock=clock, sleep=clock.sleep)
    pacer.acquire()
    with pytest.raises(NoTurnInTime):
        pacer.acquire(max_wait=4.0)
    assert clock.sleeps == [], "nothing waited for a turn out of reach"
    assert pacer.acquire(max_wait=5.0) == pytest.approx(5.0)
    assert pacer.stats().calls == 2


def test_sync_pacer_sleeps_for_real() -> None:
    pacer = Pacer(20.0, 1)
    started = time.monotonic()
    pacer.acquire()
    waited = pacer.acquire()
    assert waited > 0
    assert time.monotonic() - started >= 0.04


def test_a_retry_after_sends_sleeping_callers_back_in_line() -> None:
    clock = FakeClock()
    pacer: Pacer

    def sleep(seconds: float) -> None:
        clock.sleeps.append(seconds)
        if len(clock.sleeps) == 1:
            pacer.record(429, retry_after=60.0)  # a 429 arrives while this caller sleeps
        clock.now += seconds

    pacer = Pacer(0.2, 1, clock=clock, sleep=sleep)
    pacer.acquire()
    waited = pacer.acquire()
    # Slept 5 s for its slot, woke to find a hold until 60 s: slept again until then.
    assert clock.sleeps == pytest.approx([5.0, 55.0])
    assert waited == pytest.approx(60.0)
    assert clock.now == pytest.approx(60.0)


def test_sync_registry_shares_one_pacer_per_key_and_the_lower_rate_wins() -> None:
    key = ("https://arr.test", f"account-{time.monotonic_ns()}")
    first = sync_pacer(key, 0.2, 5)
    assert sync_pacer(key) is first
    assert sync_pacer(key, 0.1, 5) is first
    assert first.stats().configured_rate == 0.1
    sync_pacer(key, 0.5, 5)
    assert first.stats().configured_rate == 0.1
    assert sync_pacer((key, "other"), 0.2, 5) is not first


async def test_async_pacer_spaces_coroutines() -> None:
    now = [0.0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    pacer = AsyncPacer(0.2, 5, clock=lambda: now[0], sleep=sleep)

    async def call() -> float:
        async with pacer.slot() as slot:
            slot.record(200)
        return 0.0

    await asyncio.gather(*(call() for _ in range(10)))
    assert sorted(sleeps) == pytest.approx([5.0, 10.0, 15.0, 20.0, 25.0])
    assert pacer.stats().calls == 10


async def test_async_pacer_sleeps_for_real() -> None:
    pacer = AsyncPacer(20.0, 1)
    await pacer.acquire()
    assert await pacer.acquire() > 0


def _pacer_in_new_loop(key: object) -> tuple[AsyncPacer, AsyncPacer]:
    async def get() -> tuple[AsyncPacer, AsyncPacer]:
        return async_pacer(key), async_pacer(key, 0.1, 5)

    return asyncio.run(get())


def test_async_registry_is_per_event_loop() -> None:
    key = ("https://arr.test", "account-async")
    first, same = _pacer_in_new_loop(key)
    assert first is same
    assert first.stats().configured_rate == 0.1
    second, _ = _pacer_in_new_loop(key)
    assert second is not first  # a restarted loop gets a fresh pacer
