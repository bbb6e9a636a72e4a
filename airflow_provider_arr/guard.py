"""The lease guard for Python workloads: a context manager that extends a session while in use.

::

    with LeaseGuard(hook, session_id, step=timedelta(minutes=15), cap=timedelta(hours=6)):
        render(...)  # the session is kept alive exactly as long as this block runs

A background thread reads the session once per step and extends its lease a ``margin`` before it
would run out (see :mod:`airflow_provider_arr.lease` for the arithmetic). Leaving the block stops
the extensions at once: the session is then stopped by the DAG's teardown, or runs out its
current lease. For workloads run by other operators, see
:class:`~airflow_provider_arr.operators.lease.ArrLeaseGuardOperator`.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from airflow_provider_arr.exceptions import (
    ArrConflictError,
    ArrConnectionError,
    ArrError,
    ArrNotFoundError,
    ArrServiceError,
    ArrThrottledError,
)
from airflow_provider_arr.lease import (
    DEFAULT_MARGIN,
    DEFAULT_STEP,
    MIN_READ_INTERVAL,
    LeasePolicy,
    cap_message,
    decide,
)
from airflow_provider_arr.models import format_timespan, validate_session_id

if TYPE_CHECKING:
    from airflow_provider_arr.hooks.arr import ArrHook

#: Outcomes of a guard (:attr:`LeaseGuard.outcome`).
OUTCOME_RELEASED = "released"  # the workload ended (the block was left)
OUTCOME_ENDED = "ended"  # the session stopped, expired or failed while guarded
OUTCOME_CAP = "cap"  # the lease reached the cap while the workload still ran
OUTCOME_ERROR = "error"  # the guard could not read or extend the session

#: Failures worth another try while the lease lasts (the hook has retried each call already).
TRANSIENT_ERRORS = (ArrConnectionError, ArrServiceError, ArrThrottledError)
#: Seconds of lease, beyond the wait before the next try, that make another try worth it.
RETRY_SLACK = 1.0

_log = logging.getLogger(__name__)


class LeaseGuard:
    """Keep ``session_id`` alive while the ``with`` block runs, in steps, never past ``cap``.

    :param hook: the :class:`~airflow_provider_arr.hooks.arr.ArrHook` to call through.
    :param session_id: the session to guard.
    :param cap: the hard cap: a lease total since the session started, at most 24 h.
    :param step: how far past the session's elapsed time each extension sets the lease.
    :param margin: extend this long before the lease would run out.
    :param time_scale: session seconds per wall-clock second (1 for the service; the emulator's
        ``time_scale`` in tests).
    :param min_interval: the fewest seconds between two reads of the session (at least 5).
    :param raise_errors: when the guard failed (it could not read or extend the session, so the
        session may have expired under the workload), raise an :class:`ArrError` on leaving a
        block that otherwise succeeded. The failure is logged as soon as it happens either way.
    :param logger: where to log (default: this module's logger).
    """

    def __init__(
        self,
        hook: ArrHook,
        session_id: str,
        *,
        cap: timedelta | str | float,
        step: timedelta | str | float = DEFAULT_STEP,
        margin: timedelta | str | float = DEFAULT_MARGIN,
        time_scale: float = 1.0,
        min_interval: float = MIN_READ_INTERVAL,
        raise_errors: bool = True,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        self.hook = hook
        self.session_id = validate_session_id(session_id)
        self._settings = {
            "cap": cap,
            "step": step,
            "margin": margin,
            "time_scale": time_scale,
            "min_interval": min_interval,
        }
        # Check what needs no connection now; the dialect's granularity is known on entry.
        LeasePolicy.build(**self._settings)  # type: ignore[arg-type]
        self.policy: LeasePolicy | None = None
        self.raise_errors = raise_errors
        self.log = logger or _log
        self.outcome: str | None = None
        self.error: BaseException | None = None
        #: Every lease total the guard set, in order.
        self.extensions: list[timedelta] = []
        self._released = threading.Event()
        self._thread: threading.Thread | None = None
        #: When (time.monotonic()) the session's lease runs out, as last known.
        self._expires_at: float | None = None

    def start(self) -> LeaseGuard:
        """Start guarding (what entering the ``with`` block does)."""
        if self._thread is not None:
            raise RuntimeError("a LeaseGuard can be started once")
        # Read the connection here, in the caller's thread (the Task SDK's channel to the
        # supervisor is the caller's), before the guard thread makes calls.
        self.policy = LeasePolicy.build(api_version=self.hook.api_version, **self._settings)
        self._thread = threading.Thread(
            target=self._run, name=f"arr-lease-guard-{self.session_id[:40]}", daemon=True
        )
        self._thread.start()
        self.log.info(
            "ARR lease guard on session %s: steps of %s, %s before the lease runs out, cap %s",
            self.session_id,
            format_timespan(self.policy.step),
            format_timespan(self.policy.margin),
            format_timespan(self.policy.usable_cap),
        )
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop extending at once (what leaving the block does) and wait for the thread."""
        self._released.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.outcome is None:
            self.outcome = OUTCOME_RELEASED

    def __enter__(self) -> LeaseGuard:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.log.info(
            "ARR lease guard on session %s released (%s); %d extension(s)%s",
            self.session_id,
            self.outcome,
            len(self.extensions),
            f", last lease {format_timespan(self.extensions[-1])}" if self.extensions else "",
        )
        if self.error is not None and exc_type is None and self.raise_errors:
            raise ArrError(
                f"the lease guard of session {self.session_id} failed while the workload ran, so the "
                f"session may have expired under it: {self.error}",
                session_id=self.session_id,
            ) from self.error

    # -- the guard thread -------------------------------------------------------------------------

    def _run(self) -> None:
        assert self.policy is not None
        try:
            wake_in: float | None = 0.0
            while wake_in is not None and not self._released.wait(wake_in):
                try:
                    wake_in = self._step()
                except TRANSIENT_ERRORS as exc:
                    # The hook has retried already; try again while the lease still has time.
                    left = self._expires_at - time.monotonic() if self._expires_at is not None else None
                    if left is None or left <= self.policy.min_interval + RETRY_SLACK:
                        raise
                    self.log.warning(
                        "ARR lease guard: could not read or extend session %s (%s); trying again in "
                        "%.0f s (its lease has about %.0f s left)",
                        self.session_id,
                        exc,
                        self.policy.min_interval,
                        left,
                    )
                    wake_in = self.policy.min_interval
        except BaseException as exc:
            self.error = exc
            self.outcome = OUTCOME_ERROR
            self.log.error(
                "ARR lease guard of session %s FAILED, its lease is no longer extended and it will expire "
                "at the end of its current lease: %s",
                self.session_id,
                exc,
                exc_info=exc,
            )

    def _step(self) -> float | None:
        """One read, and an extension when due; the seconds until the next, or None when done."""
        assert self.policy is not None
        read_at = time.monotonic()
        try:
            session = self.hook.get_session(self.session_id)
        except ArrNotFoundError:
            self.outcome = OUTCOME_ENDED
            self.log.info("ARR session %s is unknown to the service: guard done", self.session_id)
            return None
        if self._released.is_set():
            return None
        if session.elapsed_time is None or session.max_lease_time is None:
            raise ArrError(
                f"session {self.session_id} reported no elapsed time or lease; cannot guard it",
                session_id=self.session_id,
            )
        decision = decide(
            self.policy,
            session_id=self.session_id,
            status=session.status,
            elapsed=session.elapsed_time,
            current=session.max_lease_time,
        )
        self._expires_at = read_at + self.policy.real_seconds(decision.lease_left)
        if decision.action == "ended":
            self.outcome = OUTCOME_ENDED
            self.log.info("ARR %s", decision.message)
            return None
        if decision.action == "cap":
            self.outcome = OUTCOME_CAP
            self.log.warning("ARR %s", decision.message)
            return None
        assert decision.wake_in is not None
        if decision.action == "wait":
            return decision.wake_in
        assert decision.new_total is not None
        if self._released.is_set():  # the workload ended during the read
            return None
        try:
            self.hook.update_session(self.session_id, decision.new_total)
        except (ArrConflictError, ArrNotFoundError) as exc:
            # Stopped (by the teardown, or by hand) between the read and the update.
            self.outcome = OUTCOME_ENDED
            self.log.info("ARR session %s ended meanwhile (%s): guard done", self.session_id, exc)
            return None
        self._expires_at = read_at + self.policy.real_seconds(decision.new_total - session.elapsed_time)
        self.extensions.append(decision.new_total)
        self.log.info("ARR lease guard: %s", decision.message)
        if decision.final:
            # No read needed: if the block still runs at margin before the cap, the workload
            # outlives the cap.
            if not self._released.wait(decision.wake_in):
                self.outcome = OUTCOME_CAP
                self.log.warning(
                    "ARR %s", cap_message(self.session_id, decision.new_total, self.policy.margin)
                )
            return None
        return decision.wake_in
