"""The lease arithmetic of the lease guard, shared by its two shapes; pure, no I/O.

The service's lease is a **total since the session started**. The guard keeps a session alive in
steps: each time the lease is about to run out it sets the new total to ``elapsed + step`` (the
session's own elapsed time, never the current lease plus an increment, so a late or repeated
extension cannot push the lease further than intended), never past a hard ``cap``.

One read and at most one update per step: after reading the session the guard either extends
now (the lease would run out before the next read could come) or sleeps until ``margin`` before
the lease ends. Durations here are on the session's clock; ``time_scale`` (session seconds per
wall-clock second: 1 for the service, the emulator's ``time_scale`` in tests) converts the wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from airflow_provider_arr.exceptions import ArrInputError
from airflow_provider_arr.models import MAX_LEASE, SessionStatus, format_timespan, parse_timespan

#: The fewest wall-clock seconds between two reads of a session (the service throttles callers
#: that call more often than every 5 to 10 s; a sensor polls at least 5 s apart too).
MIN_READ_INTERVAL = 5.0
DEFAULT_STEP = timedelta(minutes=15)
DEFAULT_MARGIN = timedelta(minutes=3)
#: The finest lease each dialect can express: v1 takes seconds, 2021-01-01 whole minutes (and
#: reports the elapsed time in whole minutes, rounded down).
GRANULARITY = {"v1": timedelta(seconds=1), "2021-01-01": timedelta(minutes=1)}

Action = Literal["wait", "extend", "cap", "ended"]


def _duration(value: object, field: str) -> timedelta:
    """A timedelta from a timedelta, a timespan string or a number of seconds."""
    if isinstance(value, bool):
        raise ArrInputError(f"{field} must be a duration, got {value!r}")
    if isinstance(value, (int, float)):
        return timedelta(seconds=float(value))
    return parse_timespan(value, field=field)


@dataclass(frozen=True)
class LeasePolicy:
    """How a guard extends one session's lease (validated on construction by :meth:`build`).

    :param step: how far past the session's elapsed time each extension sets the lease.
    :param cap: the hard cap: the lease (a total since start) is never set past it; at most 24 h.
    :param margin: extend this long before the lease would run out.
    :param granularity: the finest lease the dialect can express (see :data:`GRANULARITY`).
    :param time_scale: session seconds per wall-clock second.
    :param min_interval: the fewest wall-clock seconds between two reads.
    """

    step: timedelta
    cap: timedelta
    margin: timedelta
    granularity: timedelta = timedelta(seconds=1)
    time_scale: float = 1.0
    min_interval: float = MIN_READ_INTERVAL

    @classmethod
    def build(
        cls,
        *,
        cap: object,
        step: object = DEFAULT_STEP,
        margin: object = DEFAULT_MARGIN,
        api_version: str = "v1",
        time_scale: object = 1.0,
        min_interval: object = MIN_READ_INTERVAL,
    ) -> LeasePolicy:
        """Validate the guard's settings, naming the faulty argument and its value.

        Durations are timedeltas, timespan strings (``"0:15:00"``) or seconds.
        """
        cap_td = _duration(cap, "cap")
        step_td = _duration(step, "step")
        margin_td = _duration(margin, "margin")
        if not 0 < cap_td.total_seconds() <= MAX_LEASE.total_seconds():
            raise ArrInputError(
                f"cap must be positive and at most 24 hours (a total since start), got {cap!r}"
            )
        if step_td <= timedelta(0):
            raise ArrInputError(f"step must be positive, got {step!r}")
        if margin_td <= timedelta(0):
            raise ArrInputError(f"margin must be positive, got {margin!r}")
        if api_version not in GRANULARITY:
            raise ArrInputError(f"api_version must be one of {list(GRANULARITY)}, got {api_version!r}")
        if isinstance(time_scale, bool) or not isinstance(time_scale, (int, float)) or not time_scale > 0:
            raise ArrInputError(f"time_scale must be a positive number, got {time_scale!r}")
        if isinstance(min_interval, bool) or not isinstance(min_interval, (int, float)):
            raise ArrInputError(f"min_interval must be a number of seconds, got {min_interval!r}")
        if min_interval < MIN_READ_INTERVAL:
            raise ArrInputError(
                f"min_interval must be at least {MIN_READ_INTERVAL:g} s (the service throttles), "
                f"got {min_interval!r}"
            )
        granularity = GRANULARITY[api_version]
        if cap_td < granularity:
            raise ArrInputError(
                f"cap {cap!r} is shorter than the finest lease the dialect takes ({granularity})"
            )
        # Between two reads the session's clock runs min_interval * time_scale; one step must hold
        # that, the margin, and the rounding of the elapsed time the service reports.
        between = timedelta(seconds=float(min_interval) * float(time_scale))
        if step_td - margin_td - granularity < between:
            raise ArrInputError(
                f"step {format_timespan(step_td)} is too short for margin {format_timespan(margin_td)}: "
                f"a step must exceed the margin by at least {format_timespan(between + granularity)} "
                f"(reads come at least {float(min_interval):g} s apart)"
            )
        return cls(
            step=step_td,
            cap=cap_td,
            margin=margin_td,
            granularity=granularity,
            time_scale=float(time_scale),
            min_interval=float(min_interval),
        )

    @property
    def usable_cap(self) -> timedelta:
        """The cap rounded down to what the dialect can express (so it is never exceeded)."""
        unit = self.granularity.total_seconds()
        return timedelta(seconds=math.floor(self.cap.total_seconds() / unit) * unit)

    def round_up(self, value: timedelta) -> timedelta:
        """``value`` rounded up to the dialect's granularity."""
        unit = self.granularity.total_seconds()
        return timedelta(seconds=math.ceil(value.total_seconds() / unit - 1e-9) * unit)

    def real_seconds(self, session_time: timedelta) -> float:
        """Wall-clock seconds for a duration on the session's clock."""
        return session_time.total_seconds() / self.time_scale


