"""Run every benchmark (``make bench``), then write ``benchmarks/REPORT.md``.

Each figure runs in its own process (``benchmarks/bench_*.py``), writes its result to
``benchmarks/out/<name>.json`` (git-ignored) and its plot to ``benchmarks/plots/<name>.png``.
``--report-only`` rewrites the report from the last results; ``--only`` runs some figures.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from typing import Any

from common import BENCH, OUT, machine_info, read_result, say, write_result

# (figure, script, result name, extra arguments), in the order they run: quick ones first.
FIGURES: tuple[tuple[int, str, str, list[str]], ...] = (
    (6, "bench_emulator_throughput.py", "emulator_throughput", []),
    (5, "bench_parse_cost.py", "parse_cost", []),
    (1, "bench_worker_slots.py", "worker_slots", []),
    (4, "bench_detection_latency.py", "detection_latency", []),
    (3, "bench_call_economy.py", "call_economy", []),
    (2, "bench_concurrent_waits.py", "concurrent_waits", []),
    (7, "bench_account_rate.py", "account_rate", []),
)
REPORT = BENCH / "REPORT.md"


def run(only: set[int]) -> dict[str, Any]:
    runs: dict[str, Any] = {"before": machine_info(), "scripts": {}}
    started = time.monotonic()
    for figure, script, name, extra in FIGURES:
        if only and figure not in only:
            continue
        say(f"== figure {figure}: {script}")
        began = time.monotonic()
        with open(OUT / f"{name}.stdout.log", "w") as log:
            done = subprocess.run(
                [sys.executable, str(BENCH / script), *extra], stdout=log, cwd=BENCH.parent, check=False
            )
        runs["scripts"][name] = {"seconds": time.monotonic() - began, "returncode": done.returncode}
        if done.returncode:
            say(f"!! {script} failed ({done.returncode}); see {OUT / (name + '.stdout.log')}")
    runs["seconds"] = time.monotonic() - started
    runs["after"] = machine_info()
    write_result("run_all", runs)
    return runs


# --------------------------------------------------------------------------------------------
# The report


def num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _percent(fraction: float) -> str:
    value = 100 * fraction
    return f"{value:.0f} %" if value >= 10 else f"{value:.2g} %"


def mark(ok: bool | None) -> str:
    return {True: "**met**", False: "**missed**", None: "n/a"}[ok]


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def plot_link(name: str, alt: str) -> list[str]:
    if (BENCH / "plots" / f"{name}.png").exists():
        return [f"![{alt}](plots/{name}.png)", ""]
    return []


def summary_rows(r: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    ws = r.get("worker_slots")
    if ws:
        worst = ws["deferrable_max_slot_seconds"]
        rows.append(
            [
                "1. Worker-slot seconds while a session starts",
                "deferrable ≤ 2 s whatever the start-up",
                f"deferrable ≤ {num(worst, 3)} s for 30/120/600 s start-ups (poke and thread: the whole "
                "wait; reschedule: one short run per poll)",
                mark(worst <= ws["goal_deferrable"]),
            ]
        )
    cw = r.get("concurrent_waits")
    if cw:
        big = next((c for c in cw["cases"] if c["mode"] == "async" and c["n"] == 1000), None)
        threads = next((c for c in cw["cases"] if c["mode"] == "threads" and c["n"] == 1000), None)
        if big:
            per_wait = f"{num(big['kb_per_wait'], 1)} KB"
            if threads:
                per_wait += f" (a thread: {num(threads['kb_per_wait'], 1)} KB)"
            ok = big["lag_p99"] < cw["goal_p99_lag"] and big["peak_rss_mb"] < cw["goal_rss_mb"]
            if threads:
                ok = ok and big["kb_per_wait"] < threads["kb_per_wait"] / 2
            rows.append(
                [
                    "2. 1,000 concurrent waits in one event loop",
                    "p99 lag < 1 s, RSS < 300 MB, memory per wait well below a thread's",
                    f"p99 lag {num(big['lag_p99'])} s, peak RSS {num(big['peak_rss_mb'], 0)} MB, "
                    f"{per_wait} per wait",
                    mark(ok),
                ]
            )
    ce = r.get("call_economy")
    if ce:
        ok = ce["sts_max_per_process"] <= 1 and ce["polls"] <= ce["expected_polls"] and ce["throttled"] == 0
        rows.append(
            [
                "3. Calls of one lifecycle (default settings)",
                f"STS 1 per task process; create + {ce['expected_polls']} polls + stop; 0 x 429",
                f"STS ≤ {ce['sts_max_per_process']} per process; create {ce['creates']} + polls "
                f"{ce['polls']} + stop {ce['stops']} (+ {ce['lists']} list, + {ce['render_reads']} render "
                f"check); {ce['throttled']} x 429",
                mark(ok),
            ]
        )
    dl = r.get("detection_latency")
    if dl:
        deferrable = next(c for c in dl["cases"] if c["mode"] == "deferrable")
        rows.append(
            [
                "4. Detection latency (ready → sensor succeeds)",
                f"≤ one poll interval ({num(dl['poll_interval'], 0)} s)",
                f"deferrable median {num(deferrable['median'])} s, max {num(deferrable['max'])} s "
                f"({deferrable['within_one_interval']}/{deferrable['samples']} within)",
                mark(deferrable["max"] <= dl["goal"]),
            ]
        )
    pc = r.get("parse_cost")
    if pc:
        worst = max(f["ratio"] for f in pc["files"])
        rows.append(
            [
                "5. DAG parse cost",
                f"≤ {pc['goal_ratio']}x the EmptyOperator twin",
                f"x{num(worst)} (provider import {num(pc['provider_import_ms'], 1)} ms; no HTTP/retry "
                "library imported at parse time)",
                mark(worst <= pc["goal_ratio"]),
            ]
        )
    et = r.get("emulator_throughput")
    if et:
        rows.append(
            [
                "6. Emulator throughput (properties polls)",
                "≥ 1,000 requests/s on 2 cores",
                f"{num(et['headline_rps'])} requests/s ({et['headline_connections']} connections)",
                mark(et["headline_rps"] >= et["goal_rps"]),
            ]
        )
    ar = r.get("account_rate")
    if ar:
        rows += account_rate_summary(ar)
    return rows


def _way_cases(ar: dict[str, Any], way: str) -> list[dict[str, Any]]:
    return sorted((c for c in ar["cases"] if c["way"] == way), key=lambda c: c["n"])


def account_rate_summary(ar: dict[str, Any]) -> list[list[Any]]:
    """The summary rows of figure 7: this design's waits, and the simultaneous creates."""
    rows: list[list[Any]] = []
    ours = _way_cases(ar, "trigger")
    interval = ar["interval"]
    goal_lag = interval + 1 / ar["rate"]
    if ours:
        ok = all(
            c["ready_share"] == 1
            and (c["calls_per_interval_max"] or 0) <= 2
            and not c["throttled_after_first_interval"]
            and c["lag_max"] is not None
            and c["lag_max"] <= goal_lag
            for c in ours
        )
        rows.append(
            [
                "7a. Waits on one account at the documented rate (0.2 calls/s), trigger",
                f"every wait ready, lag ≤ {num(interval, 0)} s + pacing, ≤ 2 calls per interval "
                "whatever N, 0 x 429 after the first interval",
                "N = "
                + "/".join(f"{c['n']:,}" for c in ours)
                + ": ready "
                + "/".join(_percent(c["ready_share"]) for c in ours)
                + ", lag p99 "
                + "/".join(num(c["lag_p99"], 1) for c in ours)
                + " s, at most "
                + "/".join(str(c["calls_per_interval_max"]) for c in ours)
                + " call(s) per interval, "
                + "/".join(str(c["throttled_after_first_interval"]) for c in ours)
                + " x 429 after the first (before: ready "
                + "/".join(_percent(c["ready_share"]) for c in _way_cases(ar, "old"))
                + ")",
                mark(ok),
            ]
        )
    cr = ar.get("creates")
    if cr:
        rows.append(
            [
                f"7b. {cr['n']} simultaneous creates on one account (v1, default pacing)",
                f"last one near the floor (N - burst) / rate = {num(cr['floor'], 0)} s (within 10 %); "
                "no duplicate",
                f"last after {num(cr['last_created'], 1)} s ({cr['throttled']} x 429); "
                f"{cr['sessions_on_emulator']} sessions on the emulator, {cr['duplicates']} duplicates",
                mark(cr["last_created"] <= 1.1 * cr["floor"] and cr["duplicates"] == 0),
            ]
        )
    return rows


