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
from airflow_provider_arr.connection_form import DEFAULT_CONN_ID
from airflow_provider_arr.exceptions import ArrError, ArrInputError
from airflow_provider_arr.models import (
    SESSION_ID_MAX_LENGTH,
    check_new_lease,
    format_timespan,
    is_template,
    validate_lease,
    validate_models,
    validate_poll_interval,
    validate_session_id,
    validate_size,
)
from airflow_provider_arr.ownership import record_owner
from airflow_provider_arr.readiness import hostname_from_event, poll_ready

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_arr.hooks.arr import ArrHook

#: What a rendered template of a missing XCom looks like.
_NO_SESSION = (None, "", "None")


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


class _ArrOperator(BaseOperator):
    """What every ARR operator shares: the connection and a hook made on first use."""

    def __init__(self, *, arr_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arr_conn_id = arr_conn_id

    @cached_property
    def hook(self) -> ArrHook:
        """The hook, made on first use (never at DAG parse time)."""
        from airflow_provider_arr.hooks.arr import ArrHook

        return ArrHook(arr_conn_id=self.arr_conn_id)


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
        # Check what is known at parse time; templates are checked once rendered.
        for value, check in ((size, validate_size), (max_lease_time, validate_lease)):
            if not is_template(value):
                check(value)
        if not is_template(poll_interval):
            validate_poll_interval(poll_interval)
        self.size = size
        self.max_lease_time = max_lease_time
        self.models = models
        self.session_id = session_id
        self.wait_for_ready = wait_for_ready
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.ready_timeout = (
            ready_timeout.total_seconds() if isinstance(ready_timeout, timedelta) else float(ready_timeout)
        )
        # The session this task made (or, 2021-01-01, is making): what on_kill stops.
        self._session: str | None = None

    def execute(self, context: Context) -> str:
        """Create the session (or find the one an earlier try made), then optionally wait."""
        from airflow_provider_arr.hooks.recovery import create_session_safely

        poll_interval = validate_poll_interval(self.poll_interval)
        ti = context["ti"]
        result = create_session_safely(
            self.hook,
            size=validate_size(self.size),
            lease=validate_lease(self.max_lease_time),
            models=validate_models(self.models),
            session_id=validate_session_id(self.session_id) if self.session_id not in _NO_SESSION else None,
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
            record_owner(
                context, sid, size=validate_size(self.size), lease=validate_lease(self.max_lease_time)
            )
            if self.wait_for_ready:
                if self.deferrable:
                    self._defer(sid, poll_interval)
                ti.xcom_push(key="hostname", value=self._wait(sid, poll_interval))
        except TaskDeferred:
            raise
        except BaseException:
            self._stop_after_failure(sid)
            raise
        return sid

    def _remember(self, session_id: str) -> None:
        self._session = session_id

    def _defer(self, session_id: str, poll_interval: float) -> None:
        from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger

        self.defer(
            trigger=ArrSessionReadyTrigger(
                session_id=session_id,
                arr_conn_id=self.arr_conn_id,
                poll_interval=poll_interval,
                deadline=time.time() + self.ready_timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.ready_timeout + 60),
        )

    def _wait(self, session_id: str, poll_interval: float) -> str | None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            session = poll_ready(self.hook, session_id, self.log)
            if session is not None:
                return session.hostname
            if time.monotonic() + poll_interval > deadline:
                raise ArrError(
                    f"session {session_id} was not ready within {self.ready_timeout:.0f} s",
                    session_id=session_id,
                )
            time.sleep(poll_interval)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger fired: push the hostname, or stop the session and fail."""
        session_id = str((event or {}).get("session_id") or context["ti"].xcom_pull(key="session_id"))
        try:
            hostname = hostname_from_event(event, session_id)
        except BaseException:
            self._stop_after_failure(session_id)
            raise
        context["ti"].xcom_push(key="hostname", value=hostname)
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
        for value, name in ((max_lease_time, "max_lease_time"), (extend_by, "extend_by")):
            if value is not None and not is_template(value):
                validate_lease(value, field=name)
        self.session_id = session_id
        self.max_lease_time = max_lease_time
        self.extend_by = extend_by

    def execute(self, context: Context) -> str:
        """Set the new total lease and return it (``hh:mm:ss``)."""
        session_id = validate_session_id(self.session_id)
        if self.extend_by is not None:
            new_total = self.hook.extend_session(session_id, self.extend_by)
        else:
            new_total = validate_lease(self.max_lease_time)
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

    def __init__(self, *, session_id: str | None, arr_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(arr_conn_id=arr_conn_id, **kwargs)
        self.session_id = session_id

    def execute(self, context: Context) -> None:
        """Stop the session unless it has already ended."""
        if self.session_id in _NO_SESSION:
            self.log.info("no session id (the create made no session): nothing to stop")
            return
        self.hook.ensure_stopped(validate_session_id(self.session_id))
