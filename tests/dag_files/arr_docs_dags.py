"""The first DAG of docs/getting-started.md, run by tests/docs/test_doc_dags.py (dag.test() on the emulator).

The pages include the sections between ``# [START name]`` and ``# [END name]`` (docs/hooks.py),
so what the docs show is what the tests run.
"""

from __future__ import annotations

# [START first_dag]
from datetime import timedelta

from airflow.sdk import DAG, task

from airflow_provider_arr.operators.session import ArrCreateSessionOperator, ArrStopSessionOperator
from airflow_provider_arr.sensors.session import ArrSessionReadySensor

SESSION_ID = "{{ ti.xcom_pull(task_ids='create', key='session_id') }}"

with DAG("my_render", schedule=None) as dag:
    create = ArrCreateSessionOperator(task_id="create", size="standard", max_lease_time="1:00:00")
    ready = ArrSessionReadySensor(
        task_id="wait_ready", session_id=SESSION_ID, deferrable=True, timeout=timedelta(minutes=30)
    )

    @task
    def render(hostname: str) -> str:
        print(f"rendering on {hostname}")  # your workload, given the session's hostname
        return hostname

    stop = ArrStopSessionOperator(task_id="stop", session_id=SESSION_ID)
    create >> ready >> render(ready.output) >> stop
    stop.as_teardown(setups=create)  # runs whatever fails in between
# [END first_dag]
