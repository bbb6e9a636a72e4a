"""The sweep's judgement (pure): own sessions by their run's state, foreign ones by age only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_arr.exceptions import ArrInputError
from airflow_provider_arr.models import RenderingSession, SessionStatus
from airflow_provider_arr.orphans import KEPT, ORPHAN, SweepParams, judge, parse_max_age
from airflow_provider_arr.ownership import RUN_DELETED, RUN_UNKNOWN, OwnerRecord, record_key

NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
H = timedelta(hours=1)


def session(
    sid: str, *, status: str = "ready", elapsed: timedelta = H, lease: timedelta = 4 * H
) -> RenderingSession:
    return RenderingSession(
        session_id=sid,
        status=SessionStatus(status),
        size="Standard",
        max_lease_time=lease,
        elapsed_time=elapsed,
    )


def record(sid: str, run: str) -> OwnerRecord:
    return OwnerRecord(session_id=sid, dag_id="d", run_id=run, task_id="create", created_at=NOW - H)


def verdicts(sessions: list[RenderingSession], states: dict[str, str], params: SweepParams) -> dict[str, str]:
    records = {
        s.session_id: record(s.session_id, f"run-{s.session_id}") for s in sessions if s.session_id in states
    }
    run_states = {("d", f"run-{sid}"): state for sid, state in states.items()}
    return {j.session.session_id: j.verdict for j in judge(sessions, records, run_states, NOW, params)}


@pytest.mark.parametrize(
    ("state", "verdict"),
    [
        ("running", KEPT),
        ("queued", KEPT),
        ("success", ORPHAN),
        ("failed", ORPHAN),
        (RUN_DELETED, ORPHAN),
        (RUN_UNKNOWN, KEPT),
    ],
)
def test_own_sessions_by_their_runs_state(state: str, verdict: str) -> None:
    assert verdicts([session("a")], {"a": state}, SweepParams()) == {"a": verdict}


def test_max_age_stops_even_a_live_runs_session() -> None:
    sessions = [session("old", elapsed=7 * H), session("young", elapsed=H)]
    got = verdicts(sessions, {"old": "running", "young": "running"}, SweepParams(max_age=6 * H))
    assert got == {"old": ORPHAN, "young": KEPT}


def test_foreign_sessions_are_never_touched_unless_included() -> None:
    sessions = [session("f", elapsed=20 * H)]
    assert verdicts(sessions, {}, SweepParams(max_age=H)) == {"f": KEPT}
    assert verdicts(sessions, {}, SweepParams(include_foreign=True)) == {"f": KEPT}  # no max_age
    assert verdicts(sessions, {}, SweepParams(include_foreign=True, max_age=21 * H)) == {"f": KEPT}
    assert verdicts(sessions, {}, SweepParams(include_foreign=True, max_age=H)) == {"f": ORPHAN}


@pytest.mark.parametrize("status", ["stopping", "stopped", "expired", "error"])
def test_ended_or_stopping_sessions_are_left_alone(status: str) -> None:
    assert verdicts([session("a", status=status)], {"a": "success"}, SweepParams()) == {"a": KEPT}


def test_owner_and_reason_and_lease_left() -> None:
    (j,) = judge(
        [session("a", elapsed=H, lease=3 * H)],
        {"a": record("a", "r1")},
        {("d", "r1"): "failed"},
        NOW,
        SweepParams(),
    )
    assert j.owner == "d / r1 / create"
    assert j.reason == "its run has ended (failed)"
    assert j.lease_left == 2 * H and j.age == H


def test_age_from_the_record_when_the_service_gives_none() -> None:
    s = RenderingSession(session_id="a", status=SessionStatus.READY)
    (j,) = judge(
        [s], {"a": record("a", "r")}, {("d", "r"): "running"}, NOW, SweepParams(max_age=timedelta(minutes=30))
    )
    assert j.age == H and j.verdict == ORPHAN


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), (6, 6 * H), ("1.5", 1.5 * H), ("6:00:00", 6 * H), (2 * H, 2 * H)],
)
def test_max_age_forms(value: object, expected: timedelta | None) -> None:
    assert parse_max_age(value) == expected


@pytest.mark.parametrize("value", ["soon", 0, -1, 25, True, "25:00:00"])
def test_bad_max_age_is_named(value: object) -> None:
    with pytest.raises(ArrInputError, match="max_age"):
        parse_max_age(value)


def test_params_build_validates() -> None:
    assert SweepParams.build(dry_run="false", price_per_hour="2.5") == SweepParams(
        dry_run=False, price_per_hour=2.5
    )
    with pytest.raises(ArrInputError, match="dry_run"):
        SweepParams.build(dry_run="maybe")
    with pytest.raises(ArrInputError, match="price_per_hour"):
        SweepParams.build(price_per_hour="cheap")


def test_record_round_trip_and_keys() -> None:
    r = OwnerRecord(
        session_id="s",
        dag_id="d",
        run_id="r",
        task_id="t",
        map_index=3,
        created_at=NOW,
        lease=2 * H,
        size="premium",
    )
    assert OwnerRecord.from_json(r.to_json()) == r
    assert r.owner == "d / r / t[3]"
    assert record_key("abc") == "arr_session_owner__abc"
    long_key = record_key("x" * 256)
    assert len(long_key) <= 250 and long_key == record_key("x" * 256) != record_key("x" * 255 + "y")
    with pytest.raises(ValueError, match="not a record"):
        OwnerRecord.from_json('{"session_id": "s"}')