def section_account_rate(ar: dict[str, Any]) -> list[str]:
    m = ar.get("machine", {})
    after = ar.get("machine_after", {})
    interval = ar["interval"]
    out = [
        "## 7. Sessions per account under the documented rate",
        "",
        f"The service allows about one call per 5 to 10 s per account. The emulator throttled at "
        f"{ar['rate']} calls/s with a burst of {ar['burst']} (token bucket, real seconds); its "
        f"sessions became ready 60 emulated seconds after creation, {num(ar['startup_real_seconds'], 0)} "
        f"real seconds (time scale {num(ar['time_scale'], 0)}). For each N, N v1 sessions were created "
        "evenly over one poll interval (so that they become ready at different moments), then "
        "the throttle was switched on (admin `config(throttle_rate=0.2, throttle_burst=5)`), "
        "and one event loop waited for all N at once, each wait starting at a random moment within "
        f"the first poll interval ({num(interval, 0)} s, the sensor's default) and giving up "
        f"{num(ar['patience'], 0)} s after its session was ready. Two ways, in the same run:",
        "",
        "- *before*: per-session polling as the trigger did before the account pacer and the "
        "watcher: each wait reads its own session by id every interval through its own hook, "
        "unpaced (the transport's account pacer replaced by one that lets every call go at once: "
        "a very high `rate_limit` is not enough, the adaptive pacer halves it on each 429), a 429 "
        f"retried as the hook did before ({ar['old_retry']['attempts']} attempts in all, each after "
        "the `Retry-After`), and the wait ends at its first error (the old trigger fired an "
        "`error` event);",
        "- *this design*: the real `ArrSessionReadyTrigger(...).run()`, N coroutines in one event "
        "loop as one triggerer runs them, at the connection's default pacing (`rate_limit` 0.2, "
        "`rate_burst` 5): they share the loop's `AccountWatcher` (one list of the account per "
        "interval) and every call takes a slot from the account's `AsyncPacer`.",
        "",
        "*Lag* is when the wait knew (the trigger's `success` event) minus when its session became "
        "ready. *Calls* are session calls (gets and lists, 429s included; token calls apart) counted "
        "by the emulator, read every interval: the mean over the run and the largest interval. "
        f"Goal for the lag: within one poll interval plus the pacing delay ({num(interval, 0)} s + "
        f"1 / {ar['rate']} s = {num(interval + 1 / ar['rate'], 0)} s).",
        "",
    ]
    rows = []
    names = {
        "old": "before (per-session, unpaced)",
        "trigger": "this design (trigger: watcher + pacer)",
        "paced": "per-session, paced",
        "watcher": "bare watcher",
    }
    for c in sorted(ar["cases"], key=lambda c: (c["n"], c["way"] != "old")):
        failed = ", ".join(f"{v} {k}" for k, v in c["results"].items() if k != "ready") or "none"
        rows.append(
            [
                f"{c['n']:,}",
                names.get(c["way"], c["way"]),
                _percent(c["ready_share"]),
                failed,
                f"{num(c['lag_p50'], 1)} / {num(c['lag_p99'], 1)}",
                f"{num(c['calls_per_interval'], 1)} / {c['calls_per_interval_max']}",
                f"{c['gets']} / {c['lists']}",
                f"{c['throttled']} ({c['throttled_after_first_interval']})",
                num(c["wall"], 0),
            ]
        )
    out += table(
        [
            "N",
            "way",
            "waits that saw ready",
            "other outcomes",
            "lag p50 / p99 s",
            "calls per interval: mean / largest",
            "gets / lists",
            "429s (after the 1st interval)",
            "wall s",
        ],
        rows,
    )
    cr = ar.get("creates")
    if cr:
        out += [
            f"**{cr['n']} simultaneous creates** (v1, one `ArrHook` per thread as a mapped create "
            "task has, `hook.create_session`, default pacing, 20 threads released at once by a barrier "
            "on an account that had been idle, the service's bucket full): the last was created "
            f"after {num(cr['last_created'], 1)} s, against the floor "
            f"({cr['n']} - {ar['burst']}) / {ar['rate']} = {num(cr['floor'], 0)} s (the first after "
            f"{num(cr['first_created'], 2)} s; the longest any thread waited for its slot: "
            f"{num(cr['paced_seconds_max'], 1)} s); {cr['creates_sent']} creates sent, "
            f"{cr['throttled']} x 429; {cr['sessions_on_emulator']} sessions on the emulator "
            f"afterwards ({cr['distinct_ids_returned']} distinct ids returned): "
            f"{cr['duplicates']} duplicates.",
            "",
        ]
    out += plot_link("account_rate", "service calls per poll interval against the number of waits")
    old, ours = _way_cases(ar, "old"), _way_cases(ar, "trigger")
    if old and ours:
        out += [
            "Before, every wait spent the account's rate for all the others: N waits sent about N "
            "reads per interval plus their retries, the service admitted about "
            + "/".join(num(c["admitted_per_interval"], 1) for c in old)
            + " per interval whatever N, and the waits that drew a 429 six times in a row ended "
            "in error (ready: "
            + "/".join(_percent(c["ready_share"]) for c in old)
            + " at N = "
            + "/".join(f"{c['n']:,}" for c in old)
            + "). With the trigger as it is now, one poll "
            "per interval serves every wait of the account (a read by id while one waits alone, "
            "then one list), whatever N: "
            + "/".join(str(c["calls_per_interval_max"]) for c in ours)
            + " call(s) in the busiest interval, no 429, every wait ready, and the lag is the "
            "phase of the shared poll against the session's ready time: within one interval plus "
            "the time the poll takes (p99 "
            + "/".join(num(c["lag_p99"], 1) for c in ours)
            + " s, largest "
            + "/".join(num(c["lag_max"], 1) for c in ours)
            + " s: a session ready just after a poll is seen at the next, when the list of "
            "N sessions has come back and N events are handed out; the pacer never delayed a "
            "poll, one call per 10 s being half the rate). The lag of the old way's few "
            "survivors is not comparable: they are the waits that happened to read soon after.",
            "",
        ]
    if cr and cr["throttled"]:
        out += [
            f"The creates missed the floor by {num(cr['last_created'] - cr['floor'], 0)} s: the "
            f"first {ar['burst']} went at once, and the next, sent at the pacer's slot "
            f"{num(1 / ar['rate'], 0)} s after the first one, reached the service a moment "
            "before its bucket had refilled: the pacer counts from when the first slot was taken, "
            "the service from when the first call arrived, and in the burst (twenty token "
            "requests and five creates in flight at once) the first call took longer to arrive "
            "than the lone sixth, so the sixth is early whenever creates start together. It was "
            "answered 429 (retried after `Retry-After`, no duplicate). "
            "The pacer then halved its rate, as it must when the service says it is faster than "
            "the account's limit, and climbed back by 5 % of the configured rate per success: "
            "each create after that took longer than 5 s. One early call costs about a quarter of "
            "the floor here; see the report to the coordinator (not changed: provider code).",
            "",
        ]
    out += [
        f"Measured {m.get('when')} on {m.get('cores')} cores ({m.get('cpu', '?')}), load average "
        f"{m.get('loadavg')} before and {after.get('loadavg')} after: the machine was shared with "
        f"other agents' test runs. Command: `.venv/bin/python benchmarks/bench_account_rate.py` "
        f"({num(ar.get('seconds', 0) / 60, 1)} minutes), also figure 7 of `make bench`.",
        "",
    ]
    return out


