"""The sensor that waits for a rendering session to be ready."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_arr._compat import BaseSensorOperator, PokeReturnValue, conf
from airflow_provider_arr.arguments import CHECKS, CheckedArguments
from airflow_provider_arr.connection_form import DEFAULT_CONN_ID
from airflow_provider_arr.exceptions import ArrThrottledError
from airflow_provider_arr.links import ArrInspectorLink, push_address
from airflow_provider_arr.models import is_template, validate_poll_interval, validate_session_id
from airflow_provider_arr.readiness import address_from_event, poll_ready

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_arr.hooks.arr import ArrHook


class ArrSessionReadySensor(CheckedArguments, BaseSensorOperator):
    """Wait until an ARR session is ``ready``; return (and push as ``hostname``) its hostname.

    Fails at once, with the service's message, when the session is in error, expired, stopping
    or stopped: it will never be ready, so there is nothing to wait for. Works in ``poke``,
    ``reschedule`` and deferrable modes; deferred, the wait costs no worker slot.

    :param session_id: the session to wait for (templated).
    :param arr_conn_id: the ARR connection (templated).
    :param poll_interval: seconds between reads, at least 5 (the service throttles faster clients).
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param stop_on_kill: when deferred, stop the session if a user kills the task.
    """

    template_fields: Sequence[str] = ("session_id", "arr_conn_id", "poll_interval")
    ui_color = "#e8f4fd"
    operator_extra_links = (ArrInspectorLink(),)
    argument_checks = {
        name: CHECKS[name]
        for name in ("session_id", "arr_conn_id", "poll_interval", "deferrable", "stop_on_kill")
    }

    def __init__(
        self,
        *,
        session_id: str,
        arr_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float | str = 10.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        stop_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        if not is_template(poll_interval):
            kwargs.setdefault("poke_interval", validate_poll_interval(poll_interval))
        super().__init__(**kwargs)
        self.session_id, self.arr_conn_id, self.poll_interval = session_id, arr_conn_id, poll_interval
        self.deferrable, self.stop_on_kill = deferrable, stop_on_kill
        self.check_literal_arguments()

    @cached_property
    def hook(self) -> ArrHook:
        """The hook, made on first use (never at DAG parse time)."""
        from airflow_provider_arr.hooks.arr import ArrHook

        return ArrHook(arr_conn_id=self.arr_conn_id)

    def execute(self, context: Context) -> Any:
        """Poke, reschedule or defer, depending on the mode."""
        args = self.resolved_arguments()
        self.session_id, self.poll_interval = args["session_id"], args["poll_interval"]
        self.poke_interval = args["poll_interval"]
        if not self.deferrable:
            return super().execute(context)
        # No read here: in the triggerer one poll per interval serves every wait of the account,
        # while a read per sensor in the workers costs the account one call each (a thousand
        # mapped waits: 5,000 s of its rate). The trigger reads at once (first_poll_at None):
        # alone, by id; next to other waits, with their next shared poll.
        from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger

        self.defer(
            trigger=ArrSessionReadyTrigger(
                session_id=validate_session_id(self.session_id),
                arr_conn_id=self.arr_conn_id,
                poll_interval=float(self.poll_interval),
                deadline=time.time() + self.timeout,
                stop_on_kill=self.stop_on_kill,
            ),
            method_name="execute_complete",
            # A margin past the trigger's own deadline, which answers first with a clear event.
            timeout=timedelta(seconds=self.timeout + 60),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        """One read of the session: done when ready, an error at once when it will never be.

        A read still throttled after the connection's ``throttle_timeout`` is not a failure: the
        next poke reads again, until the sensor's own ``timeout``.
        """
        try:
            session = poll_ready(self.hook, validate_session_id(self.session_id), self.log)
        except ArrThrottledError as exc:
            self.log.warning("ARR still throttled (%s); reading again at the next poke", exc.message)
            return PokeReturnValue(is_done=False)
        if session is None:
            return PokeReturnValue(is_done=False)
        push_address(context["ti"], session.hostname, session.arr_inspector_port)
        return PokeReturnValue(is_done=True, xcom_value=session.hostname)

    def post_execute(self, context: Any, result: Any = None) -> None:
        """End the task's log with what its ARR calls cost (calls, 429s waited out)."""
        from airflow_provider_arr.operators.session import log_call_summary

        super().post_execute(context, result)
        log_call_summary(self)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str | None:
        """Resume after the trigger fired: the hostname, or the failure it reported."""
        hostname, port = address_from_event(event, self.session_id)
        self.log.info("ARR session %s is ready at %s", self.session_id, hostname)
        push_address(context["ti"], hostname, port)
        return hostname
