"""A DAG that leaks its session (no teardown: as if the stop never ran), for the sweep's tests."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_arr.operators.session import ArrCreateSessionOperator

with DAG(
    "arr_test_sweep_leaky", schedule=None, start_date=datetime(2025, 1, 1), catchup=False
) as arr_test_sweep_leaky:
    ArrCreateSessionOperator(task_id="create", max_lease_time="2:00:00")

# Three creates of one mapped task, each recording its session under its own key.
with DAG(
    "arr_test_sweep_leaky_mapped", schedule=None, start_date=datetime(2025, 1, 1), catchup=False
) as arr_test_sweep_leaky_mapped:
    ArrCreateSessionOperator.partial(task_id="create", max_lease_time="2:00:00").expand(
        size=["standard", "premium", "standard"]
    )
