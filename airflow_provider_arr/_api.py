"""The ARR protocol, free of I/O, shared by the hook (requests) and the trigger (httpx).

Each operation is a generator that yields :class:`ApiRequest` objects and receives
:class:`ApiResponse` objects (or has the transport's :class:`ArrError` thrown into it); the sync
and async drivers only perform the I/O and the retries. Request building, token handling, status
parsing, paging and error mapping therefore exist once, whatever the transport.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlsplit

from tenacity import (
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from airflow_provider_arr.exceptions import (
    ArrApiError,
    ArrAuthError,
    ArrBadRequestError,
    ArrConflictError,
    ArrConnectionError,
    ArrError,
    ArrInputError,
    ArrLeaseError,
    ArrNotFoundError,
    ArrServiceError,
    ArrSessionMayExistError,
    ArrThrottledError,
    ArrUnexpectedResponseError,
)
from airflow_provider_arr.models import (
    RenderingSession,
    SessionStatus,
    format_timespan,
    lease_minutes,
    parse_timespan,
    validate_region,
    validate_session_id,
)

T = TypeVar("T")


class LogLike(Protocol):
    """What the protocol needs of a logger (stdlib's or Airflow's structlog one)."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...


API_V1 = "v1"
API_2021 = "2021-01-01"
API_VERSIONS = (API_V1, API_2021)
DEFAULT_STS = "https://sts.mixedreality.azure.com"
TOKEN_LIFETIME_WITHOUT_EXP = 24 * 3600.0
TOKEN_REFRESH_MARGIN = 300.0
MAX_LIST_PAGES = 1000

# A protocol step: yields requests, receives responses, returns the operation's result.
Exchange = Generator["ApiRequest", "ApiResponse", T]


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request of the protocol, described without any transport."""

    operation: str
    method: str
    url: str
    params: Mapping[str, str] | None = None
    json: Any = None
    session_id: str | None = None
    # Safe to repeat after an answer that may have been processed (timeout, 5xx, dropped link).
    retry_safe: bool = True
    # Session calls carry the STS token; the token call carries the account key instead.
    authenticated: bool = True
    # Never in repr: the token request carries the account key here (tracebacks with locals,
    # error reporters and debug logs print reprs).
    extra_headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def path(self) -> str:
        """The URL's path, for logs."""
        return urlsplit(self.url).path


@dataclass(frozen=True)
class ApiResponse:
    """One HTTP answer: status, headers (lower-case names) and raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ms_cv(self) -> str | None:
        """The service's trace id."""
        return self.headers.get("ms-cv")

    def json(self) -> Any:
        """Decode the body as JSON; raises ValueError when it is not."""
        return json.loads(self.body)


@dataclass(frozen=True)
class RetrySettings:
    """How a failed call is retried: 429, 5xx and broken connections, with backoff and jitter.

    :param attempts: attempts in all, the first included.
    :param wait_min: first backoff, in seconds (doubled each time, with full jitter).
    :param wait_max: longest single wait, Retry-After included.
    :param total: give up rather than start a wait that would end past this many seconds.
    """

    attempts: int = 6
    wait_min: float = 1.0
    wait_max: float = 30.0
    total: float = 180.0

    def __post_init__(self) -> None:
        checks = (
            ("retry_limit", self.attempts, self.attempts >= 1 and isinstance(self.attempts, int)),
            ("retry_wait_min", self.wait_min, self.wait_min >= 0),
            ("retry_wait_max", self.wait_max, self.wait_max >= self.wait_min),
            ("retry_total_timeout", self.total, self.total > 0),
        )
        for name, value, ok in checks:
            if not ok:
                raise ArrInputError(f"{name} is invalid: {value!r}")


