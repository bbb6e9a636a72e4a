"""A real Airflow 3 deployment, as subprocesses, runs the example DAG against the emulator.

What runs (all started here, all ended in the fixture's teardown):

* a fresh PostgreSQL database (``arr_deploy_<random>``), migrated with ``airflow db migrate``
  and dropped afterwards;
* the ARR emulator (``python -m airflow_provider_arr.emulator``) on a free port, sessions taking
  ~30 real seconds to start (750 emulated seconds at 25x);
* ``airflow api-server`` (REST API and the execution API that the LocalExecutor's task
  processes talk to), ``airflow scheduler`` (LocalExecutor), ``airflow dag-processor`` and
  ``airflow triggerer``, sharing a throwaway ``AIRFLOW_HOME`` (their logs are kept there, under
  ``component-logs/``; the task and trigger logs under ``logs/``), the repository's ``dags/`` and
  ``AIRFLOW_CONN_ARR_DEFAULT`` pointing at the emulator.

The tests (``test_real_airflow``, ``test_ui``) drive it through the REST API and the UI
(all-admins simple auth manager), as a user would, and check what the emulator saw.

Set ``ARR_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432``) to use another
server; the tests are skipped when no PostgreSQL server or driver is available.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import ACCOUNT_ID, ACCOUNT_KEY, Admin, connection_json

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DAG_ID = "arr_render_session"
POSTGRES = os.environ.get("ARR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
# Sessions start in 750 emulated seconds = 30 real seconds: long enough to kill and replace the
# triggerer while the session is still starting, short enough for a test.
STARTUP_DELAY = 750.0
TIME_SCALE = 25.0
# The second test marks the task failed while the session starts: make that a long start.
LONG_STARTUP_DELAY = 6000.0
POLL_INTERVAL = 5
TERMINAL_RUN_STATES = ("success", "failed")
FAILED_TI_STATES = ("failed", "upstream_failed", "skipped", "removed")
# Time budgets: every wait gives up (with the components' logs) before pytest-timeout would kill
# the test without them. Setup + one test stays under the 300 s mark.
SETUP_BUDGET = 110.0
TEST_BUDGET = 180.0
AIRFLOW = [sys.executable, "-m", "airflow"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


class Component:
    """One long-running process, in a process group of its own, logging to one file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Component:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _killpg(self, sig: int) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = 20.0, *, group_sigterm: bool = True) -> str:
        """SIGTERM (the leader, or the whole group), then SIGKILL the group; say what happened."""
        if self.proc is None:
            return "never started"
        if self.proc.poll() is None:
            if group_sigterm:
                self._killpg(signal.SIGTERM)
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
                outcome = f"exited with {self.proc.returncode} after SIGTERM"
            except subprocess.TimeoutExpired:
                self._killpg(signal.SIGKILL)
                self.proc.wait(10)
                outcome = f"SIGKILLed after {grace:.0f} s (SIGTERM ignored)"
        else:
            outcome = f"had already exited with {self.proc.returncode}"
        self._killpg(signal.SIGKILL)  # whatever the leader left behind in its group
        return outcome

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)


