"""A real, distributed Airflow 3 deployment, as processes: docker-compose.yaml without Docker.

What runs (all started here, once per test session, all ended in the fixture's teardown):

* a fresh PostgreSQL database (``arr_deploy_<random>``) on the server at ``$ARR_TEST_POSTGRES``:
  Airflow's metadata database *and* the Celery result backend (``db+postgresql://``), migrated
  with ``airflow db migrate`` and dropped afterwards;
* Redis at ``$ARR_TEST_REDIS`` as the Celery broker, on a database number and key prefix of this
  run's own (other runs on the same server do not see its queues);
* the ARR emulator as the service, throttled as docker-compose.yaml has it (0.2 calls/s per
  account, bursts of 5), its sessions starting in a few real seconds (emulated time scale);
* the services of docker-compose.yaml that run Airflow, as many of each as its ``deploy.replicas``
  says: one ``api-server``, one ``dag-processor``, two ``scheduler``, two ``triggerer`` and two
  ``celery worker``, each with a hostname of its own (``airflow-worker-1``...: through
  ``[core] hostname_callable``, as containers would have), in a process group of its own (a
  ``kill -9`` of a component kills what it forked, as a container kill does), logging to
  ``component-logs/<name>.log`` under a throwaway ``AIRFLOW_HOME``;
* every Airflow process and the emulator run from a virtual environment with the provider
  installed FROM THE WHEEL built from this checkout (``python -m build``, as ``make dist``): the
  dependencies are installed once into a cached base environment (keyed by constraints.txt), each
  test session makes a small environment on top of it and installs its fresh wheel there.

The Airflow environment and the commands are read from docker-compose.yaml (``compose_*``
functions below); what differs is listed in ``LOCAL_ENV`` (addresses and secrets of this machine)
and ``TEST_TUNING`` (short heartbeats and health thresholds), which test_compose.py checks.

The tests drive it over the REST API as a user would and check what the emulator saw.
Scenarios that kill components use :meth:`Deployment.kill9` and :meth:`Deployment.restart`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from tests.conftest import Admin

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
DAG_ID = "arr_render_session"
SCENES_DAG_ID = "arr_render_scenes"
POSTGRES = os.environ.get("ARR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("ARR_TEST_REDIS", "redis://127.0.0.1:6379")
VENV_CACHE = Path(os.environ.get("ARR_DEPLOY_VENV_CACHE", Path.home() / ".cache" / "airflow-provider-arr"))
# What the Airflow processes need besides the provider's own dependencies (the compose image has them).
AIRFLOW_EXTRAS = ("apache-airflow-providers-celery", "psycopg2-binary", "asyncpg")
# Sessions start in 750 emulated seconds = 30 real seconds: long enough to kill and replace a
# triggerer while the session is still starting, short enough for a test.
STARTUP_DELAY = 750.0
TIME_SCALE = 25.0
# The mark-failed test marks the task failed while the session starts: make that a long start.
LONG_STARTUP_DELAY = 6000.0
POLL_INTERVAL = 5
TERMINAL_RUN_STATES = ("success", "failed")
FAILED_TI_STATES = ("failed", "upstream_failed", "skipped", "removed")
# Every wait gives up (with the components' logs) before pytest-timeout would kill the test.
SETUP_BUDGET = 420.0
TEST_BUDGET = 180.0

# The services of docker-compose.yaml that run Airflow, and how this harness names their replicas.
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-dag-processor",
    "airflow-scheduler",
    "airflow-triggerer",
    "airflow-worker",
)
# What the processes on this machine set differently from the x-airflow-common environment:
# addresses (no `postgres`, `redis`, `airflow-apiserver` host names here) and fresh secrets.
LOCAL_ENV = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW_CONN_ARR_DEFAULT",
)
# Added for processes sharing one machine (containers have a host and ports of their own).
LOCAL_ONLY = (
    "AIRFLOW_HOME",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__HOSTNAME_CALLABLE",
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX",
    "AIRFLOW__API__HOST",
    "AIRFLOW__API__PORT",
    "AIRFLOW__API__BASE_URL",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
    "ARR_DEPLOY_HOSTNAME",
    "PYTHONUNBUFFERED",
)
# Short heartbeats and thresholds, so that a killed component is noticed in seconds, not minutes.
TEST_TUNING = {
    "AIRFLOW__CORE__PARALLELISM": "32",
    "AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG": "32",
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
    # The connection form's Test button (the hook's test_connection), used by test_ui.
    "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
    "AIRFLOW__API__WORKERS": "1",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "6",
    # A killed worker's message is not redelivered by Redis (Airflow's heartbeat check handles it).
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "21600",
    # Only the runs the tests trigger: unpausing the nightly DAG must not add a run.
    "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "2",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
}
# The hostname each component reports (task instances, jobs), as a container's would differ.
HOSTNAME_MODULE = '''"""[core] hostname_callable of tests/deployment: the component's name."""
import os
import socket


