"""Pure parts: timespans, statuses, validation (no network)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_arr.exceptions import ArrInputError
from airflow_provider_arr.models import (
    SessionStatus,
    format_timespan,
    lease_minutes,
    parse_timespan,
    validate_lease,
    validate_models,
    validate_poll_interval,
    validate_region,
    validate_session_id,
    validate_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4:0:0", timedelta(hours=4)),
        ("04:00:00", timedelta(hours=4)),
        ("1.02:00:00", timedelta(days=1, hours=2)),
        ("0:30:15", timedelta(minutes=30, seconds=15)),
        ("00:00:01.5", timedelta(seconds=1, microseconds=500000)),
        ("00:00:00.0000001", timedelta(0)),
    ],
)
def test_parse_timespan(text: str, expected: timedelta) -> None:
    assert parse_timespan(text) == expected


@pytest.mark.parametrize(
    "text", ["abc", "", "4", "4:0", "1:60:00", "25:00:00", "0:0:60", "1:2:3:4", "x.1:0:0"]
)
def test_parse_timespan_rejects(text: str) -> None:
    with pytest.raises(ArrInputError, match="max_lease_time"):
        parse_timespan(text)


def test_format_timespan_round_trips() -> None:
    for value in (timedelta(hours=4), timedelta(days=1, hours=2), timedelta(minutes=5, seconds=7)):
        assert parse_timespan(format_timespan(value)) == value
    assert format_timespan(timedelta(hours=4)) == "04:00:00"
    assert format_timespan(timedelta(days=1, hours=2)) == "1.02:00:00"


@pytest.mark.parametrize("value", ["0:0:0", "-1:00:00", timedelta(0), timedelta(hours=25), "1.00:00:01"])
def test_validate_lease_bounds(value: object) -> None:
    with pytest.raises(ArrInputError, match="max_lease_time"):
        validate_lease(value)


def test_validate_lease_accepts_24h() -> None:
    assert validate_lease("1.00:00:00") == timedelta(hours=24)


def test_lease_minutes_rounds_up() -> None:
    assert lease_minutes(timedelta(seconds=61)) == 2
    assert lease_minutes(timedelta(hours=1)) == 60
    assert lease_minutes(timedelta(seconds=1)) == 1


@pytest.mark.parametrize("raw", ["Ready", "ready", "READY", " ready "])
def test_status_parse_case_insensitive(raw: str) -> None:
    assert SessionStatus.parse(raw) is SessionStatus.READY


@pytest.mark.parametrize("raw", ["Running", "", None, 3])
def test_status_parse_rejects(raw: object) -> None:
    with pytest.raises(ValueError, match="unknown session status"):
        SessionStatus.parse(raw)


def test_status_groupings() -> None:
    assert {s for s in SessionStatus if s.is_terminal} == {
        SessionStatus.STOPPED,
        SessionStatus.EXPIRED,
        SessionStatus.ERROR,
    }
    assert {s for s in SessionStatus if s.is_active} == {SessionStatus.STARTING, SessionStatus.READY}
    assert SessionStatus.STOPPING.will_never_be_ready and not SessionStatus.STARTING.will_never_be_ready


@pytest.mark.parametrize(("raw", "expected"), [("Standard", "standard"), ("PREMIUM", "premium")])
def test_validate_size(raw: str, expected: str) -> None:
    assert validate_size(raw) == expected


@pytest.mark.parametrize("raw", ["huge", "", None, 3])
def test_validate_size_rejects(raw: object) -> None:
    with pytest.raises(ArrInputError, match="size"):
        validate_size(raw)


@pytest.mark.parametrize("raw", ["", "a/b", "x" * 300, None, "spaces here"])
def test_validate_session_id_rejects(raw: object) -> None:
    with pytest.raises(ArrInputError, match="session_id"):
        validate_session_id(raw)


def test_validate_models() -> None:
    assert validate_models(["https://a/b"]) == ["https://a/b"]
    assert validate_models(None) == []
    for bad in ("https://a", [3], [""]):
        with pytest.raises(ArrInputError, match="models"):
            validate_models(bad)


def test_validate_region_and_poll_interval() -> None:
    assert validate_region("WestUS2") == "westus2"
    with pytest.raises(ArrInputError, match="region"):
        validate_region("westus3")
    assert validate_poll_interval("10") == 10.0
    for bad in (4.9, "abc", True, None):
        with pytest.raises(ArrInputError, match="poll_interval"):
            validate_poll_interval(bad)
