"""From an answer to an exception: error mapping, and typed reading of answer fields.

Every error quotes the call, the status, the service's message, an excerpt of the body and the
MS-CV trace id (the exception classes themselves live in :mod:`airflow_provider_arr.exceptions`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from airflow_provider_arr.client.messages import ApiRequest, ApiResponse
from airflow_provider_arr.exceptions import (
    ArrApiError,
    ArrAuthError,
    ArrBadRequestError,
    ArrConflictError,
    ArrInputError,
    ArrLeaseError,
    ArrNotFoundError,
    ArrServiceError,
    ArrThrottledError,
    ArrUnexpectedResponseError,
)
from airflow_provider_arr.models import SessionStatus, parse_timespan

#: What an answer means for the user, where the status alone does not say it.
HINTS = {
    ("create", 409): "a session with this id already exists with other settings (size or lease); "
    "use another session_id",
    ("update", 422): "the new lease must be larger than the session's current lease",
    ("stop", 404): "the service does not know this session",
}


def parse_retry_after(value: str | None) -> float | None:
    """Read a Retry-After header: seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def service_message(body: bytes) -> str | None:
    """The service's own words in an error body (``code: message``), if it gave any."""
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


def error_for(request: ApiRequest, response: ApiResponse) -> ArrApiError:
    """Map a non-success answer to the provider's exception, quoting status, body and MS-CV."""
    status = response.status
    said = service_message(response.body)
    what = f"{request.label} answered {status}"
    if said:
        what += f": {said}"
    hint = HINTS.get((request.operation, status))
    if hint:
        what += f" ({hint})"
    common: dict[str, Any] = {
        "operation": request.operation,
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


def unexpected(request: ApiRequest, response: ApiResponse, why: str) -> ArrUnexpectedResponseError:
    """An answer that succeeded but cannot be understood."""
    return ArrUnexpectedResponseError(
        f"{request.label} answered {response.status} with an unexpected body: {why}",
        operation=request.operation,
        session_id=request.session_id,
        http_status=response.status,
        body=response.body,
        ms_cv=response.ms_cv,
    )


def json_object(request: ApiRequest, response: ApiResponse) -> dict[str, Any]:
    """The answer's body as a JSON object, or an error that quotes it."""
    if not response.body.strip():
        raise unexpected(request, response, "the body is empty, a JSON object was expected")
    try:
        data = response.json()
    except ValueError:
        raise unexpected(request, response, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise unexpected(request, response, f"a JSON object was expected, got {type(data).__name__}")
    return data


class AnswerFields:
    """Typed access to the fields of one JSON object of an answer, with errors that quote it."""

    def __init__(self, data: Mapping[str, Any], request: ApiRequest, response: ApiResponse) -> None:
        self.data, self.request, self.response = data, request, response

    def fail(self, why: str) -> ArrUnexpectedResponseError:
        """The error for a field that is not what the API documents."""
        return unexpected(self.request, self.response, why)

    def text(self, key: str, *, required: bool = False) -> str | None:
        """A string field (None when absent or empty, unless required)."""
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise self.fail(f"field {key!r} is missing")
            return None
        if not isinstance(value, str):
            raise self.fail(f"field {key!r} should be a string, got {value!r}")
        return value

    def required_text(self, key: str) -> str:
        """A string field that must be there."""
        value = self.text(key, required=True)
        assert value is not None
        return value

    def status(self, key: str) -> SessionStatus:
        """A session status, in any case."""
        raw = self.required_text(key)
        try:
            return SessionStatus.parse(raw)
        except ValueError:
            raise self.fail(f"field {key!r} has an unknown status {raw!r}") from None

    def timespan(self, key: str) -> timedelta | None:
        """A .NET timespan field (v1)."""
        raw = self.text(key)
        if raw is None:
            return None
        try:
            return parse_timespan(raw, field=key)
        except ArrInputError:
            raise self.fail(f"field {key!r} is not a timespan: {raw!r}") from None

    def number(self, key: str) -> float | None:
        """A numeric field."""
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"field {key!r} should be a number, got {value!r}")
        return float(value)

    def integer(self, key: str) -> int | None:
        """A whole-number field."""
        value = self.number(key)
        return None if value is None else int(value)

    def minutes(self, key: str) -> timedelta | None:
        """A field counted in minutes (2021-01-01)."""
        value = self.number(key)
        return None if value is None else timedelta(minutes=value)

    def datetime(self, key: str) -> datetime | None:
        """An ISO 8601 date field."""
        raw = self.text(key)
        if raw is None:
            return None
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(f"field {key!r} is not an ISO 8601 date: {raw!r}") from None
