"""The provider's data model: session statuses, sessions, timespans and input validation.

Everything here is pure: no network, no Airflow import beyond the exceptions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from airflow_provider_arr.exceptions import ArrInputError

MAX_LEASE = timedelta(hours=24)
SIZES = ("standard", "premium")
REGIONS = (
    "australiaeast",
    "eastus",
    "eastus2",
    "japaneast",
    "northeurope",
    "southcentralus",
    "southeastasia",
    "uksouth",
    "westeurope",
    "westus2",
)
SESSION_ID_MAX_LENGTH = 256
_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# .NET TimeSpan: [-][d.]hh:mm:ss[.fffffff]
_TIMESPAN_RE = re.compile(r"^\s*(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?\s*$")


class SessionStatus(str, Enum):
    """The six documented states of a rendering session."""

    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXPIRED = "expired"
    ERROR = "error"

    @classmethod
    def parse(cls, value: object) -> SessionStatus:
        """Parse a status as the service sends it (``"Ready"``, ``"ready"``...), case-insensitively.

        :raises ValueError: for anything that is not one of the six states (callers that parse
            service answers turn this into an error quoting the answer).
        """
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        raise ValueError(f"unknown session status {value!r}; expected one of {[s.value for s in cls]}")

    @property
    def is_terminal(self) -> bool:
        """True once the session has ended for good (stopped, expired or error)."""
        return self in TERMINAL_STATUSES

    @property
    def is_active(self) -> bool:
        """True while the session is starting or ready, i.e. billed or about to be."""
        return self in ACTIVE_STATUSES

    @property
    def will_never_be_ready(self) -> bool:
        """True when waiting for ``ready`` is pointless: the session is ending or has ended."""
        return self in NEVER_READY_STATUSES

    def __str__(self) -> str:
        return self.value


ACTIVE_STATUSES = frozenset({SessionStatus.STARTING, SessionStatus.READY})
TERMINAL_STATUSES = frozenset({SessionStatus.STOPPED, SessionStatus.EXPIRED, SessionStatus.ERROR})
NEVER_READY_STATUSES = TERMINAL_STATUSES | {SessionStatus.STOPPING}


@dataclass(frozen=True)
class RenderingSession:
    """One rendering session as the service describes it, whatever the API dialect.

    The fields after ``message`` come from the 2021-01-01 dialect and are None under v1.
    """

    session_id: str
    status: SessionStatus
    hostname: str | None = None
    size: str | None = None
    max_lease_time: timedelta | None = None
    elapsed_time: timedelta | None = None
    message: str | None = None
    arr_inspector_port: int | None = None
    handshake_port: int | None = None
    teraflops: float | None = None
    creation_time: datetime | None = None
    error_code: str | None = None

    @property
    def is_ready(self) -> bool:
        """True when the session is ready for a client to connect."""
        return self.status is SessionStatus.READY


def parse_timespan(value: object, *, field: str = "max_lease_time") -> timedelta:
    """Parse a .NET TimeSpan string (``"4:0:0"``, ``"04:00:00"``, ``"1.02:00:00"``) or a timedelta.

    :raises ArrInputError: naming ``field`` and the value when it is not a valid timespan.
    """
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ArrInputError(
            f"{field} must be a datetime.timedelta or a timespan string like '4:0:0' or "
            f"'1.02:00:00', got {type(value).__name__} {value!r}"
        )
    match = _TIMESPAN_RE.match(value)
    if not match:
        raise ArrInputError(
            f"{field} {value!r} is not a timespan; use [d.]hh:mm:ss, e.g. '4:0:0' or '1.02:00:00'"
        )
    negative, days, hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds) > 59:
        raise ArrInputError(
            f"{field} {value!r} is not a timespan: hours must be 0-23 and minutes and seconds 0-59 "
            "(write one day and two hours as '1.02:00:00')"
        )
    result = timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(7, "0")) // 10,
    )
    return -result if negative else result


def format_timespan(value: timedelta) -> str:
    """Format a timedelta the way the service does: ``04:00:00`` or ``1.02:00:00``."""
    total = int(value.total_seconds())
    sign = "-" if total < 0 else ""
    days, rest = divmod(abs(total), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    head = f"{days}." if days else ""
    return f"{sign}{head}{hours:02d}:{minutes:02d}:{seconds:02d}"


def validate_lease(value: object, *, field: str = "max_lease_time") -> timedelta:
    """Parse a lease and check that it is positive and at most 24 hours."""
    lease = parse_timespan(value, field=field)
    if lease <= timedelta(0):
        raise ArrInputError(f"{field} must be positive, got {value!r}")
    if lease > MAX_LEASE:
        raise ArrInputError(f"{field} must be at most 24 hours (the service's limit), got {value!r}")
    return lease


def lease_minutes(lease: timedelta) -> int:
    """Whole minutes for the 2021-01-01 dialect, rounding up so a lease is never shortened."""
    return max(1, math.ceil(lease.total_seconds() / 60))


def validate_size(value: object, *, field: str = "size") -> str:
    """Return the canonical (lower-case) size, accepting ``Standard``/``standard``/``PREMIUM``."""
    if isinstance(value, str) and value.strip().lower() in SIZES:
        return value.strip().lower()
    raise ArrInputError(f"{field} must be one of {list(SIZES)} (any case), got {value!r}")


def validate_session_id(value: object, *, field: str = "session_id") -> str:
    """Check a session id: letters, digits, ``-`` and ``_``, 1 to 256 characters."""
    if not isinstance(value, str) or not value.strip():
        raise ArrInputError(f"{field} must be a non-empty string, got {value!r}")
    if value in ("None", "null"):
        raise ArrInputError(
            f"{field} is {value!r}: a template or XCom that found no value rendered to it (did the "
            "upstream task push a session_id?)"
        )
    if len(value) > SESSION_ID_MAX_LENGTH:
        raise ArrInputError(
            f"{field} is {len(value)} characters long; the service allows at most {SESSION_ID_MAX_LENGTH}"
            f" (value starts {value[:40]!r})"
        )
    if not _SESSION_ID_RE.match(value):
        raise ArrInputError(f"{field} {value!r} may only contain letters, digits, '-' and '_'")
    return value


def validate_models(value: object, *, field: str = "models") -> list[Any]:
    """Check the list of asset containers to preload: a list of URL strings or JSON objects."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ArrInputError(f"{field} must be a list of asset container URLs, got {value!r}")
    models = list(value)
    for item in models:
        if not isinstance(item, (str, dict)) or (isinstance(item, str) and not item.strip()):
            raise ArrInputError(
                f"{field} must hold asset container URLs (or JSON objects), got item {item!r}"
            )
    return models


