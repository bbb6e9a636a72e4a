"""Figure 1: worker-slot seconds while a session starts, per way of waiting.

For start-ups of 30, 120 and 600 emulated seconds (an emulator process per start-up, its clock
sped up so that each wait lasts a few real poll intervals), the same wait is done by:

* ``deferrable``: the provider's sensor deferring to its trigger; the slot is held by the first
  execution (up to ``TaskDeferred``) and by ``execute_complete``;
* ``reschedule``: the sensor in reschedule mode; the slot is held by each short poke execution;
* ``poke``: the sensor in poke mode; the slot is held for the whole wait;
* ``thread``: a thread-per-session poller in the style of the official SDK (a read every 5 s);
  the thread is held for the whole wait.

Every wait uses the service's minimum poll interval, 5 real seconds. All waits of one run go on
concurrently (staggered), repeated ``--repeats`` times; figures are medians.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import (
    POLL_INTERVAL,
    REPO,
    Emulator,
    median,
    plot_path,
    pyplot,
    say,
    setup_airflow_env,
    use_emulator,
    write_result,
)

NAME = "worker_slots"
# (emulated start-up seconds, time scale): real start-ups of 12.5, 22.5 and 32.5 s, half-way
# between two polls, so that the detection delay is a typical one rather than zero.
CASES = ((30, 30 / 12.5), (120, 120 / 22.5), (600, 600 / 32.5))
GOAL_DEFERRABLE = 2.0


def task_startup_seconds(repeats: int = 3) -> float:
    """A fresh interpreter importing what a sensor task run needs: the per-run cost a worker pays
    on top of the provider's own work (an upper bound: forking workers pre-import Airflow)."""
    code = (
        "import time; t=time.perf_counter(); import airflow.sdk; "
        "import airflow_provider_arr.sensors.session, airflow_provider_arr.hooks.arr; "
        "print(time.perf_counter()-t)"
    )
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
        ).stdout
        times.append(float(out.strip().splitlines()[-1]))
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    setup_airflow_env()
    import harness

    harness.warm_up()
    emulators = {s: Emulator(startup_delay=s, time_scale=scale).start() for s, scale in CASES}
    for s, emu in emulators.items():
        use_emulator(emu.url, conn_id=f"arr_s{s}")
    triggerer = harness.Triggerer()
    jobs = [(s, mode, rep) for rep in range(args.repeats) for s, _ in CASES for mode in harness.MODES]

    def job(index: int, startup: int, mode: str) -> dict[str, Any]:
        time.sleep(index * 0.3)  # stagger, as tasks of a real DAG never start in the same instant
        emu = emulators[startup]
        (session_id,) = emu.create_sessions(1)
        result = harness.wait(
            mode,
            session_id,
            conn_id=f"arr_s{startup}",
            url=emu.url,
            interval=POLL_INTERVAL,
            triggerer=triggerer,
        )
        return {"startup": startup, **result.as_dict()}

    say(f"fig1: {len(jobs)} waits, concurrently")
    try:
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = [pool.submit(job, i, s, mode) for i, (s, mode, _) in enumerate(jobs)]
            runs = [f.result() for f in futures]
    finally:
        triggerer.close()
        for emu in emulators.values():
            emu.stop()
    startup_cost = task_startup_seconds()

    cases = []
    for startup, scale in CASES:
        real_startup = startup / scale
        for mode in harness.MODES:
            mine = [r for r in runs if r["startup"] == startup and r["mode"] == mode]
            slot = median(r["slot_seconds"] for r in mine)
            waited = median(r["wait_seconds"] for r in mine)
            runs_per_wait = median(r["executions"] for r in mine)
            # Each run of a wait (its mean: the first run of a wait, which fetches a token and
            # opens a connection, is no dearer than the others, each a fresh task process).
            per_run = median(r["slot_seconds"] / r["executions"] for r in mine)
            # The same wait at the service's speed: holding modes hold for the start-up plus the
            # detection delay measured here; reschedule pokes once per interval.
            detection = waited - real_startup
            if mode in ("poke", "thread"):
                projected, projected_runs = startup + detection, 1
            elif mode == "reschedule":
                projected_runs = math.ceil(startup / POLL_INTERVAL) + 1
                projected = per_run * projected_runs
            else:
                projected, projected_runs = slot, 2
            cases.append(
                {
                    "startup_emulated": startup,
                    "time_scale": scale,
                    "startup_real": real_startup,
                    "mode": mode,
                    "slot_seconds": slot,
                    "slot_seconds_runs": [round(r["slot_seconds"], 3) for r in mine],
                    "wait_seconds": waited,
                    "slot_fraction": slot / waited if waited else math.nan,
                    "task_runs": runs_per_wait,
                    "seconds_per_run": per_run,
                    "projected_slot_seconds": projected,
                    "projected_task_runs": projected_runs,
                    "projected_with_startup": projected + projected_runs * startup_cost,
                    "outcomes": sorted({str(r["outcome"])[:60] for r in mine}),
                }
            )
            say(
                f"fig1 S={startup:>3} {mode:<10} slot {slot:7.3f} s of {waited:5.1f} s wait "
                f"({runs_per_wait:.0f} runs); at service speed {projected:7.2f} s"
            )
    deferrable = [c["slot_seconds"] for c in cases if c["mode"] == "deferrable"]
    write_result(
        NAME,
        {
            "poll_interval": POLL_INTERVAL,
            "repeats": args.repeats,
            "cases": cases,
            "task_startup_seconds": startup_cost,
            "deferrable_max_slot_seconds": max(deferrable),
            "goal_deferrable": GOAL_DEFERRABLE,
        },
    )
    plot(cases)


def _label(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def plot(cases: list[dict[str, Any]]) -> None:
    plt = pyplot()
    modes = ["deferrable", "reschedule", "poke", "thread"]
    startups = sorted({c["startup_emulated"] for c in cases})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    width = 0.8 / len(modes)
    for panel, (key, title) in enumerate(
        (
            ("slot_seconds", "Measured (sped-up clock, 5 s real poll interval)"),
            ("projected_slot_seconds", "At the service's speed (projected)"),
        )
    ):
        ax = axes[panel]
        for i, mode in enumerate(modes):
            values = [
                next(c[key] for c in cases if c["startup_emulated"] == s and c["mode"] == mode)
                for s in startups
            ]
            xs = [j + i * width for j in range(len(startups))]
            ax.bar(xs, values, width, label=mode if panel == 0 else None)
            for x, v in zip(xs, values, strict=True):
                ax.annotate(_label(v), (x, v), ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylim(top=ax.get_ylim()[1] * 4)
        ax.axhline(
            GOAL_DEFERRABLE,
            color="red",
            linestyle="--",
            linewidth=1,
            label="goal: deferrable ≤ 2 s" if panel == 0 else None,
        )
        ax.set_xticks([j + width * (len(modes) - 1) / 2 for j in range(len(startups))])
        ax.set_xticklabels([f"start-up {s} s" for s in startups])
        ax.set_ylabel("worker-slot seconds per wait (log)")
        ax.set_title(title, fontsize=10)
    fig.legend(loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle("Worker-slot seconds while a session starts (median)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(plot_path(NAME), dpi=110)


if __name__ == "__main__":
    main()
