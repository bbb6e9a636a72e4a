"""Error answers in the service's shape, ``{"error": {"code": ..., "message": ...}}``, and MS-CV ids."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.responses import Response

JSON_MEDIA_TYPE = "application/json; charset=utf-8"

# The codes the service itself uses; other statuses get their HTTP reason phrase in CamelCase.
_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
    422: "UnprocessableEntity",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}

INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'


def error_code(status: int) -> str:
    """The ``error.code`` of an answer with this HTTP status."""
    code = _CODES.get(status)
    if code is not None:
        return code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "Error"
    return "".join(word.capitalize() for word in phrase.replace("-", " ").split())


def new_ms_cv() -> bytes:
    """A fresh correlation vector like the service's ``5EqPJ1VdTUakDJZc6/ZhTg.0``."""
    return base64.b64encode(os.urandom(16))[:22] + b".0"


def dumps(payload: Any) -> bytes:
    """Compact JSON, as the service writes it."""
    return json.dumps(payload, separators=(",", ":")).encode()


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON answer built without any model validation (the hot path)."""
    return Response(dumps(payload), status_code=status, headers=headers, media_type=JSON_MEDIA_TYPE)


def error_payload(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """The body of an error answer."""
    return {"error": {"code": code or error_code(status), "message": message}}


class ApiError(Exception):
    """An error answer of the ARR API, raised anywhere below a route and rendered by the app.

    :param status: HTTP status.
    :param message: human-readable ``error.message``.
    :param code: ``error.code``; derived from the status when omitted.
    :param headers: extra answer headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self, status: int, message: str, *, code: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or error_code(status)
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """This error as an answer."""
        return json_response(self.status, error_payload(self.status, self.message, self.code), self.headers)


def bad_request(message: str) -> ApiError:
    """A 400 BadRequest."""
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    """A 404 NotFound."""
    return ApiError(404, message)


def unauthorized(message: str) -> ApiError:
    """A 401 with the challenge the service sends."""
    return ApiError(401, message, headers={"WWW-Authenticate": INVALID_TOKEN_CHALLENGE})
