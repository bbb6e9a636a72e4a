"""Shared fixtures: a throwaway Airflow home, the emulator on port 0, and a connection to it."""

from __future__ import annotations

import json
import os
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

ACCOUNT_ID = "11111111-2222-3333-4444-555555555555"
# Recognisable, so that tests can prove it never shows up where it must not.
ACCOUNT_KEY = "SECRET-ACCOUNT-KEY-d41d8cd98f00b204e9800998ecf8427e"
API_VERSIONS = ("v1", "2021-01-01")


class Admin:
    """The emulator's admin API, for arranging faults and reading what happened."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/_emulator"
        # No pooled session: an idle keep-alive connection is closed by uvicorn after 5 s, and a
        # call racing that close would fail for reasons unrelated to the test.
        self.http = requests

    def state(self) -> dict[str, Any]:
        return self.http.get(f"{self.url}/state", timeout=10).json()

    def active(self) -> int:
        return int(self.state()["active"])

    def counts(self) -> dict[str, int]:
        return self.state()["counts"]

    def config(self, **knobs: Any) -> None:
        self.http.post(f"{self.url}/config", json=knobs, timeout=10).raise_for_status()

    def fault(self, **rule: Any) -> None:
        self.http.post(f"{self.url}/faults", json=rule, timeout=10).raise_for_status()

    def clear_faults(self) -> None:
        self.http.delete(f"{self.url}/faults", timeout=10).raise_for_status()

    def force(self, session_id: str, status: str, message: str | None = None) -> None:
        self.http.post(
            f"{self.url}/sessions/{session_id}/status",
            json={"status": status, "message": message},
            timeout=10,
        ).raise_for_status()

    def expire_tokens(self) -> None:
        self.http.post(f"{self.url}/tokens/expire", timeout=10).raise_for_status()

    def reset(self) -> None:
        self.http.post(f"{self.url}/reset", timeout=10).raise_for_status()

    def advance(self, seconds: float) -> None:
        """Move the emulated clock ``seconds`` ahead."""
        self.http.post(f"{self.url}/clock/advance", json={"seconds": seconds}, timeout=10).raise_for_status()


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


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., EmulatorServer]]:
    """Start emulators with given knobs (fast clock by default); all are stopped afterwards."""
    servers: list[EmulatorServer] = []

    def start(**knobs: Any) -> EmulatorServer:
        knobs.setdefault("startup_delay", 30)
        knobs.setdefault("stop_delay", 5)
        knobs.setdefault("time_scale", 100)
        server = EmulatorServer(EmulatorConfig(account_id=ACCOUNT_ID, account_key=ACCOUNT_KEY, **knobs))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., EmulatorServer]) -> EmulatorServer:
    """One emulator: sessions start in 30 emulated seconds, 0.3 s of real time."""
    return emulator_factory()


@pytest.fixture
def admin(emulator: EmulatorServer) -> Admin:
    """The admin API of the ``emulator`` fixture."""
    return Admin(emulator.url)


@pytest.fixture(params=API_VERSIONS)
def api_version(request: pytest.FixtureRequest) -> str:
    """Both API dialects, for tests that must hold for each."""
    return str(request.param)


@pytest.fixture
def arr_conn(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer, api_version: str) -> str:
    """``arr_default`` pointing at the emulator (fast retries), by environment variable."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_ARR_DEFAULT",
        connection_json(emulator.url, api_version=api_version, retry_wait_min=0.05, retry_wait_max=1),
    )
    return "arr_default"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata database, for tests that run DAGs."""
    from airflow.utils.db import initdb

    initdb()
    return _HOME / "airflow.db"
