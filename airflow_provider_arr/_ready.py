"""Waiting for ``ready``: one poll and one trigger-event reading, shared by the sensor and the
create operator so that both fail fast and report in the same words."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_arr._compat import AirflowSensorTimeout
from airflow_provider_arr.exceptions import ArrError, ArrSessionFailedError
from airflow_provider_arr.models import RenderingSession, format_timespan

if TYPE_CHECKING:
    from airflow_provider_arr._api import LogLike
    from airflow_provider_arr.hooks.arr import ArrHook


def poll_ready(hook: ArrHook, session_id: str, log: LogLike) -> RenderingSession | None:
    """Read the session once: the session when ready, None while starting.

    :raises ArrSessionFailedError: with the service's message when the session is in error,
        expired, stopping or stopped: it will never be ready, so there is no point waiting.
    """
    session = hook.get_session(session_id)
    elapsed = format_timespan(session.elapsed_time) if session.elapsed_time is not None else "n/a"
    log.info("ARR session %s is %s (elapsed %s)", session_id, session.status.value, elapsed)
    if session.is_ready:
        return session
    if session.status.will_never_be_ready:
        said = f": {session.message}" if session.message else ""
        raise ArrSessionFailedError(
            f"session {session_id} is {session.status.value} and will never be ready{said}",
            session_id=session_id,
            status=session.status.value,
        )
    return None


def hostname_from_event(event: dict[str, Any] | None, session_id: str) -> str | None:
    """Read the trigger's event: the hostname on success, else the matching exception."""
    if not event or "status" not in event:
        raise ArrError(f"the wait for session {session_id} ended without an event: {event!r}")
    status, message = event["status"], event.get("message") or ""
    if status == "success":
        return event.get("hostname")
    if status == "failed":
        raise ArrSessionFailedError(message, session_id=session_id, status=event.get("session_status"))
    if status == "timeout":
        raise AirflowSensorTimeout(message)
    raise ArrError(message, session_id=session_id)
