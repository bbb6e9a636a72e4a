"""The two drivers of the protocol: sync with requests (tasks), async with httpx (triggers).

Each driver does the same three things, once: send one request (every HTTP call of the provider
passes through :meth:`SyncTransport.send` or :meth:`AsyncTransport.send`), retry it as
:mod:`.retry` says, and feed the answer (or the error) back into the protocol's generator.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import requests
from requests.adapters import HTTPAdapter
from tenacity import AsyncRetrying, Retrying
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

from airflow_provider_arr.client.config import ClientConfig
from airflow_provider_arr.client.errors import error_for, parse_retry_after
from airflow_provider_arr.client.failures import (
    CONNECT,
    DNS,
    SENT,
    TLS,
    URL,
    connection_error,
    kind_from_causes,
)
from airflow_provider_arr.client.messages import ApiRequest, ApiResponse, Exchange, LogLike
from airflow_provider_arr.client.pacing import (
    AsyncPacer,
    NoTurnInTime,
    Pacer,
    async_pacer,
    paced_burst,
    paced_rate,
    sync_pacer,
)
from airflow_provider_arr.client.protocol import ArrProtocol
from airflow_provider_arr.client.retry import CallStats, RetrySettings, retry_kwargs
from airflow_provider_arr.exceptions import ArrConnectionError, ArrError, ArrThrottledError
from airflow_provider_arr.models import RenderingSession

T = TypeVar("T")

#: The async client's 64 connections, in many small pools: on every request httpcore's pool checks
#: each of its idle connections (a system call per socket) and counts them (quadratic in its size),
#: which, with one pool of 64, cost more CPU than the rest of a poll; with pools of 2 it is noise.
POOLS = 32
CONNECTIONS_PER_POOL = 2


@dataclass(frozen=True)
class Finished(Generic[T]):
    """The value an exchange returned."""

    value: T


def first_step(exchange: Exchange[T]) -> ApiRequest | Finished[T]:
    """Start an exchange: its first request (or its result, if it needs none)."""
    try:
        return next(exchange)
    except StopIteration as done:
        return Finished(done.value)


def next_step(exchange: Exchange[T], outcome: ApiResponse | ArrError) -> ApiRequest | Finished[T]:
    """Feed an answer (or the error that replaced it) to an exchange: its next request, or its result."""
    try:
        if isinstance(outcome, ArrError):
            return exchange.throw(outcome)
        return exchange.send(outcome)
    except StopIteration as done:
        return Finished(done.value)


def log_call(log: LogLike, request: ApiRequest, status: int | str, started: float, ms_cv: str | None) -> None:
    """The one log line of every call: method, path, status, elapsed time and MS-CV."""
    elapsed_ms = (time.monotonic() - started) * 1000
    log.info("ARR %s %s -> %s in %.0f ms (MS-CV %s)", request.method, request.path, status, elapsed_ms, ms_cv)


def connection_failed(
    request: ApiRequest, exc: BaseException, kind: str, *, started: float, log: LogLike
) -> ArrConnectionError:
    """Log a call that got no complete answer and describe it (see :mod:`.failures`)."""
    log_call(log, request, type(exc).__name__, started, None)
    return connection_error(request, exc, kind)


def requests_failure_kind(exc: BaseException) -> str:
    """The kind of a requests failure (see :mod:`.failures`)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return TLS
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
        return URL
    if isinstance(exc, requests.exceptions.InvalidSchema):
        return URL
    if isinstance(exc, requests.ConnectTimeout):
        return CONNECT
    if isinstance(exc, requests.ConnectionError):
        cause = exc.args[0] if exc.args else None
        reason = cause.reason if isinstance(cause, MaxRetryError) else cause
        if isinstance(reason, NameResolutionError):
            return DNS
        if isinstance(reason, NewConnectionError):
            return kind_from_causes(exc) or CONNECT
    if not isinstance(exc, requests.RequestException):
        return TLS  # requests raises a bare OSError for a CA bundle it cannot read
    return kind_from_causes(exc) or SENT


def httpx_failure_kind(exc: BaseException) -> str:
    """The kind of an httpx failure (see :mod:`.failures`)."""
    import httpx

    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return URL
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return kind_from_causes(exc) or CONNECT
    return kind_from_causes(exc) or SENT


def account_key(config: ClientConfig) -> tuple[str, str]:
    """Whose rate limit a call spends: the service's account (endpoint and account id)."""
    return config.endpoint, config.account_id


def report(pacer: Pacer | AsyncPacer, request: ApiRequest, response: ApiResponse | None) -> None:
    """Tell the account's pacer how a paced call went (None: no answer, nothing learnt)."""
    if not request.authenticated:
        return
    if response is None:
        pacer.record(None)
    else:
        pacer.record(response.status, retry_after=parse_retry_after(response.headers.get("retry-after")))


