"""Small DAGs that the tests run with dag.test() against the emulator (connection arr_default).

Each DAG brackets its work between a create and a teardown stop, like the example DAG; a
``capture`` task records what the operators pushed, for the tests to read.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_arr.operators.session import (
    ArrCreateSessionOperator,
    ArrExtendSessionOperator,
    ArrStopSessionOperator,
)
from airflow_provider_arr.sensors.session import ArrSessionReadySensor

SESSION_ID = "{{ ti.xcom_pull(task_ids='create', key='session_id') }}"
START = datetime(2025, 1, 1)
#: What the capture tasks saw, for the tests (dag.test() runs tasks in the test's process).
CAPTURED: list[dict[str, Any]] = []


@task
def capture(**context: Any) -> None:
    ti = context["ti"]
    CAPTURED.append(
        {
            "create": ti.xcom_pull(task_ids="create"),
            "session_id": ti.xcom_pull(task_ids="create", key="session_id"),
            "create_hostname": ti.xcom_pull(task_ids="create", key="hostname"),
            "wait": ti.xcom_pull(task_ids="wait"),
            "wait_hostname": ti.xcom_pull(task_ids="wait", key="hostname"),
            "extend_by": ti.xcom_pull(task_ids="extend_by"),
            "extend_to": ti.xcom_pull(task_ids="extend_to"),
        }
    )


def _bracket(
    dag_id: str, **create_kwargs: Any
) -> tuple[DAG, ArrCreateSessionOperator, ArrStopSessionOperator]:
    dag = DAG(dag_id, schedule=None, start_date=START, catchup=False, default_args={"retries": 0})
    with dag:
        create = ArrCreateSessionOperator(task_id="create", max_lease_time="0:30:00", **create_kwargs)
        stop = ArrStopSessionOperator(task_id="stop", session_id=SESSION_ID)
        stop.as_teardown(setups=create)
    return dag, create, stop


# Create, then a sensor in each mode, then extend twice (by an increment, then to a total).
SENSOR_DAGS: dict[str, DAG] = {}
for _mode in ("poke", "reschedule", "deferrable"):
    _dag, _create, _stop = _bracket(f"arr_test_sensor_{_mode}")
    with _dag:
        _wait = ArrSessionReadySensor(
            task_id="wait",
            session_id=SESSION_ID,
            poll_interval=5,
            timeout=timedelta(minutes=2),
            mode="reschedule" if _mode == "reschedule" else "poke",
            deferrable=_mode == "deferrable",
        )
        _by = ArrExtendSessionOperator(task_id="extend_by", session_id=SESSION_ID, extend_by="0:15:00")
        _to = ArrExtendSessionOperator(task_id="extend_to", session_id=SESSION_ID, max_lease_time="1:00:00")
        _create >> _wait >> _by >> _to >> capture() >> _stop
    SENSOR_DAGS[_mode] = _dag
    globals()[_dag.dag_id] = _dag

# The create operator waiting by itself, blocking or deferred.
CREATE_WAIT_DAGS: dict[str, DAG] = {}
for _deferrable in (False, True):
    _dag, _create, _stop = _bracket(
        f"arr_test_create_wait_{'deferrable' if _deferrable else 'blocking'}",
        wait_for_ready=True,
        deferrable=_deferrable,
        poll_interval=5,
        ready_timeout=timedelta(minutes=2),
    )
    with _dag:
        _create >> capture() >> _stop
    CREATE_WAIT_DAGS["deferrable" if _deferrable else "blocking"] = _dag
    globals()[_dag.dag_id] = _dag

# A workload that fails: the teardown stop must still run.
arr_test_render_fails, _create, _stop = _bracket("arr_test_render_fails")
with arr_test_render_fails:

    @task
    def render(session_id: str) -> None:
        raise RuntimeError(f"the renderer crashed on {session_id}")

    _wait = ArrSessionReadySensor(task_id="wait", session_id=SESSION_ID, poll_interval=5, timeout=120)
    _create >> _wait >> render(SESSION_ID) >> _stop
