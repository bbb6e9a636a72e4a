"""The trigger that waits, in the triggerer's event loop, for a session to become ready."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator

from airflow_provider_arr._compat import BaseTrigger, TriggerEvent, note_trigger_on_kill
from airflow_provider_arr.client.watch import Update
from airflow_provider_arr.connection_form import DEFAULT_CONN_ID
from airflow_provider_arr.exceptions import ArrThrottledError
from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.models import RenderingSession, SessionStatus
from airflow_provider_arr.readiness import (
    EVENT_ERROR,
    EVENT_FAILED,
    EVENT_READY,
    EVENT_TIMEOUT,
    NEVER,
    READY,
    assess,
    describe,
)
from airflow_provider_arr.triggers import SerializedArguments

ON_KILL_TIMEOUT = 30.0


class ArrSessionReadyTrigger(SerializedArguments, BaseTrigger):
    """Poll a session until it is ready, has failed, or the deadline passes; fire one event.

    Every event has the same shape: ``status`` (``success``, ``failed``, ``timeout`` or
    ``error``), ``message``, ``session_id``, ``hostname`` and ``arr_inspector_port`` (set on success) and
    ``session_status`` (the last status seen, or None).

    :param session_id: the session to wait for.
    :param arr_conn_id: the ARR connection.
    :param poll_interval: seconds between two reads of the session.
    :param deadline: a UNIX time after which the trigger gives up with a ``timeout`` event.
    :param stop_on_kill: stop the session when a user kills the deferred task (mark failed,
        clear, mark success). A triggerer restart is not a kill: the wait simply resumes.
    :param first_poll_at: a UNIX time before which not to read the session (0.1.0's sensor set
        it one interval after its own read; triggers it serialized still carry it after an
        upgrade). None, as the provider defers now: read at once (the account's shared poll
        still spaces the reads). A
        time already past means the wait is being resumed (a triggerer restart, or a trigger
        picked up late): the first read then comes at a random moment within one poll interval,
        so that the many waits a restarted triggerer resumes together do not all read in the
        same instant (each is still read within one interval).
    """

    arguments = ("session_id", "arr_conn_id", "poll_interval", "deadline", "stop_on_kill", "first_poll_at")

    def __init__(
        self,
        *,
        session_id: str,
        arr_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 10.0,
        deadline: float | None = None,
        stop_on_kill: bool = True,
        first_poll_at: float | None = None,
    ) -> None:
        super().__init__()
        self.session_id, self.arr_conn_id, self.poll_interval = session_id, arr_conn_id, poll_interval
        self.deadline, self.stop_on_kill, self.first_poll_at = deadline, stop_on_kill, first_poll_at

    def _before_first_poll(self, now: float) -> float:
        """Seconds to wait before the first read (see ``first_poll_at``), never past the deadline."""
        if self.first_poll_at is None:
            return 0.0
        if self.first_poll_at > now:
            wait = min(self.first_poll_at - now, self.poll_interval)
        else:
            wait = random.uniform(0.0, self.poll_interval)
        if self.deadline is not None:
            wait = min(wait, max(0.0, self.deadline - now))
        return wait

    def _hook(self) -> ArrHook:
        return ArrHook(arr_conn_id=self.arr_conn_id)

    def _event(
        self,
        status: str,
        message: str,
        session_status: SessionStatus | None,
        ready: RenderingSession | None = None,
    ) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "message": message,
                "session_id": self.session_id,
                "hostname": ready.hostname if ready else None,
                "arr_inspector_port": ready.arr_inspector_port if ready else None,
                "session_status": session_status.value if session_status else None,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Wait (with httpx, no blocking call) until an outcome, then yield one event.

        Every trigger of the event loop waiting on sessions of the same account shares one
        :class:`~airflow_provider_arr.client.watch.AccountWatcher`: one list of the account's
        active sessions per interval serves them all (one wait alone reads its session by id).
        A 429 is never the end of the wait: the status comes at a later poll, until the deadline.
        """
        note_trigger_on_kill(self.log, wanted=self.stop_on_kill)
        await asyncio.sleep(self._before_first_poll(time.time()))
        hook = self._hook()
        started = time.monotonic()
        last: SessionStatus | None = None
        try:
            watcher = await hook.account_watcher()
            async with contextlib.aclosing(watcher.watch(self.session_id, self.poll_interval)) as updates:
                while True:
                    update = await self._next(updates)
                    if update is None:
                        said = f"still {last.value}" if last else "not read yet"
                        message = f"session {self.session_id} was {said} at the deadline"
                        yield self._event(EVENT_TIMEOUT, message, last)
                        return
                    if update.error is not None or update.session is None:
                        if isinstance(update.error, ArrThrottledError):
                            self.log.warning("ARR still throttled reading %s; waiting on", self.session_id)
                            continue
                        yield self._event(EVENT_ERROR, str(update.error), last)
                        return
                    session = update.session
                    last = session.status
                    self.log.info(
                        "ARR session %s is %s; %s; waited %.0f s",
                        self.session_id,
                        describe(session),
                        update.describe(),
                        time.monotonic() - started,
                    )
                    reading = assess(session)
                    if reading.outcome == READY:
                        yield self._event(EVENT_READY, reading.message, last, session)
                        return
                    if reading.outcome == NEVER:
                        yield self._event(EVENT_FAILED, reading.message, last)
                        return
        finally:
            await hook.aclose()

    async def _next(self, updates: AsyncIterator[Update]) -> Update | None:
        """The next status, or None once the deadline has passed."""
        if self.deadline is None:
            return await anext(updates)
        try:
            return await asyncio.wait_for(anext(updates), max(0.0, self.deadline - time.time()))
        except asyncio.TimeoutError:
            return None

    async def on_kill(self) -> None:
        """A user killed the deferred task: stop the session, so that it is not billed for nothing."""
        if not self.stop_on_kill:
            return
        hook = self._hook()
        try:
            outcome = await asyncio.wait_for(hook.aensure_stopped(self.session_id), ON_KILL_TIMEOUT)
            self.log.info("ARR the task was killed, so: %s", outcome)
        finally:
            await hook.aclose()
