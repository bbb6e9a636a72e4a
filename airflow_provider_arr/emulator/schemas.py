"""OpenAPI documentation of the emulated API.

These models only describe requests and answers in ``/openapi.json`` (so that a fuzzer generates
meaningful bodies and can check the answers); the routes never validate or serialise through them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .dialects import MAX_BODY_BYTES

# A lease TimeSpan the service accepts: over zero, at most one day, hours < 24, minutes and seconds
# < 60. Documentation only (json_schema_extra): pydantic's own regexes have no lookahead.
LEASE_PATTERN = (
    r"^(?!(0{1,8}\.)?0?0:0?0:0?0(\.0{1,7})?$)"
    r"((0{1,8}\.)?([01]?[0-9]|2[0-3]):[0-5]?[0-9]:[0-5]?[0-9](\.[0-9]{1,7})?"
    r"|0{0,7}1\.0?0:0?0:0?0(\.0{1,7})?)$"
)
# Sizes are accepted in any case; JSON Schema patterns have no case-insensitive flag.
SIZE_PATTERN = r"^([Ss][Tt][Aa][Nn][Dd][Aa][Rr][Dd]|[Pp][Rr][Ee][Mm][Ii][Uu][Mm])$"


class ErrorDetail(BaseModel):
    """The error object of an error answer."""

    code: str = Field(description="Error code, e.g. BadRequest, Conflict, NotFound, TooManyRequests.")
    message: str = Field(description="A human-readable description of the error.")
    details: list[ErrorDetail] | None = None
    target: str | None = None
    innerError: ErrorDetail | None = None


class ErrorResponse(BaseModel):
    """Every error answer: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


class TokenResponse(BaseModel):
    """The STS answer."""

    model_config = ConfigDict(json_schema_extra={"required": ["AccessToken"]})

    AccessToken: str = Field(description="A JWT; its `exp` claim is the expiry.")


class V1CreateRequest(BaseModel):
    """Body of the v1 create call."""

    maxLeaseTime: str = Field(
        json_schema_extra={"pattern": LEASE_PATTERN},
        examples=["4:0:0"],
        description="TimeSpan [d.]hh:mm:ss[.fffffff], over 0 and at most 24 hours (1.00:00:00); "
        "hours below 24, minutes and seconds below 60.",
    )
    size: str = Field(
        pattern=SIZE_PATTERN, examples=["standard"], description="Standard or Premium, any case."
    )
    models: list[Any] = Field(default_factory=list, description="Asset container URLs to preload (ignored).")


class V1CreateResponse(BaseModel):
    """Answer of the v1 create call."""

    sessionId: str


class V1UpdateRequest(BaseModel):
    """Body of the v1 update call: the new lease, a total since the session started."""

    maxLeaseTime: str = Field(json_schema_extra={"pattern": LEASE_PATTERN}, examples=["5:0:0"])


class V1SessionProperties(BaseModel):
    """A session in the v1 dialect."""

    message: str | None = Field(description="Why the session is in Error or Expired.")
    sessionElapsedTime: str = Field(description="TimeSpan since the session was created.")
    sessionHostname: str | None
    sessionId: str
    sessionMaxLeaseTime: str
    sessionSize: Literal["Standard", "Premium"]
    sessionStatus: Literal["Starting", "Ready", "Stopping", "Stopped", "Expired", "Error"]


class V1SessionList(BaseModel):
    """The active sessions (Starting, Ready, Stopping)."""

    sessions: list[V1SessionProperties]


class CreateSessionSettings(BaseModel):
    """Body of the 2021-01-01 create call."""

    maxLeaseTimeMinutes: int = Field(ge=1, le=1440, examples=[60])
    size: str = Field(
        pattern=SIZE_PATTERN, examples=["Standard"], description="Standard or Premium, any case."
    )


class UpdateSessionSettings(BaseModel):
    """Body of the 2021-01-01 update call: larger than the current lease, at most 1440."""

    maxLeaseTimeMinutes: int = Field(ge=1, le=1440, examples=[90])


class SessionProperties(BaseModel):
    """A session in the 2021-01-01 dialect."""

    id: str
    size: Literal["Standard", "Premium"]
    status: Literal["Starting", "Ready", "Stopped", "Expired", "Error"]
    maxLeaseTimeMinutes: int | None = None
    elapsedTimeMinutes: int | None = None
    hostname: str | None = None
    arrInspectorPort: int | None = Field(None, ge=49152, le=65534)
    handshakePort: int | None = Field(None, ge=49152, le=65534)
    teraflops: float | None = None
    creationTime: str | None = Field(None, description="ISO 8601.")
    error: ErrorDetail | None = None


class SessionsList(BaseModel):
    """One page of the running sessions (Starting, Ready)."""

    model_config = ConfigDict(populate_by_name=True)

    sessions: list[SessionProperties]
    nextLink: str | None = Field(None, alias="@nextLink", description="Absolute URL of the next page.")


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """An ``openapi_extra`` fragment declaring a required JSON body of ``model``'s shape."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    return {
        "requestBody": {
            "required": True,
            "description": f"JSON, at most {MAX_BODY_BYTES} bytes.",
            "content": {"application/json": {"schema": schema}},
        }
    }


MS_CV_HEADER = {
    "MS-CV": {
        "description": "Microsoft Correlation Vector: the trace id of the call.",
        "required": True,
        "schema": {"type": "string"},
    }
}
_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
_CHALLENGE = {"description": 'Bearer error="invalid_token"', "schema": {"type": "string"}}
_ERROR_DESCRIPTIONS = {
    400: "Bad Request: invalid body, parameter or session id.",
    401: "Unauthorized: missing, invalid or expired token.",
    404: "Not Found: unknown session or account.",
    405: "Method Not Allowed.",
    409: "Conflict: the session id exists with other settings, or the session is no longer running.",
    413: "Payload Too Large: the body exceeds 64 KiB.",
    422: "Unprocessable Entity: the new lease must be larger than the current one.",
    429: "Too Many Requests.",
    500: "Internal Server Error.",
    503: "Service Unavailable.",
}
COMMON_ERRORS = (401, 429, 500, 503)


def responses(
    success: dict[int, tuple[type[BaseModel] | None, str]], errors: tuple[int, ...]
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: its successes and errors, each with the MS-CV header."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status, (model, description) in success.items():
        entry: dict[str, Any] = {"description": description, "headers": dict(MS_CV_HEADER)}
        if model is not None:
            entry["model"] = model
        documented[status] = entry
    for status in sorted(set(errors) | set(COMMON_ERRORS)):
        headers: dict[str, Any] = dict(MS_CV_HEADER)
        if status == 429:
            headers["Retry-After"] = _RETRY_AFTER
        if status == 401:
            headers["WWW-Authenticate"] = _CHALLENGE
        documented[status] = {
            "description": _ERROR_DESCRIPTIONS[status],
            "model": ErrorResponse,
            "headers": headers,
        }
    return documented