class wait_retry_after(wait_base):
    """Wait what the service's Retry-After asks (capped), else fall back to jittered backoff."""

    def __init__(self, fallback: wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        advised = getattr(exc, "retry_after", None)
        if advised is not None:
            # A little jitter so that many waiting clients do not come back in the same instant.
            return min(self.cap, advised + random.uniform(0, min(1.0, 0.1 * advised)))
        return float(self.fallback(retry_state))


def is_retryable(exc: BaseException, request: ApiRequest) -> bool:
    """Decide whether a failed attempt may be repeated without risking a duplicate effect."""
    if isinstance(exc, ArrThrottledError):
        return True  # a 429 was not processed
    if isinstance(exc, ArrServiceError):
        return request.retry_safe
    if isinstance(exc, ArrConnectionError):
        return request.retry_safe or not exc.request_sent
    return False


def retry_kwargs(settings: RetrySettings, request: ApiRequest, log: LogLike) -> dict[str, Any]:
    """Keyword arguments for tenacity's ``Retrying`` or ``AsyncRetrying``, identical for both."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "ARR %s %s failed (attempt %d of %d): %s; retrying in %.1f s",
            request.method,
            request.path,
            state.attempt_number,
            settings.attempts,
            exc,
            wait,
        )

    return {
        "retry": retry_if_exception(lambda exc: is_retryable(exc, request)),
        "wait": wait_retry_after(
            wait_random_exponential(multiplier=settings.wait_min, max=settings.wait_max), settings.wait_max
        ),
        "stop": stop_after_attempt(settings.attempts) | stop_before_delay(settings.total),
        "reraise": True,
        "before_sleep": before_sleep,
    }


def parse_retry_after(value: str | None) -> float | None:
    """Read a Retry-After header: seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _service_message(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            code, msg = err.get("code"), err.get("message")
            return ": ".join(str(p) for p in (code, msg) if p) or None
        if isinstance(data.get("message"), str):
            return str(data["message"])
    return None


#: What an answer means for the user, where the status alone does not say it.
_HINTS = {
    ("create", 409): "a session with this id already exists with other settings (size or lease); "
    "use another session_id",
    ("update", 422): "the new lease must be larger than the session's current lease",
    ("stop", 404): "the service does not know this session",
}


def error_for(request: ApiRequest, response: ApiResponse) -> ArrApiError:
    """Map a non-success answer to the provider's exception, quoting status, body and MS-CV."""
    status = response.status
    said = _service_message(response.body)
    what = f"ARR {request.operation} ({request.method} {request.path}) answered {status}"
    if said:
        what += f": {said}"
    hint = _HINTS.get((request.operation, status))
    if hint:
        what += f" ({hint})"
    common: dict[str, Any] = {
        "session_id": request.session_id,
        "http_status": status,
        "body": response.body,
        "ms_cv": response.ms_cv,
    }
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 400:
        return ArrBadRequestError(what, **common)
    if status in (401, 403):
        return ArrAuthError(what + "; check the account id and key of the connection", **common)
    if status == 404:
        return ArrNotFoundError(what, **common)
    if status == 409:
        return ArrConflictError(what, **common)
    if status == 422:
        return ArrLeaseError(what, **common)
    if status == 429:
        return ArrThrottledError(what, retry_after=retry_after, **common)
    if status >= 500:
        return ArrServiceError(what, retry_after=retry_after, **common)
    return ArrApiError(what, **common)


def _unexpected(request: ApiRequest, response: ApiResponse, why: str) -> ArrUnexpectedResponseError:
    return ArrUnexpectedResponseError(
        f"ARR {request.operation} ({request.method} {request.path}) answered {response.status} "
        f"with an unexpected body: {why}",
        session_id=request.session_id,
        http_status=response.status,
        body=response.body,
        ms_cv=response.ms_cv,
    )


def _json_object(request: ApiRequest, response: ApiResponse) -> dict[str, Any]:
    if not response.body.strip():
        raise _unexpected(request, response, "the body is empty, a JSON object was expected")
    try:
        data = response.json()
    except ValueError:
        raise _unexpected(request, response, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise _unexpected(request, response, f"a JSON object was expected, got {type(data).__name__}")
    return data


class _Fields:
    """Typed access to the fields of one JSON object of an answer, with errors that quote it."""

    def __init__(self, data: Mapping[str, Any], request: ApiRequest, response: ApiResponse) -> None:
        self.data, self.request, self.response = data, request, response

    def fail(self, why: str) -> ArrUnexpectedResponseError:
        return _unexpected(self.request, self.response, why)

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise self.fail(f"field {key!r} is missing")
            return None
        if not isinstance(value, str):
            raise self.fail(f"field {key!r} should be a string, got {value!r}")
        return value

    def status(self, key: str) -> SessionStatus:
        raw = self.text(key, required=True)
        try:
            return SessionStatus.parse(raw)
        except ValueError:
            raise self.fail(f"field {key!r} has an unknown status {raw!r}") from None

    def timespan(self, key: str) -> timedelta | None:
        raw = self.text(key)
        if raw is None:
            return None
        try:
            return parse_timespan(raw, field=key)
        except ArrInputError:
            raise self.fail(f"field {key!r} is not a timespan: {raw!r}") from None

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"field {key!r} should be a number, got {value!r}")
        return float(value)

    def integer(self, key: str) -> int | None:
        value = self.number(key)
        return None if value is None else int(value)

    def minutes(self, key: str) -> timedelta | None:
        value = self.number(key)
        return None if value is None else timedelta(minutes=value)

    def datetime(self, key: str) -> datetime | None:
        raw = self.text(key)
        if raw is None:
            return None
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(f"field {key!r} is not an ISO 8601 date: {raw!r}") from None


# --------------------------------------------------------------------------------------------
# Tokens


def jwt_expiry(token: str) -> tuple[float | None, float | None]:
    """Read ``exp`` and ``iat`` from a JWT without verifying it (the STS signed it, not us)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None, None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None, None
    if not isinstance(payload, dict):
        return None, None

    def num(key: str) -> float | None:
        value = payload.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    return num("exp"), num("iat")


@dataclass
class TokenCache:
    """The STS token of one client, reused until 5 minutes before its expiry."""

    token: str | None = field(default=None, repr=False)  # a secret: never in repr
    refresh_at: float = 0.0
    fetched: int = 0

    def current(self, now: float | None = None) -> str | None:
        """The cached token, or None when there is none or it is due for refresh."""
        now = time.time() if now is None else now
        return self.token if self.token and now < self.refresh_at else None

    def store(self, token: str, now: float | None = None) -> None:
        """Keep a new token; without ``exp`` it is assumed to live 24 hours."""
        now = time.time() if now is None else now
        exp, iat = jwt_expiry(token)
        if exp is None:
            exp, iat = now + TOKEN_LIFETIME_WITHOUT_EXP, now
        lifetime = exp - (iat if iat is not None else now)
        # Short-lived tokens (an emulator's) would otherwise be due for refresh on arrival.
        margin = min(TOKEN_REFRESH_MARGIN, max(lifetime, 0.0) / 2)
        self.token, self.refresh_at = token, exp - margin
        self.fetched += 1

    def invalidate(self) -> None:
        """Forget the token (after a 401)."""
        self.token, self.refresh_at = None, 0.0


# --------------------------------------------------------------------------------------------
# Connection settings


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs, read from an Airflow connection and validated."""

    account_id: str
    account_key: str = field(repr=False)
    endpoint: str
    sts_endpoint: str = DEFAULT_STS
    api_version: str = API_V1
    timeout: float = 30.0
    retry: RetrySettings = field(default_factory=RetrySettings)
    verify: bool | str = True
    conn_id: str | None = None

    @classmethod
    def from_connection(
        cls,
        *,
        conn_id: str | None,
        login: str | None,
        password: str | None,
        host: str | None,
        extra: Mapping[str, Any],
        overrides: Mapping[str, Any] | None = None,
    ) -> ClientConfig:
        """Build a config from the fields of a connection, naming the field that is wrong."""
        where = f"connection {conn_id!r}" if conn_id else "connection"

        def opt(name: str) -> Any:
            if overrides and overrides.get(name) is not None:
                return overrides[name]
            for key in (name, f"extra__azure_remote_rendering__{name}"):
                value = extra.get(key)
                if value not in (None, ""):
                    return value
            return None

        account_id = (login or "").strip()
        if not account_id:
            raise ArrInputError(f"{where}: login (the ARR account id) is empty")
        if not password:
            raise ArrInputError(f"{where}: password (the ARR account key) is empty")

        region = opt("region")
        if region is not None:
            region = validate_region(region, field=f"{where}: extra 'region'")
        endpoint = (host or "").strip()
        if endpoint:
            if "://" not in endpoint:
                endpoint = "https://" + endpoint
            _check_url(endpoint, f"{where}: host")
        elif region:
            endpoint = f"https://remoterendering.{region}.mixedreality.azure.com"
        else:
            raise ArrInputError(
                f"{where}: no service endpoint; set host (e.g. "
                "https://remoterendering.westus2.mixedreality.azure.com) or the extra 'region'"
            )

        sts = opt("sts_endpoint")
        domain = opt("account_domain")
        if sts:
            sts = str(sts).strip()
            _check_url(sts, f"{where}: extra 'sts_endpoint'")
        elif domain:
            domain = str(domain).strip().lower()
            if "." not in domain:
                raise ArrInputError(
                    f"{where}: extra 'account_domain' {domain!r} looks like a bare region; use the "
                    f"account domain, e.g. '{domain}.mixedreality.azure.com'"
                )
            sts = f"https://sts.{domain}"
        else:
            sts = DEFAULT_STS

        api_version = str(opt("api_version") or API_V1).strip()
        if api_version not in API_VERSIONS:
            raise ArrInputError(
                f"{where}: extra 'api_version' must be one of {list(API_VERSIONS)}, got {api_version!r}"
            )

        def number(name: str, default: float, *, integer: bool = False) -> Any:
            value = opt(name)
            if value is None:
                return default
            try:
                parsed = int(value) if integer else float(value)
            except (TypeError, ValueError):
                raise ArrInputError(f"{where}: {name} must be a number, got {value!r}") from None
            if parsed <= 0 and name != "retry_wait_min":
                raise ArrInputError(f"{where}: {name} must be positive, got {value!r}")
            return parsed

        base = RetrySettings()
        retry = RetrySettings(
            attempts=number("retry_limit", base.attempts, integer=True),
            wait_min=number("retry_wait_min", base.wait_min),
            wait_max=number("retry_wait_max", base.wait_max),
            total=number("retry_total_timeout", base.total),
        )
        verify: bool | str = True
        raw_verify = opt("verify")
        if isinstance(raw_verify, bool):
            verify = raw_verify
        elif isinstance(raw_verify, str):
            verify = {"true": True, "false": False}.get(raw_verify.lower(), raw_verify)

        return cls(
            account_id=account_id,
            account_key=password,
            endpoint=endpoint.rstrip("/"),
            sts_endpoint=sts.rstrip("/"),
            api_version=api_version,
            timeout=number("timeout", 30.0),
            retry=retry,
            verify=verify,
            conn_id=conn_id,
        )


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ArrInputError(f"{what} {url!r} is not an http(s) URL")


# --------------------------------------------------------------------------------------------
# Dialects


class Dialect(ABC):
    """Builds the requests of one API version and reads its answers into the common model."""

    name: str
    #: True when the client chooses session ids, which makes create idempotent.
    client_chosen_ids: bool

    def __init__(self, endpoint: str, account_id: str) -> None:
        self.endpoint = endpoint
        self.account = quote(account_id, safe="")

    @abstractmethod
    def create(
        self, *, session_id: str | None, size: str, lease: timedelta, models: list[Any]
    ) -> ApiRequest: ...

    @abstractmethod
    def created_id(self, request: ApiRequest, response: ApiResponse) -> str: ...

    @abstractmethod
    def get(self, session_id: str) -> ApiRequest: ...

    @abstractmethod
    def session(
        self, data: Mapping[str, Any], request: ApiRequest, response: ApiResponse
    ) -> RenderingSession:
        """Read one session object of an answer."""

    @abstractmethod
    def list_request(self, next_link: str | None = None) -> ApiRequest: ...

    @abstractmethod
    def list_page(
        self, request: ApiRequest, response: ApiResponse
    ) -> tuple[list[RenderingSession], str | None]: ...

    @abstractmethod
    def update(self, session_id: str, lease: timedelta) -> ApiRequest: ...

    @abstractmethod
    def stop(self, session_id: str) -> ApiRequest: ...

    def sessions_in(
        self, key: str, request: ApiRequest, response: ApiResponse
    ) -> tuple[list[RenderingSession], dict[str, Any]]:
        data = _json_object(request, response)
        items = data.get(key)
        if not isinstance(items, list):
            raise _unexpected(request, response, f"field {key!r} should be a list")
        sessions = []
        for item in items:
            if not isinstance(item, dict):
                raise _unexpected(request, response, f"a session should be a JSON object, got {item!r}")
            sessions.append(self.session(item, request, response))
        return sessions, data


class V1Dialect(Dialect):
    """The v1 API of the seed documentation."""

    name = API_V1
    client_chosen_ids = False

    def _url(self, tail: str) -> str:
        return f"{self.endpoint}/v1/accounts/{self.account}/sessions{tail}"

    def create(self, *, session_id: str | None, size: str, lease: timedelta, models: list[Any]) -> ApiRequest:
        return ApiRequest(
            "create",
            "POST",
            self._url("/create"),
            json={"maxLeaseTime": format_timespan(lease), "models": models, "size": size},
            retry_safe=False,
        )

    def created_id(self, request: ApiRequest, response: ApiResponse) -> str:
        fields = _Fields(_json_object(request, response), request, response)
        session_id = fields.text("sessionId", required=True)
        assert session_id is not None
        return session_id

    def get(self, session_id: str) -> ApiRequest:
        return ApiRequest(
            "get", "GET", self._url(f"/{quote(session_id, safe='')}/properties"), session_id=session_id
        )

    def session(
        self, data: Mapping[str, Any], request: ApiRequest, response: ApiResponse
    ) -> RenderingSession:
        f = _Fields(data, request, response)
        size = f.text("sessionSize")
        return RenderingSession(
            session_id=f.text("sessionId") or request.session_id or "",
            status=f.status("sessionStatus"),
            hostname=f.text("sessionHostname"),
            size=size.lower() if size else None,
            max_lease_time=f.timespan("sessionMaxLeaseTime"),
            elapsed_time=f.timespan("sessionElapsedTime"),
            message=f.text("message"),
        )

    def list_request(self, next_link: str | None = None) -> ApiRequest:
        return ApiRequest("list", "GET", self._url(""))

    def list_page(
        self, request: ApiRequest, response: ApiResponse
    ) -> tuple[list[RenderingSession], str | None]:
        sessions, _ = self.sessions_in("sessions", request, response)
        return sessions, None

    def update(self, session_id: str, lease: timedelta) -> ApiRequest:
        return ApiRequest(
            "update",
            "PATCH",
            self._url(f"/{quote(session_id, safe='')}"),
            json={"maxLeaseTime": format_timespan(lease)},
            session_id=session_id,
        )

    def stop(self, session_id: str) -> ApiRequest:
        return ApiRequest(
            "stop", "DELETE", self._url(f"/{quote(session_id, safe='')}"), session_id=session_id
        )


class V2021Dialect(Dialect):
    """The 2021-01-01 API (what the official SDK speaks): client-chosen ids, idempotent create."""

    name = API_2021
    client_chosen_ids = True
    params = {"api-version": API_2021}

    def _url(self, tail: str = "") -> str:
        return f"{self.endpoint}/accounts/{self.account}/sessions{tail}"

    def create(self, *, session_id: str | None, size: str, lease: timedelta, models: list[Any]) -> ApiRequest:
        assert session_id is not None, "the 2021-01-01 dialect needs a client-chosen session id"
        return ApiRequest(
            "create",
            "PUT",
            self._url(f"/{quote(session_id, safe='')}"),
            params=self.params,
            json={"maxLeaseTimeMinutes": lease_minutes(lease), "size": size.capitalize()},
            session_id=session_id,
        )

    def created_id(self, request: ApiRequest, response: ApiResponse) -> str:
        return self.session(_json_object(request, response), request, response).session_id

    def get(self, session_id: str) -> ApiRequest:
        return ApiRequest(
            "get",
            "GET",
            self._url(f"/{quote(session_id, safe='')}"),
            params=self.params,
            session_id=session_id,
        )

    def session(
        self, data: Mapping[str, Any], request: ApiRequest, response: ApiResponse
    ) -> RenderingSession:
        f = _Fields(data, request, response)
        size = f.text("size")
        error = data.get("error")
        code = message = None
        if isinstance(error, dict):
            code = error.get("code") if isinstance(error.get("code"), str) else None
            message = error.get("message") if isinstance(error.get("message"), str) else None
        elif error is not None:
            raise f.fail(f"field 'error' should be an object or null, got {error!r}")
        return RenderingSession(
            session_id=f.text("id") or request.session_id or "",
            status=f.status("status"),
            hostname=f.text("hostname"),
            size=size.lower() if size else None,
            max_lease_time=f.minutes("maxLeaseTimeMinutes"),
            elapsed_time=f.minutes("elapsedTimeMinutes"),
            message=message,
            arr_inspector_port=f.integer("arrInspectorPort"),
            handshake_port=f.integer("handshakePort"),
            teraflops=f.number("teraflops"),
            creation_time=f.datetime("creationTime"),
            error_code=code,
        )

    def list_request(self, next_link: str | None = None) -> ApiRequest:
        if next_link is None:
            return ApiRequest("list", "GET", self._url(), params=self.params)
        # Follow @nextLink only on our own service: it carries our bearer token.
        ours, theirs = urlsplit(self.endpoint), urlsplit(next_link)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
            raise ArrUnexpectedResponseError(
                f"ARR list answered an @nextLink on another host ({next_link!r}); not following it"
            )
        params = None if "api-version=" in (theirs.query or "") else self.params
        return ApiRequest("list", "GET", next_link, params=params)

    def list_page(
        self, request: ApiRequest, response: ApiResponse
    ) -> tuple[list[RenderingSession], str | None]:
        sessions, data = self.sessions_in("sessions", request, response)
        next_link = data.get("@nextLink")
        if next_link is not None and not isinstance(next_link, str):
            raise _unexpected(request, response, f"'@nextLink' should be a string, got {next_link!r}")
        return sessions, next_link or None

    def update(self, session_id: str, lease: timedelta) -> ApiRequest:
        return ApiRequest(
            "update",
            "PATCH",
            self._url(f"/{quote(session_id, safe='')}"),
            params=self.params,
            json={"maxLeaseTimeMinutes": lease_minutes(lease)},
            session_id=session_id,
        )

    def stop(self, session_id: str) -> ApiRequest:
        return ApiRequest(
            "stop",
            "POST",
            self._url(f"/{quote(session_id, safe='')}/:stop"),
            params=self.params,
            session_id=session_id,
        )


DIALECTS: dict[str, type[Dialect]] = {API_V1: V1Dialect, API_2021: V2021Dialect}


# --------------------------------------------------------------------------------------------
# The protocol


@dataclass(frozen=True)
class CreateResult:
    """What a create did: the session id, whether it found an existing session, and the session
    as the answer described it (2021-01-01 only; v1 answers with the id alone)."""

    session_id: str
    reattached: bool
    session: RenderingSession | None


class ArrProtocol:
    """The operations of the session API as request/response exchanges, without I/O.

    :param config: the validated connection settings.
    :param on_secret: called with every secret learnt (the account key, each token) so that the
        caller registers it with Airflow's secrets masker.
    """

    def __init__(self, config: ClientConfig, *, on_secret: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.dialect: Dialect = DIALECTS[config.api_version](config.endpoint, config.account_id)
        self.tokens = TokenCache()
        self._on_secret = on_secret or (lambda _secret: None)

    # -- auth --------------------------------------------------------------------------------

    def token_request(self) -> ApiRequest:
        """The STS call; the only request that carries the account key."""
        account = quote(self.config.account_id, safe="")
        return ApiRequest(
            "token",
            "GET",
            f"{self.config.sts_endpoint}/accounts/{account}/token",
            authenticated=False,
            extra_headers={"Authorization": f"Bearer {self.config.account_id}:{self.config.account_key}"},
        )

    def fetch_token(self) -> Exchange[str]:
        """Get a new token from the STS and cache it."""
        request = self.token_request()
        response = yield request
        if response.status == 401:
            raise ArrAuthError(
                f"the STS refused the key of account {self.config.account_id!r} "
                f"({self.config.sts_endpoint}); check the connection's login and password",
                http_status=401,
                body=response.body,
                ms_cv=response.ms_cv,
            )
        fields = _Fields(_json_object(request, response), request, response)
        token = fields.text("AccessToken", required=True)
        assert token is not None
        self._on_secret(token)
        self.tokens.store(token)
        return token

    def authorized(self, request: ApiRequest) -> Exchange[ApiResponse]:
        """Send ``request`` with the cached token; on a 401, refresh the token once and resend."""
        token = self.tokens.current()
        if token is None:
            token = yield from self.fetch_token()
        response = yield request
        if response.status == 401:
            self.tokens.invalidate()
            yield from self.fetch_token()
            response = yield request
            if response.status == 401:
                raise error_for(request, response)
        return response

    def headers(self, request: ApiRequest) -> dict[str, str]:
        """Headers for one send of ``request`` (the token is read at send time)."""
        headers = {"Accept": "application/json", "User-Agent": f"airflow-provider-arr/{_version()}"}
        if request.authenticated and self.tokens.token:
            headers["Authorization"] = f"Bearer {self.tokens.token}"
        headers.update(request.extra_headers)
        return headers

    # -- operations ----------------------------------------------------------------------------

    def create_session(
        self, *, session_id: str | None, size: str, lease: timedelta, models: list[Any]
    ) -> Exchange[CreateResult]:
        """Create a session (or, with client-chosen ids, find the one a lost answer created)."""
        request = self.dialect.create(session_id=session_id, size=size, lease=lease, models=models)
        try:
            response = yield from self.authorized(request)
        except (ArrServiceError, ArrConnectionError) as exc:
            if self.dialect.client_chosen_ids or (
                isinstance(exc, ArrConnectionError) and not exc.request_sent
            ):
                raise
            raise (yield from self._may_exist(exc, size, lease)) from exc
        if self.dialect.client_chosen_ids:
            session = self.dialect.session(_json_object(request, response), request, response)
            return CreateResult(session.session_id, reattached=response.status == 200, session=session)
        try:
            created = self.dialect.created_id(request, response)
        except ArrUnexpectedResponseError as exc:
            # Accepted (2xx), so the session exists, but its id could not be read from the answer.
            raise (yield from self._may_exist(exc, size, lease)) from exc
        return CreateResult(created, reattached=False, session=None)

    def _may_exist(self, exc: ArrError, size: str, lease: timedelta) -> Exchange[ArrSessionMayExistError]:
        """The error for a v1 create that the service may have processed, listing candidates."""
        candidates = yield from self._orphan_candidates(size, lease)
        listed = ", ".join(candidates) if candidates else "none found"
        return ArrSessionMayExistError(
            "ARR create failed after the service may have processed it, so a session may exist "
            "and be billed; v1 create is not idempotent and was not retried. Active sessions "
            f"with the same size and lease: {listed}. Stop the one this task created if it is "
            f"not another task's (cause: {exc.message})",
            candidates=candidates,
            http_status=exc.http_status,
            body=exc.body,
            ms_cv=exc.ms_cv,
        )

    def _orphan_candidates(self, size: str, lease: timedelta) -> Exchange[tuple[str, ...]]:
        try:
            sessions = yield from self.list_sessions()
        except ArrError:
            return ()
        return tuple(
            s.session_id
            for s in sessions
            if s.status.is_active and s.size == size and s.max_lease_time == lease
        )

    def get_session(self, session_id: str) -> Exchange[RenderingSession]:
        """Read one session."""
        request = self.dialect.get(session_id)
        response = yield from self.authorized(request)
        return self.dialect.session(_json_object(request, response), request, response)

    def list_sessions(self) -> Exchange[list[RenderingSession]]:
        """List the account's sessions, following every page."""
        sessions: list[RenderingSession] = []
        next_link: str | None = None
        for _ in range(MAX_LIST_PAGES):
            request = self.dialect.list_request(next_link)
            response = yield from self.authorized(request)
            page, next_link = self.dialect.list_page(request, response)
            sessions.extend(page)
            if next_link is None:
                return sessions
        raise ArrUnexpectedResponseError(f"ARR list did not end after {MAX_LIST_PAGES} pages")

    def update_session(self, session_id: str, lease: timedelta) -> Exchange[None]:
        """Set the session's lease: the new total since the session started."""
        yield from self.authorized(self.dialect.update(session_id, lease))

    def stop_session(self, session_id: str) -> Exchange[None]:
        """Ask the service to stop the session."""
        yield from self.authorized(self.dialect.stop(session_id))

    def ensure_stopped(self, session_id: str) -> Exchange[str]:
        """Stop a session unless it has ended or is unknown; say which, for the log.

        Idempotent: a 404 means there is nothing to stop, and a refusal (400/409) of a session
        that has already ended is not a failure.
        """
        try:
            yield from self.stop_session(session_id)
        except ArrNotFoundError:
            return f"session {session_id} is unknown to the service (404): nothing to stop"
        except (ArrBadRequestError, ArrConflictError):
            session = yield from self.get_session(session_id)
            if session.status.is_active:
                raise
            return f"session {session_id} is already {session.status.value}: nothing to stop"
        return f"session {session_id} stop requested"


def new_session_id(prefix: str = "arr") -> str:
    """A fresh client-chosen session id for the 2021-01-01 dialect."""
    import uuid

    return validate_session_id(f"{prefix}-{uuid.uuid4()}")


def log_exchange(
    log: LogLike, request: ApiRequest, status: int | str, elapsed: float, ms_cv: str | None
) -> None:
    """The one log line of every call: method, path, status, elapsed time and MS-CV."""
    log.info(
        "ARR %s %s -> %s in %.0f ms (MS-CV %s)", request.method, request.path, status, elapsed * 1000, ms_cv
    )


def lower_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header names in lower case, for lookups that do not depend on the transport."""
    return {k.lower(): v for k, v in items}


def _version() -> str:
    from airflow_provider_arr import __version__

    return __version__
