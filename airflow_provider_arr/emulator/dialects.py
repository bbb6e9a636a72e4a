"""The two dialects of the session API: request validation and answer rendering.

v1 (the seed's documentation) speaks TimeSpan strings and ``session*`` field names;
2021-01-01 (the swagger the official SDK is generated from) speaks minutes and plain names, and
has no ``Stopping`` status.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any

from .errors import ApiError, bad_request
from .state import ERROR, EXPIRED, SIZES, STOPPING, TERAFLOPS, Session
from .timespan import MAX_LEASE_SECONDS, format_timespan, parse_timespan

MAX_BODY_BYTES = 64 * 1024
API_VERSION = "2021-01-01"
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,256}$"
_SESSION_ID = re.compile(SESSION_ID_PATTERN)
MAX_LEASE_MINUTES = MAX_LEASE_SECONDS // 60

_V1_STATUS = {s: s.capitalize() for s in ("starting", "ready", "stopping", "stopped", "expired", "error")}
_V2021_STATUS = {**_V1_STATUS, STOPPING: "Stopped"}


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 (413 if larger than 64 KiB)."""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    if not body.strip():
        raise bad_request("A JSON request body is required.")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


def parse_size(data: dict[str, Any]) -> str:
    """The ``size`` field, case-insensitive, as ``standard`` or ``premium``."""
    if "size" not in data:
        raise bad_request("The field 'size' is required.")
    size = data["size"]
    if not isinstance(size, str) or size.lower() not in SIZES:
        raise bad_request(f"The field 'size' must be 'Standard' or 'Premium', got {json.dumps(size)}.")
    return size.lower()


def api_version_error(query_version: str | None) -> ApiError | None:
    """The 400 to answer unless the query says ``api-version=2021-01-01``."""
    if query_version is None:
        return bad_request(f"The query parameter 'api-version' is required; supported: {API_VERSION}.")
    if query_version != API_VERSION:
        return bad_request(f"Unsupported api-version '{query_version}'; supported: {API_VERSION}.")
    return None


def check_api_version(query_version: str | None) -> None:
    """Raise the 400 of :func:`api_version_error`, if any."""
    error = api_version_error(query_version)
    if error is not None:
        raise error


def check_session_id(session_id: str) -> None:
    """A 400 unless the id is 1 to 256 letters, digits, '-' or '_'."""
    if not _SESSION_ID.match(session_id):
        raise bad_request(
            "A session id must be 1 to 256 characters long, of letters, digits, '-' and '_' only."
        )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


# -- v1 ----------------------------------------------------------------------------------------


def v1_lease(data: dict[str, Any]) -> float:
    """The ``maxLeaseTime`` field, a TimeSpan over 0 and at most 24 hours, in seconds."""
    if "maxLeaseTime" not in data:
        raise bad_request("The field 'maxLeaseTime' is required.")
    text = data["maxLeaseTime"]
    if not isinstance(text, str):
        raise bad_request("The field 'maxLeaseTime' must be a TimeSpan string such as '4:0:0'.")
    try:
        seconds = parse_timespan(text)
    except ValueError as exc:
        raise bad_request(f"Invalid maxLeaseTime: {exc}.") from None
    if seconds <= 0 or seconds > MAX_LEASE_SECONDS:
        raise bad_request(f"Invalid maxLeaseTime {text!r}: it must be over 0 and at most 24 hours.")
    return seconds


def v1_create_settings(data: dict[str, Any]) -> tuple[str, float]:
    """Validate a v1 create body: ``(size, lease seconds)``."""
    models = data.get("models", [])
    if not isinstance(models, list):
        raise bad_request("The field 'models' must be an array.")
    return parse_size(data), v1_lease(data)


def v1_properties(session: Session, now: float) -> dict[str, Any]:
    """A session as v1 ``.../properties`` and the v1 list show it."""
    phase = session.phase(now)
    return {
        "message": phase.message if phase.status in (ERROR, EXPIRED) else None,
        "sessionElapsedTime": format_timespan(math.floor(session.elapsed(now, phase))),
        "sessionHostname": session.hostname if phase.was_ready else None,
        "sessionId": session.id,
        "sessionMaxLeaseTime": format_timespan(session.lease),
        "sessionSize": session.size.capitalize(),
        "sessionStatus": _V1_STATUS[phase.status],
    }


# -- 2021-01-01 --------------------------------------------------------------------------------


def _minutes(data: dict[str, Any]) -> int:
    if "maxLeaseTimeMinutes" not in data:
        raise bad_request("The field 'maxLeaseTimeMinutes' is required.")
    minutes = data["maxLeaseTimeMinutes"]
    # JSON Schema counts 60.0 as an integer; Python's json reads it as a float.
    if isinstance(minutes, float) and math.isfinite(minutes) and minutes.is_integer():
        minutes = int(minutes)
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        raise bad_request("The field 'maxLeaseTimeMinutes' must be an integer.")
    return minutes


def lease_minutes(data: dict[str, Any]) -> int:
    """The ``maxLeaseTimeMinutes`` field of a create, an integer from 1 to 1440."""
    minutes = _minutes(data)
    if not 1 <= minutes <= MAX_LEASE_MINUTES:
        raise bad_request(f"The field 'maxLeaseTimeMinutes' must be between 1 and {MAX_LEASE_MINUTES}.")
    return minutes


def update_minutes(data: dict[str, Any]) -> int:
    """The ``maxLeaseTimeMinutes`` of an update: an integer (range checked against the session: 422)."""
    minutes = _minutes(data)
    if minutes > MAX_LEASE_MINUTES:
        raise ApiError(422, f"The field 'maxLeaseTimeMinutes' must be at most {MAX_LEASE_MINUTES}.")
    return minutes


def session_2021(session: Session, now: float) -> dict[str, Any]:
    """A session as the 2021-01-01 dialect shows it."""
    phase = session.phase(now)
    ready = phase.was_ready
    error = {"code": "SessionError", "message": phase.message} if phase.status == ERROR else None
    return {
        "id": session.id,
        "size": session.size.capitalize(),
        "status": _V2021_STATUS[phase.status],
        "maxLeaseTimeMinutes": math.ceil(session.lease / 60),
        "elapsedTimeMinutes": math.floor(session.elapsed(now, phase) / 60),
        "hostname": session.hostname if ready else None,
        "arrInspectorPort": session.inspector_port if ready else None,
        "handshakePort": session.handshake_port if ready else None,
        "teraflops": TERAFLOPS[session.size] if ready else None,
        "creationTime": _iso(session.created),
        "error": error,
    }
