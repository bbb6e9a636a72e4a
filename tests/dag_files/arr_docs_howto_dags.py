"""The how-to pages' DAG: every operator and each sensor mode, run by tests/docs/test_doc_dags.py.

The pages include the sections between ``# [START name]`` and ``# [END name]`` (docs/hooks.py),
so what the docs show is what the tests run.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_arr.operators.session import (
    ArrCreateSessionOperator,
    ArrExtendSessionOperator,
    ArrStopSessionOperator,
)
from airflow_provider_arr.sensors.session import ArrSessionReadySensor

SESSION_ID = "{{ ti.xcom_pull(task_ids='create', key='session_id') }}"

# The how-to pages' snippets: one DAG that uses every operator and each sensor mode.
with DAG("docs_session_ops", schedule=None, default_args={"retries": 0}) as docs_session_ops:
    # [START howto_create_wait]
    create = ArrCreateSessionOperator(
        task_id="create",
        size="standard",  # or "premium", for models over 20 million polygons
        max_lease_time="0:30:00",  # the total lease, counted from the session's start; at most 24 h
        wait_for_ready=True,  # also wait until it is ready, and push its hostname
        deferrable=True,  # wait in the triggerer, holding no worker slot
        poll_interval=10,  # seconds between reads, at least 5
        ready_timeout=timedelta(minutes=20),  # then fail, and stop the session
    )
    # [END howto_create_wait]

    # [START howto_sensor_modes]
    # Blocking: holds a worker slot while waiting; for waits of a few seconds (a session that
    # is probably ready already).
    wait_poke = ArrSessionReadySensor(
        task_id="wait_poke", session_id=SESSION_ID, mode="poke", poll_interval=5, timeout=600
    )
    # Reschedule: frees the slot between reads, one short task run per read; when no triggerer runs.
    wait_reschedule = ArrSessionReadySensor(
        task_id="wait_reschedule",
        session_id=SESSION_ID,
        mode="reschedule",
        poll_interval=30,
        timeout=timedelta(minutes=30),
    )
    # Deferrable: waits in the triggerer (asyncio, no worker slot); the default choice.
    wait_deferrable = ArrSessionReadySensor(
        task_id="wait_deferrable",
        session_id=SESSION_ID,
        deferrable=True,
        poll_interval=10,
        timeout=timedelta(minutes=30),
    )
    # [END howto_sensor_modes]

    # [START howto_extend]
    # Add 15 minutes to the current total (read first), or set the total to one hour.
    extend_by = ArrExtendSessionOperator(task_id="extend_by", session_id=SESSION_ID, extend_by="0:15:00")
    extend_to = ArrExtendSessionOperator(task_id="extend_to", session_id=SESSION_ID, max_lease_time="1:00:00")
    # [END howto_extend]

    # [START howto_stop]
    stop = ArrStopSessionOperator(task_id="stop", session_id=SESSION_ID)
    stop.as_teardown(setups=create)  # runs whatever fails between create and stop
    # [END howto_stop]

    create >> wait_poke >> wait_reschedule >> wait_deferrable >> extend_by >> extend_to >> stop
