"""
### Stop orphaned Azure Remote Rendering sessions

A session bills until it is stopped or its lease runs out. The teardown of every DAG that
creates one stops it; this sweep is the safety net for the cases a teardown cannot cover (a
worker lost mid-run, a run deleted or marked failed by hand, a session created by code that
crashed).

Every hour it lists the account's active sessions and judges each one:

* **created by this provider** (the create operator records the session's dag, run and task
  in an Airflow Variable `arr_session_owner__<session id>`): an **orphan** when its run is no
  longer running (success, failed, or deleted), or when it is older than `max_age`;
* **foreign** (no record): never touched, unless `include_foreign`, and then by `max_age` only.

It logs a table (session, status, size, age, lease left, owner, verdict) and the hourly cost the
stops end (with a `price_per_hour` Param or connection extra). **`dry_run` is on by default**:
trigger with `dry_run` off, or unpause with the default changed, to stop orphans. The DAG starts
paused. The same sweep is `airflow arr sweep [--apply]` (or `airflow-arr sweep`) on the command line.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

with DAG(
    dag_id="arr_session_sweep",
    description="Stop ARR sessions whose creating DAG run has ended (dry run by default)",
    schedule="@hourly",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
    max_active_runs=1,
    tags=["arr", "cost"],
    doc_md=__doc__,
    default_args={"retries": 0},
    params={
        "dry_run": Param(True, type="boolean", description="Only log what would be stopped."),
        "max_age": Param(
            None,
            type=["null", "string", "number"],
            description="Also stop sessions older than this: a timespan such as '6:00:00', or hours.",
        ),
        "include_foreign": Param(
            False,
            type="boolean",
            description="Also judge sessions this provider did not create (by max_age only).",
        ),
        "price_per_hour": Param(
            None,
            type=["null", "number"],
            minimum=0,
            description="Price of one session-hour, for the cost summary (default: the connection extra).",
        ),
        "pace": Param(
            5,
            type="number",
            minimum=0,
            description="Seconds between two stop calls (the service throttles: 5 to 10 s per account).",
        ),
    },
) as dag:

    @task
    def sweep(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """List, judge and stop the orphans; return the report (also logged as a table)."""
        import logging

        from airflow_provider_arr.hooks.arr import ArrHook
        from airflow_provider_arr.orphans import SweepParams
        from airflow_provider_arr.ownership import TaskSdkStore
        from airflow_provider_arr.sweep import prune_records
        from airflow_provider_arr.sweep import sweep as run_sweep

        log = logging.getLogger("airflow.task")
        params = params or {}
        # [START howto_sweep_task]
        settings = SweepParams.build(
            dry_run=params.get("dry_run", True),
            max_age=params.get("max_age"),
            include_foreign=params.get("include_foreign", False),
            price_per_hour=params.get("price_per_hour"),
        )
        store = TaskSdkStore()
        report = run_sweep(ArrHook(), store, settings, pace=float(params.get("pace", 5)), log=log)
        # [END howto_sweep_task]
        if not settings.dry_run:
            active = [j.session.session_id for j in report.judgements if j.session.status.is_active]
            pruned = prune_records(store, active)
            if pruned:
                log.info("deleted %d owner record(s) of sessions that ended over two days ago", pruned)
        return report.to_dict()

    sweep()
