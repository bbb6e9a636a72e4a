"""Secrets never leak: neither the account key nor any STS token shows up in task logs, XCom
values, rendered template fields, exception messages or the demo's output.

The fault matrix (test_fault_matrix.py) applies the same checks after every run of every failure
scenario (output and logs after each run, the metadata DB and log files after each scenario);
this module covers the successful example DAG in both dialects, the text of every kind of error,
the reprs a traceback or an error reporter would print, and ``make demo``.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_arr.exceptions import (
    ArrAuthError,
    ArrConnectionError,
    ArrError,
    ArrNotFoundError,
    ArrServiceError,
    ArrSessionLeftRunningError,
    ArrSessionMayExistError,
    ArrThrottledError,
)
from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger
from tests.conftest import ACCOUNT_KEY, Admin, connection_json
from tests.reliability.conftest import EXAMPLE_CONF, Harness, SecretGuard

REPO = Path(__file__).resolve().parents[2]


def test_the_guard_finds_what_it_looks_for(guard: SecretGuard) -> None:
    """The checks below mean something only if the guard sees a leak when there is one."""
    import jwt

    token = jwt.encode({"account-id": "a", "exp": 2**31}, "k" * 32, algorithm="HS256")
    assert guard.leaks(f"Authorization: Bearer acc:{ACCOUNT_KEY}")
    assert guard.leaks(f"...{ACCOUNT_KEY[-32:]}...")  # a part of the key
    assert guard.leaks(f"token={token}")  # an STS token by its shape, even one it never saw
    guard.tokens.append("opaque-token-value-123456")
    assert guard.leaks("x opaque-token-value-123456 y")
    assert not guard.leaks("session 1234 is ready at host.example (MS-CV abc.0)")


@pytest.mark.slow
@pytest.mark.parametrize("api_version", ["v1", "2021-01-01"])
def test_example_dag_keeps_secrets(harness: Harness, example_dag: Any, api_version: str) -> None:
    harness.connect(api_version=api_version)
    harness.reset()
    run = harness.run(example_dag, **EXAMPLE_CONF)
    assert run.state == "success", str(run)
    harness.finish(
        f"0 example DAG, no fault ({api_version})", run.state, seconds=run.seconds, text=run.output
    )
    assert len(harness.guard.tokens) >= 4  # one per task: the check had tokens to look for
    assert "ARR session" in run.output  # the task logs were captured

    tables = harness.scan_stores("the example DAG")
    # What was scanned is really there: XCom values and rendered template fields of this run.
    assert tables["xcom"] >= 3 and tables["rendered_task_instance_fields"] >= 4
    import sqlite3

    from tests.conftest import _HOME

    with sqlite3.connect(_HOME / "airflow.db") as db:
        xcoms = db.execute("SELECT task_id, key, value FROM xcom WHERE run_id = ?", (run.run_id,)).fetchall()
        rendered = db.execute(
            "SELECT task_id, rendered_fields FROM rendered_task_instance_fields WHERE run_id = ?",
            (run.run_id,),
        ).fetchall()
    session_id = harness.admin.state()["sessions"][0]["id"]
    assert any(key == "session_id" and session_id in str(value) for _, key, value in xcoms)
    assert any(task == "stop" and session_id in str(fields) for task, fields in rendered)
    for text in map(repr, (*xcoms, *rendered)):
        harness.guard.check(text, "XCom and rendered fields of the example DAG")


def test_error_texts_and_reprs_keep_secrets(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, guard: SecretGuard
) -> None:
    """Every kind of failure, as str, repr and pickled (how Airflow ships exceptions around), and
    the objects a traceback with locals or an error reporter would print."""

    server = emulator_factory(startup_delay=2)
    guard.watch(server)
    admin = Admin.of(server)
    fast: dict[str, Any] = {
        "retry_wait_min": 0.01,
        "retry_wait_max": 0.05,
        "retry_limit": 2,
        "throttle_timeout": 1,
        "stop_timeout": 1,
        "rate_limit": 100,  # the failures are injected; the pacer has tests of its own
        "rate_burst": 100,
    }
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", connection_json(server.url, **fast))
    hook = ArrHook()
    session_id = hook.create_session()
    held = hook.protocol.tokens.token
    assert held in guard.tokens  # the token the hook holds is among those checked for
    errors: list[BaseException] = []

    def failing(call: Any, expected: type[ArrError]) -> None:
        with pytest.raises(expected) as info:
            call()
        errors.append(info.value)

    admin.fault(operation="get", action="status", status=429, retry_after=None)
    failing(lambda: hook.get_session(session_id), ArrThrottledError)
    admin.clear_faults()
    # The storm slowed this process's pacer for the account; the next phases are other calls,
    # each as from a fresh process.
    from airflow_provider_arr.client import pacing

    pacing._sync_pacers.clear()
    hook = ArrHook()
    admin.fault(operation="stop", action="status", status=503)
    failing(lambda: hook.stop_session(session_id), ArrServiceError)
    failing(lambda: hook.ensure_stopped(session_id), ArrSessionLeftRunningError)
    admin.clear_faults()
    failing(lambda: hook.get_session("no-such-session"), ArrNotFoundError)
    admin.fault(operation="create", action="lose_answer", count=1)
    failing(hook.create_session, ArrSessionMayExistError)
    admin.expire_tokens()
    admin.fault(operation="token", action="status", status=401)
    failing(lambda: hook.get_session(session_id), ArrAuthError)
    admin.clear_faults()
    wrong = "WRONG-KEY-" + ACCOUNT_KEY[::-1]  # a wrong key is a secret too (maybe a real one)
    monkeypatch.setenv(
        "AIRFLOW_CONN_ARR_DEFAULT", connection_json(server.url, **fast).replace(ACCOUNT_KEY, wrong)
    )
    failing(lambda: ArrHook().list_sessions(), ArrAuthError)
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", connection_json("http://127.0.0.1:9", **fast))
    failing(lambda: ArrHook().list_sessions(), ArrConnectionError)

    texts = [repr(hook.config), repr(hook.protocol.token_request())]
    for error in errors:
        texts += [str(error), repr(error), repr(pickle.loads(pickle.dumps(error)).__dict__)]
        texts.append(repr(error.__dict__))
    guard.tokens.append(wrong)
    hook.list_sessions()  # a fresh token again, to show its cache's repr
    texts.append(repr(hook.protocol.tokens))
    assert hook.protocol.tokens.token in guard.tokens
    for text in texts:
        guard.check(text, "an error or a repr")
    for session in hook.list_sessions():
        hook.stop_session(session.session_id)


async def test_trigger_events_and_kwargs_keep_secrets(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, guard: SecretGuard
) -> None:
    server = emulator_factory(startup_delay=2)
    guard.watch(server)
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", connection_json(server.url))
    hook = ArrHook()
    session_id = hook.create_session()
    texts = []
    for sid in (session_id, "no-such-session"):
        trigger = ArrSessionReadyTrigger(session_id=sid, poll_interval=5, deadline=time.time() + 30)
        texts.append(repr(trigger.serialize()))
        async for event in trigger.run():
            texts.append(repr(event.payload))
    hook.stop_session(session_id)
    assert guard.tokens and "success" in texts[1] and "error" in texts[3]
    for text in texts:
        guard.check(text, "a trigger event or its serialized kwargs")


#: ``airflow dags test`` runs the task with its supervisor in one process, and at DEBUG level
#: ``InProcessSupervisorComms.send`` logs every message, ``MaskSecret`` values included (the
#: real supervisor omits that body). Airflow sends one for the connection's password when a
#: task reads the connection; the provider sends none there (``_compat.register_secret``).
AIRFLOW_MASK_MESSAGE = re.compile(r".*Sending request +.*msg=MaskSecret\(value='([^']*)'.*\n?")


def without_airflows_own_mask_messages(text: str, guard: SecretGuard, key: str) -> str:
    """``text`` without Airflow's in-process ``MaskSecret`` lines, having checked that the only
    secret they carry is the connection's password (Airflow sends its password and its extra)."""
    values = {m.group(1) for m in AIRFLOW_MASK_MESSAGE.finditer(text)}
    guard.check(" ".join(values - {key}), "a MaskSecret message other than the password's")
    return AIRFLOW_MASK_MESSAGE.sub("", text)


