"""The lease arithmetic of the guard (pure): totals from the elapsed time, the cap, when to act."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_arr.exceptions import ArrInputError
from airflow_provider_arr.lease import LeasePolicy, decide
from airflow_provider_arr.models import SessionStatus

M = timedelta(minutes=1)
READY = SessionStatus.READY


def policy(**kw: object) -> LeasePolicy:
    kw.setdefault("cap", timedelta(hours=2))
    kw.setdefault("step", 15 * M)
    kw.setdefault("margin", 3 * M)
    return LeasePolicy.build(**kw)  # type: ignore[arg-type]


def test_waits_until_margin_before_the_lease_ends() -> None:
    d = decide(policy(), session_id="s", status=READY, elapsed=10 * M, current=60 * M)
    assert d.action == "wait" and d.new_total is None
    assert d.wake_in == pytest.approx((60 - 10 - 3) * 60)


def test_extends_to_elapsed_plus_step_not_current_plus_step() -> None:
    d = decide(policy(), session_id="s", status=READY, elapsed=58 * M, current=60 * M)
    assert d.action == "extend"
    assert d.new_total == 73 * M  # 58 + 15, a total since start: not 60 + 15
    assert d.wake_in == pytest.approx((15 - 3) * 60)


def test_never_past_the_cap_and_then_reports_the_cap() -> None:
    p = policy(cap=timedelta(minutes=70))
    d = decide(p, session_id="s", status=READY, elapsed=58 * M, current=60 * M)
    assert d.action == "extend" and d.new_total == 70 * M
    later = decide(p, session_id="s", status=READY, elapsed=67 * M, current=70 * M)
    assert later.action == "cap" and later.new_total is None
    assert "EXPIRE at the cap" in later.message and "01:10:00" in later.message


def test_a_lease_already_over_the_cap_is_not_extended() -> None:
    d = decide(policy(cap=30 * M), session_id="s", status=READY, elapsed=29 * M, current=60 * M)
    assert d.action == "wait"  # plenty of lease left: nothing to do yet
    d = decide(policy(cap=30 * M), session_id="s", status=READY, elapsed=58 * M, current=60 * M)
    assert d.action == "cap"


@pytest.mark.parametrize("status", ["stopping", "stopped", "expired", "error"])
def test_an_ended_session_ends_the_guard(status: str) -> None:
    d = decide(policy(), session_id="s", status=SessionStatus(status), elapsed=58 * M, current=60 * M)
    assert d.action == "ended"


def test_starting_sessions_are_guarded_too() -> None:
    d = decide(policy(), session_id="s", status=SessionStatus.STARTING, elapsed=1 * M, current=2 * M)
    assert d.action == "extend" and d.new_total == 16 * M


def test_whole_minutes_for_2021_and_the_cap_rounded_down() -> None:
    p = policy(api_version="2021-01-01", cap=timedelta(minutes=70, seconds=30))
    assert p.usable_cap == 70 * M
    d = decide(p, session_id="s", status=READY, elapsed=timedelta(minutes=50, seconds=20), current=53 * M)
    assert d.action == "extend" and d.new_total == 66 * M  # 50:20 + 15:00 rounded up to a minute
    d = decide(p, session_id="s", status=READY, elapsed=62 * M, current=66 * M)
    assert d.action == "extend" and d.new_total == 70 * M  # the cap, rounded down


def test_2021_elapsed_is_rounded_down_so_the_guard_acts_a_minute_earlier() -> None:
    v1 = decide(policy(), session_id="s", status=READY, elapsed=10 * M, current=60 * M)
    v2021 = decide(
        policy(api_version="2021-01-01"), session_id="s", status=READY, elapsed=10 * M, current=60 * M
    )
    assert v1.wake_in is not None and v2021.wake_in is not None
    assert v1.wake_in - v2021.wake_in == pytest.approx(60)


def test_time_scale_converts_waits_to_wall_clock() -> None:
    p = policy(time_scale=60)
    d = decide(p, session_id="s", status=READY, elapsed=10 * M, current=60 * M)
    assert d.wake_in == pytest.approx(47)  # 47 emulated minutes are 47 s at 60x


def test_reads_never_closer_than_the_minimum_interval() -> None:
    # Lease left just over the margin: waiting would mean reading again within 5 s, so act now.
    p = policy()
    d = decide(p, session_id="s", status=READY, elapsed=timedelta(minutes=56, seconds=58), current=60 * M)
    assert d.action == "extend"
    assert d.wake_in is not None and d.wake_in >= 5


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"cap": "25:00:00"}, "cap"),
        ({"cap": timedelta(hours=25)}, "cap"),
        ({"cap": 0}, "cap"),
        ({"step": "0:00:00"}, "step"),
        ({"margin": -5}, "margin"),
        ({"step": 5 * M, "margin": 5 * M}, "step"),
        ({"time_scale": 0}, "time_scale"),
        ({"min_interval": 1}, "min_interval"),
        ({"api_version": "v3"}, "api_version"),
        ({"cap": "soon"}, "cap"),
    ],
)
def test_bad_settings_name_the_field(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ArrInputError, match=field):
        policy(**kw)


def test_a_step_must_outlast_the_reads_at_the_time_scale() -> None:
    with pytest.raises(ArrInputError, match="step"):
        policy(step=10 * M, margin=3 * M, time_scale=100)  # 7 min between reads < 500 emulated s
    assert policy(step=12 * M, margin=3 * M, time_scale=100).step == 12 * M


def test_durations_as_timespans_and_seconds() -> None:
    p = LeasePolicy.build(cap="2:00:00", step=900, margin="0:03:00")
    assert (p.cap, p.step, p.margin) == (timedelta(hours=2), 15 * M, 3 * M)
