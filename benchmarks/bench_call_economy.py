"""Figure 3: the calls one lifecycle costs (create -> ready -> render -> stop) at default settings.

The example DAG ``dags/arr_render_session.py`` runs with ``dag.test()`` in a child process (a
throwaway Airflow home on SQLite), with its default parameters (10 s poll interval), against an
emulator process that throttles like the service: a token bucket per account refilled at 0.2
calls/s, the documented rule of thumb (5 to 10 s between calls) at its fast end. The service does
not document a burst; a lifecycle makes up to three calls in a row at its transitions (list and
create, then the sensor's first read; the last poll, the render step's check, then stop), so the
bucket holds 3: whoever calls more often than every 5 s on average is answered 429. A second,
stricter run with a bucket of 2 shows what a tighter service would cost.

``dag.test()`` runs each task in the same process, one after the other; the child reads the
emulator's counters around every task run and trigger run, so each call is attributed to the task
process (or the triggerer) that made it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    DAGS,
    OUT,
    Emulator,
    plot_path,
    pyplot,
    say,
    setup_airflow_env,
    use_emulator,
    write_result,
)

NAME = "call_economy"
THROTTLE_RATE = 0.2  # calls/s per account: one every 5 s
VARIANTS = (("documented rate, burst 3", 3), ("strict: burst 2", 2))
STARTUP_EMULATED = 60.0  # the emulator's default start-up
TIME_SCALE = 2.0  # -> 30 real seconds
POLL_INTERVAL = 10.0  # the example DAG's default
OPERATIONS = ("token", "create", "get", "list", "update", "stop", "throttled")


def child(url: str, out: Path) -> None:
    setup_airflow_env()
    use_emulator(url)
    import requests
    from airflow.utils.db import initdb

    initdb()
    import airflow.sdk.definitions.dag as dag_module
    from airflow.sdk.execution_time import supervisor

    http = requests.Session()

    def counts() -> dict[str, int]:
        return dict(http.get(f"{url}/_emulator/state", timeout=10).json()["counts"])

    records: list[dict[str, Any]] = []

    def attributed(kind: str, task_id: str, call: Any) -> Any:
        before, began = counts(), time.monotonic()
        try:
            return call()
        finally:
            after = counts()
            records.append(
                {
                    "kind": kind,
                    "task_id": task_id,
                    "seconds": time.monotonic() - began,
                    "at": began,
                    **{op: after.get(op, 0) - before.get(op, 0) for op in OPERATIONS},
                }
            )

    run_task = supervisor.run_task_in_process
    run_trigger = dag_module._run_inline_trigger

    def run_task_in_process(*, ti: Any, task: Any) -> Any:
        return attributed("task run", ti.task_id, lambda: run_task(ti=ti, task=task))

    def run_inline_trigger(trigger: Any, task_sdk_ti: Any) -> Any:
        return attributed("trigger", task_sdk_ti.task_id, lambda: run_trigger(trigger, task_sdk_ti))

    supervisor.run_task_in_process = run_task_in_process
    dag_module._run_inline_trigger = run_inline_trigger

    sys.path.insert(0, str(DAGS))
    import arr_render_session

    started = time.monotonic()
    dag_run = arr_render_session.dag.test()
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    for record in records:
        record["at"] -= started
    out.write_text(json.dumps({"state": str(dag_run.state), "tasks": states, "records": records}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.out)
        return

    variants = [run_variant(label, burst) for label, burst in VARIANTS]
    write_result(NAME, {**variants[0], "variants": variants})
    plot(variants[0]["records"])


def run_variant(label: str, burst: int) -> dict[str, Any]:
    out = OUT / f"{NAME}-child.json"
    out.unlink(missing_ok=True)
    with Emulator(
        startup_delay=STARTUP_EMULATED,
        time_scale=TIME_SCALE,
        throttle_rate=THROTTLE_RATE,
        throttle_burst=burst,
    ) as emu:
        began = time.monotonic()
        with open(OUT / f"{NAME}-burst{burst}.log", "w") as log:
            subprocess.run(
                [sys.executable, __file__, "--child", emu.url, "--out", str(out)],
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wall = time.monotonic() - began
        state = emu.state()
    totals = state["counts"]
    data = json.loads(out.read_text())
    records = data["records"]
    startup_real = STARTUP_EMULATED / TIME_SCALE
    expected_polls = math.ceil(startup_real / POLL_INTERVAL) + 1
    wait_calls = [r for r in records if r["task_id"] == "wait_ready"]
    polls_sent = sum(r["get"] for r in wait_calls)
    polls_throttled = sum(r["throttled"] for r in wait_calls)
    processes = [
        r for r in records if r["kind"] == "task run" and r["token"] + r["get"] + r["create"] + r["stop"]
    ]
    processes += [r for r in records if r["kind"] == "trigger"]
    result = {
        "variant": label,
        "dag_state": data["state"],
        "tasks": data["tasks"],
        "records": records,
        "emulator_counts": totals,
        "sessions": len(state["sessions"]),
        "active_after": state["active"],
        "startup_real": startup_real,
        "poll_interval": POLL_INTERVAL,
        "throttle_rate": THROTTLE_RATE,
        "throttle_burst": burst,
        "wall": wall,
        "sts_total": totals["token"],
        "sts_max_per_process": max(r["token"] for r in processes),
        "processes_calling": len(processes),
        "creates": totals["create"],
        "lists": totals["list"],
        # Every read attempt counts (a throttled one too); the successful ones are the polls proper.
        "polls": polls_sent - polls_throttled,
        "poll_attempts": polls_sent,
        "expected_polls": expected_polls,
        "render_reads": sum(r["get"] for r in records if r["task_id"] == "render"),
        "stops": totals["stop"] - sum(r["throttled"] for r in records if r["task_id"] == "stop"),
        "session_calls": sum(totals[op] for op in ("create", "get", "list", "update", "stop")),
        "goal_session_calls": 1 + expected_polls + 1,
        "throttled": totals["throttled"],
    }
    say(
        f"fig3 [{label}] dag {data['state']}: STS {totals['token']} (max {result['sts_max_per_process']} "
        f"per process), list {totals['list']}, create {totals['create']}, polls {result['polls']} "
        f"(goal {expected_polls}), render reads {result['render_reads']}, stop {result['stops']}, "
        f"429s {totals['throttled']}"
    )
    return result


def plot(records: list[dict[str, Any]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.2))
    lanes: list[str] = []
    operations = ("token", "list", "create", "get", "stop")
    for record in records:
        lane = f"{record['task_id']} ({record['kind']})"
        if lane not in lanes:
            lanes.append(lane)
        y = lanes.index(lane)
        ax.barh(y, record["seconds"], left=record["at"], color="#dddddd", edgecolor="#999999")
        label = ", ".join(f"{record[op]} {op}" for op in operations if record[op]) or "no call"
        if record["throttled"]:
            label += f", {record['throttled']} x 429"
        end = record["at"] + record["seconds"]
        if record["seconds"] > 8:
            where, align = (record["at"] + end) / 2, "center"
        elif record["at"] > 20:
            where, align, label = record["at"], "right", label + " "
        else:
            where, align, label = end, "left", " " + label
        ax.annotate(label, (where, y), ha=align, va="center", fontsize=7)
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels(lanes, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the DAG run started")
    ax.set_title("Calls of one lifecycle, by task process (example DAG, default settings)", fontsize=10)
    fig.tight_layout()
    fig.savefig(plot_path(NAME), dpi=110)


if __name__ == "__main__":
    main()