DEMO_WRAPPER = """
import pathlib, sys
sys.path.insert(0, sys.argv[1])
import demo
start = demo._start_emulator
def recording(args, key, log_path):
    pathlib.Path(sys.argv[2]).write_text(key)  # the demo's random key, for the test to look for
    return start(args, key, log_path)
demo._start_emulator = recording
sys.exit(demo.main(sys.argv[3:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_demo_output_keeps_secrets(tmp_path: Path, level: str) -> None:
    """``make demo`` as a user runs it (a clean environment, its own emulator and Airflow home),
    at INFO and at DEBUG level, where Airflow's supervisor logs what tasks send it."""
    key_file = tmp_path / "key"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    demo = subprocess.run(
        [
            sys.executable,
            "-c",
            DEMO_WRAPPER,
            str(REPO / "scripts"),
            str(key_file),
            "--startup-delay",
            "5",
            "--time-scale",
            "100",
            "--keep",
            "--log-level",
            level,
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0 and "ARR demo: OK" in output, output[-3000:]
    key = key_file.read_text()
    guard = SecretGuard(key)
    match = re.search(r"throwaway AIRFLOW_HOME (\S+)", output)
    assert match, output
    home = Path(match.group(1))
    try:
        guard.check(output, "the demo's output")
        dags_test_log = (home / "dags_test.log").read_text()
        assert "ARR session" in dags_test_log  # the full task log of the run
        guard.check(without_airflows_own_mask_messages(dags_test_log, guard, key), "the demo's full log")
        for path in (home / "logs").rglob("*"):
            if path.is_file():
                guard.check(path.read_text(errors="replace"), f"the demo's task log {path}")
        from tests.reliability.conftest import scan_metadata_db

        tables = scan_metadata_db(guard, home / "airflow.db", "the demo's metadata DB")
        assert tables["xcom"] >= 3
    finally:
        shutil.rmtree(home, ignore_errors=True)
