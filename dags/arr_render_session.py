"""
### Render on an Azure Remote Rendering session, and always stop it

`create >> wait_ready >> render >> stop`

* **create** leases a session (billed from the moment it is ready until it stops or its lease
  runs out) and pushes its `session_id`.
* **wait_ready** waits in the triggerer (deferrable: no worker slot is held during the minutes a
  session takes to start) and fails at once if the session goes to `error` or `expired`.
* **render** is a placeholder for your workload: it receives the session's hostname.
* **stop** is the *teardown* of create: it runs whatever fails in between (render raising, the
  sensor timing out, the session failing to start), so no session is left billing. Stopping is
  idempotent: an already ended or unknown session counts as stopped.

Trigger it with the form to pick the size, lease, models and poll interval. The connection is
`arr_default` (see the README; the bundled emulator works as a stand-in for the service).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_arr.operators.session import ArrCreateSessionOperator, ArrStopSessionOperator
from airflow_provider_arr.sensors.session import ArrSessionReadySensor

# Nightly at 02:00 UTC; set to None to run only when triggered. The DAG starts paused, so nothing
# is leased until someone unpauses it.
SCHEDULE: str | None = "0 2 * * *"
SESSION_ID = "{{ ti.xcom_pull(task_ids='create', key='session_id') }}"
# The lease field of the trigger form: it accepts what the service accepts, and only that.
LEASE_FORM: dict[str, Any] = {
    "type": "string",
    # hh:mm:ss from 0:00:01 to 23:59:59, or one day written 1.00:00:00 (the 24 h maximum).
    "pattern": r"^(1\.00?:00?:00?|(0\.)?([01]?\d|2[0-3]):[0-5]?\d:[0-5]?\d)$",
    "not": {"pattern": r"^(0\.)?0?0:0?0:0?0$"},  # a lease must be positive
    "description": "Lease as hh:mm:ss, counted from the session's start: from 0:00:01 to 23:59:59, "
    "or 1.00:00:00 for the 24 h maximum. The session is stopped after rendering anyway; the lease "
    "caps the bill if all else fails.",
}

with DAG(
    dag_id="arr_render_session",
    description="Lease an ARR session, wait until it is ready, render, and always stop it",
    schedule=SCHEDULE,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
    max_active_runs=1,
    tags=["arr", "rendering", "example"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    default_args={"retries": 0},
    params={
        "size": Param(
            "standard",
            type="string",
            enum=["standard", "premium"],
            description="Server size: standard, or premium for models over 20 million polygons.",
        ),
        "max_lease_time": Param("1:00:00", **LEASE_FORM),
        "models": Param(
            [],
            type="array",
            items={"type": "string"},
            description="Asset container URLs to preload into the session (may be empty).",
        ),
        "poll_interval": Param(
            10,
            type="number",
            minimum=5,
            description="Seconds between status reads while the session starts (the service throttles "
            "clients that call more often than every 5 to 10 s).",
        ),
        "render_seconds": Param(
            0,
            type="number",
            minimum=0,
            description="How long the placeholder render step pretends to work.",
        ),
        "simulate_render_failure": Param(
            False,
            type="boolean",
            description="Make the placeholder render step raise, to see the teardown stop the session.",
        ),
    },
) as dag:
    create = ArrCreateSessionOperator(
        task_id="create",
        size="{{ params.size }}",
        max_lease_time="{{ params.max_lease_time }}",
        models="{{ params.models }}",
    )

    wait_ready = ArrSessionReadySensor(
        task_id="wait_ready",
        session_id=SESSION_ID,
        poll_interval="{{ params.poll_interval }}",
        deferrable=True,
        timeout=timedelta(minutes=30),
    )

    @task
    def render(hostname: str, session_id: str, params: dict | None = None) -> dict:
        """PLACEHOLDER for your rendering workload: replace the body of the ``with`` block.

        It receives the session's hostname (from wait_ready) and id (from create). The work runs
        under a lease guard: while the block runs, the session's lease is extended in steps of
        15 minutes (never past a cap of 6 hours since the session started), so a render longer
        than the lease does not lose its session; when the block ends, extending stops and the
        teardown stops the session. Afterwards it checks the session is still ready, so that a
        session that ended during the work fails the step instead of passing silently.
        """
        import logging
        import time
        from datetime import timedelta

        from airflow_provider_arr.exceptions import ArrSessionFailedError
        from airflow_provider_arr.hooks.arr import ArrHook

        log = logging.getLogger("airflow.task")
        params = params or {}
        # [START howto_lease_guard_context]
        hook = ArrHook()
        with hook.lease_guard(session_id, step=timedelta(minutes=15), cap=timedelta(hours=6), logger=log):
            log.info(
                "render placeholder: would connect to %s and render models %s (session %s)",
                hostname,
                params.get("models"),
                session_id,
            )
            time.sleep(float(params.get("render_seconds") or 0))
            if params.get("simulate_render_failure"):
                raise RuntimeError(
                    f"render failed on purpose (simulate_render_failure), session {session_id}"
                )
        session = hook.get_session(session_id)
        # [END howto_lease_guard_context]
        if not session.is_ready:
            raise ArrSessionFailedError(
                f"session {session_id} is {session.status.value} after rendering: {session.message or ''}",
                session_id=session_id,
                status=session.status.value,
            )
        return {"session_id": session_id, "hostname": hostname, "models": len(params.get("models") or [])}

    rendered = render(hostname=wait_ready.output, session_id=SESSION_ID)  # type: ignore[arg-type]  # XComArg

    # A teardown that cannot reach the service keeps trying (the connection's stop_timeout), and the
    # task retries on top of that: a session nobody stops bills until its lease ends.
    stop = ArrStopSessionOperator(
        task_id="stop", session_id=SESSION_ID, retries=3, retry_delay=timedelta(seconds=30)
    )

    create >> wait_ready >> rendered >> stop
    stop.as_teardown(setups=create)
