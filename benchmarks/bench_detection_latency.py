"""Figure 4: detection latency, from the emulator marking a session ready to the sensor succeeding.

Sessions are created with a start-up that never ends on its own; at a random moment one to three
poll intervals after each wait began, the admin API marks the session ready. Latency is the time
from that mark (the admin call's answer) to the moment the waiting code knows: ``execute``
returning (poke, reschedule), ``execute_complete`` returning (deferrable), the poller seeing it
(thread). The scheduler's own delay before it resumes a deferred or rescheduled task is not
included (there is no scheduler here); see the report.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import (
    POLL_INTERVAL,
    Emulator,
    median,
    percentile,
    plot_path,
    pyplot,
    say,
    setup_airflow_env,
    use_emulator,
    write_result,
)

NAME = "detection_latency"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=10, help="waits per mode")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    setup_airflow_env()
    import harness

    harness.warm_up()
    rng = random.Random(args.seed)
    samples: list[dict[str, Any]] = []
    lock = threading.Lock()
    with Emulator(startup_delay=10**7, time_scale=1) as emu:
        use_emulator(emu.url)
        triggerer = harness.Triggerer()
        jobs = [(mode, i) for i in range(args.samples) for mode in harness.MODES]

        def job(index: int, mode: str) -> None:
            time.sleep(index * 0.2)
            (session_id,) = emu.create_sessions(1)
            delay = rng.uniform(POLL_INTERVAL, 3 * POLL_INTERVAL)
            marked: dict[str, float] = {}

            def mark() -> None:
                emu.force(session_id, "ready")
                marked["at"] = time.monotonic()

            timer = threading.Timer(delay, mark)
            timer.start()
            result = harness.wait(
                mode,
                session_id,
                conn_id="arr_default",
                url=emu.url,
                interval=POLL_INTERVAL,
                triggerer=triggerer,
            )
            timer.join()
            with lock:
                samples.append({"mode": mode, "latency": result.done - marked["at"], "marked_after": delay})

        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            for future in [pool.submit(job, i, mode) for i, (mode, _) in enumerate(jobs)]:
                future.result()
        triggerer.close()

    cases = []
    for mode in harness.MODES:
        latencies = [s["latency"] for s in samples if s["mode"] == mode]
        case = {
            "mode": mode,
            "samples": len(latencies),
            "median": median(latencies),
            "p90": percentile(latencies, 90),
            "max": max(latencies),
            "min": min(latencies),
            "within_one_interval": sum(1 for x in latencies if x <= POLL_INTERVAL),
            "latencies": sorted(round(x, 3) for x in latencies),
        }
        cases.append(case)
        say(
            f"fig4 {mode:<10} median {case['median']:.2f} s, max {case['max']:.2f} s, "
            f"{case['within_one_interval']}/{case['samples']} within one interval"
        )
    write_result(NAME, {"poll_interval": POLL_INTERVAL, "cases": cases, "goal": POLL_INTERVAL})
    plot(cases)


def plot(cases: list[dict[str, Any]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for i, case in enumerate(cases):
        ys = case["latencies"]
        ax.scatter([i] * len(ys), ys, alpha=0.6, s=18)
        ax.hlines(case["median"], i - 0.25, i + 0.25, color="black", linewidth=2)
    ax.axhline(POLL_INTERVAL, color="red", linestyle="--", linewidth=1, label="goal: one poll interval (5 s)")
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([c["mode"] for c in cases])
    ax.set_ylabel("seconds from ready to detected")
    ax.set_ylim(0, POLL_INTERVAL * 1.4)
    ax.set_title("Detection latency (each dot one wait; bar: median)", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(plot_path(NAME), dpi=110)


if __name__ == "__main__":
    main()
