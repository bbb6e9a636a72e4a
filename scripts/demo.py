"""`make demo`: run the example DAG end to end against the bundled emulator, then summarise.

Starts the emulator on a free loopback port (short start-up delay, fast clock), points the
`arr_default` connection at it by environment variable, runs `airflow dags test
arr_render_session` with a throwaway AIRFLOW_HOME and SQLite, stops the emulator, and prints
what happened. Exits non-zero if anything failed or a session is left active.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ACCOUNT_ID = "00000000-0000-0000-0000-0000000000de"
# Keep each interesting line of `airflow dags test`; the full output goes to a log file.
INTERESTING = re.compile(r"ARR session|render placeholder|DagRun Finished|Traceback|Error")
# structlog's console lines: "<time> [<level>] <message> [<logger>] key=value..."
LINE = re.compile(r"^\S+\s+\[(?P<level>\w+)\s*\]\s+(?P<msg>.*?)\s+\[[\w.]+\]")


def _admin(url: str, path: str) -> Any:
    with urllib.request.urlopen(f"{url}/_emulator/{path}", timeout=10) as answer:
        return json.load(answer)


def _start_emulator(args: argparse.Namespace, key: str, log_path: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [
        sys.executable,
        "-m",
        "airflow_provider_arr.emulator",
        "--port",
        "0",
        "--account-id",
        ACCOUNT_ID,
        "--account-key",
        key,
        "--startup-delay",
        str(args.startup_delay),
        "--time-scale",
        str(args.time_scale),
        "--throttle-rate",
        str(args.throttle_rate),
        "--throttle-burst",
        str(args.throttle_burst),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_path.open("w"), text=True)
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(r"listening on (https?://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise SystemExit(f"the emulator did not start; see {log_path}")


def _render_result(db: Path) -> Any:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT value FROM xcom WHERE dag_id='arr_render_session' AND task_id='render' "
            "AND key='return_value' ORDER BY timestamp DESC LIMIT 1"
        ).fetchone()
        states = dict(
            conn.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id='arr_render_session'"
            ).fetchall()
        )
        run = conn.execute(
            "SELECT state FROM dag_run WHERE dag_id='arr_render_session' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    value = json.loads(row[0]) if row and isinstance(row[0], str) else (row[0] if row else None)
    return value, states, run[0] if run else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--startup-delay", type=float, default=60, help="emulated seconds to start (60)")
    parser.add_argument("--time-scale", type=float, default=10, help="emulated seconds per second (10)")
    parser.add_argument("--poll-interval", type=float, default=5, help="sensor poll interval, s (5)")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway AIRFLOW_HOME")
    parser.add_argument(
        "--throttle-rate", type=float, default=0.2, help="calls/s per account, as the service (0.2)"
    )
    parser.add_argument("--throttle-burst", type=int, default=5, help="throttle burst (5)")
    parser.add_argument("--log-level", default="INFO", help="Airflow's logging level (INFO)")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="arr-demo-"))
    key = "demo-" + os.urandom(12).hex()
    print(f"ARR demo: throwaway AIRFLOW_HOME {home}")
    emulator, url = _start_emulator(args, key, home / "emulator.log")
    print(
        f"ARR demo: emulator at {url} "
        f"(start-up {args.startup_delay:g} emulated s, x{args.time_scale:g} clock, "
        f"throttled at {args.throttle_rate:g} calls/s, bursts of {args.throttle_burst})"
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": args.log_level,
        "AIRFLOW_CONN_ARR_DEFAULT": json.dumps(
            {
                "conn_type": "azure_remote_rendering",
                "login": ACCOUNT_ID,
                "password": key,
                "host": url,
                "extra": {"sts_endpoint": url},
            }
        ),
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    started = time.monotonic()
    try:
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        conf = json.dumps(
            {"poll_interval": args.poll_interval, "models": ["https://example.invalid/car.arrAsset"]}
        )
        with (home / "dags_test.log").open("w") as log:
            proc = subprocess.Popen(
                [airflow, "dags", "test", "arr_render_session", "-c", conf],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if INTERESTING.search(line):
                    match = LINE.match(line)
                    text = f"{match['level']:<7} {match['msg']}" if match else line.rstrip()
                    print("  | " + text[:150])
            code = proc.wait()
        state = _admin(url, "state")
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)

    result, task_states, run_state = _render_result(home / "airflow.db")
    sessions = state.get("sessions", [])
    session = sessions[0] if sessions else {}
    ready_after = None
    if session.get("ready_at") and session.get("created"):
        ready_after = (
            datetime.fromisoformat(session["ready_at"]) - datetime.fromisoformat(session["created"])
        ).total_seconds()
    stopped = session.get("status", "").lower() in ("stopping", "stopped")
    active = state.get("active", -1)
    ok = code == 0 and run_state == "success" and stopped and active == 0 and len(sessions) == 1
    print()
    print("ARR demo summary")
    print(f"  DAG run            : {run_state} ({time.monotonic() - started:.1f} s)  tasks: {task_states}")
    print(f"  session id         : {session.get('id', 'none')}")
    if ready_after is not None:
        print(
            f"  time to ready      : {ready_after:g} emulated s "
            f"({ready_after / args.time_scale:.1f} s real at x{args.time_scale:g})"
        )
    print(f"  render result      : {json.dumps(result)}")
    print(f"  stop confirmed     : {'yes' if stopped else 'NO'} (status {session.get('status')})")
    print(f"  sessions created   : {len(sessions)}")
    print(f"  sessions active    : {active}")
    print(f"  full log           : {home / 'dags_test.log'}")
    print("ARR demo: OK" if ok else "ARR demo: FAILED")
    if not args.keep and ok:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
