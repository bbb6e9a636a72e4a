"""Every file in dags/ parses cleanly, cheaply, and brackets its work with a teardown stop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_arr.operators.session import ArrCreateSessionOperator, ArrStopSessionOperator

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(DAGS.glob("*.py"))


def test_there_are_dag_files() -> None:
    assert DAG_FILES


def test_dagbag_imports_without_errors() -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert "arr_render_session" in bag.dags


def _is(task: object, cls: type) -> bool:
    """An instance of ``cls``, or a task mapped (``.partial().expand()``) from it."""
    mapped_from = getattr(task, "operator_class", None)
    return isinstance(task, cls) or (isinstance(mapped_from, type) and issubclass(mapped_from, cls))


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_each_create_has_a_teardown_stop(path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path))
    for dag in bag.dags.values():
        creates = [t for t in dag.tasks if _is(t, ArrCreateSessionOperator)]
        stops = [t for t in dag.tasks if _is(t, ArrStopSessionOperator)]
        if dag.dag_id != "arr_session_sweep":  # the sweep stops sessions; it creates none
            assert creates, f"{dag.dag_id} has no create"
        for create in creates:
            teardowns = [s for s in stops if s.is_teardown and create.task_id in s.upstream_task_ids]
            assert teardowns, f"{dag.dag_id}: {create.task_id} has no teardown stop"
        assert dag.tags and dag.doc_md and dag.params


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parsing_imports_no_client_code(path: Path) -> None:
    """Parsing must not import the hook, HTTP clients or the emulator: no network, no weight."""
    probe = (
        "import runpy, sys\n"
        f"runpy.run_path({str(path)!r})\n"
        "bad = [m for m in ('airflow_provider_arr.hooks.arr', 'airflow_provider_arr.triggers.session',"
        " 'airflow_provider_arr.emulator', 'requests', 'fastapi') if m in sys.modules]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
