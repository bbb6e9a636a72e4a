"""Exceptions raised by the ARR provider.

Every exception subclasses :class:`airflow.exceptions.AirflowException` and carries what support
needs to trace a failed call: the session id, the HTTP status, an excerpt of the body and the
service's ``MS-CV`` trace id. None of them ever holds the account key or an access token.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_arr._compat import AirflowException, AirflowFailException

BODY_EXCERPT_CHARS = 500


def excerpt(body: str | bytes | None, limit: int = BODY_EXCERPT_CHARS) -> str | None:
    """Return at most ``limit`` characters of a response body, decoded leniently."""
    if body is None:
        return None
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


class ArrError(AirflowException):
    """Base class of every error of this provider.

    :param message: what went wrong, in words a user can act on.
    :param session_id: the session concerned, if any.
    :param http_status: the HTTP status of the answer, if there was one.
    :param body: the answer's body (only an excerpt is kept).
    :param ms_cv: the service's ``MS-CV`` trace id of the answer.
    :param operation: the call that failed (``token``, ``create``, ``get``, ...), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        operation: str | None = None,
        session_id: str | None = None,
        http_status: int | None = None,
        body: str | bytes | None = None,
        ms_cv: str | None = None,
    ) -> None:
        self.message = message
        self.operation = operation
        self.session_id = session_id
        self.http_status = http_status
        self.body = excerpt(body)
        self.ms_cv = ms_cv
        super().__init__(self._render())

    def details(self) -> dict[str, Any]:
        """What support needs of this error (operation, session, status, body, MS-CV), to carry
        over to an error that wraps it."""
        return {
            "operation": self.operation,
            "session_id": self.session_id,
            "http_status": self.http_status,
            "body": self.body,
            "ms_cv": self.ms_cv,
        }

    def _render(self) -> str:
        details = []
        if self.session_id:
            details.append(f"session_id={self.session_id}")
        if self.http_status is not None:
            details.append(f"status={self.http_status}")
        if self.ms_cv:
            details.append(f"MS-CV={self.ms_cv}")
        if self.body is not None:
            details.append(f"body={self.body!r}")
        return f"{self.message} ({', '.join(details)})" if details else self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments: rebuild from the message and the attributes.
        return (_rebuild, (type(self), self.message, self.__dict__.copy()))


def _rebuild(cls: type[ArrError], message: str, state: dict[str, object]) -> ArrError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    err.args = (err._render(),)
    return err


class ArrInputError(ArrError):
    """An argument or a connection field is invalid; raised before any request is sent."""


class ArrConnectionError(ArrError):
    """The service could not be reached, or the connection broke before a complete answer.

    ``request_sent`` is False only when the request certainly never reached the service
    (connection refused, connect timeout, name resolution, TLS handshake), so that the call is
    safe to repeat. ``permanent`` is True when no retry can help (a host that does not resolve,
    a certificate that does not verify, a malformed URL): the message names the setting to fix.
    """

    def __init__(
        self, message: str, *, request_sent: bool = True, permanent: bool = False, **kwargs: object
    ) -> None:
        self.request_sent = request_sent
        self.permanent = permanent
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class ArrApiError(ArrError):
    """The service answered with an error, or with something that is not a valid answer."""


class ArrBadRequestError(ArrApiError):
    """400: the service rejected the request."""


class ArrAuthError(ArrApiError):
    """401/403: the account id, key, or token was refused."""


class ArrNotFoundError(ArrApiError):
    """404: no such session (or account) on this service."""


class ArrConflictError(ArrApiError):
    """409: a session with this id exists with other settings."""


class ArrLeaseError(ArrApiError):
    """422: the new lease is not larger than the current one."""


class ArrThrottledError(ArrApiError):
    """429: too many calls; ``retry_after`` holds the service's advice in seconds, if it gave one.

    Raised to the caller only once the throttle budget is spent: ``waited`` then holds how long
    the call kept trying, and ``throttled`` how many 429 answers it saw.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        waited: float | None = None,
        throttled: int = 1,
        **kwargs: object,
    ) -> None:
        self.retry_after = retry_after
        self.waited = waited
        self.throttled = throttled
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class ArrServiceError(ArrApiError):
    """5xx: the service failed; ``retry_after`` holds its advice in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class ArrUnexpectedResponseError(ArrApiError):
    """The answer could not be understood: not JSON, a field missing, an unknown status."""


class ArrSessionMayExistError(ArrError):
    """A v1 create failed after the service may have processed it: a session may exist.

    v1 create is not idempotent, so it is never retried after such a failure.
    ``candidates`` lists sessions found afterwards that may be the one created.
    """

    def __init__(self, message: str, *, candidates: tuple[str, ...] = (), **kwargs: object) -> None:
        self.candidates = candidates
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class ArrSessionLeftRunningError(ArrError):
    """A stop could not be done within its budget: the session is still running and billed.

    The message says until when its lease bills at most and the exact command to stop it by hand.
    """


class ArrSessionFailedError(ArrError, AirflowFailException):
    """A session reached a state from which it will never become ready (error, expired, stopped).

    Also an ``AirflowFailException``: retrying the task cannot revive the session, so the task
    fails at once instead of using up its retries.
    """

    def __init__(self, message: str, *, status: str | None = None, **kwargs: object) -> None:
        self.status = status
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
