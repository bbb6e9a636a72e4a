"""Figure 2: many sessions waiting at once, in one triggerer-like event loop vs one thread each.

For N = 10, 100 and 1,000 sessions (created beforehand on one emulator process, ready some real
seconds later), a child process waits for all of them:

* ``async``: N ``ArrSessionReadyTrigger(...).run()`` coroutines, each in its own asyncio task on
  one event loop, as the triggerer runs them after a restart (5 s poll interval; each trigger's
  ``first_poll_at`` is past, as a 0.1.0 sensor set it one interval after its read, before the
  restart; the worst case, since 0.2.0's sensor sets none and its trigger joins the shared poll);
* ``threads``: N threads, each polling its session with requests every 5 s.

The child timestamps every poll (a wrapper around the hook's async read: measuring only) and
reports the poll lag (time between two polls of a session minus the interval), its CPU time, and
its resident memory before and at the peak; the parent reads the emulator's CPU and counters.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import (
    ACCOUNT_ID,
    ACCOUNT_KEY,
    OUT,
    POLL_INTERVAL,
    Emulator,
    cpu_seconds,
    median,
    peak_rss_mb,
    percentile,
    plot_path,
    pyplot,
    rss_mb,
    say,
    setup_airflow_env,
    use_emulator,
    write_result,
)

NAME = "concurrent_waits"
SIZES = (10, 100, 1000)
MODES = ("async", "threads")
STARTUP = 17.0  # real seconds: four polls (0, 5, 10, 15), then the one that sees ready
GOAL_P99_LAG = 1.0
GOAL_RSS_MB = 300.0


# --------------------------------------------------------------------------------------------
# The child: one way of waiting, N sessions


class RssSampler(threading.Thread):
    """Sample this process's RSS (psutil) every 0.2 s: the peak during the waits."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mb())
            self.stop.wait(0.2)


def child_async(ids: list[str]) -> tuple[dict[str, list[tuple[float, float]]], list[Any]]:
    from airflow_provider_arr.hooks.arr import ArrHook
    from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger

    calls: dict[str, list[tuple[float, float]]] = defaultdict(list)
    read = ArrHook.aget_session

    async def timed(self: ArrHook, session_id: str) -> Any:
        began = time.monotonic()
        try:
            return await read(self, session_id)
        finally:
            calls[session_id].append((began, time.monotonic()))

    ArrHook.aget_session = timed  # type: ignore[method-assign]

    async def run_trigger(trigger: ArrSessionReadyTrigger) -> Any:
        async for event in trigger.run():  # as the triggerer does
            return event.payload["status"]
        return None

    async def main() -> list[Any]:
        # As a restarted triggerer has them: every (0.1.0) sensor deferred a while ago, so
        # first_poll_at (one interval after the sensor's own read) is already past.
        deferred_at = time.time() - 2 * POLL_INTERVAL
        tasks = [
            asyncio.create_task(
                run_trigger(
                    ArrSessionReadyTrigger(
                        session_id=i, poll_interval=POLL_INTERVAL, first_poll_at=deferred_at + POLL_INTERVAL
                    )
                )
            )
            for i in ids
        ]
        return list(await asyncio.gather(*tasks))

    return calls, asyncio.run(main())


