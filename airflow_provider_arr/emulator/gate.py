"""The outermost ASGI layer: MS-CV on every answer; for admin calls, the admin token check; for
ARR and STS calls, slowness, fault rules, throttling, random errors and token checks, before the
routes see the request.

It runs as raw ASGI rather than as Starlette middleware, both because it is on every call's path
and because dropping a connection needs the server's own ``send``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .dialects import MAX_BODY_BYTES
from .errors import INVALID_TOKEN_CHALLENGE, ApiError, dumps, error_code, new_ms_cv
from .state import EmulatorState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger(__name__)

_ACCOUNT = r"([^/]+)"
_SESSION = r"[^/]+"
# (method, path, operation); the first group of each path is the account id.
_ROUTES: dict[str, list[tuple[re.Pattern[str], str]]] = {}
for _method, _path, _operation in (
    ("GET", rf"/[Aa]ccounts/{_ACCOUNT}/token", "token"),
    ("POST", rf"/v1/accounts/{_ACCOUNT}/sessions/create", "create"),
    ("GET", rf"/v1/accounts/{_ACCOUNT}/sessions", "list"),
    ("GET", rf"/v1/accounts/{_ACCOUNT}/sessions/{_SESSION}/properties", "get"),
    ("PATCH", rf"/v1/accounts/{_ACCOUNT}/sessions/{_SESSION}", "update"),
    ("DELETE", rf"/v1/accounts/{_ACCOUNT}/sessions/{_SESSION}", "stop"),
    ("GET", rf"/accounts/{_ACCOUNT}/sessions", "list"),
    ("PUT", rf"/accounts/{_ACCOUNT}/sessions/{_SESSION}", "create"),
    ("GET", rf"/accounts/{_ACCOUNT}/sessions/{_SESSION}", "get"),
    ("PATCH", rf"/accounts/{_ACCOUNT}/sessions/{_SESSION}", "update"),
    ("POST", rf"/accounts/{_ACCOUNT}/sessions/{_SESSION}/:stop", "stop"),
):
    _ROUTES.setdefault(_method, []).append((re.compile(_path), _operation))

ADMIN_PREFIX = "/_emulator"
ADMIN_CHALLENGE = 'Bearer realm="arr-emulator-admin"'
ADMIN_HOW_TO = (
    "start the emulator with --admin-token TOKEN (or the environment variable "
    "ARR_EMULATOR_ADMIN_TOKEN=TOKEN) and send 'Authorization: Bearer TOKEN' with every "
    "/_emulator call"
)
_UNCOUNTED = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/favicon.ico"})


def classify(method: str, path: str) -> tuple[str, str] | None:
    """``(operation, account id)`` of an ARR or STS call, ``None`` for anything else."""
    for pattern, operation in _ROUTES.get(method, ()):
        match = pattern.fullmatch(path)
        if match:
            return operation, match.group(1)
    return None


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` only accepts connections from this machine."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def admin_rejection(state: EmulatorState, authorization: bytes | None) -> ApiError | None:
    """Why an admin call with this ``Authorization`` header is refused, or ``None`` if it is not.

    With an admin token configured, the call must carry it as a bearer token. Without one, the
    admin API is open on a loopback address and closed on any other.
    """
    token = state.config.admin_token
    if token is None:
        host = state.listen_host
        if host is None or is_loopback(host):
            return None
        return ApiError(
            401,
            f"The admin API is disabled: the emulator listens on {host or 'every interface'} "
            f"without an admin token. To enable it, {ADMIN_HOW_TO}.",
            headers={"WWW-Authenticate": ADMIN_CHALLENGE},
        )
    scheme, _, given = (authorization or b"").partition(b" ")
    if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token.encode()):
        return None
    return ApiError(
        401,
        "The admin API needs the admin token: send 'Authorization: Bearer TOKEN' with the token "
        "the emulator was started with (--admin-token or ARR_EMULATOR_ADMIN_TOKEN).",
        headers={"WWW-Authenticate": ADMIN_CHALLENGE},
    )


async def _discard(message: Message) -> None:
    """A ``send`` for answers nobody must see (``lose_answer``)."""


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def send_error(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None, code: str | None = None
) -> None:
    """Answer an error in the service's shape, straight from ASGI."""
    body = dumps({"error": {"code": code or error_code(status), "message": message}})
    raw = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Gate:
    """Wrap the FastAPI app (see the module docstring)."""

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self._handle(scope, receive, send)
        except asyncio.CancelledError:
            # The server is shutting down with this call in flight (a delay, slowness): the client
            # sees the connection go, as with a real server going away, rather than a 500.
            await self._drop(send, send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        cv = (b"ms-cv", new_ms_cv())
        started = False

        async def send_with_cv(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), cv]
            await send(message)

        path: str = scope["path"]
        if path.startswith(ADMIN_PREFIX):
            refused = admin_rejection(self.state, _header(scope, b"authorization"))
            if refused is not None:
                await send_error(send_with_cv, refused.status, refused.message, refused.headers)
                return
        if path.startswith(ADMIN_PREFIX) or path in _UNCOUNTED:
            await self._app(scope, receive, send_with_cv, lambda: started)
            return
        state = self.state
        state.count("requests")
        call = classify(scope["method"], path)
        if call is None:
            await self._app(scope, receive, send_with_cv, lambda: started)
            return
        operation, account = call
        state.count(operation)
        if state.config.slow:
            await asyncio.sleep(state.config.slow)
        with state.lock:
            decision = state.faults.decide(operation, state.rng)
        if decision.delay:
            state.count("delayed")
            await asyncio.sleep(decision.delay)
        rule = decision.rule
        if rule is not None and rule.action == "status":
            headers = {}
            if rule.retry_after is not None:
                headers["Retry-After"] = str(math.ceil(rule.retry_after))
            if rule.status == 401:
                headers["WWW-Authenticate"] = INVALID_TOKEN_CHALLENGE
            self._count_error(rule.status)
            await send_error(send_with_cv, rule.status, "Injected by the emulator's fault rules.", headers)
            return
        if rule is not None and rule.action == "drop":
            state.count("dropped")
            await self._drop(send, send_with_cv)
            return
        if rule is not None and rule.action == "lose_answer":
            state.count("dropped")
            await self._serve(scope, receive, _discard, operation, account, started=lambda: False)
            await self._drop(send, send_with_cv)
            return
        await self._serve(scope, receive, send_with_cv, operation, account, started=lambda: started)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        operation: str,
        account: str,
        *,
        started: Callable[[], bool],
    ) -> None:
        """Throttling, random errors and authentication of session calls, then the routes."""
        rejection = self._reject(scope, operation, account)
        if rejection is not None:
            await send_error(send, rejection.status, rejection.message, rejection.headers, rejection.code)
            return
        await self._app(scope, receive, send, started)

    def _reject(self, scope: Scope, operation: str, account: str) -> ApiError | None:
        state = self.state
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return ApiError(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.")
        if operation == "token":
            return None
        config = state.config
        with state.lock:
            wait = state.throttle(account)
            failing = config.error_rate > 0 and state.rng.random() < config.error_rate
            status = state.rng.choice((500, 503)) if failing else 0
        if wait:
            state.count("throttled")
            headers = {"Retry-After": str(max(1, math.ceil(wait)))} if config.retry_after else {}
            return ApiError(
                429, "Too many requests: slow down (5 to 10 seconds between calls).", headers=headers
            )
        if status:
            state.count("injected_errors")
            return ApiError(status, "Random failure injected by the emulator (error_rate).")
        authorization = _header(scope, b"authorization")
        token_account = None
        if authorization is not None and authorization[:7].lower() == b"bearer ":
            token_account = state.tokens.account_of(authorization[7:].strip().decode("latin-1"))
        if token_account is None:
            state.count("unauthorized")
            return ApiError(
                401,
                "The access token is missing, invalid or expired.",
                headers={"WWW-Authenticate": INVALID_TOKEN_CHALLENGE},
            )
        if account != config.account_id or token_account != account:
            return ApiError(404, f"No account with id '{account}' exists.")
        return None

    def _count_error(self, status: int) -> None:
        self.state.count("injected_errors")
        if status == 429:
            self.state.count("throttled")

    async def _app(self, scope: Scope, receive: Receive, send: Send, started: Callable[[], bool]) -> None:
        """The routes; an unexpected exception becomes a 500 in the service's shape."""
        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if not started():
                await send_error(send, 500, "Unexpected error in the emulator.")

    async def _drop(self, raw_send: Send, send: Send) -> None:
        """Close the connection without a (complete) answer.

        Under uvicorn the server's ``send`` is a method of the request cycle, which holds the
        transport: abort it, so that the client sees the connection go with no answer at all. Under
        another server, start an answer announcing a body that never comes: the server then closes
        the connection mid-answer.
        """
        cycle = getattr(raw_send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is not None and hasattr(transport, "abort"):
            transport.abort()
            # Let the server see the disconnection, so that it neither logs nor answers a 500.
            for _ in range(100):
                if getattr(cycle, "disconnected", True):
                    break
                await asyncio.sleep(0.001)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
