"""N waits on one throttled account: each wait polling its own session vs one shared AccountWatcher.

The service allows about one call per 5 to 10 s per account. The emulator (a child process)
throttles at 0.2 calls/s with a burst of 5 (real seconds); its sessions become ready 60 emulated
seconds after creation (``--time-scale`` makes that a few real seconds). For N = 10, 100 and
1,000 sessions, created before the throttle is switched on, one event loop waits for all of them
at once, each wait starting at a random moment within the first poll interval, both ways:

* ``per-session``: what the trigger does today: each wait reads its own session by id every
  interval through its own ``ArrHook`` (the hook's retries, with Retry-After, included) and
  gives up at its first error, as the trigger fires an ``error`` event;
* ``per-session-paced``: the same, each read first taking a slot from the account's
  ``AsyncPacer`` (``airflow_provider_arr/client/pacing.py``): pacing alone, without coalescing;
* ``watcher``: every wait follows its session through ``AccountWatcher.watch`` (one list of the
  account per interval serves them all; see ``airflow_provider_arr/client/watch.py``).

Figures per case: share of waits that saw ``ready``; ready-detection lag (time the wait saw
``ready`` minus the time the session became ready) p50/p99; calls to the service per poll
interval (sent, and admitted: not 429); 429s after the first interval. No asserts on time.

The ways are functions in ``WAYS`` (``async (ids, conn_id, interval, deadline) -> outcomes``),
so another one (the real trigger, once wired) can be added and compared on the same cases.

Measured 2026-12-02 on the 2-core machine (v1, interval 10 s, ready 15 s real after creation,
patience 60 s; ``python bench_account_rate.py``, 8 min in all):

======  =================  ======  ==============  ================  =====================
N       way                ready   lag p50/p99 s   calls/interval    429s (after 1st int.)
======  =================  ======  ==============  ================  =====================
10      per-session        70 %    16.1 / 31.0     11.5 sent, 2.8    41 (37)
10      per-session-paced  100 %   22.7 / 44.7     4.5 sent, 2.7     11 (10)
10      watcher            100 %   6.4 / 6.4       1.4, 1.4          0 (0)
100     per-session        5 %     10.7 / 21.5     165 sent, 3.3     585 (441)
100     per-session-paced  12 %    29.7 / 56.3     4.4 sent, 2.5     14 (13), 88 timeouts
100     watcher            100 %   6.8 / 7.9       1.5, 1.5          0 (0)
1000    per-session        0.8 %   20.9 / 40.7     1167 sent, 2.9    5983 (4642), 51 s
1000    per-session-paced  1.2 %   32.0 / 58.8     4.3 sent, 2.5     13 (12), 988 timeouts
1000    watcher            100 %   8.6 / 10.3      1.4, 1.4          0 (0)
======  =================  ======  ==============  ================  =====================

(The paced way's few 429s are the hook's own retries, which the pacer does not see yet, and
the phase between the pacer's bucket and the service's: wired into the transport, every
attempt will take a slot and report its answer.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from common import (
    ACCOUNT_ID,
    Emulator,
    machine_info,
    percentile,
    say,
    setup_airflow_env,
    use_emulator,
    write_result,
)

NAME = "account_rate"
SIZES = (10, 100, 1000)
RATE, BURST = 0.2, 5
STARTUP_EMULATED = 60.0
CONN_ID = "arr_bench_rate"


@dataclass
class Outcome:
    """How one wait ended: ``ready`` (with the time it saw it), ``error`` or ``timeout``."""

    session_id: str
    result: str
    seen_at: float | None = None
    detail: str = ""


#: A way of waiting: (session ids, connection id, poll interval, deadline as time.monotonic()).
Way = Callable[[Sequence[str], str, float, float], Awaitable[list[Outcome]]]


# --------------------------------------------------------------------------------------------
# The ways


async def wait_per_session(
    ids: Sequence[str], conn_id: str, interval: float, deadline: float
) -> list[Outcome]:
    """Each wait reads its own session every ``interval`` (today's trigger loop)."""
    from airflow_provider_arr.exceptions import ArrError
    from airflow_provider_arr.hooks.arr import ArrHook

    async def one(session_id: str) -> Outcome:
        await asyncio.sleep(random.uniform(0, interval))
        hook = ArrHook(arr_conn_id=conn_id)
        try:
            while time.monotonic() < deadline:
                try:
                    session = await hook.aget_session(session_id)
                except ArrError as exc:
                    return Outcome(session_id, "error", detail=type(exc).__name__)
                if session.is_ready:
                    return Outcome(session_id, "ready", time.monotonic())
                if session.status.will_never_be_ready:
                    return Outcome(session_id, "error", detail=session.status.value)
                await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            return Outcome(session_id, "timeout")
        finally:
            await hook.aclose()

    return list(await asyncio.gather(*(one(i) for i in ids)))


async def wait_per_session_paced(
    ids: Sequence[str], conn_id: str, interval: float, deadline: float
) -> list[Outcome]:
    """As ``per-session``, but every read first takes a slot from the account's AsyncPacer.

    Pacing alone keeps the account within its rate, but N waits then share 0.2 reads/s: each
    session is read every N / 0.2 s. (The hook's own retries are not paced here.)
    """
    from airflow_provider_arr.client.pacing import async_pacer
    from airflow_provider_arr.exceptions import ArrError, ArrThrottledError
    from airflow_provider_arr.hooks.arr import ArrHook

    pacer = async_pacer(("bench", conn_id), RATE, BURST)

    async def follow(session_id: str) -> Outcome:
        hook = ArrHook(arr_conn_id=conn_id)
        try:
            while True:
                await pacer.acquire()
                try:
                    session = await hook.aget_session(session_id)
                except ArrThrottledError as exc:
                    pacer.record(429, retry_after=exc.retry_after)
                    return Outcome(session_id, "error", detail=type(exc).__name__)
                except ArrError as exc:
                    return Outcome(session_id, "error", detail=type(exc).__name__)
                pacer.record(200)
                if session.is_ready:
                    return Outcome(session_id, "ready", time.monotonic())
                if session.status.will_never_be_ready:
                    return Outcome(session_id, "error", detail=session.status.value)
                await asyncio.sleep(interval)
        finally:
            await hook.aclose()

    async def one(session_id: str) -> Outcome:
        await asyncio.sleep(random.uniform(0, interval))
        try:
            # A slot may be hours away with 1,000 waits: the deadline cuts the wait.
            return await asyncio.wait_for(follow(session_id), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            return Outcome(session_id, "timeout")

    outcomes = list(await asyncio.gather(*(one(i) for i in ids)))
    say(f"  pacer stats: {pacer.stats()}")
    return outcomes


def _count_list_pages(exchange: Generator[Any, Any, Any], pages: list[int]) -> Generator[Any, Any, Any]:
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
    """The watcher's source on the hook's async client (the wiring will bring its own)."""

    def __init__(self, conn_id: str) -> None:
        from airflow_provider_arr.hooks.arr import ArrHook

        self.hook = ArrHook(arr_conn_id=conn_id)

    async def list_active(self) -> tuple[Sequence[Any], int]:
        client = await self.hook.async_transport()
        pages = [0]
        sessions = await client.drive(_count_list_pages(client.protocol.list_sessions(), pages))
        return [s for s in sessions if s.status.is_active], pages[0]

    async def get(self, session_id: str) -> Any:
        return await self.hook.aget_session(session_id)

    async def aclose(self) -> None:
        await self.hook.aclose()


async def wait_with_watcher(
    ids: Sequence[str], conn_id: str, interval: float, deadline: float
) -> list[Outcome]:
    """Every wait follows its session through the account's shared watcher."""
    from airflow_provider_arr.client.watch import AccountWatcher

    watcher = AccountWatcher.for_account(("bench", conn_id), lambda: HookSource(conn_id))

    async def follow(session_id: str) -> Outcome:
        async with contextlib.aclosing(watcher.watch(session_id, interval)) as stream:
            async for update in stream:
                if update.error is not None:
                    return Outcome(session_id, "error", detail=type(update.error).__name__)
                assert update.session is not None
                if update.session.is_ready:
                    return Outcome(session_id, "ready", time.monotonic(), update.source)
                if update.session.status.will_never_be_ready:
                    return Outcome(session_id, "error", detail=update.session.status.value)
        raise AssertionError("the watch ended")

    async def one(session_id: str) -> Outcome:
        await asyncio.sleep(random.uniform(0, interval))
        try:
            return await asyncio.wait_for(follow(session_id), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            return Outcome(session_id, "timeout")

    outcomes = list(await asyncio.gather(*(one(i) for i in ids)))
    say(f"  watcher stats: {watcher.stats}")
    return outcomes


WAYS: dict[str, Way] = {
    "per-session": wait_per_session,
    "per-session-paced": wait_per_session_paced,
    "watcher": wait_with_watcher,
}


# --------------------------------------------------------------------------------------------
# One case


def create_sessions(emu: Emulator, count: int) -> tuple[list[str], list[float]]:
    """Create ``count`` v1 sessions back to back; their ids and the time each was created."""
    import requests

    headers = {"Authorization": f"Bearer {emu.token()}"}
    body = {"maxLeaseTime": "4:0:0", "models": [], "size": "standard"}
    ids, created = [], []
    with requests.Session() as http:
        for _ in range(count):
            answer = http.post(
                f"{emu.url}/v1/accounts/{ACCOUNT_ID}/sessions/create", json=body, headers=headers, timeout=30
            )
            answer.raise_for_status()
            ids.append(str(answer.json()["sessionId"]))
            created.append(time.monotonic())
    return ids, created


def run_case(
    emu: Emulator, way: str, n: int, *, interval: float, time_scale: float, patience: float
) -> dict[str, Any]:
    """Create ``n`` sessions, switch the throttle on, wait for all of them one ``way``; the figures."""
    emu.reset()
    emu.configure(time_scale=time_scale, startup_delay=STARTUP_EMULATED, throttle_rate=None)
    ids, created = create_sessions(emu, n)
    startup_real = STARTUP_EMULATED / time_scale
    ready_at = {i: t + startup_real for i, t in zip(ids, created, strict=True)}
    emu.configure(throttle_rate=RATE, throttle_burst=BURST)
    before = emu.counts()
    t0 = time.monotonic()
    deadline = t0 + startup_real + patience
    after_first: dict[str, int] = {}

    async def main() -> list[Outcome]:
        async def snapshot() -> None:
            await asyncio.sleep(interval)
            after_first.update(await asyncio.to_thread(emu.counts))

        snap = asyncio.create_task(snapshot())
        outcomes = await WAYS[way](ids, CONN_ID, interval, deadline)
        await snap
        return outcomes

    outcomes = asyncio.run(main())
    wall = time.monotonic() - t0
    after = emu.counts()
    emu.configure(throttle_rate=None)

    def delta(key: str, since: dict[str, int] = before) -> int:
        return after[key] - since[key]

    ready = [o for o in outcomes if o.result == "ready"]
    lags = [o.seen_at - ready_at[o.session_id] for o in ready if o.seen_at is not None]
    # The emulator counts an operation before it throttles it: get/list include the 429s.
    sent = delta("get") + delta("list")
    admitted = sent - delta("throttled")
    intervals = wall / interval
    results: dict[str, int] = {}
    for o in outcomes:
        key = o.result if o.result != "error" else f"error:{o.detail}"
        results[key] = results.get(key, 0) + 1
    return {
        "way": way,
        "n": n,
        "ready_share": len(ready) / n,
        "results": results,
        "lag_p50": percentile(lags, 50),
        "lag_p99": percentile(lags, 99),
        "calls_sent_per_interval": sent / intervals,
        "calls_admitted_per_interval": admitted / intervals,
        "gets": delta("get"),
        "lists": delta("list"),
        "throttled": delta("throttled"),
        "throttled_after_first_interval": delta("throttled", after_first) if after_first else None,
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--ways", nargs="*", default=list(WAYS), choices=list(WAYS))
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval, real seconds")
    parser.add_argument(
        "--time-scale", type=float, default=4.0, help="emulated seconds per real second (ready after 60/x s)"
    )
    parser.add_argument(
        "--patience", type=float, default=60.0, help="real seconds a wait goes on after its session is ready"
    )
    parser.add_argument(
        "--max-per-session",
        type=int,
        default=1000,
        help="largest N run per-session (the slow way; skip it above this)",
    )
    args = parser.parse_args()
    setup_airflow_env()
    # One log line per call (and per retry) of thousands of waits would drown the figures.
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "ERROR"
    cases = []
    with Emulator(startup_delay=STARTUP_EMULATED, time_scale=args.time_scale) as emu:
        # Fast retries off: the hook's defaults (6 attempts, Retry-After honoured) are today's.
        use_emulator(emu.url, CONN_ID)
        for n in args.sizes:
            for way in args.ways:
                if way == "per-session" and n > args.max_per_session:
                    say(f"skip per-session N={n} (--max-per-session {args.max_per_session})")
                    continue
                case = run_case(
                    emu, way, n, interval=args.interval, time_scale=args.time_scale, patience=args.patience
                )
                cases.append(case)
                say(
                    f"N={n:<5} {way:<12} ready {case['ready_share']:6.1%}  "
                    f"lag p50 {case['lag_p50']:6.2f} s p99 {case['lag_p99']:6.2f} s  "
                    f"calls/interval sent {case['calls_sent_per_interval']:7.1f} "
                    f"admitted {case['calls_admitted_per_interval']:5.2f}  "
                    f"429s {case['throttled']} "
                    f"(after 1st interval {case['throttled_after_first_interval']})  "
                    f"wall {case['wall']:.0f} s  {case['results']}"
                )
    write_result(
        NAME,
        {
            "rate": RATE,
            "burst": BURST,
            "interval": args.interval,
            "time_scale": args.time_scale,
            "startup_real_seconds": STARTUP_EMULATED / args.time_scale,
            "patience": args.patience,
            "machine": machine_info(),
            "cases": cases,
        },
    )


if __name__ == "__main__":
    main()
