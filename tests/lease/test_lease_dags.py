"""DAGs with a lease guard, run with dag.test() against the emulator, in both dialects."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_arr.models import parse_timespan
from tests.conftest import Admin
from tests.dags.test_dag_runs import run

DAGS = Path(__file__).resolve().parents[2] / "dags"
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db", "arr_conn")]


@pytest.fixture
def example_dag() -> Any:
    sys.path.insert(0, str(DAGS))
    try:
        sys.modules.pop("arr_render_session", None)
        import arr_render_session
    finally:
        sys.path.remove(str(DAGS))
    return arr_render_session.dag


def test_example_dag_renders_under_the_guard(example_dag: Any, admin: Admin) -> None:
    state, tasks = run(example_dag, poll_interval=5, render_seconds=1)
    assert state == "success", tasks
    assert admin.active() == 0
    assert admin.counts()["update"] == 0  # an hour's lease left: nothing to extend


def test_example_dag_render_failure_still_stops_the_session(example_dag: Any, admin: Admin) -> None:
    state, tasks = run(example_dag, poll_interval=5, simulate_render_failure=True)
    assert state == "failed"
    assert tasks["render"] == "failed" and tasks["stop"] == "success"
    (session,) = admin.state()["sessions"]
    assert session["stop_requested"]
    assert admin.active() == 0


def test_operator_shape(admin: Admin) -> None:
    from tests.dag_files.arr_lease_dags import CAP, arr_test_lease_guard_operator

    state, tasks = run(arr_test_lease_guard_operator)
    assert state == "success", tasks
    assert tasks["lease_guard"] == "success" and tasks["stop"] == "success"
    (session,) = admin.state()["sessions"]
    assert session["lease_seconds"] <= parse_timespan(CAP).total_seconds()
    assert admin.active() == 0


def test_operator_shape_render_fails(admin: Admin) -> None:
    from tests.dag_files.arr_lease_dags import CAP, arr_test_lease_guard_render_fails

    state, tasks = run(arr_test_lease_guard_render_fails)
    assert state == "failed"
    assert tasks["render"] == "failed" and tasks["stop"] == "success"
    (session,) = admin.state()["sessions"]
    assert session["lease_seconds"] <= parse_timespan(CAP).total_seconds()
    assert admin.active() == 0