def section_worker_slots(ws: dict[str, Any]) -> list[str]:
    out = [
        "## 1. Worker-slot seconds while a session starts",
        "",
        "Each way of waiting waited for sessions that start in 30, 120 and 600 emulated seconds (one "
        "emulator process per start-up, its clock sped up so that they are ready after 12.5, 22.5 "
        "and 32.5 real seconds, half-way between two polls), polling every "
        f"{num(ws['poll_interval'], 0)} real seconds (the service's minimum); {ws['repeats']} repeats "
        "of every case ran concurrently, staggered; medians. The sensor ran in this process the "
        "way a worker runs it: every task run (each reschedule poke, the deferral and its "
        "resumption) is a fresh operator, its `execute` timed; the trigger ran on a separate event "
        "loop, as in a triggerer. *Measured* is worker-slot time on the sped-up clock; *at service "
        "speed* projects it to the real start-up: a holding mode holds for the start-up plus the "
        "detection delay measured here, reschedule pays its measured time per run (the mean over "
        "a wait's runs) once per poll (⌈start-up / 5 s⌉ + 1 runs), deferrable pays its two runs "
        "whatever the wait.",
        "",
    ]
    rows = []
    for c in ws["cases"]:
        rows.append(
            [
                f"{c['startup_emulated']} s",
                c["mode"],
                num(c["slot_seconds"], 3),
                num(c["wait_seconds"], 1),
                _percent(c["slot_fraction"]),
                num(c["task_runs"], 0),
                num(c["projected_slot_seconds"], 3 if c["projected_slot_seconds"] < 10 else 1),
                num(c["projected_task_runs"], 0),
                num(c["projected_with_startup"], 1),
            ]
        )
    out += table(
        [
            "start-up",
            "mode",
            "slot s (measured)",
            "wait s",
            "slot / wait",
            "task runs",
            "slot s at service speed",
            "task runs",
            "+ task start-ups, s",
        ],
        rows,
    )
    out += plot_link("worker_slots", "worker-slot seconds per mode and start-up")
    out += [
        f"The last column adds, per task run, the start-up of a fresh task interpreter "
        f"({num(ws['task_startup_seconds'])} s here: importing Airflow's SDK and the provider), an upper "
        "bound of what an executor adds per run (forking workers pre-import Airflow). Deferrable pays "
        "it twice, reschedule once per poll, poke once; the thread poller, run from a task, once. "
        "Scheduling delays (a rescheduled or resumed task waits for the scheduler) add wall time but "
        "hold no slot.",
        "",
    ]
    return out


