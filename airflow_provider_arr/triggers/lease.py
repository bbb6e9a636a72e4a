"""The lease guard trigger: extend a session's lease, in the triggerer, while other tasks use it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_arr.exceptions import ArrConflictError, ArrError, ArrNotFoundError
from airflow_provider_arr.guard import RETRY_SLACK, TRANSIENT_ERRORS
from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.lease import MIN_READ_INTERVAL, LeasePolicy, decide
from airflow_provider_arr.models import format_timespan
from airflow_provider_arr.triggers import SerializedArguments

#: ``status`` values of the trigger's events.
EVENT_ENDED = "ended"  # the session stopped (the teardown), expired or failed: the normal end
EVENT_CAP = "cap"  # the lease reached the cap while the session was still in use
EVENT_ERROR = "error"  # the session could not be read or extended


class ArrLeaseGuardTrigger(SerializedArguments, BaseTrigger):
    """Extend a session's lease in steps until it ends or its lease reaches the cap; fire one event.

    The event: ``status`` (``ended``, ``cap`` or ``error``), ``message``, ``session_id``,
    ``lease`` (the last lease total seen or set, ``hh:mm:ss``) and ``extensions`` (how many).

    :param session_id: the session to keep alive.
    :param cap: the lease cap in seconds (a total since start, at most 24 h).
    :param step: seconds past the session's elapsed time that each extension sets the lease to.
    :param margin: extend this many seconds before the lease would run out.
    :param api_version: the connection's dialect (its lease granularity).
    :param arr_conn_id: the ARR connection.
    :param time_scale: session seconds per wall-clock second (1 for the service).
    :param min_interval: the fewest seconds between two reads (at least 5).
    """

    arguments = (
        "session_id",
        "cap",
        "step",
        "margin",
        "api_version",
        "arr_conn_id",
        "time_scale",
        "min_interval",
    )

    def __init__(
        self,
        *,
        session_id: str,
        cap: float,
        step: float,
        margin: float,
        api_version: str = "v1",
        arr_conn_id: str = "arr_default",
        time_scale: float = 1.0,
        min_interval: float = MIN_READ_INTERVAL,
    ) -> None:
        super().__init__()
        self.session_id = session_id
        self.cap = float(cap)
        self.step = float(step)
        self.margin = float(margin)
        self.api_version = api_version
        self.arr_conn_id = arr_conn_id
        self.time_scale = float(time_scale)
        self.min_interval = float(min_interval)

    def policy(self) -> LeasePolicy:
        """The validated lease policy of this guard."""
        return LeasePolicy.build(
            cap=self.cap,
            step=self.step,
            margin=self.margin,
            api_version=self.api_version,
            time_scale=self.time_scale,
            min_interval=self.min_interval,
        )

    def _event(self, status: str, message: str, lease: timedelta | None, extensions: int) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "message": message,
                "session_id": self.session_id,
                "lease": format_timespan(lease) if lease is not None else None,
                "extensions": extensions,
            }
        )

    def _may_retry(self, exc: ArrError, expires_at: float | None, min_interval: float) -> bool:
        """After a transient failure (the hook has retried already): try again while the lease lasts."""
        left = expires_at - time.monotonic() if expires_at is not None else None
        if left is None or left <= min_interval + RETRY_SLACK:
            return False
        self.log.warning(
            "ARR lease guard: could not read or extend session %s (%s); trying again in %.0f s "
            "(its lease has about %.0f s left)",
            self.session_id,
            exc,
            min_interval,
            left,
        )
        return True

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Read once per step, extend when due (httpx, no blocking call), until an outcome."""
        hook = ArrHook(arr_conn_id=self.arr_conn_id)
        lease: timedelta | None = None
        extensions = 0
        expires_at: float | None = None  # time.monotonic() when the lease runs out, as last known
        try:
            policy = self.policy()
            while True:
                read_at = time.monotonic()
                try:
                    session = await hook.aget_session(self.session_id)
                except TRANSIENT_ERRORS as exc:
                    if not self._may_retry(exc, expires_at, policy.min_interval):
                        raise
                    await asyncio.sleep(policy.min_interval)
                    continue
                except ArrNotFoundError:
                    yield self._event(
                        EVENT_ENDED, f"session {self.session_id} is unknown to the service", lease, extensions
                    )
                    return
                if session.elapsed_time is None or session.max_lease_time is None:
                    raise ArrError(f"session {self.session_id} reported no elapsed time or lease")
                lease = session.max_lease_time
                expires_at = read_at + policy.real_seconds(session.max_lease_time - session.elapsed_time)
                decision = decide(
                    policy,
                    session_id=self.session_id,
                    status=session.status,
                    elapsed=session.elapsed_time,
                    current=session.max_lease_time,
                )
                if decision.action == "ended":
                    self.log.info("ARR %s", decision.message)
                    yield self._event(EVENT_ENDED, decision.message, lease, extensions)
                    return
                if decision.action == "cap":
                    self.log.warning("ARR %s", decision.message)
                    yield self._event(EVENT_CAP, decision.message, lease, extensions)
                    return
                if decision.action == "extend":
                    assert decision.new_total is not None
                    try:
                        await hook.aupdate_session(self.session_id, decision.new_total)
                    except TRANSIENT_ERRORS as exc:
                        if not self._may_retry(exc, expires_at, policy.min_interval):
                            raise
                        await asyncio.sleep(policy.min_interval)
                        continue
                    except (ArrConflictError, ArrNotFoundError) as exc:
                        message = (
                            f"session {self.session_id} ended before its lease could be extended ({exc})"
                        )
                        self.log.info("ARR %s", message)
                        yield self._event(EVENT_ENDED, message, lease, extensions)
                        return
                    lease = decision.new_total
                    expires_at = read_at + policy.real_seconds(decision.new_total - session.elapsed_time)
                    extensions += 1
                    self.log.info("ARR lease guard: %s", decision.message)
                else:
                    self.log.info("ARR lease guard: %s", decision.message)
                assert decision.wake_in is not None
                # After the final extension (to the cap), the next read tells whether the workload
                # outlives the cap; reads stay min_interval apart all the same.
                await asyncio.sleep(max(decision.wake_in, policy.min_interval))
        except ArrError as exc:
            yield self._event(
                EVENT_ERROR,
                f"the lease guard of session {self.session_id} failed; the session will expire at the end "
                f"of its current lease: {exc}",
                lease,
                extensions,
            )
        finally:
            await hook.aclose()
