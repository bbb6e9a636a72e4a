"""The lease guard as a task, beside workloads that other operators run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_arr.exceptions import ArrError
from airflow_provider_arr.lease import DEFAULT_MARGIN, DEFAULT_STEP, MIN_READ_INTERVAL, LeasePolicy
from airflow_provider_arr.models import format_timespan, is_template, validate_session_id

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_arr.hooks.arr import ArrHook


class ArrLeaseGuardOperator(BaseOperator):
    """Keep a session alive while other tasks use it: extend its lease in steps, in the triggerer.

    Put it beside the workload (``wait_ready >> [workload, guard]``) with the stop as the DAG's
    teardown: the guard reads the session once per step, sets the lease to ``elapsed + step`` a
    ``margin`` before it would run out, never past ``cap``, and ends (successfully) as soon as the
    session is stopped by the teardown, or has ended. Should the workload outlive the cap, the
    guard says so in the log (the session will expire at the cap) and ends too.

    For a Python workload in its own task, prefer the context manager
    :class:`~airflow_provider_arr.guard.LeaseGuard`: it stops extending the moment the block
    ends, and a DAG run with ``dag.test()`` (which runs tasks one by one, and a deferred trigger
    to its end) does not wait on it. Under ``dag.test()`` / ``airflow dags test`` this operator
    runs until the session stops or the cap is reached.

    :param session_id: the session (templated).
    :param cap: the hard cap: a lease total since start, at most 24 h (timespan or timedelta; templated).
    :param step: how far past the elapsed time each extension sets the lease (templated).
    :param margin: extend this long before the lease would run out (templated).
    :param fail_at_cap: fail the task (instead of warning) when the cap is reached with the
        session still in use.
    :param time_scale: session seconds per wall-clock second (1 for the service; tests only).
    :param min_interval: the fewest seconds between two reads of the session (at least 5).
    """

    template_fields: Sequence[str] = ("session_id", "cap", "step", "margin", "arr_conn_id")
    ui_color = "#e3f0d8"

    def __init__(
        self,
        *,
        session_id: str,
        cap: str | timedelta,
        step: str | timedelta = DEFAULT_STEP,
        margin: str | timedelta = DEFAULT_MARGIN,
        arr_conn_id: str = "arr_default",
        fail_at_cap: bool = False,
        time_scale: float = 1.0,
        min_interval: float = MIN_READ_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not any(is_template(v) for v in (cap, step, margin)):
            LeasePolicy.build(
                cap=cap, step=step, margin=margin, time_scale=time_scale, min_interval=min_interval
            )
        self.session_id, self.arr_conn_id, self.fail_at_cap = session_id, arr_conn_id, fail_at_cap
        self.cap, self.step, self.margin = cap, step, margin
        self.time_scale, self.min_interval = time_scale, min_interval

    @cached_property
    def hook(self) -> ArrHook:
        """The hook, made on first use."""
        from airflow_provider_arr.hooks.arr import ArrHook

        return ArrHook(arr_conn_id=self.arr_conn_id)

    def execute(self, context: Context) -> None:
        """Validate, then defer to :class:`~airflow_provider_arr.triggers.lease.ArrLeaseGuardTrigger`."""
        from airflow_provider_arr.triggers.lease import ArrLeaseGuardTrigger

        session_id = validate_session_id(self.session_id)
        policy = LeasePolicy.build(
            cap=self.cap,
            step=self.step,
            margin=self.margin,
            api_version=self.hook.api_version,
            time_scale=self.time_scale,
            min_interval=self.min_interval,
        )
        self.log.info(
            "ARR lease guard on session %s: steps of %s, %s before the lease runs out, cap %s",
            session_id,
            format_timespan(policy.step),
            format_timespan(policy.margin),
            format_timespan(policy.usable_cap),
        )
        self.defer(
            trigger=ArrLeaseGuardTrigger(
                session_id=session_id,
                cap=policy.cap.total_seconds(),
                step=policy.step.total_seconds(),
                margin=policy.margin.total_seconds(),
                api_version=self.hook.api_version,
                arr_conn_id=self.arr_conn_id,
                time_scale=policy.time_scale,
                min_interval=policy.min_interval,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str | None:
        """The guard ended: return the last lease; fail on an error (or at the cap, if asked)."""
        from airflow_provider_arr.triggers.lease import EVENT_CAP, EVENT_ENDED

        event = event or {}
        status, message = event.get("status"), str(event.get("message"))
        if status == EVENT_ENDED:
            self.log.info("ARR lease guard done after %s extension(s): %s", event.get("extensions"), message)
            return event.get("lease")
        if status == EVENT_CAP:
            self.log.warning("ARR %s", message)
            if self.fail_at_cap:
                raise ArrError(message, session_id=event.get("session_id"))
            return event.get("lease")
        raise ArrError(f"ARR lease guard: {message}", session_id=event.get("session_id"))
