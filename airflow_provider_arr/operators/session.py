"""Operators that create, extend and stop Azure Remote Rendering sessions."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_arr._compat import BaseOperator, TaskDeferred, conf
from airflow_provider_arr.arguments import (
    CHECKS,
    CheckedArguments,
    conn_id,
    optional_lease,
    optional_session_id,
)
from airflow_provider_arr.connection_form import DEFAULT_CONN_ID
from airflow_provider_arr.exceptions import ArrError, ArrInputError
from airflow_provider_arr.links import ArrInspectorLink, push_address
from airflow_provider_arr.models import (
    SESSION_ID_MAX_LENGTH,
    check_new_lease,
    format_timespan,
    validate_session_id,
)
from airflow_provider_arr.ownership import record_owner
from airflow_provider_arr.readiness import address_from_event, poll_ready


def log_call_summary(task: Any) -> None:
    """Log what the task's ARR calls cost, if it made any (a hook is made on first use)."""
    hook = task.__dict__.get("hook")
    if hook is not None and "transport" in hook.__dict__:
        task.log.info("ARR summary: %s", hook.transport.stats.summary())


if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_arr.hooks.arr import ArrHook
    from airflow_provider_arr.models import RenderingSession


def session_id_for_task(context: Context, *, suffix: str = "") -> str:
    """A deterministic session id for this task instance (dag, run, task, map index).

    A retried create task, or a create request repeated after a lost answer, computes the same id
    and so finds its own session instead of making a second one (2021-01-01 dialect). The id keeps
    a readable prefix and ends with a hash of the exact identity, so sanitising never collides.
    """
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    map_index = -1 if map_index is None else map_index
    identity = f"{ti.dag_id}\x00{ti.run_id}\x00{ti.task_id}\x00{map_index}\x00{suffix}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    readable = "-".join(str(p) for p in (ti.dag_id, ti.task_id, ti.run_id) if p)
    if map_index >= 0:
        readable += f"-{map_index}"
    if suffix:
        readable += f"-{suffix}"
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", readable).strip("-_")
    readable = readable[: SESSION_ID_MAX_LENGTH - len(digest) - 1]
    return validate_session_id(f"{readable}-{digest}" if readable else digest)


def _will_retry(context: Context, retries: int | None) -> bool:
    """Whether Airflow will run this task again should this try fail."""
    ti = context["ti"]
    max_tries = getattr(ti, "max_tries", None)
    if max_tries is None:
        max_tries = retries or 0
    return bool(max_tries >= (ti.try_number or 1))  # Airflow retries while try_number <= max_tries


