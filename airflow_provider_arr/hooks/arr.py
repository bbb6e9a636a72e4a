"""The Azure Remote Rendering hook: authentication and every REST call of the provider."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterable, Mapping
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import requests
from requests.adapters import HTTPAdapter
from tenacity import AsyncRetrying, Retrying
from urllib3.exceptions import MaxRetryError, NewConnectionError

from airflow_provider_arr._api import (
    API_2021,
    API_V1,
    ApiRequest,
    ApiResponse,
    ArrProtocol,
    ClientConfig,
    CreateResult,
    Exchange,
    LogLike,
    error_for,
    log_exchange,
    lower_headers,
    new_session_id,
    retry_kwargs,
)
from airflow_provider_arr._compat import BaseHook, mask_secret
from airflow_provider_arr.connection_form import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    HOOK_NAME,
    connection_form_widgets,
    ui_field_behaviour,
)
from airflow_provider_arr.exceptions import ArrConnectionError, ArrError, ArrInputError
from airflow_provider_arr.models import (
    MAX_LEASE,
    RenderingSession,
    format_timespan,
    parse_timespan,
    validate_lease,
    validate_models,
    validate_session_id,
    validate_size,
)

if TYPE_CHECKING:
    from airflow.sdk import Connection

T = TypeVar("T")


class ArrHook(BaseHook):
    """Talk to the Azure Remote Rendering session API (or the bundled emulator).

    The connection holds the account id (login), the account key (password), the service
    endpoint (host, or the extra ``region``) and optionally the STS base (extras ``sts_endpoint``
    or ``account_domain``) and the API dialect (extra ``api_version``: ``v1`` or ``2021-01-01``).

    The hook fetches one STS token and reuses it until 5 minutes before it expires; every call
    goes through one private choke point that retries throttling (429), server errors and broken
    connections with jittered exponential backoff, honouring ``Retry-After``, but never repeats a
    v1 create whose answer was lost.

    :param arr_conn_id: the Airflow connection to use.
    :param timeout: seconds for one HTTP request (default: extra ``timeout`` or 30).
    :param retry_limit: attempts per call, the first included (default: extra or 6).
    :param retry_wait_min: first backoff in seconds (default: extra or 1).
    :param retry_wait_max: longest wait in seconds, Retry-After included (default: extra or 30).
    :param retry_total_timeout: retry budget of one call in seconds (default: extra or 180).
    """

    conn_name_attr = "arr_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = HOOK_NAME

    def __init__(
        self,
        arr_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        retry_limit: int | None = None,
        retry_wait_min: float | None = None,
        retry_wait_max: float | None = None,
        retry_total_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.arr_conn_id = arr_conn_id
        self._aclient: _AsyncClient | None = None
        self._overrides = {
            "timeout": timeout,
            "retry_limit": retry_limit,
            "retry_wait_min": retry_wait_min,
            "retry_wait_max": retry_wait_max,
            "retry_total_timeout": retry_total_timeout,
        }

    # -- connection ------------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel and hide the standard connection fields in the UI (Airflow < 3.2)."""
        return ui_field_behaviour()

    @classmethod
    def config_from_connection(
        cls, conn: Connection, overrides: Mapping[str, Any] | None = None
    ) -> ClientConfig:
        """Validate a connection into client settings; raises :class:`ArrInputError` naming the field."""
        extra = conn.extra_dejson if conn.extra else {}
        mask_secret_if(conn.password)
        return ClientConfig.from_connection(
            conn_id=conn.conn_id,
            login=conn.login,
            password=conn.password,
            host=conn.host,
            extra=extra,
            overrides=overrides,
        )

    @cached_property
    def config(self) -> ClientConfig:
        """The validated settings of the connection (read once per hook)."""
        return self.config_from_connection(self.get_connection(self.arr_conn_id), self._overrides)

    @cached_property
    def protocol(self) -> ArrProtocol:
        """The request/answer logic shared with the trigger, holding this hook's token."""
        return ArrProtocol(self.config, on_secret=mask_secret)

    @property
    def api_version(self) -> str:
        """The API dialect of the connection: ``v1`` or ``2021-01-01``."""
        return self.config.api_version

    def get_conn(self) -> requests.Session:
        """The pooled HTTP session (one per hook, reused by every call)."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        session = requests.Session()
        # Retries are tenacity's job, not urllib3's.
        adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=8)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    # -- the choke point -------------------------------------------------------------------------

    def _run(self, exchange: Exchange[T]) -> T:
        """Drive one protocol exchange: every HTTP call of the hook passes here."""
        try:
            request = next(exchange)
            while True:
                try:
                    response = self._send_with_retry(request)
                except ArrError as exc:
                    request = exchange.throw(exc)
                else:
                    request = exchange.send(response)
        except StopIteration as done:
            return done.value

    def _send_with_retry(self, request: ApiRequest) -> ApiResponse:
        retrying = Retrying(**retry_kwargs(self.config.retry, request, self.log))
        return retrying(self._send_once, request)

    def _send_once(self, request: ApiRequest) -> ApiResponse:
        started = time.monotonic()
        try:
            raw = self._session.request(
                request.method,
                request.url,
                params=request.params,
                json=request.json,
                headers=self.protocol.headers(request),
                timeout=self.config.timeout,
                # Per request: a session-level verify loses to REQUESTS_CA_BUNDLE in requests.
                verify=self.config.verify,
            )
        except requests.RequestException as exc:
            sent = not isinstance(exc, requests.ConnectTimeout) and not _refused(exc)
            raise _broken(request, exc, sent=sent, started=started, log=self.log) from None
        return _checked(
            request,
            status=raw.status_code,
            headers=raw.headers.items(),
            body=raw.content,
            started=started,
            log=self.log,
        )

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
        size: str = "standard",
        max_lease_time: timedelta | str = "1:00:00",
        models: Iterable[Any] = (),
        session_id: str | None = None,
    ) -> CreateResult:
        """Like :meth:`create_session`, and tell whether an existing session was found (2021-01-01)."""
        size = validate_size(size)
        lease = validate_lease(max_lease_time)
        model_list = validate_models(models)
        if session_id is not None:
            session_id = validate_session_id(session_id)
        if self.api_version == API_V1 and session_id is not None:
            raise ArrInputError(
                f"session_id {session_id!r} cannot be chosen with api_version 'v1' (the service picks "
                "it); use api_version '2021-01-01' for client-chosen, idempotent creates"
            )
        if self.api_version == API_2021:
            session_id = session_id or new_session_id()
            if model_list:
                self.log.warning("api_version 2021-01-01 has no model preloading; ignoring models")
                model_list = []
        result = self._run(
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
        return self._run(self.protocol.get_session(validate_session_id(session_id)))

    def list_sessions(self) -> list[RenderingSession]:
        """List the account's active sessions (every page)."""
        return self._run(self.protocol.list_sessions())

    def update_session(self, session_id: str, max_lease_time: timedelta | str) -> None:
        """Set the session's lease to ``max_lease_time``: a **total** since the session started."""
        session_id = validate_session_id(session_id)
        lease = validate_lease(max_lease_time)
        self._run(self.protocol.update_session(session_id, lease))
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
        self._run(self.protocol.stop_session(session_id))
        self.log.info("ARR session %s stop requested", session_id)

    def ensure_stopped(self, session_id: str) -> str:
        """Stop a session; an unknown or already-ended session counts as stopped. Returns what
        happened, in words for the log."""
        outcome = self._run(self.protocol.ensure_stopped(validate_session_id(session_id)))
        self.log.info("ARR %s", outcome)
        return outcome

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

    async def aget_session(self, session_id: str) -> RenderingSession:
        """Read a session without blocking the event loop (httpx)."""
        client = await self._async_client()
        return await client.run(client.protocol.get_session(validate_session_id(session_id)))

    async def astop_session(self, session_id: str) -> None:
        """Ask the service to stop a session without blocking the event loop (httpx)."""
        client = await self._async_client()
        await client.run(client.protocol.stop_session(validate_session_id(session_id)))
        self.log.info("ARR session %s stop requested", session_id)

    async def aensure_stopped(self, session_id: str) -> str:
        """:meth:`ensure_stopped` without blocking the event loop (httpx)."""
        client = await self._async_client()
        outcome = await client.run(client.protocol.ensure_stopped(validate_session_id(session_id)))
        self.log.info("ARR %s", outcome)
        return outcome

    async def aclose(self) -> None:
        """Release this hook's share of the process-wide async client."""
        client, self._aclient = self._aclient, None
        if client is not None:
            await client.release()

    async def _async_client(self) -> _AsyncClient:
        if self._aclient is None:
            conn = await _aget_connection(self.arr_conn_id)
            config = self.config_from_connection(conn, self._overrides)
            self._aclient = await _AsyncClient.acquire(config, self.log)
        return self._aclient

    @property
    def sts_calls(self) -> int:
        """How many tokens this hook fetched (for tests and benchmarks)."""
        return self.protocol.tokens.fetched

    # -- connection form of Airflow 3.0 and 3.1 (3.2+ reads conn-fields of the provider info) ---

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extras' form fields (Airflow < 3.2), built from ``connection_form.EXTRAS``."""
        return connection_form_widgets()