class Deployment:
    """The database, the emulator and the Airflow components, and how the tests talk to them."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.logs = home / "component-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.db_name = f"arr_deploy_{secrets.token_hex(6)}"
        self.db_created = False
        self.components: dict[str, Component] = {}
        self.retired: list[Component] = []
        self.emulator: Component | None = None
        self.emulator_url = ""
        self.admin: Admin | None = None
        self.api_url = ""
        self.env: dict[str, str] = {}
        self.http = requests.Session()
        self.triggerers = 0
        self.events: list[str] = []
        self.deadline = time.monotonic() + SETUP_BUDGET
        self.budget = SETUP_BUDGET

    def set_budget(self, seconds: float) -> None:
        """Every later wait must end within ``seconds`` from now."""
        self.deadline = time.monotonic() + seconds
        self.budget = seconds

    def left(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    # -- PostgreSQL ------------------------------------------------------------------------------

    def _pg(self, dbname: str = "postgres") -> Any:
        import psycopg2

        parts = urlsplit(POSTGRES)
        conn = psycopg2.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password,
            dbname=dbname,
            connect_timeout=5,
        )
        conn.autocommit = True
        return conn

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """A query on the deployment's metadata database."""
        conn = self._pg(self.db_name)
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def create_database(self) -> None:
        conn = self._pg()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.db_name}"')
            self.db_created = True
        finally:
            conn.close()

    def drop_database(self) -> None:
        if not self.db_created:
            return
        conn = self._pg()
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        finally:
            conn.close()

    # -- start and stop --------------------------------------------------------------------------

    def start(self) -> None:
        t0 = time.monotonic()
        self.create_database()
        self.start_emulator()
        api_port = free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        parts = urlsplit(POSTGRES)
        auth = parts.username or "postgres"
        if parts.password:
            auth += f":{parts.password}"
        server = f"{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"
        sql_conn = f"postgresql+psycopg2://{auth}@{server}/{self.db_name}"
        from cryptography.fernet import Fernet

        # Nothing of the test process's Airflow settings (conftest points them at SQLite).
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONUNBUFFERED": "1",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # The connection form's Test button (the hook's test_connection), off by default.
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_conn,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                # Only the runs the tests trigger: unpausing the nightly DAG must not add a run.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW_CONN_ARR_DEFAULT": connection_json(self.emulator_url, api_version="2021-01-01"),
            }
        )
        self.env = env
        migrate_log = self.logs / "db-migrate.log"
        with migrate_log.open("wb") as log:
            try:
                rc: int | str = subprocess.run(
                    [*AIRFLOW, "db", "migrate"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=self.home,
                    timeout=self.left(),
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = "timed out"
        if rc != 0:
            pytest.fail(f"airflow db migrate failed ({rc}):\n{tail(migrate_log, 60)}")
        self.note(f"database migrated ({time.monotonic() - t0:.0f} s)")

        self.launch("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(api_port)])
        self.launch("scheduler", ["scheduler"])
        self.launch("dag-processor", ["dag-processor"])
        self.start_triggerer()

        def healthy() -> bool:
            try:
                health = self.http.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
            except (requests.RequestException, ValueError):
                return False
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            return all((health.get(p) or {}).get("status") == "healthy" for p in parts)

        self.wait_for(healthy, 120, "every component to report healthy in /api/v2/monitor/health")

        def dag_parsed() -> bool:
            errors = self.api("GET", "/api/v2/importErrors").json()
            if errors.get("total_entries"):
                self.fail(f"the DAG folder has import errors: {json.dumps(errors, indent=1)}")
            return self.http.get(f"{self.api_url}/api/v2/dags/{DAG_ID}", timeout=10).status_code == 200

        self.wait_for(dag_parsed, 120, f"the dag-processor to register {DAG_ID}")
        self.note(f"deployment ready ({time.monotonic() - t0:.0f} s)")

    def start_emulator(self) -> None:
        log_path = self.logs / "emulator.log"
        self.emulator = Component(
            "emulator",
            [
                sys.executable,
                "-m",
                "airflow_provider_arr.emulator",
                "--port",
                "0",
                "--startup-delay",
                str(STARTUP_DELAY),
                "--time-scale",
                str(TIME_SCALE),
                "--account-id",
                ACCOUNT_ID,
                "--account-key",
                ACCOUNT_KEY,
                "--access-log",
                "--log-level",
                "info",
            ],
            log_path,
            {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | {"PYTHONUNBUFFERED": "1"},
            self.home,
        ).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"ARR emulator listening on (\S+)", tail(log_path, 200))
            if found:
                self.emulator_url = found.group(1)
                self.admin = Admin(self.emulator_url)
                return
            if not self.emulator.alive:
                break
            time.sleep(0.2)
        pytest.fail(f"the emulator did not start:\n{tail(log_path)}")

    def launch(self, name: str, args: list[str]) -> Component:
        component = Component(name, [*AIRFLOW, *args], self.logs / f"{name}.log", self.env, self.home)
        self.components[name] = component.start()
        return component

    def start_triggerer(self) -> Component:
        self.triggerers += 1
        name = f"triggerer-{self.triggerers}"
        env = dict(self.env)
        # A port of its own, in case the previous triggerer's is not released yet.
        env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(free_port())
        component = Component(name, [*AIRFLOW, "triggerer"], self.logs / f"{name}.log", env, self.home)
        self.components[name] = component.start()
        self.note(f"{name} started (pid {component.proc.pid if component.proc else '?'})")
        return component

    def kill_triggerer(self) -> str:
        """Stop the running triggerer as an orchestrator would: SIGTERM to it, SIGKILL if it lingers."""
        name = f"triggerer-{self.triggerers}"
        component = self.components.pop(name)
        self.retired.append(component)
        self.note(f"SIGTERM to {name}")
        outcome = component.stop(grace=30, group_sigterm=False)
        self.note(f"{name} stopped: {outcome}")
        return outcome

    def shutdown(self) -> None:
        t0 = time.monotonic()
        outcomes = []
        for component in [*reversed(self.components.values()), *self.retired, self.emulator]:
            if component is not None:
                outcomes.append(f"{component.name} {component.stop(grace=15)}")
        self._sweep()
        try:
            self.drop_database()
        except Exception as exc:  # pragma: no cover - reported, not fatal to the teardown
            print(f"could not drop database {self.db_name}: {exc}", file=sys.stderr)
        print(
            f"\nAirflow deployment stopped in {time.monotonic() - t0:.0f} s ({'; '.join(outcomes)}); "
            f"logs kept in {self.home}",
            file=sys.stderr,
        )

    def _sweep(self) -> None:
        """SIGKILL any process still carrying this deployment's AIRFLOW_HOME (e.g. a task process
        that made a session of its own): they are all ours, started from this fixture."""
        marker = f"AIRFLOW_HOME={self.home}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)

    # -- talking to it ---------------------------------------------------------------------------

    def note(self, event: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {event}")

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        resp = self.http.request(method, f"{self.api_url}{path}", **kwargs)
        if resp.status_code >= 400:
            self.fail(f"{method} {path} answered {resp.status_code}: {resp.text[:2000]}")
        return resp

    def trigger(self, conf: dict[str, Any]) -> str:
        self.api("PATCH", f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
        body = {"logical_date": None, "conf": conf, "note": "tests/deployment"}
        run_id = str(self.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json=body).json()["dag_run_id"])
        self.note(f"triggered {run_id} with {conf}")
        return run_id

    def run_state(self, run_id: str) -> str:
        return str(self.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"])

    def ti_states(self, run_id: str) -> dict[str, str | None]:
        body = self.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances").json()
        return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
        budget_limited = timeout > self.left()
        timeout = min(timeout, self.left())
        deadline = time.monotonic() + timeout
        while True:
            for component in self.components.values():
                if not component.alive:
                    self.fail(f"{component.name} died while waiting for {what}")
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                why = f" (the {self.budget:.0f} s budget ran out)" if budget_limited else ""
                self.fail(f"timed out after {timeout:.0f} s{why} waiting for {what}")
            time.sleep(every)

    def wait_ti(self, run_id: str, task_id: str, state: str, timeout: float) -> None:
        def reached() -> bool:
            current = self.ti_states(run_id).get(task_id)
            if current in FAILED_TI_STATES and current != state:
                self.fail(f"{task_id} is {current} while waiting for it to be {state}")
            return current == state

        self.wait_for(reached, timeout, f"{task_id} of {run_id} to be {state}")
        self.note(f"{task_id} is {state}")

    def wait_run(self, run_id: str, timeout: float) -> str:
        state = self.wait_for(
            lambda: (s := self.run_state(run_id)) in TERMINAL_RUN_STATES and s,
            timeout,
            f"{run_id} to finish",
        )
        self.note(f"{run_id} ended {state}")
        return str(state)

    def expect_run(self, run_id: str, timeout: float, state: str, tasks: dict[str, str]) -> dict[str, str]:
        """Wait for the run to end; it must end in ``state`` with its tasks in ``tasks``."""
        ended = self.wait_run(run_id, timeout)
        states = self.ti_states(run_id)
        self.check(
            ended == state and states == tasks,
            f"run ended {ended}, tasks {states}; expected run {state}, tasks {tasks}",
        )
        return {k: str(v) for k, v in states.items()}

    def task_logs(self, run_id: str, task_id: str) -> dict[str, str]:
        """Every log file of a task of a run (the task's own and the triggerers'), by file name."""
        folder = self.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
        return {p.name: p.read_text(errors="replace") for p in sorted(folder.rglob("*.log"))}

    def trigger_logs(self, run_id: str, task_id: str = "wait_ready") -> str:
        return "".join(text for name, text in self.task_logs(run_id, task_id).items() if ".trigger." in name)

    def wait_trigger_running(self, run_id: str) -> None:
        """Until the trigger has read the session in a triggerer (its log says it is starting)."""
        self.wait_for(
            lambda: re.search(r"ARR session \S+ is starting", self.trigger_logs(run_id)),
            60,
            "the trigger's first read of the session, in the triggerer",
        )
        self.note("the trigger runs in the triggerer")

    def triggerer_job_ids(self) -> list[int]:
        rows = self.sql("SELECT id FROM job WHERE job_type = 'TriggererJob' ORDER BY id")
        return [int(r[0]) for r in rows]

    # -- failure reports -------------------------------------------------------------------------

    def diagnostics(self) -> str:
        out = [f"AIRFLOW_HOME (logs kept): {self.home}", "timeline:", *(f"  {e}" for e in self.events)]
        if self.admin is not None:
            try:
                out.append(f"emulator state: {json.dumps(self.admin.state(), indent=1)}")
            except Exception as exc:
                out.append(f"emulator state: <unavailable: {exc}>")
        for component in [*self.components.values(), *self.retired, self.emulator]:
            if component is None:
                continue
            code = component.proc.returncode if component.proc else None
            status = "running" if component.alive else f"exited {code}"
            out.append(f"----- {component.name} ({status}), last lines of {component.log_path} -----")
            out.append(component.tail())
        return "\n".join(out)

    def fail(self, message: str) -> NoReturn:
        pytest.fail(f"{message}\n\n{self.diagnostics()}", pytrace=False)

    def check(self, ok: object, message: str) -> None:
        """An assertion whose failure carries the deployment's diagnostics."""
        if not ok:
            self.fail(message)


def _postgres_available() -> str | None:
    """Why the deployment cannot run here, or None."""
    try:
        import asyncpg  # noqa: F401  (Airflow's async engine for postgresql:// needs it)
        import psycopg2
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e . --group dev)"
    parts = urlsplit(POSTGRES)
    try:
        psycopg2.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username or "postgres",
            password=parts.password,
            dbname="postgres",
            connect_timeout=5,
        ).close()
    except Exception as exc:
        return f"no PostgreSQL server at {POSTGRES}: {exc}"
    return None


def logged_at(log: str, needle: str) -> datetime | None:
    """When a JSON log line whose event contains ``needle`` was written (the first such line)."""
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if needle in str(record.get("event", "")):
            return datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00"))
    return None


def only_session(dep: Deployment, admin: Admin) -> dict[str, Any]:
    sessions = admin.state()["sessions"]
    if len(sessions) != 1:
        dep.fail(f"expected exactly one session in the emulator, found {len(sessions)}")
    return dict(sessions[0])