def _marginal_kb(cases: list[dict[str, Any]], case: dict[str, Any]) -> float | None:
    """Peak RSS growth per extra wait, from the next smaller N of the same mode (fixed costs out)."""
    smaller = [c for c in cases if c["mode"] == case["mode"] and c["n"] < case["n"]]
    if not smaller:
        return None
    prev = max(smaller, key=lambda c: c["n"])
    return (case["peak_rss_mb"] - prev["peak_rss_mb"]) * 1024 / (case["n"] - prev["n"])


def section_concurrent(cw: dict[str, Any]) -> list[str]:
    out = [
        "## 2. Concurrent waits",
        "",
        f"N sessions, created beforehand on one emulator process, become ready "
        f"{num(cw['startup_real_seconds'], 0)} s after their creation. A child process waits for all of "
        "them: *async* runs N `ArrSessionReadyTrigger(...).run()` coroutines, each in its own asyncio "
        "task on one event loop, as the triggerer does (the real trigger, hook and httpx client; "
        f"{num(cw['poll_interval'], 0)} s interval); *threads* runs N threads each polling with "
        "requests (one session and keep-alive connection per thread) every 5 s. All the waits start "
        "in the same instant, the worst case: a triggerer restarting with N triggers, each with the "
        "`first_poll_at` a 0.1.0 sensor set before the restart, now past (since 0.2.0 the sensor "
        "sets none: its trigger reads at once through the account's shared poll). Poll lag = the "
        "time between two polls of one session minus the interval, from timestamps taken around the "
        "hook's read (measuring only). CPU is the child's user+system time for the whole wait; RSS "
        "is sampled every 0.2 s; *per wait* = (peak - RSS before the waits) / N. Medians of "
        f"{min(c['repeats'] for c in cw['cases'])} "
        "runs (one more at the largest N). *Loop lateness* is the part of the lag that is not "
        "the previous read's latency (from its answer to the next read, minus the interval): how "
        "late the event loop woke the waiting coroutine.",
        "",
    ]
    rows = [
        [
            c["n"],
            c["mode"],
            num(c["lag_p50"], 3),
            num(c["lag_p99"], 3),
            num(c["first_lag_p99"], 3),
            num(c["later_lag_p99"], 3),
            num(c["wake_lag_p99"], 3),
            num(c["latency_p99"], 3),
            num(c["cpu"]),
            num(c["cpu_ms_per_poll"]),
            f"{num(c['baseline_rss_mb'], 0)} → {num(c['peak_rss_mb'], 0)}",
            num(c["kb_per_wait"], 1),
            num(_marginal_kb(cw["cases"], c), 1),
            num(c["emulator_cpu"]),
            num(c["emulator_rps"], 0),
            num(c["emulator_tokens"], 0),
        ]
        for c in cw["cases"]
    ]
    out += table(
        [
            "N",
            "mode",
            "lag p50 s",
            "lag p99 s",
            "p99 of 1st interval",
            "p99 of later ones",
            "p99 loop lateness s",
            "p99 read latency s",
            "client CPU s",
            "CPU ms / poll",
            "RSS MB (before → peak)",
            "KB / wait",
            "marginal KB / wait",
            "emulator CPU s",
            "emulator req/s (mean)",
            "STS calls (one is the set-up's)",
        ],
        rows,
    )
    out += plot_link("concurrent_waits", "poll lag, CPU and memory against the number of waits")
    out += [
        "A resumed trigger (its `first_poll_at` past) makes its first read at a random moment "
        "within one interval, so the N resumed waits do not all read in the same instant: before "
        "that change the N first reads were one burst that the event loop served one after the "
        "other (each costing the client about the *CPU ms / poll* column), and at N = 1,000 the "
        "last ones answered were over a second late for their second poll (p99 lag 1.24 s on "
        "this machine, see `IMPROVEMENTS.md`). Later intervals are about as punctual as the "
        "threads' (*p99 of later ones*). The threads' "
        "first polls are spread by the time it takes to start a thousand threads, which hides the "
        "same burst; they cost more CPU in all, and about four times the memory per wait (each "
        "thread also reserves 8 MB of virtual memory for its stack). *KB / wait* divides the "
        "growth by N, so fixed costs (first connections, TLS, buffers) dominate it at small N; "
        "*marginal KB / wait* is the growth from the next smaller N, per added wait. The async "
        "child's 119 MB before the waits are Airflow and the provider, imported as in any "
        "triggerer; the thread child imports only requests. The "
        "emulator stayed far from saturation: under 1 s of CPU for the whole run at N = 1,000, "
        "against the thousands of requests/s of figure 6.",
        "",
    ]
    return out