def validate_region(value: object, *, field: str = "region") -> str:
    """Check that ``value`` is one of the regions ARR was offered in."""
    if isinstance(value, str) and value.strip().lower() in REGIONS:
        return value.strip().lower()
    raise ArrInputError(f"{field} {value!r} is not an ARR region; expected one of {list(REGIONS)}")


def is_template(value: object) -> bool:
    """True for a value known only at run time: a Jinja template string or an upstream task's
    output (an XComArg); such values are validated once resolved, at execute time."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    return hasattr(value, "resolve") and hasattr(value, "operator")  # XComArg, in every Airflow 3


def validate_seconds(value: object, *, field: str, minimum: float = 0.0) -> float:
    """Check a duration in seconds: a number (or numeric string, or timedelta) >= ``minimum``."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ArrInputError(f"{field} must be a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ArrInputError(f"{field} must be a number of seconds, got {value!r}")
    if value < minimum or (minimum == 0 and value <= 0):
        raise ArrInputError(
            f"{field} must be {'positive' if minimum == 0 else f'at least {minimum:g}'}, got {value!r}"
        )
    return float(value)


def validate_flag(value: object, *, field: str) -> bool:
    """Check a yes/no argument: a bool, not a string that merely looks like one."""
    if not isinstance(value, bool):
        raise ArrInputError(f"{field} must be True or False, got {value!r}")
    return value


def validate_poll_interval(value: object, *, field: str = "poll_interval", minimum: float = 5.0) -> float:
    """Check a polling interval: a number of seconds, at least ``minimum`` (the service throttles).

    Numeric strings (a rendered template such as ``"{{ params.poll_interval }}"``) are accepted.
    """
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ArrInputError(f"{field} must be a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ArrInputError(f"{field} must be a number of seconds, got {value!r}")
    if value < minimum:
        raise ArrInputError(
            f"{field} must be at least {minimum:g} s: the service throttles clients that call more "
            f"often than every 5 to 10 s (got {value!r})"
        )
    return float(value)


def check_new_lease(session: RenderingSession, new_total: timedelta, *, field: str, value: object) -> None:
    """Refuse a new lease total under the elapsed time or over 24 hours, naming the argument."""
    if session.status.will_never_be_ready:
        raise ArrInputError(
            f"session {session.session_id} is {session.status.value}; its lease can no longer be extended"
        )
    if new_total > MAX_LEASE:
        raise ArrInputError(
            f"{field}={value!r} would make the lease of session {session.session_id} "
            f"{format_timespan(new_total)} in total, over the service's 24 h limit"
        )
    if session.elapsed_time is not None and new_total <= session.elapsed_time:
        raise ArrInputError(
            f"{field}={value!r} gives session {session.session_id} a lease of "
            f"{format_timespan(new_total)} in total, not more than the "
            f"{format_timespan(session.elapsed_time)} already elapsed (the lease counts from the start)"
        )
