"""What a create does when its answer may be lost, as plain functions beside the hook.

v1 create is not idempotent: a create whose answer was lost is never repeated, because the
service may have made the session anyway. To find it, :func:`create_session_safely` lists the
account's active sessions just before creating (one extra call, v1 only) and, after such a
failure, compares with the sessions of the same size and lease found afterwards
(:func:`after_lost_create`). With 2021-01-01 the id is chosen before the call, so a failed create
either leaves the session to the task's retry, which reattaches to it, or stops it
(:func:`after_failed_create`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_arr.exceptions import (
    ArrConnectionError,
    ArrError,
    ArrServiceError,
    ArrSessionMayExistError,
    ArrThrottledError,
    ArrUnexpectedResponseError,
)

if TYPE_CHECKING:
    from airflow_provider_arr.client.messages import LogLike
    from airflow_provider_arr.client.protocol import CreateResult
    from airflow_provider_arr.hooks.arr import ArrHook

#: Failures after which a 2021-01-01 create may have reached the service.
MAYBE_PROCESSED = (ArrConnectionError, ArrServiceError, ArrThrottledError, ArrUnexpectedResponseError)


def create_session_safely(
    hook: ArrHook,
    *,
    size: str,
    lease: timedelta,
    models: list[Any],
    session_id: str | None,
    default_session_id: str,
    fresh_session_id: str,
    will_retry: bool,
    log: LogLike,
    on_session_id: Callable[[str], None] = lambda _sid: None,
) -> CreateResult:
    """Create a session for a task, so that no failure leaves an unknown session billing.

    :param session_id: the id the user chose (2021-01-01 only), or None.
    :param default_session_id: the task's deterministic id, used where the client chooses ids
        and the user chose none: a retried task finds the session its earlier try made.
    :param fresh_session_id: the id to create when that earlier session has already ended
        (unique to this try).
    :param will_retry: whether the task has a retry left (which would reattach to the session).
    :param on_session_id: called with the id as soon as it is known (before the call where the
        client chooses it), so that a killed task can stop the session.
    """
    create = _Create(hook, size, lease, models, will_retry, log, on_session_id)
    known = None if hook.protocol.dialect.client_chosen_ids else active_session_ids(hook, log)
    result = create(session_id, default_session_id, known)
    if result.reattached and result.session and result.session.status.will_never_be_ready:
        # An earlier try's session has ended; this try needs a session of its own.
        log.info(
            "session %s from an earlier try is %s; creating %s",
            result.session_id,
            result.session.status.value,
            fresh_session_id,
        )
        result = create(fresh_session_id, fresh_session_id, None)
    on_session_id(result.session_id)
    return result


@dataclass(frozen=True)
class _Create:
    """One create call with its settings; after a failure that may hide a session, make sure
    none is left billing."""

    hook: ArrHook
    size: str
    lease: timedelta
    models: list[Any]
    will_retry: bool
    log: LogLike
    on_session_id: Callable[[str], None]

    def __call__(self, session_id: str | None, default_id: str, known: frozenset[str] | None) -> CreateResult:
        dialect = self.hook.protocol.dialect
        chosen, models = dialect.create_arguments(session_id, default_id, self.models, self.log)
        if chosen is not None:
            self.on_session_id(chosen)
        try:
            return self.hook.create_or_reattach_session(
                size=self.size, max_lease_time=self.lease, models=models, session_id=chosen
            )
        except ArrSessionMayExistError as exc:  # v1
            raise after_lost_create(self.hook, exc, known, self.log) from exc
        except MAYBE_PROCESSED as exc:
            if chosen is not None:
                after_failed_create(self.hook, chosen, exc, will_retry=self.will_retry, log=self.log)
            raise


def active_session_ids(hook: ArrHook, log: LogLike) -> frozenset[str] | None:
    """The ids of the active sessions before a v1 create, or None if they cannot be listed."""
    try:
        return frozenset(s.session_id for s in hook.list_sessions() if s.status.is_active)
    except ArrError as exc:
        log.warning(
            "could not list sessions before creating (%s); should the create answer be lost, "
            "the session it may have made cannot be told apart from others",
            exc,
        )
        return None


def after_failed_create(
    hook: ArrHook, session_id: str, exc: ArrError, *, will_retry: bool, log: LogLike
) -> None:
    """A 2021-01-01 create failed, but an attempt may have reached the service: leave the
    session to the task's retry (which reattaches to it), or stop it when no retry follows."""
    if will_retry:
        log.warning(
            "the create of session %s failed (%s) but may have reached the service: the task's "
            "retry will reattach to the session if it exists",
            session_id,
            exc.message,
        )
        return
    log.warning(
        "the create of session %s failed (%s) but may have reached the service, and no retry "
        "follows: stopping the session in case it exists",
        session_id,
        exc.message,
    )
    try:
        hook.ensure_stopped(session_id)
    except Exception:
        log.exception(
            "could not stop session %s, which may exist: check it and stop it by hand if it does, "
            "it is billed",
            session_id,
        )


def after_lost_create(
    hook: ArrHook, exc: ArrSessionMayExistError, known: frozenset[str] | None, log: LogLike
) -> ArrSessionMayExistError:
    """A v1 create may have made a session nobody knows the id of: stop it if it is certainly
    the only new one, else name the candidates. Returns the error the task fails with.

    * exactly **one** new session of the same size and lease appeared: it is almost certainly
      this create's, so it is stopped (it is billed and nobody knows its id);
    * **several** appeared (other tasks created sessions of the same size and lease at the same
      time): none is stopped, since all but one belong to someone else; all are named;
    * **none** appeared, or the sessions could not be listed before: nothing is stopped.
    """
    cause = f"(cause: {exc.message})"

    def may_exist(
        message: str, candidates: tuple[str, ...], session_id: str | None = None
    ) -> ArrSessionMayExistError:
        return ArrSessionMayExistError(
            f"{message} {cause}", candidates=candidates, **{**exc.details(), "session_id": session_id}
        )

    if known is None:
        listed = ", ".join(exc.candidates) or "none found"
        return may_exist(
            "the answer to the create was lost and the sessions could not be listed before it, so "
            "the session it may have made cannot be identified; active sessions with the same size "
            f"and lease: {listed}. Stop this task's session by hand if one of them is it",
            exc.candidates,
        )
    new = tuple(c for c in exc.candidates if c not in known)
    if not new:
        return may_exist(
            "the answer to the create was lost, but no new session of the same size and lease "
            "appeared (or they could not be listed): the service probably did not create one; "
            "nothing was stopped",
            (),
        )
    if len(new) > 1:
        return may_exist(
            f"the answer to the create was lost and {len(new)} sessions of the same size and lease "
            f"appeared meanwhile: {', '.join(new)}. One may be this task's, the others belong to "
            "tasks that created sessions at the same time, so none was stopped: stop this task's "
            "by hand, it is billed until its lease ends",
            new,
        )
    (orphan,) = new
    log.warning("the create answer was lost; session %s appeared meanwhile: stopping it", orphan)
    try:
        hook.ensure_stopped(orphan)
    except ArrError as stop_error:
        return may_exist(
            f"the answer to the create was lost; session {orphan} appeared meanwhile and is "
            f"probably this task's, but stopping it failed ({stop_error.message}): stop it by "
            "hand, it is billed",
            new,
            orphan,
        )
    return may_exist(
        f"the answer to the create was lost; session {orphan}, which appeared meanwhile and so was "
        "almost certainly made by this create, has been stopped so that it is not billed; the "
        "task fails (a retry, if any, creates a fresh session)",
        new,
        orphan,
    )
