"""
### Render for longer than a lease you would want to set up front: the lease guard

`create >> wait_ready >> [render, lease_guard]; render >> stop`

* **create** leases a session with a *short* lease (the `max_lease_time` param): should anything
  go wrong, the session ends soon by itself.
* **wait_ready** waits in the triggerer until the session is ready.
* **render** is a placeholder for your workload (any operator: a BashOperator, a KubernetesPodOperator...).
* **lease_guard** (`ArrLeaseGuardOperator`, deferrable) sits in a triggerer beside the render and
  extends the lease in steps, a `guard_margin` before it would run out, to the session's elapsed
  time plus `guard_step`, and never past `guard_cap` (a lease total since the session started).
  It ends as soon as the session is stopped. If the triggerer running it dies, another triggerer
  takes it over (the margin must outlast that takeover: a few triggerer heartbeats).
* **stop** is the *teardown* of create: it stops the session after the render, whatever happened.

`guard_settings` turns the params into the guard's arguments, so that each run can set them from
the trigger form. `time_scale` is 1 for the service (session seconds per wall-clock second); only a
fast-clocked emulator needs another value. The connection is `arr_default` (see the README).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_arr.operators.lease import ArrLeaseGuardOperator
from airflow_provider_arr.operators.session import ArrCreateSessionOperator, ArrStopSessionOperator
from airflow_provider_arr.sensors.session import ArrSessionReadySensor

SESSION_ID = "{{ ti.xcom_pull(task_ids='create') }}"
TIMESPAN = r"^(\d+\.)?\d{1,2}:\d{1,2}:\d{1,2}$"

with DAG(
    dag_id="arr_render_guarded",
    description="A render longer than the session's initial lease, kept alive by the lease guard",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
    tags=["arr", "rendering", "example", "lease"],
    doc_md=__doc__,
    default_args={"retries": 0},
    params={
        "max_lease_time": Param("0:30:00", type="string", pattern=TIMESPAN, description="Initial lease."),
        "render_seconds": Param(
            0, type="number", minimum=0, description="How long the placeholder render task works."
        ),
        "guard_step": Param("0:15:00", type="string", pattern=TIMESPAN, description="Extension step."),
        "guard_margin": Param(
            "0:03:00", type="string", pattern=TIMESPAN, description="Extend this long before the lease ends."
        ),
        "guard_cap": Param(
            "4:00:00", type="string", pattern=TIMESPAN, description="Never lease past this total."
        ),
        "time_scale": Param(
            1, type="number", exclusiveMinimum=0, description="Session seconds per second (1: the service)."
        ),
        "poll_interval": Param(10, type="number", minimum=5, description="Seconds between status reads."),
    },
) as dag:
    create = ArrCreateSessionOperator(task_id="create", max_lease_time="{{ params.max_lease_time }}")
    wait_ready = ArrSessionReadySensor(
        task_id="wait_ready",
        session_id=SESSION_ID,
        poll_interval="{{ params.poll_interval }}",
        deferrable=True,
        timeout=timedelta(minutes=30),
    )

    @task
    def guard_settings(session_id: str, params: dict | None = None) -> list[dict[str, Any]]:
        """The guard's arguments from the run's params (one guard: one session)."""
        params = params or {}
        return [
            {
                "session_id": session_id,
                "step": params["guard_step"],
                "margin": params["guard_margin"],
                "cap": params["guard_cap"],
                "time_scale": float(params["time_scale"]),
            }
        ]

    lease_guard = ArrLeaseGuardOperator.partial(task_id="lease_guard").expand_kwargs(
        guard_settings(create.output)  # type: ignore[arg-type]  # an XComArg, resolved at run time
    )

    @task
    def render(hostname: str, params: dict | None = None) -> str:
        """PLACEHOLDER for your rendering workload: replace the body with your client code."""
        import logging
        import time

        logging.getLogger("airflow.task").info("render placeholder: rendering on %s", hostname)
        time.sleep(float((params or {}).get("render_seconds") or 0))
        return hostname

    rendered = render(wait_ready.output)  # type: ignore[arg-type]
    stop = ArrStopSessionOperator(
        task_id="stop", session_id=SESSION_ID, retries=5, retry_delay=timedelta(seconds=30)
    )
    create >> wait_ready >> lease_guard
    rendered >> stop
    stop.as_teardown(setups=create)