def section_calls(ce: dict[str, Any]) -> list[str]:
    out = [
        "## 3. Call economy of one lifecycle",
        "",
        "`dags/arr_render_session.py` ran with `dag.test()` (default parameters: 10 s poll interval, "
        f"v1 dialect) against an emulator whose sessions start in {num(ce['startup_real'], 0)} real "
        f"seconds and which throttles at {ce['throttle_rate']} calls/s per account (the documented "
        "5 to 10 s between calls, at its fast end). The service documents no burst: the bucket holds "
        "3 calls, the most a lifecycle makes back to back at its transitions (list and create, then "
        "the sensor's first read; the last poll, the render step's check, then stop). A stricter "
        "run with a bucket of 2 follows. The emulator's counters were read around every task run "
        "and trigger run; each task run stands for a task process (`dag.test()` runs them in one "
        "process, but each builds its own hook, as a separate process would).",
        "",
    ]
    rows = []
    for v in ce["variants"]:
        rows.append(
            [
                v["variant"],
                v["dag_state"],
                f"{v['sts_total']} ({v['sts_max_per_process']} max per process)",
                v["lists"],
                v["creates"],
                f"{v['polls']} (goal {v['expected_polls']}; {v['poll_attempts']} sent)",
                v["render_reads"],
                v["stops"],
                v["throttled"],
                num(v["wall"], 0),
            ]
        )
    out += table(
        [
            "throttle",
            "run",
            "STS calls",
            "list",
            "create",
            "polls",
            "render check",
            "stop",
            "429s",
            "wall s",
        ],
        rows,
    )
    rows = []
    for rec in ce["records"]:
        calls = ", ".join(
            f"{rec[op]} {op}" for op in ("token", "list", "create", "get", "stop") if rec.get(op)
        )
        rows.append(
            [rec["task_id"], rec["kind"], num(rec["at"], 1), num(rec["seconds"], 2), calls or "none",
             rec["throttled"]]
        )  # fmt: skip
    out += ["Per task process, documented-rate run:", ""]
    out += table(["task", "process", "starts at s", "lasts s", "calls", "429s"], rows)
    out += plot_link("call_economy", "calls of one lifecycle per task process")
    out += [
        f"Polls: the sensor reads once before deferring; the trigger then waits one interval before "
        f"its first read (it was just read), and reads every {num(ce['poll_interval'], 0)} s until "
        "ready: ⌈start-up / interval⌉ + 1 reads in all. The `list` is the v1 create's guard against "
        "a lost create answer (it lists the active sessions first, v1 only); the render check is the "
        "example DAG's own read after its placeholder work. With a bucket of 2 the stop, sent a "
        "tenth of a second after the render check, is answered 429 and retried after `Retry-After`: "
        "the lifecycle still succeeds, 5 s later.",
        "",
    ]
    return out