def no_turn(request: ApiRequest, pacer: Pacer | AsyncPacer, exc: NoTurnInTime) -> ArrThrottledError:
    """The account's pacer has no turn for this call within what is left of its budget."""
    stats = pacer.stats()
    slowed = (
        f", down from {stats.configured_rate:.3g} after the service's 429 answers"
        if stats.rate < stats.configured_rate
        else ""
    )
    return ArrThrottledError(
        f"{request.label} not sent: the account's next turn is {exc.delay:.1f} s away (its rate: "
        f"{stats.rate:.3g} calls/s{slowed}), past what is left of this call's budget",
        operation=request.operation,
        session_id=request.session_id,
    )


def answered(request: ApiRequest, response: ApiResponse, *, started: float, log: LogLike) -> ApiResponse:
    """Log one answer; raise the mapped error unless it succeeded (or is a 401 to refresh on)."""
    log_call(log, request, response.status, started, response.ms_cv)
    if response.ok or response.status == 401:
        return response
    raise error_for(request, response)


class _Outcomes:
    """What both transports do with an attempt's outcome: tell the pacer, log, map errors."""

    pacer: Pacer | AsyncPacer
    log: LogLike

    def failed(
        self, request: ApiRequest, exc: BaseException, kind: str, started: float
    ) -> ArrConnectionError:
        """The error for an attempt that got no complete answer."""
        report(self.pacer, request, None)
        return connection_failed(request, exc, kind, started=started, log=self.log)

    def received(self, request: ApiRequest, response: ApiResponse, started: float) -> ApiResponse:
        """An attempt's answer, or the error it maps to."""
        report(self.pacer, request, response)
        return answered(request, response, started=started, log=self.log)


class SyncTransport(_Outcomes):
    """Drives the protocol with requests, for task code (one per hook)."""

    pacer: Pacer

    def __init__(self, protocol: ArrProtocol, log: LogLike) -> None:
        self.protocol = protocol
        self.config: ClientConfig = protocol.config
        self.log = log
        self.http = requests.Session()
        # Retries are tenacity's job, not urllib3's.
        adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=8)
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)
        self.stats = CallStats()
        # One per account in the process: every hook's calls to the account take turns here.
        self.pacer = sync_pacer(
            account_key(self.config),
            paced_rate(self.config.rate_limit),
            paced_burst(self.config.rate_burst),
        )

    def drive(self, exchange: Exchange[T], retry: RetrySettings | None = None) -> T:
        """Run one protocol exchange to its result (``retry``: another policy than the connection's)."""
        policy = retry or self.config.retry
        step = first_step(exchange)
        while not isinstance(step, Finished):
            step = next_step(exchange, self._with_retries(step, policy))
        return step.value

    def _with_retries(self, request: ApiRequest, policy: RetrySettings) -> ApiResponse | ArrError:
        budget_end = time.monotonic() + policy.throttle_timeout
        try:
            return Retrying(**retry_kwargs(policy, request, self.log, self.stats))(
                self.send, request, budget_end
            )
        except ArrError as exc:
            return exc

    def send(self, request: ApiRequest, budget_end: float = math.inf) -> ApiResponse:
        """One attempt of one request, in its turn among the account's calls (the STS is not
        paced), if that turn comes before ``budget_end`` (a ``time.monotonic()``)."""
        self.stats.calls += 1
        if request.authenticated:
            try:
                self.stats.paced += self.pacer.acquire(budget_end - time.monotonic())
            except NoTurnInTime as exc:
                raise no_turn(request, self.pacer, exc) from None
        started = time.monotonic()
        try:
            raw = self.http.request(
                request.method,
                request.url,
                params=request.params,
                json=request.json,
                headers=self.protocol.headers(request),
                timeout=self.config.timeout,
                # Per request: a session-level verify loses to REQUESTS_CA_BUNDLE in requests.
                verify=self.config.verify,
            )
        except (requests.RequestException, OSError) as exc:
            raise self.failed(request, exc, requests_failure_kind(exc), started) from None
        return self.received(
            request, ApiResponse.of(raw.status_code, raw.headers.items(), raw.content), started
        )


_TransportsByLoop = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[ClientConfig, "AsyncTransport"]]


