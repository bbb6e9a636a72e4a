"""The Azure Remote Rendering hook: authentication and every REST call of the provider."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_arr._compat import BaseHook, register_secret
from airflow_provider_arr.client.config import ClientConfig
from airflow_provider_arr.client.protocol import ArrProtocol, CreateResult
from airflow_provider_arr.client.retry import RetrySettings
from airflow_provider_arr.client.transport import AsyncTransport, SyncTransport, WatchSource, account_key
from airflow_provider_arr.client.watch import AccountWatcher
from airflow_provider_arr.connection_form import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    HOOK_NAME,
    connection_form_widgets,
    ui_field_behaviour,
)
from airflow_provider_arr.exceptions import ArrError, ArrInputError, ArrSessionLeftRunningError
from airflow_provider_arr.models import (
    RenderingSession,
    check_new_lease,
    format_timespan,
    validate_lease,
    validate_models,
    validate_session_id,
    validate_size,
)

if TYPE_CHECKING:
    import requests
    from airflow.sdk import Connection

    from airflow_provider_arr.guard import LeaseGuard


class ArrHook(BaseHook):
    """Talk to the Azure Remote Rendering session API (or the bundled emulator).

    The connection holds the account id (login), the account key (password), the service
    endpoint (host, or the extra ``region``) and optionally the STS base (extras ``sts_endpoint``
    or ``account_domain``) and the API dialect (extra ``api_version``: ``v1`` or ``2021-01-01``);
    :mod:`airflow_provider_arr.connection_form` lists every extra.

    The hook fetches one STS token and reuses it until 5 minutes before it expires; every call
    goes through one private choke point (:mod:`airflow_provider_arr.client.transport`), paced
    per account, that waits out throttling (429) for a time budget and retries server errors
    and broken connections with jittered exponential backoff, honouring ``Retry-After``, but
    never repeats a v1 create whose answer was lost, nor anything no retry can fix (see
    :mod:`airflow_provider_arr.client.retry`). Nothing is sent when the hook is made.

    :param arr_conn_id: the Airflow connection to use.
    :param timeout: seconds for one HTTP request (default: extra ``timeout`` or 30).
    :param retry_limit: attempts per call, the first included (default: extra or 6).
    :param retry_wait_min: first backoff in seconds (default: extra or 1).
    :param retry_wait_max: longest wait in seconds, Retry-After included (default: extra or 30).
    :param retry_total_timeout: seconds one call keeps retrying 5xx and broken connections
        (default: extra or 180).
    :param throttle_timeout: seconds one call waits out 429 answers (default: extra or 300).
    :param stop_timeout: seconds a stop keeps trying through anything transient (default: extra
        or 600).
    """

    conn_name_attr = "arr_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = HOOK_NAME

    def __init__(
        self,
        arr_conn_id: str = DEFAULT_CONN_ID,
        *,
        timeout: float | None = None,
        retry_limit: int | None = None,
        retry_wait_min: float | None = None,
        retry_wait_max: float | None = None,
        retry_total_timeout: float | None = None,
        throttle_timeout: float | None = None,
        stop_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.arr_conn_id = arr_conn_id
        self._async: AsyncTransport | None = None
        self._overrides = {
            "timeout": timeout,
            "retry_limit": retry_limit,
            "retry_wait_min": retry_wait_min,
            "retry_wait_max": retry_wait_max,
            "retry_total_timeout": retry_total_timeout,
            "throttle_timeout": throttle_timeout,
            "stop_timeout": stop_timeout,
        }

    # -- connection ------------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel and hide the standard connection fields in the UI (Airflow < 3.2)."""
        return ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extras' form fields (Airflow < 3.2 reads these; 3.2+ reads the provider info)."""
        return connection_form_widgets()

    @classmethod
    def config_from_connection(
        cls, conn: Connection, overrides: Mapping[str, Any] | None = None
    ) -> ClientConfig:
        """Validate a connection into client settings; raises :class:`ArrInputError` naming the field."""
        extra = _extra_of(conn)
        register_secret(conn.password)
        return ClientConfig.from_connection(
            conn_id=conn.conn_id,
            login=conn.login,
            password=conn.password,
            host=conn.host,
            port=conn.port,
            extra=extra,
            overrides=overrides,
        )

    @cached_property
    def config(self) -> ClientConfig:
        """The validated settings of the connection (read once per hook)."""
        return self.config_from_connection(self.get_connection(self.arr_conn_id), self._overrides)

    @cached_property
    def transport(self) -> SyncTransport:
        """The sync driver of the protocol: every HTTP call of the hook passes through it."""
        return SyncTransport(ArrProtocol(self.config, on_secret=register_secret), self.log)

    @property
    def protocol(self) -> ArrProtocol:
        """The request/answer logic, holding this hook's token."""
        return self.transport.protocol

    @property
    def api_version(self) -> str:
        """The API dialect of the connection: ``v1`` or ``2021-01-01``."""
        return self.config.api_version

    def get_conn(self) -> requests.Session:
        """The pooled HTTP session (one per hook, reused by every call)."""
        return self.transport.http

    # -- the API ---------------------------------------------------------------------------------

    def create_session(
        self,
        size: str = "standard",
        max_lease_time: timedelta | str = "1:00:00",
        models: Iterable[Any] = (),
        *,
        session_id: str | None = None,
    ) -> str:
        """Create a session and return its id (it starts in ``starting``).

        :param size: ``standard`` or ``premium`` (any case).
        :param max_lease_time: the lease, a timedelta or a timespan such as ``"4:0:0"``; at most 24 h.
        :param models: asset container URLs to preload (v1 only; ignored by 2021-01-01).
        :param session_id: with 2021-01-01, the id to create (a retried create with the same id
            reattaches to the session instead of making a second one); generated when omitted.
            Refused under v1, where the service chooses ids.
        """
        return self.create_or_reattach_session(
            size=size, max_lease_time=max_lease_time, models=models, session_id=session_id
        ).session_id

    def create_or_reattach_session(
        self,
        *,
        session_id: str | None = None,
        size: str = "standard",
        max_lease_time: timedelta | str = "1:00:00",
        models: Iterable[Any] = (),
    ) -> CreateResult:
        """Like :meth:`create_session`, and tell whether an existing session was found (2021-01-01)."""
        size = validate_size(size)
        lease = validate_lease(max_lease_time)
        model_list = validate_models(models)
        if session_id is not None:
            session_id = validate_session_id(session_id)
        session_id, model_list = self.protocol.dialect.create_arguments(
            session_id, None, model_list, self.log
        )
        result = self.transport.drive(
            self.protocol.create_session(session_id=session_id, size=size, lease=lease, models=model_list)
        )
        if result.reattached:
            status = result.session.status.value if result.session else "unknown"
            self.log.info(
                "ARR session %s already existed with these settings (%s): reattached",
                result.session_id,
                status,
            )
        else:
            self.log.info(
                "ARR session %s created (size %s, lease %s)", result.session_id, size, format_timespan(lease)
            )
        return result

    def get_session(self, session_id: str) -> RenderingSession:
        """Read a session's properties (also for sessions that ended, for 30 days)."""
        return self.transport.drive(self.protocol.get_session(validate_session_id(session_id)))

    def list_sessions(self) -> list[RenderingSession]:
        """List the account's active sessions (every page)."""
        return self.transport.drive(self.protocol.list_sessions())

    def update_session(self, session_id: str, max_lease_time: timedelta | str) -> None:
        """Set the session's lease to ``max_lease_time``: a **total** since the session started."""
        session_id = validate_session_id(session_id)
        lease = validate_lease(max_lease_time)
        self.transport.drive(self.protocol.update_session(session_id, lease))
        self.log.info("ARR session %s lease set to %s in total", session_id, format_timespan(lease))

    def extend_session(self, session_id: str, extend_by: timedelta | str) -> timedelta:
        """Extend a session's lease by ``extend_by`` and return the new total.

        The service's lease is a total since start, so this reads the current lease and PATCHes
        current + ``extend_by``; the new total must stay within 24 hours.
        """
        session_id = validate_session_id(session_id)
        delta = validate_lease(extend_by, field="extend_by")
        session = self.get_session(session_id)
        if session.max_lease_time is None:
            raise ArrInputError(f"session {session_id} reported no current lease; cannot extend it")
        new_total = session.max_lease_time + delta
        check_new_lease(session, new_total, field="extend_by", value=extend_by)
        self.update_session(session_id, new_total)
        return new_total

    def stop_session(self, session_id: str) -> None:
        """Ask the service to stop a session."""
        session_id = validate_session_id(session_id)
        self.transport.drive(self.protocol.stop_session(session_id), self.config.retry.for_stop())
        self.log.info("ARR session %s stop requested", session_id)

    def ensure_stopped(self, session_id: str) -> str:
        """Stop a session; an unknown or already-ended session counts as stopped. Returns what
        happened, in words for the log.

        Keeps trying through broken connections, 5xx and 429 for the connection's
        ``stop_timeout``; should it still fail, :class:`ArrSessionLeftRunningError` says which
        session is left billing, until when at most, and how to stop it by hand.
        """
        session_id = validate_session_id(session_id)
        try:
            outcome = self.transport.drive(
                self.protocol.ensure_stopped(session_id), self.config.retry.for_stop()
            )
        except ArrError as exc:
            raise self.left_running(session_id, exc) from exc
        self.log.info("ARR %s", outcome)
        return outcome

    def lease_guard(self, session_id: str, **kwargs: Any) -> LeaseGuard:
        """Keep ``session_id``'s lease ahead of the work done inside a ``with`` block, up to a cap.

        See :class:`airflow_provider_arr.guard.LeaseGuard` for the arguments (``cap``, ``step``,
        ``margin``)::

            with ArrHook().lease_guard(session_id, cap="6:00:00"):
                render(session_id)
        """
        from airflow_provider_arr.guard import LeaseGuard

        return LeaseGuard(self, session_id, **kwargs)

    def left_running(self, session_id: str, cause: ArrError) -> ArrSessionLeftRunningError:
        """The error for a session that could not be stopped: what bills, until when, what to do."""
        from airflow_provider_arr.cli import stop_command

        return ArrSessionLeftRunningError(
            f"session {session_id} is still running and billed: stopping it failed ({cause.message}). "
            "It bills until its lease ends at the latest (at most 24 h after it started). Stop it by "
            f"hand with: {stop_command(session_id, self.arr_conn_id)}",
            **{**cause.details(), "session_id": session_id},
        )

    def test_connection(self) -> tuple[bool, str]:
        """Get a token and list sessions; used by the UI's Test button."""
        try:
            sessions = self.list_sessions()
        except Exception as exc:
            return False, str(exc)
        active = sum(1 for s in sessions if s.status.is_active)
        return True, (
            f"Connected to {self.config.endpoint} (api {self.api_version}) as account "
            f"{self.config.account_id}: {active} active session(s)"
        )

    # -- async side, for triggers --------------------------------------------------------------

    async def aget_session(self, session_id: str, *, deadline: float | None = None) -> RenderingSession:
        """Read a session without blocking the event loop (httpx).

        :param deadline: the UNIX time until which 429 answers are waited out (a wait's own
            deadline); the connection's ``throttle_timeout`` when None.
        """
        transport = await self.async_transport()
        return await transport.drive(
            transport.protocol.get_session(validate_session_id(session_id)), until(transport.config, deadline)
        )

    async def aupdate_session(self, session_id: str, max_lease_time: timedelta | str) -> None:
        """:meth:`update_session` without blocking the event loop (httpx)."""
        session_id = validate_session_id(session_id)
        lease = validate_lease(max_lease_time)
        transport = await self.async_transport()
        await transport.drive(transport.protocol.update_session(session_id, lease))
        self.log.info("ARR session %s lease set to %s in total", session_id, format_timespan(lease))

    async def aensure_stopped(self, session_id: str) -> str:
        """:meth:`ensure_stopped` without blocking the event loop (httpx)."""
        transport = await self.async_transport()
        outcome = await transport.drive(transport.protocol.ensure_stopped(validate_session_id(session_id)))
        self.log.info("ARR %s", outcome)
        return outcome

    async def aclose(self) -> None:
        """Release this hook's share of the event loop's async transport."""
        transport, self._async = self._async, None
        if transport is not None:
            await transport.release()

    async def async_transport(self) -> AsyncTransport:
        """The event loop's transport for this connection (shared by every hook of the loop)."""
        if self._async is None:
            conn = await _aget_connection(self.arr_conn_id)
            config = self.config_from_connection(conn, self._overrides)
            self._async = await AsyncTransport.acquire(config, self.log, register_secret)
        return self._async

    async def account_watcher(self) -> AccountWatcher:
        """The event loop's shared watcher of this connection's account (see :mod:`..client.watch`)."""
        config = (await self.async_transport()).config
        return AccountWatcher.for_account(
            (*account_key(config), config.api_version),
            lambda: WatchSource(config, self.log, register_secret),
        )

    @property
    def sts_calls(self) -> int:
        """How many tokens this hook fetched (for tests and benchmarks)."""
        return self.protocol.tokens.fetched


def _extra_of(conn: Connection) -> dict[str, Any]:
    """The connection's extra as a JSON object; Airflow would log a warning and use ``{}``."""
    if not conn.extra:
        return {}
    try:
        extra = json.loads(conn.extra)
    except ValueError as exc:
        raise ArrInputError(
            f"connection {conn.conn_id!r}: its extra is not valid JSON ({exc}); fix it in the "
            "connection (Admin > Connections, or the AIRFLOW_CONN_* variable)"
        ) from None
    if not isinstance(extra, dict):
        raise ArrInputError(
            f"connection {conn.conn_id!r}: its extra must be a JSON object, got {type(extra).__name__}"
        )
    return extra


def until(config: ClientConfig, deadline: float | None) -> RetrySettings | None:
    """The retry policy of a call made by a wait that ends at ``deadline`` (a UNIX time)."""
    return None if deadline is None else config.retry.until(deadline - time.time())


async def _aget_connection(conn_id: str) -> Connection:
    aget = getattr(BaseHook, "aget_connection", None)
    if aget is not None:  # Airflow >= 3.1
        return await aget(conn_id)
    from asgiref.sync import sync_to_async

    return await sync_to_async(BaseHook.get_connection)(conn_id)
