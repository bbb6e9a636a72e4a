"""Shared fixtures: a throwaway Airflow home, the emulator on port 0, and a connection to it."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Airflow reads its configuration at import: point it at a throwaway home before anything imports it.
_HOME = Path(tempfile.mkdtemp(prefix="arr-tests-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
_REPO = Path(__file__).resolve().parent.parent
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_REPO / "dags")
# dag.test() runs DAGs found in bundles: the example DAGs, and the small DAGs the tests need.
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": "example-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(_REPO / "dags")},
        },
        {
            "name": "test-dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(_REPO / "tests" / "dag_files")},
        },
    ]
)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.pop("AIRFLOW_CONN_ARR_DEFAULT", None)

import pytest  # noqa: E402
import requests  # noqa: E402

from airflow_provider_arr.emulator import EmulatorConfig, EmulatorServer  # noqa: E402


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With pytest-xdist (``make test``: ``-n 4``): a worker per test file, and one worker for the
    whole real deployment (tests/deployment starts its processes once, for every scenario).

    Module-scoped fixtures (the fuzzing's emulator) and the fault matrix's in-file order hold.
    (``--dist loadgroup`` would say the same with marks, but xdist 3.8 renames node ids for it
    in a way pytest 9.2 ignores.)
    """
    from xdist.scheduler import LoadFileScheduling

    class FileOrDeployment(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith("tests/deployment/"):
                return "tests/deployment"
            return str(super()._split_scope(nodeid))

    return FileOrDeployment(config, log)


#: The deployment's table of scenarios as the xdist workers that ran them sent it.
_WORKER_TABLES: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist: keep what a finished worker had to print at the end (its deployment table)."""
    table = getattr(node, "workeroutput", {}).get("arr_deployment_table")
    if table:
        _WORKER_TABLES.append(table)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """xdist: the deployment's table, printed by the controller (workers print nothing)."""
    for table in _WORKER_TABLES:
        terminalreporter.write_sep("=", "deployment scenarios (written to DEPLOYMENT.md)")
        terminalreporter.write(table)


ACCOUNT_ID = "11111111-2222-3333-4444-555555555555"
# Recognisable, so that tests can prove it never shows up where it must not.
ACCOUNT_KEY = "SECRET-ACCOUNT-KEY-d41d8cd98f00b204e9800998ecf8427e"
API_VERSIONS = ("v1", "2021-01-01")


class Admin:
    """The emulator's admin API (``/_emulator``), for arranging faults and reading what happened.

    The one admin client of every test directory. The helpers check the status and return the
    JSON answer; :meth:`request` returns the raw answer, for tests of the admin API itself.

    :param url: the emulator's base URL.
    :param token: the admin token to send (``Authorization: Bearer``), if the emulator has one.
    :param ca_bundle: the CA file to trust when the emulator serves https.
    """

    def __init__(self, url: str, *, token: str | None = None, ca_bundle: str | None = None) -> None:
        self.url = url.rstrip("/") + "/_emulator"
        self.token = token
        self.verify: str | bool = ca_bundle or True

    @classmethod
    def of(cls, server: EmulatorServer) -> Admin:
        """The admin API of an in-process emulator (its admin token and CA included)."""
        return cls(server.url, token=server.config.admin_token, ca_bundle=server.ca_bundle)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """``method`` on ``/_emulator{path}``, with the admin token if there is one."""
        headers = dict(kwargs.pop("headers", None) or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        # No pooled session: every call on a fresh connection, so that none races a server restart.
        return requests.request(
            method, f"{self.url}{path}", headers=headers, verify=self.verify, timeout=10, **kwargs
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.request(method, path, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def state(self) -> dict[str, Any]:
        return dict(self._json("GET", "/state"))

    def active(self) -> int:
        return int(self.state()["active"])

    def counts(self) -> dict[str, int]:
        return dict(self.state()["counts"])

    def config(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at runtime (none: just read them); returns every knob."""
        if not knobs:
            return dict(self._json("GET", "/config"))
        return dict(self._json("POST", "/config", json=knobs))

    def fault(self, **rule: Any) -> dict[str, Any]:
        """Add a fault rule; returns it as the emulator stored it (with its id)."""
        return dict(self._json("POST", "/faults", json=rule))

    def clear_faults(self) -> int:
        return int(self._json("DELETE", "/faults")["removed"])

    def force(self, session_id: str, status: str, message: str | None = None) -> dict[str, Any]:
        return dict(
            self._json("POST", f"/sessions/{session_id}/status", json={"status": status, "message": message})
        )

    def expire_tokens(self) -> int:
        return int(self._json("POST", "/tokens/expire")["expired"])

    def reset(self) -> None:
        self._json("POST", "/reset")

    def advance(self, seconds: float) -> None:
        """Move the emulated clock ``seconds`` ahead."""
        self._json("POST", "/clock/advance", json={"seconds": seconds})


def connection_json(url: str, *, api_version: str = "v1", **extra: Any) -> str:
    """The connection URI-less JSON form that AIRFLOW_CONN_* accepts, pointing at the emulator."""
    return json.dumps(
        {
            "conn_type": "azure_remote_rendering",
            "login": ACCOUNT_ID,
            "password": ACCOUNT_KEY,
            "host": url,
            "extra": {"sts_endpoint": url, "api_version": api_version, **extra},
        }
    )


#: The knobs every emulator of ``emulator_factory`` starts with, unless a test gives others:
#: sessions start in 30 emulated seconds (0.3 s of real time) and stop in 5 (50 ms).
EMULATOR_DEFAULTS: dict[str, Any] = {"startup_delay": 30.0, "stop_delay": 5.0, "time_scale": 100.0}


@pytest.fixture(autouse=True)
def fresh_pacers() -> Iterator[None]:
    """Each test starts with no pacing learnt by an earlier one: the sync pacers live as long as
    the process and are keyed by endpoint, and an emulator on port 0 can get a port back."""
    from airflow_provider_arr.client import pacing

    pacing._sync_pacers.clear()
    yield
    pacing._sync_pacers.clear()


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., EmulatorServer]]:
    """Start in-process emulators on port 0; all are stopped afterwards.

    ``factory(tls=False, host="127.0.0.1", **knobs)``: the knobs of :class:`EmulatorConfig` over
    :data:`EMULATOR_DEFAULTS`, for the test account (:data:`ACCOUNT_ID`, :data:`ACCOUNT_KEY`).
    """
    servers: list[EmulatorServer] = []

    def start(*, tls: bool = False, host: str = "127.0.0.1", **knobs: Any) -> EmulatorServer:
        knobs = {"account_id": ACCOUNT_ID, "account_key": ACCOUNT_KEY, **EMULATOR_DEFAULTS, **knobs}
        server = EmulatorServer(EmulatorConfig(**knobs), host=host, tls=tls)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., EmulatorServer]) -> EmulatorServer:
    """One emulator with the default knobs."""
    return emulator_factory()


@pytest.fixture
def admin(emulator: EmulatorServer) -> Admin:
    """The admin API of the ``emulator`` fixture."""
    return Admin.of(emulator)


@pytest.fixture
def example_dag() -> Any:
    """A fresh copy of the example DAG (``dags/arr_render_session.py``): dag.test() renders
    templates into the task objects in place, so a DAG object reused across runs would keep the
    previous run's params."""
    sys.path.insert(0, str(_REPO / "dags"))
    try:
        sys.modules.pop("arr_render_session", None)
        import arr_render_session
    finally:
        sys.path.remove(str(_REPO / "dags"))
    return arr_render_session.dag


@pytest.fixture(params=API_VERSIONS)
def api_version(request: pytest.FixtureRequest) -> str:
    """Both API dialects, for tests that must hold for each."""
    return str(request.param)


@pytest.fixture
def arr_conn(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer, api_version: str) -> str:
    """``arr_default`` pointing at the emulator (fast retries), by environment variable.

    The emulator is not throttled here and the connection's pacer is opened wide, so that tests
    of other behaviour can call as often as they need; the rate limit has tests of its own, and
    the DAG runs go through the default path (documented rate, throttled emulator).
    """
    monkeypatch.setenv(
        "AIRFLOW_CONN_ARR_DEFAULT",
        connection_json(
            emulator.url,
            api_version=api_version,
            retry_wait_min=0.05,
            retry_wait_max=1,
            rate_limit=100,
            rate_burst=100,
            throttle_timeout=10,
            stop_timeout=10,
        ),
    )
    return "arr_default"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata database, for tests that run DAGs."""
    from airflow.utils.db import initdb

    initdb()
    return _HOME / "airflow.db"
