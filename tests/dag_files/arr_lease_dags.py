"""The lease guard as a task (ArrLeaseGuardOperator) beside a workload run by another operator.

The documented shape for non-Python workloads (a BashOperator here; any operator will do):

    create >> wait >> [render, lease_guard]; render >> stop; stop is the teardown of create

In a deployment the guard extends the lease while ``render`` runs and ends as soon as the
teardown stops the session. ``dag.test()`` / ``airflow dags test`` run tasks one at a time and a
deferred trigger to its end, so there the guard runs until its cap (kept short here). The clock:
the tests' emulator runs x100, so the guard gets ``time_scale=100``; leave it at 1 for the service.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

from airflow_provider_arr.operators.lease import ArrLeaseGuardOperator
from airflow_provider_arr.operators.session import ArrCreateSessionOperator, ArrStopSessionOperator
from airflow_provider_arr.sensors.session import ArrSessionReadySensor

SESSION_ID = "{{ ti.xcom_pull(task_ids='create', key='session_id') }}"
#: The guard's cap in the tests' DAGs (a total since the session started).
CAP = "1:30:00"


def _guarded_dag(dag_id: str, bash_command: str) -> DAG:
    with DAG(
        dag_id, schedule=None, start_date=datetime(2025, 1, 1), catchup=False, default_args={"retries": 0}
    ) as dag:
        # [START howto_lease_guard_operator]
        create = ArrCreateSessionOperator(task_id="create", max_lease_time="1:00:00")
        wait = ArrSessionReadySensor(task_id="wait", session_id=SESSION_ID, poll_interval=5, timeout=120)
        render = BashOperator(task_id="render", bash_command=bash_command)
        guard = ArrLeaseGuardOperator(
            task_id="lease_guard",
            session_id=SESSION_ID,
            step="0:15:00",
            margin="0:03:00",
            cap=CAP,
            time_scale=100,  # the tests' emulator clock; leave it out with the service
        )
        stop = ArrStopSessionOperator(task_id="stop", session_id=SESSION_ID)
        create >> wait >> [render, guard]
        render >> stop
        stop.as_teardown(setups=create)
        # [END howto_lease_guard_operator]
    return dag


arr_test_lease_guard_operator = _guarded_dag("arr_test_lease_guard_operator", "sleep 2")
arr_test_lease_guard_render_fails = _guarded_dag("arr_test_lease_guard_render_fails", "exit 3")
