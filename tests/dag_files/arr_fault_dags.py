"""The smallest DAGs that show each case of the fault matrix (tests/reliability/).

Every DAG brackets its work between a create and a teardown stop, like the example DAG. The
``checkpoint`` and ``render`` tasks call :data:`ACTIONS` (set by the test, in the same process:
dag.test() runs tasks in-process) so that a test can act at a precise point of a run: raise in
the workload, expire the tokens, move the emulated clock, restart the emulator.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_arr.operators.session import ArrCreateSessionOperator, ArrStopSessionOperator
from airflow_provider_arr.sensors.session import ArrSessionReadySensor

SESSION_ID = "{{ ti.xcom_pull(task_ids='create', key='session_id') }}"
START = datetime(2025, 1, 1)
LEASE = "0:30:00"
#: What the test wants done at a point of the run: ``{"after_create" | "render": fn(session_id)}``.
ACTIONS: dict[str, Callable[[str], None]] = {}


def _act(point: str, session_id: str) -> None:
    action = ACTIONS.get(point)
    if action is not None:
        action(session_id)


def _dag(dag_id: str, retries: int = 0) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        default_args={"retries": retries, "retry_delay": timedelta(0)},
    )


@task
def checkpoint(session_id: str) -> None:
    """A point between create and wait where the test may act (restart the emulator...)."""
    _act("after_create", session_id)


@task
def render(session_id: str, hostname: Any) -> dict[str, Any]:
    """The workload: one hook for the whole step, like a real client holding its token.

    It reads the session, lets the test act (the workload "runs"), and checks the session is
    still ready afterwards, as the example DAG's render step does.
    """
    from airflow_provider_arr.exceptions import ArrSessionFailedError
    from airflow_provider_arr.hooks.arr import ArrHook

    hook = ArrHook()
    hook.get_session(session_id)
    _act("render", session_id)
    session = hook.get_session(session_id)
    if not session.is_ready:
        raise ArrSessionFailedError(
            f"session {session_id} is {session.status.value} after rendering: {session.message or ''}",
            session_id=session_id,
            status=session.status.value,
        )
    return {"session_id": session_id, "hostname": hostname}


def _workload(dag_id: str, *, retries: int = 0) -> DAG:
    """create >> checkpoint >> wait >> render >> stop (teardown of create)."""
    dag = _dag(dag_id, retries)
    with dag:
        create = ArrCreateSessionOperator(task_id="create", max_lease_time=LEASE)
        wait = ArrSessionReadySensor(
            task_id="wait", session_id=SESSION_ID, poll_interval=5, timeout=timedelta(minutes=2)
        )
        stop = ArrStopSessionOperator(task_id="stop", session_id=SESSION_ID)
        create >> checkpoint(SESSION_ID) >> wait >> render(SESSION_ID, wait.output) >> stop
        stop.as_teardown(setups=create)
    return dag


#: The workload (scenarios 1, 4, 10, 11, 12).
arr_fault_workload = _workload("arr_fault_workload")
#: The same with one task retry (scenario 11: a retry after a lost create answer).
arr_fault_workload_retry = _workload("arr_fault_workload_retry", retries=1)

#: Scenario 2: a deferred sensor whose deadline passes while the session is still starting.
arr_fault_sensor_timeout = _dag("arr_fault_sensor_timeout")
with arr_fault_sensor_timeout:
    _create = ArrCreateSessionOperator(task_id="create", max_lease_time=LEASE)
    _wait = ArrSessionReadySensor(
        task_id="wait", session_id=SESSION_ID, poll_interval=5, timeout=1, deferrable=True
    )
    _stop = ArrStopSessionOperator(task_id="stop", session_id=SESSION_ID)
    _create >> _wait >> _stop
    _stop.as_teardown(setups=_create)

#: Scenario 5: a create that waits for ready itself (blocking), killed while it waits.
arr_fault_create_kill = _dag("arr_fault_create_kill")
with arr_fault_create_kill:
    _create = ArrCreateSessionOperator(
        task_id="create",
        max_lease_time=LEASE,
        wait_for_ready=True,
        deferrable=False,
        poll_interval=5,
        ready_timeout=timedelta(minutes=2),
    )
    _stop = ArrStopSessionOperator(task_id="stop", session_id=SESSION_ID)
    _create >> _stop
    _stop.as_teardown(setups=_create)