async def _aget_connection(conn_id: str) -> Connection:
    aget = getattr(BaseHook, "aget_connection", None)
    if aget is not None:  # Airflow >= 3.1
        return await aget(conn_id)
    from asgiref.sync import sync_to_async

    return await sync_to_async(BaseHook.get_connection)(conn_id)


_ClientsByLoop = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[ClientConfig, "_AsyncClient"]]


#: The async client's 64 connections, in many small pools: on every request httpcore's pool checks
#: each of its idle connections (a system call per socket) and counts them (quadratic in its size),
#: which, with one pool of 64, cost more CPU than the rest of a poll; with pools of 2 it is noise.
POOLS = 32
CONNECTIONS_PER_POOL = 2


class _AsyncClient:
    """One httpx client and one token per connection settings and event loop, shared by triggers.

    A triggerer runs hundreds of triggers in one event loop: sharing the connection pool and the
    STS token means one token fetch and a bounded number of sockets, not one of each per wait.
    """

    _shared: ClassVar[_ClientsByLoop] = weakref.WeakKeyDictionary()

    def __init__(self, config: ClientConfig, log: LogLike) -> None:
        import httpx

        self.config = config
        self.log = log
        self.protocol = ArrProtocol(config, on_secret=mask_secret)
        # One TLS context (loading the CA bundle is costly) for all the pools.
        verify = httpx.create_ssl_context(verify=config.verify)
        self.pools = [
            httpx.AsyncClient(
                verify=verify,
                timeout=httpx.Timeout(config.timeout, pool=None),
                limits=httpx.Limits(
                    max_connections=CONNECTIONS_PER_POOL, max_keepalive_connections=CONNECTIONS_PER_POOL
                ),
            )
            for _ in range(POOLS)
        ]
        self.in_flight = [0] * POOLS
        # Requests wait for a connection here, in FIFO order and in O(1), rather than in
        # httpcore's pool, whose every assignment scans all its queued requests.
        self.slots = asyncio.Semaphore(POOLS * CONNECTIONS_PER_POOL)
        self.users = 0
        self.token_lock = asyncio.Lock()

    @property
    def http(self) -> Any:
        """The first pool (for callers that need one)."""
        return self.pools[0]

    @classmethod
    async def acquire(cls, config: ClientConfig, log: LogLike) -> _AsyncClient:
        clients = cls._shared.setdefault(asyncio.get_running_loop(), {})
        client = clients.get(config)
        if client is None or client.http.is_closed:
            client = clients[config] = cls(config, log)
        client.users += 1
        return client

    async def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            clients = self._shared.get(asyncio.get_running_loop(), {})
            if clients.get(self.config) is self:
                del clients[self.config]
            for pool in self.pools:
                await pool.aclose()

    async def run(self, exchange: Exchange[T]) -> T:
        """Drive one protocol exchange, as :meth:`ArrHook._run` does, with httpx."""
        if self.protocol.tokens.current() is None:
            async with self.token_lock:  # one STS call for all the waits that need a token
                if self.protocol.tokens.current() is None:
                    await self._drive(self.protocol.fetch_token())
        return await self._drive(exchange)

    async def _drive(self, exchange: Exchange[T]) -> T:
        try:
            request = next(exchange)
            while True:
                try:
                    response = await self._send_with_retry(request)
                except ArrError as exc:
                    request = exchange.throw(exc)
                else:
                    request = exchange.send(response)
        except StopIteration as done:
            return done.value

    async def _send_with_retry(self, request: ApiRequest) -> ApiResponse:
        async for attempt in AsyncRetrying(**retry_kwargs(self.config.retry, request, self.log)):
            with attempt:
                return await self._send_once(request)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _send_once(self, request: ApiRequest) -> ApiResponse:
        async with self.slots:  # a free connection in the least busy pool
            pool = self.in_flight.index(min(self.in_flight))
            self.in_flight[pool] += 1
            try:
                return await self._send_now(self.pools[pool], request)
            finally:
                self.in_flight[pool] -= 1

    async def _send_now(self, http: Any, request: ApiRequest) -> ApiResponse:
        import httpx

        started = time.monotonic()
        try:
            raw = await http.request(
                request.method,
                request.url,
                params=request.params,
                json=request.json,
                headers=self.protocol.headers(request),
            )
        except httpx.HTTPError as exc:
            sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
            raise _broken(request, exc, sent=sent, started=started, log=self.log) from None
        return _checked(
            request,
            status=raw.status_code,
            headers=raw.headers.items(),
            body=raw.content,
            started=started,
            log=self.log,
        )


