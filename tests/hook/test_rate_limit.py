"""The account's rate limit, from task code: hooks of one process share one pacer, and a 429 is
waited out within the throttle budget, never turned into a failure while time is left."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_provider_arr.client.pacing import sync_pacer
from airflow_provider_arr.client.transport import account_key
from airflow_provider_arr.hooks.arr import ArrHook
from tests.conftest import Admin, connection_json

CONN = "arr_rate"


@pytest.fixture
def throttled(
    emulator_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, api_version: str
) -> Admin:
    """An emulator at the documented rate: 0.2 calls/s per account, bursts of 5."""
    emulator = emulator_factory(throttle_rate=0.2, throttle_burst=5)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", connection_json(emulator.url, api_version=api_version))
    return Admin.of(emulator)


@pytest.mark.slow
def test_twenty_simultaneous_creates_all_succeed_with_exactly_twenty_sessions(throttled: Admin) -> None:
    def create(_: int) -> str:  # one hook per task, as a mapped create has
        return ArrHook(arr_conn_id=CONN).create_session(max_lease_time="0:30:00")

    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        ids = list(pool.map(create, range(20)))
    elapsed = time.monotonic() - started
    sessions = throttled.state()["sessions"]
    assert len(set(ids)) == 20 and sorted(s["id"] for s in sessions) == sorted(ids)
    assert throttled.counts()["throttled"] == 0, "the shared pacer kept every call inside the rate"
    print(f"20 creates in {elapsed:.1f} s (floor (20 - 4) / (0.2 x 0.9) = 89 s)")
    pacer = sync_pacer(account_key(ArrHook(arr_conn_id=CONN).config))
    assert pacer.stats().calls >= 20


def test_a_single_lifecycle_at_defaults_is_not_slowed(throttled: Admin) -> None:
    hook = ArrHook(arr_conn_id=CONN)
    session_id = hook.create_session()
    hook.get_session(session_id)
    hook.ensure_stopped(session_id)
    assert hook.transport.stats.paced == 0, "three calls fit in the burst: nobody waited"


def test_429s_beyond_the_burst_are_waited_out_and_counted(throttled: Admin) -> None:
    hook = ArrHook(arr_conn_id=CONN)
    session_id = hook.create_session()
    # Another client spends the account's burst: this hook's next calls get 429 until it refills.
    throttled.fault(operation="get", action="status", status=429, retry_after=1, count=3)
    assert hook.get_session(session_id).session_id == session_id
    assert hook.transport.stats.throttled == 3
    assert "3 answer(s) 429 waited out" in hook.transport.stats.summary()
    hook.ensure_stopped(session_id)


def test_a_v1_create_answered_429_is_retried_without_a_duplicate(throttled: Admin, api_version: str) -> None:
    throttled.fault(operation="create", action="status", status=429, retry_after=1, count=2)
    session_id = ArrHook(arr_conn_id=CONN).create_session()
    assert [s["id"] for s in throttled.state()["sessions"]] == [session_id]
    ArrHook(arr_conn_id=CONN).ensure_stopped(session_id)