class _ArrOperator(CheckedArguments, BaseOperator):
    """What every ARR operator shares: the connection, checked arguments, and a hook made on
    first use (never at DAG parse time)."""

    def __init__(self, *, arr_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arr_conn_id = arr_conn_id

    @cached_property
    def hook(self) -> ArrHook:
        """The hook, made on first use (never at DAG parse time)."""
        from airflow_provider_arr.hooks.arr import ArrHook

        return ArrHook(arr_conn_id=self.arr_conn_id)

    def post_execute(self, context: Any, result: Any = None) -> None:
        """End the task's log with what its ARR calls cost (calls, 429s waited out)."""
        super().post_execute(context, result)
        log_call_summary(self)


class ArrCreateSessionOperator(_ArrOperator):
    """Create a rendering session; return its id, and push it as ``session_id``.

    With ``wait_for_ready`` the operator also waits until the session is ready (in the triggerer
    when deferrable) and pushes its ``hostname``. Whatever fails after the create inside this
    operator, and if the task is killed, the session it created is stopped before the error is
    re-raised, so that no session is left billing.

    With the 2021-01-01 dialect the session id is derived from the task instance unless given:
    a retried task finds the session its earlier try created instead of making a second one.

    **A lost create answer.** Under v1 (create is not idempotent) a create whose answer was lost
    is never repeated: the operator lists the account's sessions before creating and, after such
    a failure, stops the one new session of the same size and lease (almost certainly this
    task's) or names the candidates when there are several. Under 2021-01-01 the idempotent PUT
    is repeated; should it still fail after it may have reached the service, the task's retry
    reattaches to the session, or, on the last try, the operator stops it. See
    :mod:`airflow_provider_arr.hooks.recovery`.

    :param size: ``standard`` or ``premium`` (templated).
    :param max_lease_time: the lease, a timespan such as ``"1:00:00"`` or a timedelta; at most
        24 h (templated).
    :param models: asset container URLs to preload (templated; v1 only).
    :param session_id: the session id to use with 2021-01-01 (templated; default: derived).
    :param wait_for_ready: also wait for ``ready``.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poll_interval: seconds between reads while waiting, at least 5 (templated).
    :param ready_timeout: how long to wait for ``ready`` before failing (and stopping).
    """

    template_fields: Sequence[str] = (
        "size",
        "max_lease_time",
        "models",
        "session_id",
        "arr_conn_id",
        "poll_interval",
    )
    template_fields_renderers = {"models": "json"}
    ui_color = "#cde8f6"
    operator_extra_links = (ArrInspectorLink(),)
    argument_checks = {
        name: CHECKS[name]
        for name in (
            "arr_conn_id",
            "size",
            "max_lease_time",
            "models",
            "poll_interval",
            "ready_timeout",
            "wait_for_ready",
            "deferrable",
        )
    } | {"session_id": optional_session_id}

    def __init__(
        self,
        *,
        size: str = "standard",
        max_lease_time: str | timedelta = "1:00:00",
        models: Sequence[Any] | str = (),
        session_id: str | None = None,
        arr_conn_id: str = DEFAULT_CONN_ID,
        wait_for_ready: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | str = 10.0,
        ready_timeout: timedelta | float = timedelta(hours=1),
        **kwargs: Any,
    ) -> None:
        super().__init__(arr_conn_id=arr_conn_id, **kwargs)
        self.size, self.max_lease_time, self.models = size, max_lease_time, models
        self.session_id, self.wait_for_ready, self.deferrable = session_id, wait_for_ready, deferrable
        self.poll_interval, self.ready_timeout = poll_interval, ready_timeout
        self.check_literal_arguments()
        # The session this task made (or, 2021-01-01, is making): what on_kill stops.
        self._session: str | None = None

    def execute(self, context: Context) -> str:
        """Create the session (or find the one an earlier try made), then optionally wait."""
        from airflow_provider_arr.hooks.recovery import create_session_safely

        args = self.resolved_arguments()
        ti = context["ti"]
        result = create_session_safely(
            self.hook,
            size=args["size"],
            lease=args["max_lease_time"],
            models=args["models"],
            session_id=args["session_id"],
            default_session_id=session_id_for_task(context),
            fresh_session_id=session_id_for_task(context, suffix=f"try{ti.try_number}"),
            will_retry=_will_retry(context, self.retries),
            log=self.log,
            on_session_id=self._remember,
        )
        sid = result.session_id
        # From here on the session exists: whatever fails in this task (even the XCom push that
        # tells the teardown its id) stops it before the error goes on.
        try:
            ti.xcom_push(key="session_id", value=sid)
            # For the orphan sweep; never raises.
            record_owner(context, sid, size=args["size"], lease=args["max_lease_time"])
            if args["wait_for_ready"]:
                if args["deferrable"]:
                    self._defer(sid, args["poll_interval"], args["ready_timeout"])
                ready = self._wait(sid, args["poll_interval"], args["ready_timeout"])
                push_address(ti, ready.hostname, ready.arr_inspector_port)
        except TaskDeferred:
            raise
        except BaseException:
            self._stop_after_failure(sid)
            raise
        return sid

    def _remember(self, session_id: str) -> None:
        self._session = session_id

    def _defer(self, session_id: str, poll_interval: float, ready_timeout: float) -> None:
        from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger

        self.defer(
            trigger=ArrSessionReadyTrigger(
                session_id=session_id,
                arr_conn_id=self.arr_conn_id,
                poll_interval=poll_interval,
                deadline=time.time() + ready_timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=ready_timeout + 60),
        )

    def _wait(self, session_id: str, poll_interval: float, ready_timeout: float) -> RenderingSession:
        deadline = time.monotonic() + ready_timeout
        while True:
            session = poll_ready(self.hook, session_id, self.log)
            if session is not None:
                return session
            if time.monotonic() + poll_interval > deadline:
                raise ArrError(
                    f"session {session_id} was not ready within {ready_timeout:.0f} s",
                    session_id=session_id,
                )
            time.sleep(poll_interval)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger fired: push the hostname, or stop the session and fail."""
        session_id = str((event or {}).get("session_id") or context["ti"].xcom_pull(key="session_id"))
        try:
            hostname, port = address_from_event(event, session_id)
        except BaseException:
            self._stop_after_failure(session_id)
            raise
        push_address(context["ti"], hostname, port)
        return session_id

    def on_kill(self) -> None:
        """The task was killed: stop the session it created (or, 2021-01-01, was creating)."""
        if self._session:
            self._stop_after_failure(self._session)

    def _stop_after_failure(self, session_id: str) -> None:
        self.log.warning("stopping session %s, which this task created, after a failure", session_id)
        try:
            self.hook.ensure_stopped(session_id)
        except Exception:
            self.log.exception("could not stop session %s: stop it by hand, it is billed", session_id)


class ArrExtendSessionOperator(_ArrOperator):
    """Extend a session's lease; return the new total lease as a timespan string.

    The service's lease is a **total since the session started**, not an increment. Give exactly
    one of:

    :param max_lease_time: the new total lease (templated).
    :param extend_by: how much to add to the current lease (templated); the operator reads the
        current ``sessionMaxLeaseTime`` and sets current + ``extend_by``.
    :param session_id: the session (templated).

    A new total under the time already elapsed, or over 24 hours, is refused with a clear error.
    """

    template_fields: Sequence[str] = ("session_id", "max_lease_time", "extend_by", "arr_conn_id")
    ui_color = "#d9ecd0"
    argument_checks = {
        "arr_conn_id": conn_id,
        "session_id": validate_session_id,
        "max_lease_time": optional_lease("max_lease_time"),
        "extend_by": optional_lease("extend_by"),
    }

    def __init__(
        self,
        *,
        session_id: str,
        max_lease_time: str | timedelta | None = None,
        extend_by: str | timedelta | None = None,
        arr_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(arr_conn_id=arr_conn_id, **kwargs)
        if (max_lease_time is None) == (extend_by is None):
            raise ArrInputError(
                "give exactly one of max_lease_time (the new total lease) or extend_by (added to the "
                f"current lease); got max_lease_time={max_lease_time!r}, extend_by={extend_by!r}"
            )
        self.session_id = session_id
        self.max_lease_time = max_lease_time
        self.extend_by = extend_by
        self.check_literal_arguments()

    def execute(self, context: Context) -> str:
        """Set the new total lease and return it (``hh:mm:ss``)."""
        args = self.resolved_arguments()
        session_id = args["session_id"]
        if args["extend_by"] is not None:
            new_total = self.hook.extend_session(session_id, args["extend_by"])
        else:
            new_total = args["max_lease_time"]
            check_new_lease(
                self.hook.get_session(session_id),
                new_total,
                field="max_lease_time",
                value=self.max_lease_time,
            )
            self.hook.update_session(session_id, new_total)
        return format_timespan(new_total)


class ArrStopSessionOperator(_ArrOperator):
    """Stop a session; idempotent, so it is safe as a teardown that always runs.

    A session already stopping, stopped, expired or in error, or unknown to the service (404),
    counts as success and is logged as such; so does an empty id (the create never made one).
    Runs with ``trigger_rule="all_done"`` by default; use ``.as_teardown(setups=create)`` to
    bracket a workload so the stop runs whatever fails.

    :param session_id: the session (templated), e.g. ``"{{ ti.xcom_pull('create', key='session_id') }}"``.
    """

    template_fields: Sequence[str] = ("session_id", "arr_conn_id")
    ui_color = "#f6d6cd"
    argument_checks = {"arr_conn_id": conn_id, "session_id": optional_session_id}

    def __init__(self, *, session_id: str | None, arr_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(arr_conn_id=arr_conn_id, **kwargs)
        self.session_id = session_id
        self.check_literal_arguments()

    def execute(self, context: Context) -> None:
        """Stop the session unless it has already ended."""
        session_id = self.resolved_arguments()["session_id"]
        if session_id is None:
            self.log.info("no session id (the create made no session): nothing to stop")
            return
        self.hook.ensure_stopped(session_id)