class AsyncTransport(_Outcomes):
    """Drives the protocol with httpx, for triggers: one per connection settings and event loop.

    A triggerer runs hundreds of triggers in one event loop: sharing the connection pool and the
    STS token means one token fetch and a bounded number of sockets, not one of each per wait.
    Get one with :meth:`acquire` and give it back with :meth:`release`.
    """

    _shared: ClassVar[_TransportsByLoop] = weakref.WeakKeyDictionary()
    pacer: AsyncPacer

    def __init__(self, config: ClientConfig, log: LogLike, on_secret: Callable[[str], None]) -> None:
        import httpx

        self.config = config
        self.log = log
        self.protocol = ArrProtocol(config, on_secret=on_secret)
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
        self.stats = CallStats()
        # One per account in the event loop: every trigger's calls to the account take turns here.
        self.pacer = async_pacer(
            account_key(config), paced_rate(config.rate_limit), paced_burst(config.rate_burst)
        )

    @classmethod
    async def acquire(
        cls, config: ClientConfig, log: LogLike, on_secret: Callable[[str], None]
    ) -> AsyncTransport:
        """The transport of these settings in the running event loop (made on first use)."""
        transports = cls._shared.setdefault(asyncio.get_running_loop(), {})
        transport = transports.get(config)
        if transport is None or transport.pools[0].is_closed:
            transport = transports[config] = cls(config, log, on_secret)
        transport.users += 1
        return transport

    async def release(self) -> None:
        """Give the transport back; the last user closes its connections."""
        self.users -= 1
        if self.users <= 0:
            transports = self._shared.get(asyncio.get_running_loop(), {})
            if transports.get(self.config) is self:
                del transports[self.config]
            for pool in self.pools:
                await pool.aclose()

    async def drive(self, exchange: Exchange[T], retry: RetrySettings | None = None) -> T:
        """Run one protocol exchange to its result, fetching the shared token first if needed
        (``retry``: another policy than the connection's, e.g. a wait's deadline)."""
        policy = retry or self.config.retry
        if self.protocol.tokens.current() is None:
            async with self.token_lock:  # one STS call for all the waits that need a token
                if self.protocol.tokens.current() is None:
                    await self._drive(self.protocol.fetch_token(), policy)
        return await self._drive(exchange, policy)

    async def _drive(self, exchange: Exchange[T], policy: RetrySettings) -> T:
        step = first_step(exchange)
        while not isinstance(step, Finished):
            step = next_step(exchange, await self._with_retries(step, policy))
        return step.value

    async def _with_retries(self, request: ApiRequest, policy: RetrySettings) -> ApiResponse | ArrError:
        budget_end = time.monotonic() + policy.throttle_timeout
        try:
            async for attempt in AsyncRetrying(**retry_kwargs(policy, request, self.log, self.stats)):
                with attempt:
                    return await self.send(request, budget_end)
        except ArrError as exc:
            return exc
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def send(self, request: ApiRequest, budget_end: float = math.inf) -> ApiResponse:
        """One attempt of one request, in its turn among the account's calls (the STS is not
        paced), on a free connection of the least busy pool."""
        self.stats.calls += 1
        if request.authenticated:
            try:
                self.stats.paced += await self.pacer.acquire(budget_end - time.monotonic())
            except NoTurnInTime as exc:
                raise no_turn(request, self.pacer, exc) from None
        async with self.slots:
            pool = self.in_flight.index(min(self.in_flight))
            self.in_flight[pool] += 1
            try:
                return await self._send_on(self.pools[pool], request)
            finally:
                self.in_flight[pool] -= 1

    async def _send_on(self, http: Any, request: ApiRequest) -> ApiResponse:
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
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self.failed(request, exc, httpx_failure_kind(exc), started) from None
        return self.received(
            request, ApiResponse.of(raw.status_code, raw.headers.items(), raw.content), started
        )


#: How long one poll of the account watcher waits out 429s before the poll gives up (and its
#: waiters simply get their status at a later poll): the pacer keeps 429s rare.
WATCH_CALL_BUDGET = 60.0


class WatchSource:
    """The account watcher's view of the service: lists and reads through the event loop's
    transport of one connection's settings (see :mod:`.watch`)."""

    def __init__(self, config: ClientConfig, log: LogLike, on_secret: Callable[[str], None]) -> None:
        self.config, self.log, self.on_secret = config, log, on_secret
        self._transport: AsyncTransport | None = None
        self.policy = config.retry.until(WATCH_CALL_BUDGET)

    async def transport(self) -> AsyncTransport:
        """The shared transport (acquired on first use, released by :meth:`aclose`)."""
        if self._transport is None:
            self._transport = await AsyncTransport.acquire(self.config, self.log, self.on_secret)
        return self._transport

    async def list_active(self) -> tuple[list[RenderingSession], int]:
        """The account's active sessions, and how many calls (pages) the list took."""
        transport = await self.transport()
        sessions, pages = await transport.drive(transport.protocol.list_sessions_paged(), self.policy)
        return [s for s in sessions if s.status.is_active], pages

    async def get(self, session_id: str) -> RenderingSession:
        """One session, read by id."""
        transport = await self.transport()
        return await transport.drive(transport.protocol.get_session(session_id), self.policy)

    async def aclose(self) -> None:
        """Give the transport back."""
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.release()
