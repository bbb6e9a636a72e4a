"""What a session's state means for whoever waits for ``ready``, decided in one place.

The sensor (poke and reschedule), the create operator's own wait and the trigger all call
:func:`assess`, and the trigger's events carry the outcome under the ``EVENT_*`` constants that
:func:`address_from_event` reads back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_arr._compat import AirflowSensorTimeout
from airflow_provider_arr.exceptions import ArrError, ArrSessionFailedError
from airflow_provider_arr.models import RenderingSession, format_timespan

if TYPE_CHECKING:
    from airflow_provider_arr.client.messages import LogLike
    from airflow_provider_arr.hooks.arr import ArrHook

#: ``status`` values of the trigger's events.
EVENT_READY = "success"
EVENT_FAILED = "failed"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"


@dataclass(frozen=True)
class Readiness:
    """A waiter's reading of one session: ``ready``, ``waiting`` or ``never`` (it will never be
    ready), with the words to log or fail with."""

    outcome: str
    message: str
    session: RenderingSession

    @property
    def done(self) -> bool:
        """True when there is nothing more to wait for (ready, or never will be)."""
        return self.outcome != WAITING


READY, WAITING, NEVER = "ready", "waiting", "never"


def assess(session: RenderingSession) -> Readiness:
    """Decide what ``session`` means for a waiter."""
    sid = session.session_id
    if session.is_ready:
        return Readiness(READY, f"session {sid} is ready", session)
    if session.status.will_never_be_ready:
        said = f": {session.message}" if session.message else ""
        return Readiness(
            NEVER, f"session {sid} is {session.status.value} and will never be ready{said}", session
        )
    return Readiness(WAITING, f"session {sid} is {session.status.value}", session)


def describe(session: RenderingSession) -> str:
    """``starting (elapsed 00:01:00)``: the status and elapsed time, for log lines."""
    elapsed = format_timespan(session.elapsed_time) if session.elapsed_time is not None else "n/a"
    return f"{session.status.value} (elapsed {elapsed})"


def poll_ready(hook: ArrHook, session_id: str, log: LogLike) -> RenderingSession | None:
    """Read the session once: the session when ready, None while starting.

    :raises ArrSessionFailedError: with the service's message when the session is in error,
        expired, stopping or stopped: it will never be ready, so there is no point waiting.
    """
    session = hook.get_session(session_id)
    log.info("ARR session %s is %s", session_id, describe(session))
    reading = assess(session)
    if reading.outcome == NEVER:
        raise ArrSessionFailedError(reading.message, session_id=session_id, status=session.status.value)
    return session if reading.outcome == READY else None


def address_from_event(event: dict[str, Any] | None, session_id: str) -> tuple[str | None, int | None]:
    """Read the trigger's event: the hostname and ArrInspector port on success, else the
    matching exception."""
    if not event or "status" not in event:
        raise ArrError(f"the wait for session {session_id} ended without an event: {event!r}")
    status, message = event["status"], event.get("message") or ""
    if status == EVENT_READY:
        port = event.get("arr_inspector_port")
        return event.get("hostname"), port if isinstance(port, int) else None
    if status == EVENT_FAILED:
        raise ArrSessionFailedError(message, session_id=session_id, status=event.get("session_status"))
    if status == EVENT_TIMEOUT:
        raise AirflowSensorTimeout(message)
    raise ArrError(message, session_id=session_id)
