"""The two drivers of the protocol: sync with requests (tasks), async with httpx (triggers).

Each driver does the same three things, once: send one request (every HTTP call of the provider
passes through :meth:`SyncTransport.send` or :meth:`AsyncTransport.send`), retry it as
:mod:`.retry` says, and feed the answer (or the error) back into the protocol's generator.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import requests
from requests.adapters import HTTPAdapter
from tenacity import AsyncRetrying, Retrying
from urllib3.exceptions import MaxRetryError, NewConnectionError

from airflow_provider_arr.client.config import ClientConfig
from airflow_provider_arr.client.errors import error_for
from airflow_provider_arr.client.messages import ApiRequest, ApiResponse, Exchange, LogLike
from airflow_provider_arr.client.protocol import ArrProtocol
from airflow_provider_arr.client.retry import retry_kwargs
from airflow_provider_arr.exceptions import ArrConnectionError, ArrError

T = TypeVar("T")

#: The async client's 64 connections, in many small pools: on every request httpcore's pool checks
#: each of its idle connections (a system call per socket) and counts them (quadratic in its size),
#: which, with one pool of 64, cost more CPU than the rest of a poll; with pools of 2 it is noise.
POOLS = 32
CONNECTIONS_PER_POOL = 2
ERROR_TEXT_LIMIT = 300


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


def truncate(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    """``text``, cut to ``limit`` characters."""
    return text if len(text) <= limit else text[:limit] + "…"


def connection_failed(
    request: ApiRequest, exc: Exception, *, sent: bool, started: float, log: LogLike
) -> ArrConnectionError:
    """Log a call that got no complete answer and describe it (``sent``: it may have been processed)."""
    log_call(log, request, type(exc).__name__, started, None)
    return ArrConnectionError(
        f"{request.label} failed: {type(exc).__name__}: {truncate(str(exc))}",
        request_sent=sent,
        session_id=request.session_id,
    )


def answered(request: ApiRequest, response: ApiResponse, *, started: float, log: LogLike) -> ApiResponse:
    """Log one answer; raise the mapped error unless it succeeded (or is a 401 to refresh on)."""
    log_call(log, request, response.status, started, response.ms_cv)
    if response.ok or response.status == 401:
        return response
    raise error_for(request, response)


def _refused(exc: requests.RequestException) -> bool:
    """True when no connection could be opened, so the request never reached the service."""
    cause = exc.args[0] if exc.args else None
    reason = cause.reason if isinstance(cause, MaxRetryError) else cause
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


class SyncTransport:
    """Drives the protocol with requests, for task code (one per hook)."""

    def __init__(self, protocol: ArrProtocol, log: LogLike) -> None:
        self.protocol = protocol
        self.config: ClientConfig = protocol.config
        self.log = log
        self.http = requests.Session()
        # Retries are tenacity's job, not urllib3's.
        adapter = HTTPAdapter(max_retries=0, pool_connections=4, pool_maxsize=8)
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)

    def drive(self, exchange: Exchange[T]) -> T:
        """Run one protocol exchange to its result."""
        step = first_step(exchange)
        while not isinstance(step, Finished):
            step = next_step(exchange, self._with_retries(step))
        return step.value

    def _with_retries(self, request: ApiRequest) -> ApiResponse | ArrError:
        try:
            return Retrying(**retry_kwargs(self.config.retry, request, self.log))(self.send, request)
        except ArrError as exc:
            return exc

    def send(self, request: ApiRequest) -> ApiResponse:
        """One attempt of one request."""
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
        except requests.RequestException as exc:
            sent = not isinstance(exc, requests.ConnectTimeout) and not _refused(exc)
            raise connection_failed(request, exc, sent=sent, started=started, log=self.log) from None
        response = ApiResponse.of(raw.status_code, raw.headers.items(), raw.content)
        return answered(request, response, started=started, log=self.log)


_TransportsByLoop = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[ClientConfig, "AsyncTransport"]]


class AsyncTransport:
    """Drives the protocol with httpx, for triggers: one per connection settings and event loop.

    A triggerer runs hundreds of triggers in one event loop: sharing the connection pool and the
    STS token means one token fetch and a bounded number of sockets, not one of each per wait.
    Get one with :meth:`acquire` and give it back with :meth:`release`.
    """

    _shared: ClassVar[_TransportsByLoop] = weakref.WeakKeyDictionary()

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

    async def drive(self, exchange: Exchange[T]) -> T:
        """Run one protocol exchange to its result, fetching the shared token first if needed."""
        if self.protocol.tokens.current() is None:
            async with self.token_lock:  # one STS call for all the waits that need a token
                if self.protocol.tokens.current() is None:
                    await self._drive(self.protocol.fetch_token())
        return await self._drive(exchange)

    async def _drive(self, exchange: Exchange[T]) -> T:
        step = first_step(exchange)
        while not isinstance(step, Finished):
            step = next_step(exchange, await self._with_retries(step))
        return step.value

    async def _with_retries(self, request: ApiRequest) -> ApiResponse | ArrError:
        try:
            async for attempt in AsyncRetrying(**retry_kwargs(self.config.retry, request, self.log)):
                with attempt:
                    return await self.send(request)
        except ArrError as exc:
            return exc
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def send(self, request: ApiRequest) -> ApiResponse:
        """One attempt of one request, on a free connection of the least busy pool."""
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
        except httpx.HTTPError as exc:
            sent = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
            raise connection_failed(request, exc, sent=sent, started=started, log=self.log) from None
        response = ApiResponse.of(raw.status_code, raw.headers.items(), raw.content)
        return answered(request, response, started=started, log=self.log)
