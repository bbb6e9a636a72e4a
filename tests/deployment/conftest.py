"""The real Airflow deployment, started once for every test of this folder that asks for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Admin
from tests.deployment.airflow_deployment import (
    RESULTS,
    STARTUP_DELAY,
    TABLE_FILE,
    TEST_BUDGET,
    Deployment,
    _postgres_available,
    results_table,
)


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    why = _postgres_available()
    if why:
        pytest.skip(why)
    dep = Deployment(tmp_path_factory.mktemp("airflow-home"))
    try:
        dep.start()
        yield dep
    finally:
        dep.shutdown()


@pytest.fixture
def admin(deployment: Deployment) -> Admin:
    """The emulator's admin API, with every session and counter forgotten."""
    assert deployment.admin is not None
    deployment.admin.reset()
    deployment.admin.config(startup_delay=STARTUP_DELAY)
    deployment.set_budget(TEST_BUDGET)
    return deployment.admin


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The distributed scenarios' table, at the end of the run (also in benchmarks/DEPLOYMENT.md)."""
    if RESULTS:
        terminalreporter.write_sep("=", f"deployment scenarios (written to {TABLE_FILE.name})")
        terminalreporter.write(results_table(RESULTS))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under xdist, hand the table to the controller, which prints it (tests/conftest.py)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and RESULTS:
        workeroutput["arr_deployment_table"] = results_table(RESULTS)