def section_latency(dl: dict[str, Any]) -> list[str]:
    out = [
        "## 4. Detection latency",
        "",
        "Sessions whose start-up never ends on its own were marked ready through the admin API at a "
        f"random moment 1 to 3 poll intervals ({num(dl['poll_interval'], 0)} s) into each wait; "
        "latency runs from the admin call's answer to the moment the waiting code knows: `execute` "
        "returning (poke, reschedule), `execute_complete` returning after the trigger's event "
        "(deferrable), the poller seeing it (thread). All waits ran concurrently.",
        "",
    ]
    rows = [
        [
            c["mode"],
            c["samples"],
            num(c["min"]),
            num(c["median"]),
            num(c["p90"]),
            num(c["max"]),
            f"{c['within_one_interval']}/{c['samples']}",
        ]
        for c in dl["cases"]
    ]
    out += table(["mode", "samples", "min s", "median s", "p90 s", "max s", "within one interval"], rows)
    out += plot_link("detection_latency", "detection latency per mode")
    out += [
        "Not included: in a deployment the scheduler must pick the resumed (or rescheduled) task up "
        "and an executor start it, which adds its own delay to deferrable and reschedule alike.",
        "",
    ]
    return out


def section_parse(pc: dict[str, Any]) -> list[str]:
    out = [
        "## 5. DAG parse cost",
        "",
        "Every file of `dags/` was parsed in a fresh interpreter that had already imported "
        f"`airflow.sdk` (as a DAG processor has), {pc['repeats']} times, alternating with two "
        "generated twins of the same shape (DAG arguments, schedule, params, docs, task ids, "
        "dependencies, setup/teardown): *twin* replaces the provider's operators with "
        "`EmptyOperator` and keeps the other tasks as they are (the TaskFlow `render` step stays a "
        "`@task`), so the difference is the provider's; *all-empty* makes every task an "
        "`EmptyOperator`. Bytecode caching is on, as for an installed package.",
        "",
    ]
    rows = [
        [
            f["file"],
            num(f["dag_ms"], 1),
            num(f["twin_ms"], 1),
            f"x{num(f['ratio'])}",
            num(f["all_empty_ms"], 1),
            f"x{num(f['ratio_all_empty'])}",
            f"{f['modules_imported']['dag']} / {f['modules_imported']['twin']} / "
            f"{f['modules_imported']['all-empty']}",
        ]
        for f in pc["files"]
    ]
    out += table(
        [
            "file",
            "parse ms",
            "twin ms",
            "vs twin (goal ≤ 1.2)",
            "all-empty ms",
            "vs all-empty",
            "modules imported (dag / twin / all-empty)",
        ],
        rows,
    )
    for f in pc["files"]:
        out += [
            f"`{f['file']}` imports, of the provider: "
            + ", ".join(f"`{m}`" for m in f["provider_modules"])
            + "; beyond the twin, of Airflow: "
            + (", ".join(f"`{m}`" for m in f["extra_modules_vs_twin"]) or "nothing")
            + "; third-party packages: "
            + (", ".join(f"`{m}`" for m in f["third_party_modules"]) or "none")
            + ". Heavy client libraries (requests, urllib3, httpx, tenacity, PyJWT, FastAPI) at parse "
            "time: " + (", ".join(f["heavy_imported"]) or "none") + ".",
            "",
        ]
    out += [
        f"The provider's modules alone import in {num(pc['provider_import_ms'], 1)} ms. The rest of "
        "the gap to the all-EmptyOperator twin is the example DAG's TaskFlow `render` step, which "
        "imports Airflow's PythonOperator machinery.",
        "",
    ]
    out += plot_link("parse_cost", "parse time of each DAG file and its twins")
    return out


