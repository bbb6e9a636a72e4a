"""Fault injection: rules, throttling, random errors, slowness, dropped connections."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
import requests

from .conftest import Arr, assert_error


def test_status_rule_with_count_and_retry_after(arr: Arr) -> None:
    rule = arr.admin.fault(operation="list", action="status", status=503, retry_after=2, count=2)
    assert rule["id"] and rule["fired"] == 0
    for _ in range(2):
        answer = arr.v1("GET")
        assert_error(answer, 503, "ServiceUnavailable")
        assert answer.headers["Retry-After"] == "2"
    assert arr.v1("GET").status_code == 200
    assert arr.admin.request("GET", "/faults").json() == {"faults": []}
    counts = arr.admin.counts()
    assert counts["injected_errors"] == 2 and counts["list"] == 3 and counts["throttled"] == 0


def test_injected_429_counts_as_throttled(arr: Arr) -> None:
    arr.admin.fault(operation="get", action="status", status=429, retry_after=None, count=1)
    session_id = arr.v1_create()
    answer = arr.v1("GET", f"/{session_id}/properties")
    assert_error(answer, 429, "TooManyRequests")
    assert "Retry-After" not in answer.headers
    assert arr.admin.counts()["throttled"] == 1


def test_injected_401_carries_the_challenge(arr: Arr) -> None:
    arr.admin.fault(operation="any", action="status", status=401, count=1)
    answer = arr.v2("GET")
    assert_error(answer, 401)
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_rules_match_their_operation_only(arr: Arr) -> None:
    arr.admin.fault(operation="stop", action="status", status=500)
    session_id = arr.v1_create()
    assert arr.v1("GET", f"/{session_id}/properties").status_code == 200
    assert arr.v1("PATCH", f"/{session_id}", json={"maxLeaseTime": "2:0:0"}).status_code == 200
    assert_error(arr.v1("DELETE", f"/{session_id}"), 500, "InternalServerError")
    assert_error(arr.v2("POST", f"/{session_id}/:stop"), 500)
    assert arr.v1_get(session_id)["sessionStatus"] != "Stopping"


def test_token_rules_apply_to_the_sts(arr: Arr) -> None:
    arr.admin.fault(operation="token", action="status", status=429, retry_after=1, count=1)
    answer = arr.http.get(
        f"{arr.url}/accounts/{arr.account}/token",
        headers={"Authorization": f"Bearer {arr.account}:{arr.server.config.account_key}"},
        timeout=10,
    )
    assert_error(answer, 429)
    assert answer.headers["Retry-After"] == "1"
    assert arr.fetch_token()


def test_rules_never_apply_to_the_admin_api(arr: Arr) -> None:
    arr.admin.fault(operation="any", action="status", status=500)
    arr.admin.fault(operation="any", action="drop")
    assert arr.admin.request("GET", "/state").status_code == 200
    assert arr.admin.request("POST", "/config", json={}).status_code == 200
    assert arr.admin.request("DELETE", "/faults").json() == {"removed": 2}


def test_probability_with_a_seed_is_repeatable(emulator_factory: Any) -> None:
    outcomes = []
    for _ in range(2):
        arr = Arr(emulator_factory(seed=42))
        arr.admin.fault(operation="list", action="status", status=500, probability=0.5)
        outcomes.append([arr.v1("GET").status_code for _ in range(20)])
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {200, 500}


def test_delay_rule_sleeps_then_answers(arr: Arr) -> None:
    arr.admin.fault(operation="list", action="delay", delay=0.3, count=1)
    arr.admin.fault(operation="list", action="status", status=503, count=1)
    started = time.monotonic()
    assert_error(arr.v1("GET"), 503)  # the delay lets the call go on to the next rule
    assert time.monotonic() - started >= 0.3
    assert arr.v1("GET").status_code == 200
    assert arr.admin.counts()["delayed"] == 1  # the rule was used up: the second call was not delayed


def test_delay_does_not_block_other_calls(arr: Arr) -> None:
    arr.admin.fault(operation="list", action="delay", delay=5, count=1)
    with httpx.Client(base_url=arr.url, headers={"Authorization": f"Bearer {arr.token}"}) as client:
        slow = threading.Thread(target=lambda: client.get(f"/v1/accounts/{arr.account}/sessions"))
        slow.start()
        time.sleep(0.05)
        assert arr.v1("GET", "/nope/properties").status_code == 404
        assert slow.is_alive(), "the other call was answered while the delayed one still waited"
        slow.join()


def test_drop_breaks_the_connection_with_no_answer(arr: Arr) -> None:
    arr.admin.fault(operation="list", action="drop", count=2)
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        arr.v1("GET")
    with (
        httpx.Client(headers={"Authorization": f"Bearer {arr.token}"}) as client,
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
    ):
        client.get(f"{arr.url}/v1/accounts/{arr.account}/sessions")
    assert arr.v1("GET").status_code == 200
    counts = arr.admin.counts()
    assert counts["dropped"] == 2 and counts["list"] == 3


def test_drop_does_nothing(arr: Arr) -> None:
    arr.admin.fault(operation="create", action="drop", count=1)
    with pytest.raises(requests.ConnectionError):
        arr.v1("POST", "/create", json={"maxLeaseTime": "1:0:0", "size": "standard"})
    assert arr.admin.request("GET", "/state").json()["sessions"] == []


@pytest.mark.parametrize("dialect", ["v1", "2021-01-01"])
def test_lose_answer_performs_the_operation(arr: Arr, dialect: str) -> None:
    arr.admin.fault(operation="create", action="lose_answer", count=1)
    with pytest.raises(requests.ConnectionError):
        if dialect == "v1":
            arr.v1("POST", "/create", json={"maxLeaseTime": "1:0:0", "size": "standard"})
        else:
            arr.v2("PUT", "/lost", json={"maxLeaseTimeMinutes": 60, "size": "Standard"})
    state = arr.admin.request("GET", "/state").json()
    assert len(state["sessions"]) == 1 and state["counts"]["create"] == 1 and state["counts"]["dropped"] == 1
    if dialect == "2021-01-01":
        # The retried PUT finds the session its lost answer created.
        again = arr.v2("PUT", "/lost", json={"maxLeaseTimeMinutes": 60, "size": "Standard"})
        assert again.status_code == 200


def test_lose_answer_on_stop_stops(arr: Arr) -> None:
    session_id = arr.v1_create()
    arr.admin.fault(operation="stop", action="lose_answer", count=1)
    with pytest.raises(requests.ConnectionError):
        arr.v1("DELETE", f"/{session_id}")
    assert arr.v1_get(session_id)["sessionStatus"] in ("Stopping", "Stopped")


def test_throttling_token_bucket(emulator_factory: Any) -> None:
    arr = Arr(emulator_factory(throttle_rate=2, throttle_burst=3))
    statuses = [arr.v1("GET") for _ in range(5)]
    assert [a.status_code for a in statuses] == [200, 200, 200, 429, 429]
    throttled = statuses[3]
    assert_error(throttled, 429, "TooManyRequests")
    assert throttled.headers["Retry-After"] == "1"
    time.sleep(0.55)
    assert arr.v1("GET").status_code == 200
    assert arr.admin.counts()["throttled"] == 2
    # The STS is not throttled.
    assert arr.fetch_token()


def test_throttling_without_retry_after(emulator_factory: Any) -> None:
    arr = Arr(emulator_factory(throttle_rate=0.5, throttle_burst=1, retry_after=False))
    assert arr.v1("GET").status_code == 200
    answer = arr.v1("GET")
    assert_error(answer, 429)
    assert "Retry-After" not in answer.headers


def test_throttling_can_be_turned_on_at_runtime(arr: Arr) -> None:
    arr.admin.config(throttle_rate=1, throttle_burst=1)
    assert [arr.v1("GET").status_code for _ in range(2)] == [200, 429]
    arr.admin.config(throttle_rate=None)
    assert [arr.v1("GET").status_code for _ in range(3)] == [200, 200, 200]


def test_error_rate_with_a_seed(emulator_factory: Any) -> None:
    runs = []
    for _ in range(2):
        arr = Arr(emulator_factory(error_rate=0.5, seed=7))
        runs.append([arr.v1("GET").status_code for _ in range(30)])
        assert arr.admin.counts()["injected_errors"] == sum(1 for s in runs[-1] if s != 200)
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500, 503}


def test_error_rate_spares_the_sts(emulator_factory: Any) -> None:
    arr = Arr(emulator_factory(error_rate=1.0))
    assert arr.fetch_token()
    for _ in range(3):
        answer = arr.v1("GET")
        assert answer.status_code in (500, 503)
        assert_error(answer, answer.status_code)


def test_slow_adds_to_every_answer(emulator_factory: Any) -> None:
    arr = Arr(emulator_factory(slow=1.0))
    for call in (lambda: arr.v1("GET"), arr.fetch_token):
        started = time.monotonic()
        call()
        assert time.monotonic() - started >= 1.0
    started = time.monotonic()
    arr.admin.request("GET", "/state")
    assert time.monotonic() - started < 1.0, "the admin API is not slowed down"


def test_invalid_rules_are_400(arr: Arr) -> None:
    rule: object
    for rule in (
        {"action": "nope"},
        {"action": "status", "status": 99},
        {"operation": "x", "action": "drop"},
        [],
    ):
        assert_error(arr.admin.request("POST", "/faults", json=rule), 400, "BadRequest")
    assert_error(arr.admin.request("POST", "/faults", data=b"{"), 400)