def _broken(
    request: ApiRequest, exc: Exception, *, sent: bool, started: float, log: LogLike
) -> ArrConnectionError:
    """Log a call that got no complete answer and describe it (``sent``: it may have been processed)."""
    log_exchange(log, request, type(exc).__name__, time.monotonic() - started, None)
    return ArrConnectionError(
        f"ARR {request.operation} ({request.method} {request.path}) failed: "
        f"{type(exc).__name__}: {_short(exc)}",
        request_sent=sent,
        session_id=request.session_id,
    )


def _checked(
    request: ApiRequest,
    *,
    status: int,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    started: float,
    log: LogLike,
) -> ApiResponse:
    """Log one answer and raise the mapped error unless it succeeded (or is a 401 to refresh on)."""
    response = ApiResponse(status, lower_headers(headers), body)
    log_exchange(log, request, status, time.monotonic() - started, response.ms_cv)
    if 200 <= status < 300 or status == 401:
        return response
    raise error_for(request, response)


def check_new_lease(session: RenderingSession, new_total: timedelta, *, field: str, value: object) -> None:
    """Refuse a new lease total under the elapsed time or over 24 hours, naming the argument."""
    if session.status.will_never_be_ready:
        raise ArrInputError(
            f"session {session.session_id} is {session.status.value}; its lease can no longer be extended"
        )
    if new_total > MAX_LEASE:
        raise ArrInputError(
            f"{field}={value!r} would make the lease of session {session.session_id} "
            f"{format_timespan(new_total)} in total, over the service's 24 h limit"
        )
    if session.elapsed_time is not None and new_total <= session.elapsed_time:
        raise ArrInputError(
            f"{field}={value!r} gives session {session.session_id} a lease of "
            f"{format_timespan(new_total)} in total, not more than the "
            f"{format_timespan(session.elapsed_time)} already elapsed (the lease counts from the start)"
        )


def mask_secret_if(value: str | None) -> None:
    """Mask a connection secret when there is one."""
    if value:
        mask_secret(value)


def _refused(exc: requests.RequestException) -> bool:
    """True when no connection could be opened, so the request never reached the service."""
    cause = exc.args[0] if exc.args else None
    reason = cause.reason if isinstance(cause, MaxRetryError) else cause
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "…"


__all__ = ["ArrHook", "check_new_lease", "mask_secret", "parse_timespan"]