def child_threads(ids: list[str], url: str) -> tuple[dict[str, list[tuple[float, float]]], list[Any]]:
    import requests
    from harness import get_once_more_if_dropped

    token = requests.get(
        f"{url}/accounts/{ACCOUNT_ID}/token",
        headers={"Authorization": f"Bearer {ACCOUNT_ID}:{ACCOUNT_KEY}"},
        timeout=30,
    ).json()["AccessToken"]
    calls: dict[str, list[tuple[float, float]]] = defaultdict(list)
    outcomes: list[Any] = []

    def poller(session_id: str) -> None:
        http = requests.Session()
        headers = {"Authorization": f"Bearer {token}"}
        target = f"{url}/v1/accounts/{ACCOUNT_ID}/sessions/{session_id}/properties"
        while True:
            began = time.monotonic()
            status = "retry"
            try:
                answer = get_once_more_if_dropped(http, target, headers)
                if answer.status_code == 200:
                    status = answer.json()["sessionStatus"].lower()
            except requests.RequestException:
                pass
            calls[session_id].append((began, time.monotonic()))
            if status in ("ready", "error", "expired", "stopped"):
                outcomes.append(status)
                return
            time.sleep(POLL_INTERVAL)

    threads = [threading.Thread(target=poller, args=(i,), daemon=True) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return calls, outcomes


def child(mode: str, url: str, ids_file: Path, out_file: Path) -> None:
    setup_airflow_env()
    use_emulator(url)
    ids = json.loads(ids_file.read_text())
    import requests  # noqa: F401  (what both modes import before the waits)

    if mode == "async":
        import airflow_provider_arr.hooks.arr
        import airflow_provider_arr.triggers.session  # noqa: F401
    baseline_rss = rss_mb()
    sampler = RssSampler()
    sampler.start()
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    if mode == "async":
        calls, outcomes = child_async(ids)
    else:
        calls, outcomes = child_threads(ids, url)
    wall, cpu = time.monotonic() - wall0, cpu_seconds() - cpu0
    sampler.stop.set()
    sampler.join()
    lags = []
    first_lags = []  # between a session's first and second polls: the start-up burst
    later_lags = []
    wake_lags = []  # from an answer to the next poll, minus the interval: the event loop's lateness
    latencies = []
    for series in calls.values():
        latencies += [end - began for began, end in series]
        mine = [b[0] - a[0] - POLL_INTERVAL for a, b in itertools.pairwise(series)]
        lags += mine
        first_lags += mine[:1]
        later_lags += mine[1:]
        wake_lags += [b[0] - a[1] - POLL_INTERVAL for a, b in itertools.pairwise(series)]
    out_file.write_text(
        json.dumps(
            {
                "mode": mode,
                "n": len(ids),
                "outcomes": {o: outcomes.count(o) for o in set(map(str, outcomes))},
                "polls": sum(len(s) for s in calls.values()),
                "lags": lags,
                "first_lags": first_lags,
                "later_lags": later_lags,
                "wake_lags": wake_lags,
                "latencies": latencies,
                "wall": wall,
                "cpu": cpu,
                "baseline_rss_mb": baseline_rss,
                "peak_rss_mb": max(sampler.peak, peak_rss_mb()),
                "threads_peak": threading.active_count(),
            }
        )
    )


# --------------------------------------------------------------------------------------------
# The parent


def run_case(emu: Emulator, mode: str, n: int) -> dict[str, Any]:
    emu.reset()
    ids = emu.create_sessions(n)
    ids_file, out_file = OUT / f"{NAME}-ids.json", OUT / f"{NAME}-child.json"
    ids_file.write_text(json.dumps(ids))
    out_file.unlink(missing_ok=True)
    cpu0, t0 = emu.cpu_seconds(), time.monotonic()
    gets0 = emu.counts()["get"]
    with open(OUT / f"{NAME}-{mode}-{n}.log", "w") as log:
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--url",
                emu.url,
                "--ids",
                str(ids_file),
                "--out",
                str(out_file),
            ],
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    wall = time.monotonic() - t0
    counts = emu.counts()
    data = json.loads(out_file.read_text())
    lags, latencies = data.pop("lags"), data.pop("latencies")
    first_lags, later_lags, wake_lags = data.pop("first_lags"), data.pop("later_lags"), data.pop("wake_lags")
    return {
        **data,
        "lag_p50": percentile(lags, 50),
        "lag_p99": percentile(lags, 99),
        "lag_max": max(lags) if lags else None,
        "first_lag_p99": percentile(first_lags, 99),
        "later_lag_p99": percentile(later_lags, 99),
        "wake_lag_p99": percentile(wake_lags, 99),
        "latency_p50": percentile(latencies, 50),
        "latency_p99": percentile(latencies, 99),
        "lag_samples": len(lags),
        "rss_growth_mb": data["peak_rss_mb"] - data["baseline_rss_mb"],
        "kb_per_wait": (data["peak_rss_mb"] - data["baseline_rss_mb"]) * 1024 / n,
        "cpu_ms_per_poll": 1000 * data["cpu"] / max(1, data["polls"]),
        "emulator_cpu": emu.cpu_seconds() - cpu0,
        "emulator_gets": counts["get"] - gets0,
        "emulator_tokens": counts["token"],
        "emulator_throttled": counts["throttled"],
        "emulator_rps": (counts["get"] - gets0) / wall,
        "emulator_rss_mb": emu.rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--modes", nargs="*", default=list(MODES))
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--url")
    parser.add_argument("--ids", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.ids, args.out)
        return

    runs: list[dict[str, Any]] = []
    with Emulator(startup_delay=STARTUP, time_scale=1) as emu:
        for repeat in range(args.repeats + 1):
            for n in args.sizes:
                if repeat == args.repeats and n < max(args.sizes):
                    continue  # one more run of the largest N, whose tail is the noisiest
                for mode in args.modes:
                    run = run_case(emu, mode, n)
                    runs.append(run)
                    say(
                        f"fig2 {mode:<7} N={n:<5} lag p50 {run['lag_p50']:.3f} p99 {run['lag_p99']:.3f} s, "
                        f"cpu {run['cpu']:.2f} s, "
                        f"rss {run['baseline_rss_mb']:.0f}->{run['peak_rss_mb']:.0f} MB "
                        f"({run['kb_per_wait']:.1f} KB/wait), emulator {run['emulator_cpu']:.2f} s cpu, "
                        f"tokens {run['emulator_tokens']}, outcomes {run['outcomes']}"
                    )
    cases = []
    keys = (
        "lag_p50", "lag_p99", "lag_max", "first_lag_p99", "later_lag_p99", "wake_lag_p99",
        "latency_p50", "latency_p99", "cpu", "cpu_ms_per_poll",
        "baseline_rss_mb", "peak_rss_mb", "rss_growth_mb", "kb_per_wait", "emulator_cpu", "emulator_rps",
        "emulator_rss_mb", "wall", "polls", "threads_peak", "emulator_tokens",
    )  # fmt: skip
    for n in args.sizes:
        for mode in args.modes:
            mine = [r for r in runs if r["n"] == n and r["mode"] == mode]
            case: dict[str, Any] = {"mode": mode, "n": n, "repeats": len(mine)}
            for key in keys:
                case[key] = median(r[key] for r in mine if r[key] is not None)
            case["lag_p99_runs"] = [round(r["lag_p99"], 3) for r in mine]
            case["outcomes"] = [r["outcomes"] for r in mine]
            case["throttled"] = sum(r["emulator_throttled"] for r in mine)
            cases.append(case)
    write_result(
        NAME,
        {
            "poll_interval": POLL_INTERVAL,
            "startup_real_seconds": STARTUP,
            "cases": cases,
            "goal_p99_lag": GOAL_P99_LAG,
            "goal_rss_mb": GOAL_RSS_MB,
        },
    )
    plot(cases)


def plot(cases: list[dict[str, Any]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    panels = (
        ("lag_p99", "p99 poll lag (s)", GOAL_P99_LAG, "goal < 1 s"),
        ("cpu", "client CPU time for the whole wait (s)", None, None),
        ("peak_rss_mb", "client peak RSS (MB)", GOAL_RSS_MB, "goal < 300 MB"),
        ("kb_per_wait", "memory per wait (KB, log)", None, None),
    )
    for ax, (key, label, goal, goal_label) in zip(axes, panels, strict=True):
        for mode, marker in (("async", "o"), ("threads", "s")):
            mine = sorted((c for c in cases if c["mode"] == mode), key=lambda c: c["n"])
            if not mine:
                continue
            name = "triggers in one event loop" if mode == "async" else "one thread per session"
            ax.plot([c["n"] for c in mine], [c[key] for c in mine], marker=marker, label=name)
        if goal is not None:
            ax.axhline(goal, color="red", linestyle="--", linewidth=1, label=goal_label)
        ax.set_xscale("log")
        if key == "kb_per_wait":
            ax.set_yscale("log")
        ax.set_xlabel("sessions waiting at once")
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("Concurrent waits: one triggerer-like event loop vs one thread per session (median)")
    fig.tight_layout()
    fig.savefig(plot_path(NAME), dpi=110)


if __name__ == "__main__":
    main()
