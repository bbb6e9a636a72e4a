"""N waits on one throttled account, and N creates on it: before this round and with this design.

The service allows about one call per 5 to 10 s per account. The emulator (a child process)
throttles at 0.2 calls/s with a burst of 5, in real seconds; its sessions become ready 60
emulated seconds after creation (``--time-scale`` 1, the default: 60 real seconds).
For N = 10, 100 and 1,000 sessions, created evenly over one poll interval before the throttle
is switched on (so that they become ready at different moments), one event loop
waits for all of them at once, each wait starting at a random moment within the first poll
interval (10 s, the sensor's default), both ways:

* ``old``: per-session polling as the trigger did before the pacer and the watcher: each wait
  reads its own session by id every interval through its own ``ArrHook``, unpaced (the
  transport's account pacer replaced by one that lets every call go at once), a 429 retried as
  the hook did (6 attempts, each after the ``Retry-After``), and the wait ends at its first
  error, as the old trigger fired an ``error`` event;
* ``trigger``: this design, the real ``ArrSessionReadyTrigger(...).run()`` coroutines, N of them
  in one event loop as one triggerer runs them, on a connection with the default pacing
  (``rate_limit`` 0.2, ``rate_burst`` 5): they share the loop's ``AccountWatcher`` (one list of
  the account per interval) and every call goes through the account's ``AsyncPacer``.

Two more ways can be asked for (``--ways``): ``paced`` (the per-session loop on the default
pacing: pacing without coalescing) and ``watcher`` (the bare ``hook.account_watcher()``).

Figures per case: share of waits that saw ``ready``; ready-detection lag (when the wait knew,
minus when the session became ready) p50/p99; calls to the service (gets and lists, 429s
included) per poll interval, mean and the largest of any interval (the emulator's counters are
read every interval); 429s after the first interval. No asserts on time.

Then 20 simultaneous v1 creates (``--creates``), one ``ArrHook`` per thread as a mapped create
task has, default pacing, on an account that has been idle (the service's bucket full): the
time until the last one is created, against the floor (N - burst) / rate, the 429s, and the
sessions on the emulator afterwards (exactly N: no duplicate).

``python benchmarks/bench_account_rate.py`` (about 10 minutes); results in
``benchmarks/out/account_rate.json``, plot in ``benchmarks/plots/account_rate.png``; the report's
section comes from ``run_all.py`` (figure 7).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from common import (
    ACCOUNT_ID,
    Emulator,
    machine_info,
    percentile,
    plot_path,
    pyplot,
    say,
    setup_airflow_env,
    use_emulator,
    write_result,
)

NAME = "account_rate"
SIZES = (10, 100, 1000)
RATE, BURST = 0.2, 5
STARTUP_EMULATED = 60.0
CREATES = 20
#: Connection of this design: the default pacing (no rate extras).
CONN_ID = "arr_bench_rate"
#: Connection of the old way (its transport's pacer is replaced, see ``_NoPacer``).
OLD_CONN_ID = "arr_bench_rate_unpaced"
#: The hook's retry of a 429 before this round: 6 attempts in all, each wait the service's
#: Retry-After (plus up to 10 % jitter, capped at 30 s), within 180 s.
OLD_ATTEMPTS, OLD_WAIT_MAX, OLD_TOTAL = 6, 30.0, 180.0


@dataclass
class Outcome:
    """How one wait ended: ``ready`` (with the time it knew), ``error`` or ``timeout``."""

    session_id: str
    result: str
    seen_at: float | None = None
    detail: str = ""


#: A way of waiting: (session ids, poll interval, deadline as time.monotonic()) -> outcomes.
Way = Callable[[Sequence[str], float, float], Awaitable[list[Outcome]]]


# --------------------------------------------------------------------------------------------
# The ways


class _NoPacer:
    """Stands in for the transport's account pacer in the old way: every call goes at once.

    (A connection with a very high ``rate_limit`` is not enough: the pacer is adaptive, and the
    first 429s would bring it down to one call a minute.)
    """

    async def acquire(self) -> float:
        return 0.0

    def record(self, *args: Any, **kwargs: Any) -> None:
        pass


async def _read_as_before(hook: Any, session_id: str) -> Any:
    """``hook.aget_session`` with the 429 retry of before this round (``OLD_ATTEMPTS``).

    Today's hook waits 429s out for a time budget; a deadline of now makes it try once, and
    the loop here retries the old way.
    """
    from airflow_provider_arr.exceptions import ArrThrottledError

    started = time.monotonic()
    for attempt in range(1, OLD_ATTEMPTS + 1):
        try:
            return await hook.aget_session(session_id, deadline=time.time())
        except ArrThrottledError as exc:
            advised = exc.retry_after
            if advised is not None:
                wait = min(OLD_WAIT_MAX, advised + random.uniform(0, min(1.0, 0.1 * advised)))
            else:
                wait = random.uniform(0, min(OLD_WAIT_MAX, 2.0**attempt))
            if attempt == OLD_ATTEMPTS or time.monotonic() - started + wait > OLD_TOTAL:
                raise
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


async def _per_session(
    conn_id: str, ids: Sequence[str], interval: float, deadline: float, *, old: bool = False
) -> list[Outcome]:
    """Each wait reads its own session every ``interval``: the trigger's loop before this round.

    ``old``: unpaced, and 429s retried as before this round; else today's hook as it is.
    """
    from airflow_provider_arr.exceptions import ArrError
    from airflow_provider_arr.hooks.arr import ArrHook

    async def one(session_id: str) -> Outcome:
        await asyncio.sleep(random.uniform(0, interval))
        hook = ArrHook(arr_conn_id=conn_id)
        if old:
            transport = await hook.async_transport()  # shared by the loop's hooks of this connection
            transport.pacer = _NoPacer()  # type: ignore[assignment]
        try:
            while time.monotonic() < deadline:
                try:
                    if old:
                        session = await _read_as_before(hook, session_id)
                    else:
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


async def wait_old(ids: Sequence[str], interval: float, deadline: float) -> list[Outcome]:
    """Per-session polling, unpaced (see the module's docstring)."""
    return await _per_session(OLD_CONN_ID, ids, interval, deadline, old=True)


async def wait_paced(ids: Sequence[str], interval: float, deadline: float) -> list[Outcome]:
    """Per-session polling at the connection's default pacing: pacing without coalescing."""
    return await _per_session(CONN_ID, ids, interval, deadline)


async def wait_trigger(ids: Sequence[str], interval: float, deadline: float) -> list[Outcome]:
    """The real trigger, N of them in this event loop, each started within the first interval."""
    from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger

    unix_deadline = time.time() + (deadline - time.monotonic())

    async def one(session_id: str) -> Outcome:
        await asyncio.sleep(random.uniform(0, interval))
        trigger = ArrSessionReadyTrigger(
            session_id=session_id,
            arr_conn_id=CONN_ID,
            poll_interval=interval,
            deadline=unix_deadline,
            stop_on_kill=False,
        )
        async for event in trigger.run():
            payload = event.payload
            if payload["status"] == "success":
                return Outcome(session_id, "ready", time.monotonic())
            return Outcome(session_id, payload["status"], detail=str(payload["message"])[:80])
        return Outcome(session_id, "error", detail="no event")

    outcomes = list(await asyncio.gather(*(one(i) for i in ids)))
    await _say_stats()
    return outcomes


async def wait_watcher(ids: Sequence[str], interval: float, deadline: float) -> list[Outcome]:
    """Every wait follows its session through ``hook.account_watcher()``, without the trigger."""
    import contextlib

    from airflow_provider_arr.hooks.arr import ArrHook

    async def follow(session_id: str) -> Outcome:
        hook = ArrHook(arr_conn_id=CONN_ID)
        try:
            watcher = await hook.account_watcher()
            async with contextlib.aclosing(watcher.watch(session_id, interval)) as stream:
                async for update in stream:
                    if update.error is not None or update.session is None:
                        continue  # a 429: the status comes at a later poll
                    if update.session.is_ready:
                        return Outcome(session_id, "ready", time.monotonic())
                    if update.session.status.will_never_be_ready:
                        return Outcome(session_id, "error", detail=update.session.status.value)
        finally:
            await hook.aclose()
        raise AssertionError("the watch ended")

    async def one(session_id: str) -> Outcome:
        await asyncio.sleep(random.uniform(0, interval))
        try:
            return await asyncio.wait_for(follow(session_id), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            return Outcome(session_id, "timeout")

    outcomes = list(await asyncio.gather(*(one(i) for i in ids)))
    await _say_stats()
    return outcomes


async def _say_stats() -> None:
    """The loop's pacer and watcher counters of the paced connection, on stderr."""
    from airflow_provider_arr.client.pacing import async_pacer, paced_burst, paced_rate
    from airflow_provider_arr.client.transport import account_key
    from airflow_provider_arr.client.watch import AccountWatcher
    from airflow_provider_arr.hooks.arr import ArrHook

    config = ArrHook(arr_conn_id=CONN_ID).config
    key = account_key(config)
    pacer = async_pacer(key, paced_rate(config.rate_limit), paced_burst(config.rate_burst))
    watcher = AccountWatcher.for_account((*key, config.api_version), lambda: None)  # type: ignore[arg-type,return-value]
    say(f"  pacer: {pacer.stats()}; watcher: {watcher.stats}")


WAYS: dict[str, Way] = {
    "old": wait_old,
    "trigger": wait_trigger,
    "paced": wait_paced,
    "watcher": wait_watcher,
}
DEFAULT_WAYS = ("old", "trigger")


# --------------------------------------------------------------------------------------------
# One case of waits


def create_sessions(emu: Emulator, count: int, spread: float) -> tuple[list[str], list[float]]:
    """Create ``count`` v1 sessions evenly over ``spread`` seconds (set-up, unthrottled).

    Spread, so that their ready times are too: sessions all created in the same instant would
    all be seen ready by the same shared poll, with one lag for all, set by chance.
    """
    import requests

    headers = {"Authorization": f"Bearer {emu.token()}"}
    body = {"maxLeaseTime": "4:0:0", "models": [], "size": "standard"}
    ids, created = [], []
    start = time.monotonic()
    with requests.Session() as http:
        for i in range(count):
            time.sleep(max(0.0, start + i * spread / count - time.monotonic()))
            answer = http.post(
                f"{emu.url}/v1/accounts/{ACCOUNT_ID}/sessions/create", json=body, headers=headers, timeout=30
            )
            answer.raise_for_status()
            ids.append(str(answer.json()["sessionId"]))
            created.append(time.monotonic())
    return ids, created


def _calls(counts: dict[str, int]) -> int:
    # The emulator counts an operation before it throttles it: gets and lists include the 429s.
    return counts.get("get", 0) + counts.get("list", 0)


def run_case(
    emu: Emulator, way: str, n: int, *, interval: float, time_scale: float, patience: float
) -> dict[str, Any]:
    """Create ``n`` sessions, switch the throttle on, wait for all of them one ``way``; the figures."""
    emu.reset()
    emu.configure(time_scale=time_scale, startup_delay=STARTUP_EMULATED, throttle_rate=None)
    ids, created = create_sessions(emu, n, spread=interval)
    startup_real = STARTUP_EMULATED / time_scale
    ready_at = {i: t + startup_real for i, t in zip(ids, created, strict=True)}
    emu.configure(throttle_rate=RATE, throttle_burst=BURST)
    t0 = time.monotonic()
    samples: list[tuple[float, dict[str, int]]] = [(t0, emu.counts())]
    deadline = t0 + startup_real + patience

    async def main() -> list[Outcome]:
        async def sample() -> None:
            while True:
                await asyncio.sleep(interval - (time.monotonic() - t0) % interval)
                counts = await asyncio.to_thread(emu.counts)
                samples.append((time.monotonic(), counts))

        sampler = asyncio.create_task(sample())
        try:
            return await WAYS[way](ids, interval, deadline)
        finally:
            sampler.cancel()

    outcomes = asyncio.run(main())
    end = time.monotonic()
    samples.append((end, emu.counts()))
    wall = end - t0
    emu.configure(throttle_rate=None)

    first, last = samples[0][1], samples[-1][1]
    # Calls in each interval of the run, from the throttle's switch-on (the last one partial).
    per_interval = [_calls(b) - _calls(a) for (_, a), (_, b) in itertools.pairwise(samples)]
    after_first = samples[1][1] if len(samples) > 2 else None
    ready = [o for o in outcomes if o.result == "ready"]
    lags = [o.seen_at - ready_at[o.session_id] for o in ready if o.seen_at is not None]
    results: dict[str, int] = {}
    for o in outcomes:
        key = o.result if o.result in ("ready", "timeout") else f"{o.result}:{o.detail[:40]}"
        results[key] = results.get(key, 0) + 1
    sent = _calls(last) - _calls(first)
    throttled = last.get("throttled", 0) - first.get("throttled", 0)
    return {
        "way": way,
        "n": n,
        "ready_share": len(ready) / n,
        "results": results,
        "lag_p50": percentile(lags, 50),
        "lag_p99": percentile(lags, 99),
        "lag_max": max(lags) if lags else None,
        "calls": sent,
        "calls_per_interval": sent / len(per_interval),
        "calls_per_interval_max": max(per_interval) if per_interval else None,
        "calls_each_interval": per_interval,
        "admitted_per_interval": (sent - throttled) / len(per_interval),
        "gets": last.get("get", 0) - first.get("get", 0),
        "lists": last.get("list", 0) - first.get("list", 0),
        "tokens": last.get("token", 0) - first.get("token", 0),
        "throttled": throttled,
        "throttled_after_first_interval": (
            last.get("throttled", 0) - after_first.get("throttled", 0) if after_first is not None else None
        ),
        "wall": wall,
    }


# --------------------------------------------------------------------------------------------
# Simultaneous creates


def run_creates(emu: Emulator, count: int) -> dict[str, Any]:
    """``count`` v1 creates at once, one hook per thread, default pacing, throttle on from the start."""
    from airflow_provider_arr.hooks.arr import ArrHook

    emu.reset()
    emu.configure(throttle_rate=None)
    emu.configure(throttle_rate=RATE, throttle_burst=BURST)
    # An account that has been idle: the service's bucket exists and is full (the emulator makes
    # it at the first call, so make one, then let it refill), as the process's pacer starts.
    import requests

    requests.get(
        f"{emu.url}/v1/accounts/{ACCOUNT_ID}/sessions",
        headers={"Authorization": f"Bearer {emu.token()}"},
        timeout=30,
    ).raise_for_status()
    time.sleep(1 / RATE + 1)
    barrier = threading.Barrier(count)
    t0 = 0.0

    def one(_: int) -> tuple[str, float, float]:
        hook = ArrHook(arr_conn_id=CONN_ID)
        transport = hook.transport  # the connection read before the start line, as a task has
        barrier.wait()
        session_id = hook.create_session(size="standard", max_lease_time="1:00:00")
        return session_id, time.monotonic() - t0, transport.stats.paced

    before = emu.counts()
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=count) as pool:
        done = list(pool.map(one, range(count)))
    after = emu.counts()
    state = emu.state()
    emu.configure(throttle_rate=None)
    times = sorted(t for _, t, _ in done)
    paced = sorted(p for _, _, p in done)
    ids = {s for s, _, _ in done}
    return {
        "n": count,
        "last_created": times[-1],
        "first_created": times[0],
        "created_at": times,
        "paced_seconds_max": paced[-1],
        "floor": max(0, count - BURST) / RATE,
        "creates_sent": after.get("create", 0) - before.get("create", 0),
        "throttled": after.get("throttled", 0) - before.get("throttled", 0),
        "sessions_on_emulator": len(state["sessions"]),
        "distinct_ids_returned": len(ids),
        "duplicates": len(state["sessions"]) - count,
    }


# --------------------------------------------------------------------------------------------
# Plot and main


def plot(cases: list[dict[str, Any]]) -> None:
    """Calls per poll interval against N, per way (mean, and the largest interval)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    labels = {
        "old": "per-session polling, unpaced (before)",
        "trigger": "ArrSessionReadyTrigger: watcher + pacer (this design)",
        "paced": "per-session polling, paced",
        "watcher": "bare account watcher",
    }
    for way in dict.fromkeys(c["way"] for c in cases):
        rows = sorted((c for c in cases if c["way"] == way), key=lambda c: c["n"])
        ns = [c["n"] for c in rows]
        means = [c["calls_per_interval"] for c in rows]
        (line,) = ax.plot(ns, means, marker="o", label=f"{labels.get(way, way)}, mean")
        ax.plot(
            ns,
            [c["calls_per_interval_max"] for c in rows],
            marker="^",
            linestyle="--",
            color=line.get_color(),
            label="  largest interval",
        )
    interval = cases[0].get("interval", 10.0)
    ax.axhline(RATE * interval, color="grey", linestyle=":", label=f"documented rate ({RATE} calls/s)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("waits on one account (N)")
    ax.set_ylabel(f"service calls per {interval:.0f} s poll interval")
    ax.set_title("Calls to one account per poll interval (429s included)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(plot_path(NAME), dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--ways", nargs="*", default=list(DEFAULT_WAYS), choices=list(WAYS))
    parser.add_argument("--interval", type=float, default=10.0, help="poll interval, real seconds")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="emulated seconds per real second (ready after 60/x s)"
    )
    parser.add_argument(
        "--patience", type=float, default=30.0, help="real seconds a wait goes on after its session is ready"
    )
    parser.add_argument("--creates", type=int, default=CREATES, help="simultaneous creates (0: none)")
    args = parser.parse_args()
    setup_airflow_env()
    # One log line per call (and per retry) of thousands of waits would drown the figures.
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "ERROR"
    started = time.monotonic()
    cases = []
    creates = None
    machine = machine_info()
    with Emulator(startup_delay=STARTUP_EMULATED, time_scale=args.time_scale) as emu:
        use_emulator(emu.url, CONN_ID)
        use_emulator(emu.url, OLD_CONN_ID)
        for n in args.sizes:
            for way in args.ways:
                case = run_case(
                    emu, way, n, interval=args.interval, time_scale=args.time_scale, patience=args.patience
                )
                case["interval"] = args.interval
                cases.append(case)
                say(
                    f"N={n:<5} {way:<8} ready {case['ready_share']:6.1%}  "
                    f"lag p50 {case['lag_p50']:6.2f} s p99 {case['lag_p99']:6.2f} s  "
                    f"calls/interval {case['calls_per_interval']:7.1f} "
                    f"(max {case['calls_per_interval_max']}, admitted {case['admitted_per_interval']:5.2f})  "
                    f"429s {case['throttled']} "
                    f"(after 1st interval {case['throttled_after_first_interval']})  "
                    f"wall {case['wall']:.0f} s  {case['results']}"
                )
        if args.creates:
            creates = run_creates(emu, args.creates)
            say(
                f"{creates['n']} creates: last after {creates['last_created']:.1f} s "
                f"(floor {creates['floor']:.0f} s), {creates['creates_sent']} sent, "
                f"{creates['throttled']} x 429, {creates['sessions_on_emulator']} sessions on the emulator"
            )
    if cases:
        plot(cases)
    write_result(
        NAME,
        {
            "rate": RATE,
            "burst": BURST,
            "interval": args.interval,
            "time_scale": args.time_scale,
            "startup_real_seconds": STARTUP_EMULATED / args.time_scale,
            "patience": args.patience,
            "old_retry": {"attempts": OLD_ATTEMPTS, "wait_max": OLD_WAIT_MAX, "total": OLD_TOTAL},
            "machine": machine,
            "machine_after": machine_info(),
            "seconds": time.monotonic() - started,
            "cases": cases,
            "creates": creates,
        },
    )


if __name__ == "__main__":
    main()