def hostname() -> str:
    return os.environ.get("ARR_DEPLOY_HOSTNAME") or socket.getfqdn()
'''


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


# -- docker-compose.yaml, the source of the topology -------------------------------------------------


def compose_file() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


def compose_airflow_env(compose: dict[str, Any]) -> dict[str, str]:
    """The x-airflow-common environment, as strings."""
    return {k: str(v) for k, v in compose["x-airflow-common"]["environment"].items()}


def compose_replicas(compose: dict[str, Any], service: str) -> int:
    return int((compose["services"][service].get("deploy") or {}).get("replicas", 1))


def compose_command(compose: dict[str, Any], service: str) -> list[str]:
    command = compose["services"][service]["command"]
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


@dataclass
class ComponentSpec:
    """One process of the topology: which compose service and replica, its argv and extra env."""

    name: str
    service: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def compose_topology(compose: dict[str, Any]) -> list[ComponentSpec]:
    """Every Airflow process that `docker compose up` would run, named ``<service>-<replica>``.

    ``argv`` is ``airflow`` + the service's command; a Celery worker also gets its node name
    (``--celery-hostname``), which a container takes from its host name.
    """
    specs = []
    for service in AIRFLOW_SERVICES:
        for replica in range(1, compose_replicas(compose, service) + 1):
            name = f"{service}-{replica}"
            argv = ["airflow", *compose_command(compose, service)]
            if argv[1:3] == ["celery", "worker"]:
                argv += ["--celery-hostname", f"{name}@%h"]
            env = {"ARR_DEPLOY_HOSTNAME": name}
            service_env = compose["services"][service].get("environment") or {}
            # Service-level variables beyond the common ones (the worker's DUMB_INIT_SETSID is for
            # the image's entrypoint, which processes here do not have).
            common = compose["x-airflow-common"]["environment"]
            env.update(
                {k: str(v) for k, v in service_env.items() if k not in common and k != "DUMB_INIT_SETSID"}
            )
            specs.append(ComponentSpec(name, service, argv, env))
    return specs


def compose_emulator_argv(compose: dict[str, Any], *, known_options: set[str]) -> list[str]:
    """The emulator service's command, for this machine: loopback, a free port, a fast clock.

    Every option of the compose file is kept (the throttle above all) except the address and the
    clock; an option this checkout's emulator does not know yet (``--state-file``, added in
    parallel) is left out, with its value.
    """
    service = compose["services"]["arr-emulator"]
    args = [str(a) for a in service["command"]]
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        opt = args[i]
        value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else None
        pairs.append((opt, value))
        i += 2 if value is not None else 1
    local = {
        "--host": "127.0.0.1",
        "--port": "0",
        "--startup-delay": str(STARTUP_DELAY),
        "--time-scale": str(TIME_SCALE),
    }
    out = [*service["entrypoint"]]
    for opt, value in pairs:
        if opt not in known_options or opt == "--state-file":  # the caller gives its own path
            continue
        given = local.get(opt, value)
        out += [opt] if given is None else [opt, given]
    out += ["--access-log", "--log-level", "info"]
    return out


def emulator_options() -> set[str]:
    """The options this checkout's emulator accepts."""
    from airflow_provider_arr.emulator.__main__ import build_parser

    return {opt for action in build_parser()._actions for opt in action.option_strings}


# -- the environment the processes run from: the built wheel -----------------------------------------


def build_wheel(out: Path) -> Path:
    """The wheel, built as ``make dist`` builds it (``python -m build --no-isolation``)."""
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    wheels = list(out.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        pytest.fail(f"building the wheel failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return wheels[0]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON"))}


def _run(argv: list[str], log: Path, timeout: float) -> None:
    with log.open("ab") as out:
        done = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, env=_clean_env(), timeout=timeout, check=False
        )
    if done.returncode != 0:
        pytest.fail(f"{argv} exited {done.returncode}:\n{tail(log, 60)}")


def base_venv(wheel: Path, log: Path) -> Path:
    """The provider's dependencies and Airflow's extras (Celery, PostgreSQL drivers), pinned by
    constraints.txt, in a virtual environment made once and kept in ``$ARR_DEPLOY_VENV_CACHE``."""
    key = hashlib.sha256(
        (REPO / "constraints.txt").read_bytes() + repr((sys.version, AIRFLOW_EXTRAS)).encode()
    ).hexdigest()[:16]
    VENV_CACHE.mkdir(parents=True, exist_ok=True)
    venv = VENV_CACHE / f"deploy-base-{key}"
    with (VENV_CACHE / f"deploy-base-{key}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be making it right now
        if (venv / ".complete").exists():
            return venv
        if venv.exists():
            subprocess.run(["rm", "-rf", str(venv)], check=True)
        _run([sys.executable, "-m", "venv", str(venv)], log, 120)
        python = str(venv / "bin" / "python")
        pip = [python, "-m", "pip", "--disable-pip-version-check", "--quiet"]
        _run([*pip, "install", "-c", str(REPO / "constraints.txt"), str(wheel), *AIRFLOW_EXTRAS], log, 900)
        # The provider itself goes into each session's environment, from that session's wheel.
        _run([*pip, "uninstall", "--yes", "airflow-provider-arr"], log, 120)
        (venv / ".complete").write_text(str(wheel.name))
        return venv


def session_venv(root: Path, wheel: Path, log: Path) -> Path:
    """A small environment on top of the base one, with this session's wheel installed in it."""
    base = base_venv(wheel, log)
    venv = root / "venv"
    _run([str(base / "bin" / "python"), "-m", "venv", "--without-pip", str(venv)], log, 120)
    site_packages = Path(
        subprocess.check_output(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            env=_clean_env(),
            text=True,
        ).strip()
    )
    base_site = subprocess.check_output(
        [str(base / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        env=_clean_env(),
        text=True,
    ).strip()
    (site_packages / "_arr_deploy_base.pth").write_text(f"import site; site.addsitedir({base_site!r})\n")
    (site_packages / "arr_deploy_hostname.py").write_text(HOSTNAME_MODULE)
    pip = [str(base / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    _run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)], log, 300)
    return venv


class Component:
    """One long-running process, in a process group of its own, logging to one file."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str], cwd: Path, *, service: str = ""
    ) -> None:
        self.name = name
        self.service = service
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def hostname(self) -> str:
        return self.env.get("ARR_DEPLOY_HOSTNAME", self.name)

    def start(self) -> Component:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts} at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
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

    def kill9(self) -> None:
        """``kill -9`` of the process and everything in its group, as a container kill does."""
        if self.proc is None:
            return
        self._killpg(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

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


class DeployAdmin(Admin):
    """The emulator's admin API, with ``Authorization: Bearer <token>`` when a token is set."""

    def __init__(self, url: str, token: str | None) -> None:
        super().__init__(url, token=token)


@dataclass
class ScenarioResult:
    """One row of the deployment table."""

    scenario: str
    runs: int
    created: int
    stopped: int
    leaked: int
    throttled: int
    wall: float
    note: str = ""


RESULTS: list[ScenarioResult] = []
TABLE_FILE = REPO / "benchmarks" / "DEPLOYMENT.md"


def results_table(rows: list[ScenarioResult]) -> str:
    head = (
        "| scenario | runs | sessions created | sessions stopped | leaked (goal 0) | 429s | wall time "
        "| notes |\n"
        "|---|---:|---:|---:|---:|---:|---:|---|\n"
    )
    return head + "".join(
        f"| {r.scenario} | {r.runs} | {r.created} | {r.stopped} | {r.leaked} | {r.throttled} | "
        f"{r.wall:.0f} s | {r.note} |\n"
        for r in rows
    )


def record(result: ScenarioResult) -> None:
    """Print the table so far and write it to benchmarks/DEPLOYMENT.md (rows of scenarios not run
    this time are kept from the file, so that ``-k`` runs update their own rows only)."""
    RESULTS.append(result)
    table = results_table(RESULTS)
    print(f"\n{table}")
    ours = {r.scenario for r in RESULTS}
    kept = []
    if TABLE_FILE.exists():
        for line in TABLE_FILE.read_text().splitlines():
            cells = [c.strip() for c in line.split("|")]
            if len(cells) > 2 and cells[1][:2].rstrip(".").isdigit() and cells[1] not in ours:
                kept.append(line + "\n")
    body = table.splitlines(keepends=True)
    rows = sorted([*body[2:], *kept])
    TABLE_FILE.write_text(
        "# The provider in a distributed Airflow deployment\n\n"
        "Written by `make deploy-test` (tests/deployment/test_distributed.py): the topology\n"
        "of docker-compose.yaml run as processes on one 2-core machine (api-server, dag-processor,\n"
        "2 schedulers, 2 triggerers, 2 Celery workers; PostgreSQL metadata DB and result backend,\n"
        "Redis broker), the provider installed from its wheel, the emulator as the service throttled\n"
        "at 0.2 calls/s per account (bursts of 5). Runs triggered over the REST API. Sessions counted\n"
        "by the emulator; 429s are the emulator's `throttled` count (answers, not task failures).\n\n"
        "Budget of scenario 1 at that rate: each of its 40 sessions needs a create and a stop, 80 calls\n"
        "of which 5 pass at once (the burst) and the rest at 0.2/s: 375 s at the very least. The waits\n"
        "add reads: one per session per interval if each polled alone; here the sensors defer at once\n"
        "and each triggerer lists the account's sessions once per interval for all its waits. The 429s\n"
        "come from the many task processes, each pacing on its own (a pacer is per process): answers\n"
        "waited out, not task failures.\n\n"
        f"Last written: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n{''.join(body[:2] + rows)}"
    )


class Deployment:
    """The database, the broker, the emulator and the Airflow components, and how tests talk to them."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.logs = home / "component-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.db_name = f"arr_deploy_{secrets.token_hex(6)}"
        self.db_created = False
        self.redis_db = secrets.randbelow(15) + 1
        self.redis_prefix = f"arr-deploy-{secrets.token_hex(4)}:"
        self.admin_token = secrets.token_urlsafe(16)
        self.components: dict[str, Component] = {}
        self.down: set[str] = set()  # killed on purpose, not yet restarted
        self.emulator: Component | None = None
        self.emulator_url = ""
        self.admin: DeployAdmin | None = None
        self.api_url = ""
        self.env: dict[str, str] = {}
        self.venv: Path | None = None
        self.http = requests.Session()
        self.events: list[str] = []
        self.deadline = time.monotonic() + SETUP_BUDGET
        self.budget = SETUP_BUDGET
        self.compose = compose_file()
        # The account of the compose file's connection: the emulator's default one.
        conn = json.loads(compose_airflow_env(self.compose)["AIRFLOW_CONN_ARR_DEFAULT"])
        self.account_id, self.account_key = str(conn["login"]), str(conn["password"])

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

    def _redis_flush(self) -> None:
        """Delete this run's keys (and only those) from the broker's database."""
        import redis

        parts = urlsplit(REDIS)
        client = redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=self.redis_db)
        try:
            keys = list(client.scan_iter(match=f"{self.redis_prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    # -- start and stop --------------------------------------------------------------------------

    def airflow_env(self, api_port: int) -> dict[str, str]:
        """x-airflow-common of docker-compose.yaml, with LOCAL_ENV/LOCAL_ONLY for this machine and
        TEST_TUNING; each component adds its own (hostname, ports)."""
        from cryptography.fernet import Fernet

        parts = urlsplit(POSTGRES)
        auth = parts.username or "postgres"
        if parts.password:
            auth += f":{parts.password}"
        server = f"{parts.hostname or '127.0.0.1'}:{parts.port or 5432}"
        redis_parts = urlsplit(REDIS)
        conn = json.loads(compose_airflow_env(self.compose)["AIRFLOW_CONN_ARR_DEFAULT"])
        conn["host"] = self.emulator_url
        conn["extra"]["sts_endpoint"] = self.emulator_url
        local = {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{auth}@{server}/{self.db_name}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{auth}@{server}/{self.db_name}",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{redis_parts.netloc}/{self.redis_db}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW_CONN_ARR_DEFAULT": json.dumps(conn),
        }
        local_only = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "arr_deploy_hostname.hostname",
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": self.redis_prefix,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "PYTHONUNBUFFERED": "1",
        }
        assert set(local) == set(LOCAL_ENV) and set(local_only) <= set(LOCAL_ONLY)
        env = _clean_env()
        assert self.venv is not None
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '')}"
        env.update(compose_airflow_env(self.compose))
        env.update(local)
        env.update(local_only)
        env.update(TEST_TUNING)
        return env

    def start(self) -> None:
        t0 = time.monotonic()
        self.venv = session_venv(self.home, build_wheel(self.home / "dist"), self.logs / "venv.log")
        self.note(f"environment with the wheel ready ({time.monotonic() - t0:.0f} s)")
        self.create_database()
        self.start_emulator()
        api_port = free_port()
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.env = self.airflow_env(api_port)
        python = str(self.venv / "bin" / "python")
        migrate_log = self.logs / "db-migrate.log"
        with migrate_log.open("wb") as log:
            try:
                rc: int | str = subprocess.run(
                    [python, "-m", "airflow", "db", "migrate"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    cwd=self.home,
                    timeout=self.left(),
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = "timed out"
        if rc != 0:
            pytest.fail(f"airflow db migrate failed ({rc}):\n{tail(migrate_log, 60)}")
        self.note(f"database migrated ({time.monotonic() - t0:.0f} s)")

        for spec in compose_topology(self.compose):
            env = self.env | spec.env
            # Ports of its own for what a container would serve on its own address.
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
            env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(free_port())
            env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"] = str(free_port())
            argv = [python, "-m", "airflow", *spec.argv[1:]]
            component = Component(
                spec.name, argv, self.logs / f"{spec.name}.log", env, self.home, service=spec.service
            )
            self.components[spec.name] = component.start()

        def healthy() -> bool:
            try:
                health = self.http.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
            except (requests.RequestException, ValueError):
                return False
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            return all((health.get(p) or {}).get("status") == "healthy" for p in parts)

        self.wait_for(healthy, 240, "every component to report healthy in /api/v2/monitor/health")
        self.wait_for(
            lambda: all(self.worker_ready(c) for c in self.of("airflow-worker")),
            120,
            "both Celery workers to be ready",
        )
        self.wait_for(
            lambda: (
                len(self.live_jobs("SchedulerJob")) == len(self.of("airflow-scheduler"))
                and len(self.live_jobs("TriggererJob")) == len(self.of("airflow-triggerer"))
            ),
            120,
            "every scheduler and triggerer to heartbeat",
        )

        def dags_parsed() -> bool:
            errors = self.api("GET", "/api/v2/importErrors").json()
            if errors.get("total_entries"):
                self.fail(f"the DAG folder has import errors: {json.dumps(errors, indent=1)}")
            return all(
                self.http.get(f"{self.api_url}/api/v2/dags/{d}", timeout=10).status_code == 200
                for d in (DAG_ID, SCENES_DAG_ID)
            )

        self.wait_for(dags_parsed, 120, f"the dag-processor to register {DAG_ID} and {SCENES_DAG_ID}")
        self.note(f"deployment ready ({time.monotonic() - t0:.0f} s): {', '.join(self.components)}")

    def start_emulator(self) -> None:
        assert self.venv is not None
        log_path = self.logs / "emulator.log"
        known = emulator_options()
        argv = compose_emulator_argv(self.compose, known_options=known)
        argv[0] = str(self.venv / "bin" / argv[0])
        if "--state-file" in known:
            argv += ["--state-file", str(self.home / "arr-emulator-state.json")]
        env = _clean_env() | {"PYTHONUNBUFFERED": "1", "ARR_EMULATOR_ADMIN_TOKEN": self.admin_token}
        self.emulator = Component(
            "arr-emulator", argv, log_path, env, self.home, service="arr-emulator"
        ).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = re.search(r"ARR emulator listening on (\S+)", tail(log_path, 200))
            if found:
                self.emulator_url = found.group(1)
                self.admin = DeployAdmin(self.emulator_url, self.admin_token)
                return
            if not self.emulator.alive:
                break
            time.sleep(0.2)
        pytest.fail(f"the emulator did not start:\n{tail(log_path)}")

    # -- components: find, kill, restart ---------------------------------------------------------

    def of(self, service: str) -> list[Component]:
        """The running components of a compose service."""
        return [c for c in self.components.values() if c.service == service]

    def worker_ready(self, component: Component) -> bool:
        return re.search(rf"{re.escape(component.name)}@\S+ ready", tail(component.log_path, 400)) is not None

    def live_jobs(self, job_type: str) -> dict[int, str]:
        """Running jobs of a type that heartbeat within 15 s: id -> hostname."""
        rows = self.sql(
            "SELECT id, hostname FROM job WHERE job_type = %s AND state = 'running' "
            "AND latest_heartbeat > now() - interval '15 seconds'",
            job_type,
        )
        return {int(r[0]): str(r[1]) for r in rows}

    def kill9(self, name: str) -> Component:
        """``kill -9`` a component (its whole process group); it stays down until :meth:`restart`."""
        component = self.components[name]
        pid = component.proc.pid if component.proc else None
        component.kill9()
        self.down.add(name)
        self.note(f"kill -9 {name} (pid {pid}): exit {component.proc.returncode if component.proc else '?'}")
        return component

    def graceful_stop(self, name: str) -> str:
        """Stop a component as an orchestrator would (SIGTERM, SIGKILL if it lingers); it stays down
        until :meth:`restart`."""
        self.note(f"SIGTERM to {name}")
        outcome = self.components[name].stop(grace=30, group_sigterm=False)
        self.down.add(name)
        self.note(f"{name} stopped: {outcome}")
        return outcome

    def restart(self, name: str) -> Component:
        """Start a killed component again, same name, hostname and environment (a container restart)."""
        component = self.components[name]
        if component.alive:
            self.fail(f"{name} is still running")
        component.start()
        self.down.discard(name)
        self.note(f"{name} restarted (pid {component.proc.pid if component.proc else '?'})")
        if component.service == "airflow-worker":
            self.wait_for(lambda: self.worker_ready(component), 120, f"{name} to be ready again")
        return component

    def components_down(self) -> list[str]:
        return [c.name for c in self.components.values() if not c.alive]

    def shutdown(self) -> None:
        t0 = time.monotonic()
        from concurrent.futures import ThreadPoolExecutor

        airflow = list(reversed(self.components.values()))
        with ThreadPoolExecutor(max(1, len(airflow))) as pool:  # all at once, as `compose down`
            outcomes = [
                f"{c.name} {o}"
                for c, o in zip(airflow, pool.map(lambda c: c.stop(grace=15), airflow), strict=True)
            ]
        if self.emulator is not None:  # last: stops the tasks' teardowns may still send
            outcomes.append(f"{self.emulator.name} {self.emulator.stop(grace=15)}")
        self._sweep()
        for cleanup in (self.drop_database, self._redis_flush):
            try:
                cleanup()
            except Exception as exc:  # pragma: no cover - reported, not fatal to the teardown
                print(f"cleanup {cleanup.__name__} failed: {exc}", file=sys.stderr)
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

    # -- sessions, as the emulator saw them ------------------------------------------------------

    def session_counts(self) -> dict[str, int]:
        """Sessions created, stopped (stop requested), still active (leaked if the runs ended),
        and the 429 answers, since the last reset of the emulator."""
        assert self.admin is not None
        state = self.admin.state()
        sessions = state["sessions"]
        return {
            "created": len(sessions),
            "stopped": sum(1 for s in sessions if s["stop_requested"]),
            "active": int(state["active"]),
            "throttled": int(state["counts"].get("throttled", 0)),
        }

    def triggerer_hostnames(self) -> dict[int, str]:
        """Every triggerer job there has been: id -> hostname (a restarted triggerer is a new job)."""
        rows = self.sql("SELECT id, hostname FROM job WHERE job_type = 'TriggererJob'")
        return {int(r[0]): str(r[1]) for r in rows}

    def trigger_holders(self, dag_id: str) -> dict[tuple[str, str, int], str]:
        """Deferred task instances of a DAG -> hostname of the triggerer holding their trigger now."""
        rows = self.sql(
            "SELECT ti.run_id, ti.task_id, ti.map_index, j.hostname FROM task_instance ti "
            "JOIN trigger t ON t.id = ti.trigger_id JOIN job j ON j.id = t.triggerer_id "
            "WHERE ti.dag_id = %s",
            dag_id,
        )
        return {(str(r[0]), str(r[1]), int(r[2])): str(r[3]) for r in rows}

    def trigger_runs(
        self, dag_id: str, run_ids: list[str], task_id: str = "wait_ready"
    ) -> dict[str, list[str]]:
        """Each wait (``run_id[map_index]``) -> hostnames of the triggerers that ran its trigger, in
        the order they ran it (from the trigger log files, ``...log.trigger.<job id>.log``)."""
        hosts = self.triggerer_hostnames()
        found: dict[str, list[tuple[str, int]]] = {}
        for run_id in run_ids:
            for name, text in self.task_logs(run_id, task_id, dag_id).items():
                m = re.search(r"(?:map_index=(-?\d+)/)?attempt=\d+\.log\.trigger\.(\d+)\.log$", name)
                if m:
                    # Job ids say nothing of the order (a triggerer started first may take over
                    # later): the first line's time does.
                    first = re.search(r'"timestamp":\s*"([^"]+)"', text)
                    key = f"{run_id}[{m.group(1) or -1}]"
                    found.setdefault(key, []).append((first.group(1) if first else "", int(m.group(2))))
        return {key: [hosts.get(j, f"job {j}") for _, j in sorted(jobs)] for key, jobs in found.items()}

    # -- talking to it ---------------------------------------------------------------------------

    def note(self, event: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {event}")

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        resp = self.http.request(method, f"{self.api_url}{path}", **kwargs)
        if resp.status_code >= 400:
            self.fail(f"{method} {path} answered {resp.status_code}: {resp.text[:2000]}")
        return resp

    def trigger(self, conf: dict[str, Any], dag_id: str = DAG_ID) -> str:
        """Trigger a run over the REST API, as a user would (unpausing the DAG first)."""
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        body = {"logical_date": None, "conf": conf, "note": "tests/deployment"}
        run_id = str(self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body).json()["dag_run_id"])
        self.note(f"triggered {dag_id} {run_id} with {conf}")
        return run_id

    def run_state(self, run_id: str, dag_id: str = DAG_ID) -> str:
        return str(self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"])

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict[str, Any]]:
        """Every task instance of a run (each map index of a mapped task), as the REST API has them."""
        body = self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000}
        ).json()
        return list(body["task_instances"])

    def ti_states(self, run_id: str, dag_id: str = DAG_ID) -> dict[str, str | None]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(run_id, dag_id)}

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
        budget_limited = timeout > self.left()
        timeout = min(timeout, self.left())
        deadline = time.monotonic() + timeout
        while True:
            for component in self.components.values():
                if not component.alive and component.name not in self.down:
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

    def wait_run(self, run_id: str, timeout: float, dag_id: str = DAG_ID) -> str:
        state = self.wait_for(
            lambda: (s := self.run_state(run_id, dag_id)) in TERMINAL_RUN_STATES and s,
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

    def task_logs(self, run_id: str, task_id: str, dag_id: str = DAG_ID) -> dict[str, str]:
        """Every log file of a task of a run (the task's own and the triggerers'), by path under
        the task's folder (``map_index=N/attempt=1.log...`` for a mapped task)."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return {
            str(p.relative_to(folder)) if "map_index=" in str(p) else p.name: p.read_text(errors="replace")
            for p in sorted(folder.rglob("*.log"))
        }

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
        for component in [*self.components.values(), self.emulator]:
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