def section_throughput(et: dict[str, Any]) -> list[str]:
    out = [
        "## 6. Emulator throughput",
        "",
        f"One emulator process (`python -m airflow_provider_arr.emulator`), loaded by `{et['loader']}` "
        f"on the same machine (both share its cores) with keep-alive connections, each sending "
        f"`GET` of one session with a valid token for {num(et['seconds'], 0)} s; median of "
        f"{et['repeats']} runs.",
        "",
    ]
    rows = [
        [
            c["api"],
            c["connections"],
            num(c["rps"], 0),
            c["rps_runs"],
            num(c["p50_ms"]),
            num(c["p99_ms"]),
            f"{100 * c['emulator_cpu_util']:.0f} %",
            c["non_2xx"],
        ]
        for c in et["cases"]
    ]
    out += table(
        ["API", "connections", "requests/s", "runs", "p50 ms", "p99 ms", "emulator CPU", "non-2xx"], rows
    )
    out += plot_link("emulator_throughput", "emulator requests per second")
    return out


def write_report() -> None:
    results = {
        name: read_result(name)
        for name in (
            "worker_slots",
            "concurrent_waits",
            "call_economy",
            "detection_latency",
            "parse_cost",
            "emulator_throughput",
            "account_rate",
            "run_all",
        )
    }
    found = {k: v for k, v in results.items() if v}
    ra = found.get("run_all") or {}
    machine = ra.get("before") or next(iter(found.values()), {}).get("machine", {})
    after = ra.get("after") or {}
    lines = [
        "# Benchmarks",
        "",
        "Why a deferrable provider: a session takes minutes to start, and nobody wants a worker slot "
        "held for each one. These figures compare, in one run, the provider's ways of waiting with "
        "what a user would otherwise pick, against the bundled emulator (as a separate process, so "
        "that its CPU is not charged to the client). `make bench` regenerates this report "
        "(`benchmarks/run_all.py`, one script per figure, results in `benchmarks/out/`, plots in "
        "`benchmarks/plots/`).",
        "",
        f"Machine: {machine.get('cores')} cores ({machine.get('cpu', 'unknown CPU')}), "
        f"{machine.get('memory_gb', '?')} GB; load average {machine.get('loadavg')} before the run"
        + (f", {after.get('loadavg')} after" if after else "")
        + f"; Python {machine.get('python')}, Airflow {machine.get('apache-airflow')} "
        f"(task SDK {machine.get('apache-airflow-task-sdk')}), httpx {machine.get('httpx')}, "
        f"requests {machine.get('requests')}, uvicorn {machine.get('uvicorn')}; run {machine.get('when')}"
        + (f", {num(ra['seconds'] / 60, 1)} minutes in all" if ra.get("seconds") else "")
        + ". The machine is shared and noisy: figures are medians of repeated runs, and the goals "
        "are judged on ratios and on margins rather than on absolute times; no test asserts a time.",
        "",
        "## Results",
        "",
    ]
    lines += table(["figure", "goal", "measured", "goal"], summary_rows(found))
    for key, section in (
        ("worker_slots", section_worker_slots),
        ("concurrent_waits", section_concurrent),
        ("call_economy", section_calls),
        ("detection_latency", section_latency),
        ("parse_cost", section_parse),
        ("emulator_throughput", section_throughput),
        ("account_rate", section_account_rate),
    ):
        if key in found:
            lines += section(found[key])
    improvements = BENCH / "IMPROVEMENTS.md"
    if improvements.exists():
        lines += [*improvements.read_text().rstrip().splitlines(), ""]
    lines += ["## The figures, in one table", ""]
    lines += table(["figure", "goal", "measured", "goal"], summary_rows(found))
    REPORT.write_text("\n".join(lines))
    say(f"wrote {REPORT}")


def replot() -> None:
    """Draw every plot again from the saved results (``--report-only``)."""
    import importlib

    for _, script, name, _ in FIGURES:
        result = read_result(name)
        if result is None:
            continue
        module = importlib.import_module(script.removesuffix(".py"))
        key = {"call_economy": "records", "parse_cost": "files"}.get(name, "cases")
        module.plot(result[key])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--report-only", action="store_true", help="plots and report from the last results")
    parser.add_argument("--only", type=int, nargs="*", default=[], help="figure numbers to run")
    args = parser.parse_args()
    if args.report_only:
        replot()
    else:
        run(set(args.only))
    write_report()


if __name__ == "__main__":
    main()