@dataclass(frozen=True)
class Decision:
    """What to do after one read of the session.

    :param action: ``extend`` (set the lease to ``new_total`` now, then read again in
        ``wake_in``), ``wait`` (read again in ``wake_in``), ``cap`` (the lease is at the cap:
        stop guarding, the session will expire at it) or ``ended`` (the session is over).
    :param new_total: the lease to set, for ``extend``.
    :param wake_in: wall-clock seconds until the next read, for ``extend`` and ``wait``.
    :param lease_left: how long the session has left (before an extension), on its clock.
    :param message: the decision in words, for the log.
    :param final: for ``extend``: the new total is the cap, so no extension follows; ``wake_in`` is
        then the time until ``margin`` before the cap, when the workload, if still running, is
        known to outlive the cap (it is not raised to the read interval: no read is needed).
    """

    action: Action
    new_total: timedelta | None
    wake_in: float | None
    lease_left: timedelta
    message: str
    final: bool = False


def cap_message(session_id: str, cap: timedelta, left: timedelta) -> str:
    """What the guard logs when the workload outlives the cap."""
    return (
        f"session {session_id} is still in use at its lease cap {format_timespan(cap)}: the workload "
        f"outlives the cap, and the session will EXPIRE at the cap, in about "
        f"{format_timespan(max(left, timedelta(0)))}; not extending further"
    )


def decide(
    policy: LeasePolicy,
    *,
    session_id: str,
    status: SessionStatus,
    elapsed: timedelta,
    current: timedelta,
) -> Decision:
    """Decide the next move of a guard from one read of the session (see :class:`Decision`).

    :param elapsed: the session's elapsed time as the service reports it.
    :param current: the session's current lease (a total since start).
    """
    left = current - elapsed
    cap = policy.usable_cap
    if status is SessionStatus.EXPIRED and current >= cap:
        return Decision(
            "cap",
            None,
            None,
            left,
            f"session {session_id} EXPIRED at its lease cap {format_timespan(cap)}: the workload outlived "
            "the cap",
        )
    if not status.is_active:
        return Decision("ended", None, None, left, f"session {session_id} is {status.value}: guard done")
    # 2021-01-01 reports whole minutes, rounded down: the session may be up to a unit further on.
    unseen = policy.granularity if policy.granularity > timedelta(seconds=1) else timedelta(0)
    worst_left = left - unseen
    until_margin = worst_left - policy.margin
    if policy.real_seconds(until_margin) >= policy.min_interval:
        return Decision(
            "wait",
            None,
            policy.real_seconds(until_margin),
            left,
            f"session {session_id}: lease {format_timespan(current)}, {format_timespan(left)} left; "
            f"next look in {format_timespan(until_margin)}",
        )
    target = min(policy.round_up(elapsed + policy.step), cap)
    if target <= current:
        return Decision("cap", None, None, left, cap_message(session_id, cap, left))
    final = target >= cap
    wake_in = policy.real_seconds(target - elapsed - unseen - policy.margin)
    wake_in = max(0.0, wake_in) if final else max(policy.min_interval, wake_in)
    capped = " (the cap: no further extension)" if final else ""
    return Decision(
        "extend",
        target,
        wake_in,
        left,
        f"session {session_id}: {format_timespan(left)} left at elapsed {format_timespan(elapsed)}; "
        f"lease set to {format_timespan(target)} in total{capped}",
        final,
    )
