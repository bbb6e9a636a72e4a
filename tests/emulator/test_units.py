"""Pure units of the emulator: TimeSpans, config, clock, fault rules, token bucket, tokens."""

from __future__ import annotations

import random

import pytest

from airflow_provider_arr.emulator import EmulatorConfig
from airflow_provider_arr.emulator.clock import EmulatedClock
from airflow_provider_arr.emulator.faults import FaultRule, FaultRules, TokenBucket
from airflow_provider_arr.emulator.gate import classify
from airflow_provider_arr.emulator.server import config_to_args
from airflow_provider_arr.emulator.timespan import format_timespan, parse_timespan
from airflow_provider_arr.emulator.tokens import TokenRegistry


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("4:0:0", 14400),
        ("04:00:00", 14400),
        ("0:30:00", 1800),
        ("1.00:00:00", 86400),
        ("0:0:1.5", 1.5),
        ("00:00:00.0000001", 1e-7),
        ("23:59:59", 86399),
    ],
)
def test_parse_timespan(text: str, seconds: float) -> None:
    assert parse_timespan(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "abc", "4:0", "1:60:00", "1:00:60", "24:00:00", "-1:00:00", "1:0:0:0", "4h"]
)
def test_parse_timespan_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timespan(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (14400, "04:00:00"),
        (93600, "1.02:00:00"),
        (0, "00:00:00"),
        (1.5, "00:00:01.5000000"),
        (59, "00:00:59"),
    ],
)
def test_format_timespan(seconds: float, text: str) -> None:
    assert format_timespan(seconds) == text


def test_config_defaults_and_validation() -> None:
    config = EmulatorConfig()
    assert config.account_id == "00000000-0000-0000-0000-000000000001"
    assert (config.startup_delay, config.stop_delay, config.time_scale, config.token_ttl) == (60, 5, 1, 86400)
    assert (config.throttle_rate, config.throttle_burst, config.retry_after) == (None, 5, True)
    assert (config.error_rate, config.slow, config.error_on_start, config.page_size) == (0, 0, None, 10)
    for bad in (
        {"time_scale": 0},
        {"error_rate": 2},
        {"page_size": 0},
        {"account_id": "a/b"},
        {"throttle_rate": -1},
    ):
        with pytest.raises(ValueError):
            EmulatorConfig(**bad)


def test_config_updated_checks_json_types() -> None:
    config = EmulatorConfig()
    new = config.updated({"time_scale": 10, "throttle_rate": None, "retry_after": False, "seed": 3})
    assert new.time_scale == 10.0 and isinstance(new.time_scale, float)
    assert new.retry_after is False and new.seed == 3
    for bad in (
        {"nope": 1},
        {"time_scale": "fast"},
        {"page_size": 1.5},
        {"retry_after": 1},
        {"slow": True},
        {"slow": None},
    ):
        with pytest.raises(ValueError):
            config.updated(bad)


def test_config_to_args_round_trips_through_the_cli() -> None:
    from airflow_provider_arr.emulator.__main__ import build_parser

    config = EmulatorConfig(throttle_rate=2.5, retry_after=False, error_on_start="boom", seed=7, page_size=3)
    args = build_parser().parse_args(config_to_args(config))
    assert args.throttle_rate == 2.5 and args.no_retry_after and args.error_on_start == "boom"
    assert args.seed == 7 and args.page_size == 3


def test_clock_scales_and_never_goes_back() -> None:
    real = [100.0]
    clock = EmulatedClock(10.0, monotonic=lambda: real[0], wall=lambda: 1_000.0)
    assert clock.now() == 1_000.0
    real[0] += 2
    assert clock.now() == 1_020.0
    clock.set_time_scale(1.0)
    assert clock.now() == 1_020.0
    real[0] += 1
    assert clock.now() == 1_021.0
    clock.advance(60)
    clock.advance(-100)
    assert clock.now() == 1_081.0


def test_fault_rule_validation() -> None:
    rule = FaultRule.from_json({"operation": "get", "action": "status", "status": 429, "retry_after": 2}, 1)
    assert (rule.status, rule.retry_after, rule.count, rule.probability) == (429, 2.0, None, 1.0)
    bad: object
    for bad in (
        [],
        {"action": "explode"},
        {"operation": "delete", "action": "drop"},
        {"action": "status", "status": 200},
        {"action": "status", "status": "503"},
        {"action": "drop", "count": 0},
        {"action": "drop", "probability": 1.5},
        {"action": "delay", "delay": -1},
        {"action": "drop", "extra": 1},
    ):
        with pytest.raises(ValueError):
            FaultRule.from_json(bad, 1)


def test_fault_rules_order_count_and_probability() -> None:
    rules = FaultRules()
    rules.add({"operation": "any", "action": "delay", "delay": 0.5, "count": 1})
    rules.add({"operation": "get", "action": "status", "status": 503, "count": 2})
    rules.add({"operation": "get", "action": "drop", "probability": 0.0})
    rng = random.Random(1)
    first = rules.decide("get", rng)
    assert first.delay == 0.5 and first.rule is not None and first.rule.status == 503
    assert rules.decide("list", rng) == (0.0, None)
    second = rules.decide("get", rng)
    assert second.delay == 0.0 and second.rule is not None and second.rule.action == "status"
    assert rules.decide("get", rng) == (0.0, None)  # the status rule ran out; the drop never fires
    assert len(rules) == 1 and rules.clear() == 1


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=2, now=0.0)
    assert bucket.take(0.0) == 0 and bucket.take(0.0) == 0
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0


def test_token_registry() -> None:
    now = [1_000.0]
    tokens = TokenRegistry(wall=lambda: now[0])
    token = tokens.issue("acct", 10)
    assert tokens.account_of(token) == "acct"
    assert tokens.account_of(token + "x") is None
    now[0] += 11
    assert tokens.account_of(token) is None
    fresh = tokens.issue("acct", 10)
    assert tokens.expire_all() == 1
    assert tokens.account_of(fresh) is None


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/accounts/a/token", ("token", "a")),
        ("GET", "/Accounts/a/token", ("token", "a")),
        ("POST", "/v1/accounts/a/sessions/create", ("create", "a")),
        ("GET", "/v1/accounts/a/sessions", ("list", "a")),
        ("GET", "/v1/accounts/a/sessions/s/properties", ("get", "a")),
        ("HEAD", "/v1/accounts/a/sessions/s/properties", None),
        ("PATCH", "/v1/accounts/a/sessions/s", ("update", "a")),
        ("DELETE", "/v1/accounts/a/sessions/s", ("stop", "a")),
        ("PUT", "/accounts/a/sessions/s", ("create", "a")),
        ("GET", "/accounts/a/sessions/s", ("get", "a")),
        ("PATCH", "/accounts/a/sessions/s", ("update", "a")),
        ("POST", "/accounts/a/sessions/s/:stop", ("stop", "a")),
        ("GET", "/accounts/a/sessions", ("list", "a")),
        ("POST", "/accounts/a/sessions", None),
        ("GET", "/_emulator/state", None),
        ("GET", "/v1/accounts/a/sessions/s", None),
    ],
)
def test_classify(method: str, path: str, expected: tuple[str, str] | None) -> None:
    assert classify(method, path) == expected
