"""What travels between the protocol and a transport: one request, one answer."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class LogLike(Protocol):
    """What the client needs of a logger (stdlib's or Airflow's structlog one)."""

    def info(self, msg: Any, /, *args: Any) -> Any: ...

    def warning(self, msg: Any, /, *args: Any) -> Any: ...

    def exception(self, msg: Any, /, *args: Any) -> Any: ...


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

    @property
    def label(self) -> str:
        """``create (POST /v1/...)``: how errors and logs name the call."""
        return f"ARR {self.operation} ({self.method} {self.path})"


@dataclass(frozen=True)
class ApiResponse:
    """One HTTP answer: status, headers (lower-case names) and raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @classmethod
    def of(cls, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> ApiResponse:
        """Build an answer from any transport's parts, with header names in lower case."""
        return cls(status, {k.lower(): v for k, v in headers}, body)

    @property
    def ms_cv(self) -> str | None:
        """The service's trace id."""
        return self.headers.get("ms-cv")

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return 200 <= self.status < 300

    def json(self) -> Any:
        """Decode the body as JSON; raises ValueError when it is not."""
        return json.loads(self.body)


# A protocol step: yields requests, receives responses, returns the operation's result.
Exchange = Generator[ApiRequest, ApiResponse, T]
