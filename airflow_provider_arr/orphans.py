"""The orphan sweep's judgement: which active sessions to stop. Pure: no I/O, no clock.

A session is an **orphan** when this provider created it (it has an owner record) and its
creating DAG run is no longer running (finished, failed or deleted), or when it is older than
``max_age``. Sessions the provider did not create (*foreign*) are never touched, unless
``include_foreign``: they have no run to check, so they are judged by ``max_age`` alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from airflow_provider_arr.exceptions import ArrInputError
from airflow_provider_arr.models import MAX_LEASE, RenderingSession, SessionStatus, format_timespan
from airflow_provider_arr.ownership import LIVE_RUN_STATES, RUN_DELETED, RUN_UNKNOWN, OwnerRecord

#: Verdicts (the pure judgement says ``kept`` or ``orphan``; the sweep turns orphans into
#: ``stopped``, ``would stop`` or ``stop failed``).
KEPT = "kept"
ORPHAN = "orphan"
STOPPED = "stopped"
WOULD_STOP = "would stop"
STOP_FAILED = "stop failed"


@dataclass(frozen=True)
class SweepParams:
    """The sweep's settings (the DAG's Params, the command's options).

    :param dry_run: only say what would be stopped.
    :param max_age: stop sessions older than this whatever their run (None: no age limit).
    :param include_foreign: also judge sessions the provider did not create (by age only).
    :param price_per_hour: what one session costs per hour, for the cost summary (None: unknown).
    """

    dry_run: bool = True
    max_age: timedelta | None = None
    include_foreign: bool = False
    price_per_hour: float | None = None

    @classmethod
    def build(
        cls,
        *,
        dry_run: object = True,
        max_age: object = None,
        include_foreign: object = False,
        price_per_hour: object = None,
    ) -> SweepParams:
        """Validate raw values (Params, options): ``max_age`` a timespan, a timedelta or hours."""
        return cls(
            dry_run=_boolean(dry_run, "dry_run"),
            max_age=parse_max_age(max_age),
            include_foreign=_boolean(include_foreign, "include_foreign"),
            price_per_hour=parse_price(price_per_hour),
        )


def _boolean(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ArrInputError(f"{field} must be true or false, got {value!r}")


def parse_max_age(value: object) -> timedelta | None:
    """``max_age``: None/empty, a timedelta, a timespan (``"6:00:00"``) or a number of hours."""
    if value is None or value == "":
        return None
    if isinstance(value, timedelta):
        age = value
    elif isinstance(value, bool):
        raise ArrInputError(f"max_age must be a timespan or a number of hours, got {value!r}")
    elif isinstance(value, (int, float)):
        age = timedelta(hours=float(value))
    elif isinstance(value, str):
        try:
            age = timedelta(hours=float(value))
        except ValueError:
            from airflow_provider_arr.models import parse_timespan

            age = parse_timespan(value, field="max_age")
    else:
        raise ArrInputError(f"max_age must be a timespan or a number of hours, got {value!r}")
    if age <= timedelta(0) or age > MAX_LEASE:
        raise ArrInputError(
            f"max_age must be positive and at most 24 hours (no lease is longer), got {value!r}"
        )
    return age


def parse_price(value: object) -> float | None:
    """A price per hour: None/empty, or a non-negative number."""
    if value is None or value == "":
        return None
    try:
        price = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ArrInputError(f"price_per_hour must be a number, got {value!r}") from None
    if isinstance(value, bool) or not price >= 0:
        raise ArrInputError(f"price_per_hour must be a number >= 0, got {value!r}")
    return price


@dataclass(frozen=True)
class Judgement:
    """One session, judged.

    :param verdict: :data:`KEPT` or :data:`ORPHAN` (:data:`STOPPED` and the others come later).
    :param run_state: the owning run's state, None for a foreign session.
    """

    session: RenderingSession
    record: OwnerRecord | None
    run_state: str | None
    age: timedelta | None
    lease_left: timedelta | None
    verdict: str
    reason: str

    @property
    def owner(self) -> str:
        """``dag / run / task``, or ``foreign``."""
        return self.record.owner if self.record else "foreign"

    @property
    def stop(self) -> bool:
        """Whether the sweep should stop the session."""
        return self.verdict == ORPHAN


def session_age(session: RenderingSession, record: OwnerRecord | None, now: datetime) -> timedelta | None:
    """The service's elapsed time, else the time since the service's or the record's creation time."""
    if session.elapsed_time is not None:
        return session.elapsed_time
    for created in (session.creation_time, record.created_at if record else None):
        if created is not None and created.tzinfo is not None:
            return now - created
    return None


def judge(
    sessions: Iterable[RenderingSession],
    records: Mapping[str, OwnerRecord],
    run_states: Mapping[tuple[str, str], str],
    now: datetime,
    params: SweepParams,
) -> list[Judgement]:
    """Judge every session: :data:`ORPHAN` (to stop) or :data:`KEPT`, with the reason.

    :param records: the owner record of each session the provider created, by session id.
    :param run_states: the state of each owning run, by (dag id, run id): Airflow's run states,
        :data:`~airflow_provider_arr.ownership.RUN_DELETED` or ``RUN_UNKNOWN`` (kept: cannot tell).
    :param now: an aware datetime (for ages computed from creation times).
    """
    out: list[Judgement] = []
    for session in sessions:
        record = records.get(session.session_id)
        age = session_age(session, record, now)
        left = (
            session.max_lease_time - session.elapsed_time
            if session.max_lease_time is not None and session.elapsed_time is not None
            else None
        )
        state = run_states.get((record.dag_id, record.run_id), RUN_UNKNOWN) if record else None
        verdict, reason = _verdict(session.status, record is not None, state, age, params)
        out.append(Judgement(session, record, state, age, left, verdict, reason))
    return out


def _verdict(
    status: SessionStatus, own: bool, state: str | None, age: timedelta | None, params: SweepParams
) -> tuple[str, str]:
    if not status.is_active:
        return KEPT, "already stopping" if status is SessionStatus.STOPPING else f"already {status.value}"
    too_old = params.max_age is not None and age is not None and age > params.max_age
    limit = format_timespan(params.max_age or timedelta(0))
    old = f"age {format_timespan(age or timedelta(0))} over max_age {limit}"
    if not own:
        if not params.include_foreign:
            return KEPT, "foreign: not created by this provider (include_foreign is off)"
        if too_old:
            return ORPHAN, f"foreign, {old}"
        if params.max_age is None:
            return KEPT, "foreign: judged by age only, and no max_age is set"
        return KEPT, "foreign, within max_age"
    if state in LIVE_RUN_STATES:
        return (ORPHAN, f"{old} (its run is still {state})") if too_old else (KEPT, f"its run is {state}")
    if state == RUN_UNKNOWN or state is None:
        if too_old:
            return ORPHAN, f"{old} (its run's state is unknown)"
        return KEPT, "its run's state could not be read"
    if state == RUN_DELETED:
        return ORPHAN, "its run was deleted"
    return ORPHAN, f"its run has ended ({state})"
