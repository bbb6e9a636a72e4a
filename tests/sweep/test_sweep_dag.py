"""The sweep DAG under dag.test(): records written by the real create operator and read back,
with the runs' states, through the Task SDK (Variables, get_dr_count, get_dagrun_state)."""

from __future__ import annotations

import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.ownership import OwnerRecord, record_key
from tests.conftest import Admin
from tests.dags.test_dag_runs import run

DAGS = Path(__file__).resolve().parents[2] / "dags"
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db", "arr_conn")]


@pytest.fixture
def sweep_dag() -> Any:
    sys.path.insert(0, str(DAGS))
    try:
        sys.modules.pop("arr_session_sweep", None)
        import arr_session_sweep
    finally:
        sys.path.remove(str(DAGS))
    return arr_session_sweep.dag


def running_run(dag_id: str, run_id: str) -> None:
    """Arrange a run that is still running (test set-up, straight into Airflow's models)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    now = datetime.now(timezone.utc)
    with create_session() as session:
        session.add(
            DagRun(
                dag_id=dag_id,
                run_id=run_id,
                run_type="manual",
                state=DagRunState.RUNNING,
                run_after=now,
                start_date=now,
            )
        )


def write_record(record: OwnerRecord) -> None:
    from airflow.models.variable import Variable

    Variable.set(record_key(record.session_id), record.to_json())


def test_the_sweep_dag_stops_only_the_orphans(sweep_dag: Any, admin: Admin) -> None:
    from tests.dag_files.arr_sweep_dags import arr_test_sweep_leaky

    # An orphan made by the real create operator: its run ended, its teardown never ran.
    state, _ = run(arr_test_sweep_leaky)
    assert state == "success"
    (leaked,) = [s["id"] for s in admin.state()["sessions"]]
    from airflow.models.variable import Variable

    record = OwnerRecord.from_json(Variable.get(record_key(leaked)))
    assert (record.dag_id, record.task_id) == ("arr_test_sweep_leaky", "create")

    hook = ArrHook()
    live = hook.create_session()
    live_run = f"still-running-{uuid.uuid4()}"
    running_run("arr_test_sweep_leaky", live_run)
    write_record(
        OwnerRecord(session_id=live, dag_id="arr_test_sweep_leaky", run_id=live_run, task_id="create")
    )
    deleted = hook.create_session()
    write_record(
        OwnerRecord(session_id=deleted, dag_id="arr_test_sweep_leaky", run_id="gone", task_id="create")
    )
    foreign = hook.create_session()

    state, tasks = run(sweep_dag, dry_run=True, pace=0)
    assert state == "success", tasks
    assert admin.counts()["stop"] == 0

    state, tasks = run(sweep_dag, dry_run=False, pace=0)
    assert state == "success", tasks
    stopped = {s["id"] for s in admin.state()["sessions"] if s["stop_requested"]}
    assert stopped == {leaked, deleted}
    assert Variable.get(record_key(leaked), default_var=None) is None  # forgotten once stopped
    assert Variable.get(record_key(live), default_var=None) is not None
    for sid in (live, foreign):
        hook.ensure_stopped(sid)
    assert admin.active() == 0


def test_each_mapped_create_leaves_its_own_record(sweep_dag: Any, admin: Admin) -> None:
    from airflow.models.variable import Variable

    from tests.dag_files.arr_sweep_dags import arr_test_sweep_leaky_mapped

    state, _ = run(arr_test_sweep_leaky_mapped)
    assert state == "success"
    ids = [s["id"] for s in admin.state()["sessions"]]
    assert len(ids) == 3
    records = [OwnerRecord.from_json(Variable.get(record_key(sid))) for sid in ids]
    assert sorted(r.map_index for r in records) == [0, 1, 2]
    assert {r.size for r in records} == {"standard", "premium"}
    state, _ = run(sweep_dag, dry_run=False, pace=0)
    assert state == "success"
    assert admin.active() == 0


def test_forget_owner_never_raises_outside_a_task() -> None:
    from airflow_provider_arr.ownership import forget_owner

    forget_owner("no-such-session")  # no Task SDK channel here: logged, not raised
