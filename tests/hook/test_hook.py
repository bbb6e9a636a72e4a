"""ArrHook against the emulator over real HTTP, in both API dialects."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import pytest

from airflow_provider_arr.exceptions import (
    ArrAuthError,
    ArrConnectionError,
    ArrInputError,
    ArrLeaseError,
    ArrNotFoundError,
    ArrServiceError,
    ArrSessionMayExistError,
    ArrThrottledError,
)
from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.models import SessionStatus
from tests.conftest import ACCOUNT_ID, ACCOUNT_KEY, Admin, connection_json

pytestmark = pytest.mark.usefixtures("arr_conn")


def wait_for(hook: ArrHook, session_id: str, status: SessionStatus, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while hook.get_session(session_id).status is not status:
        assert time.monotonic() < deadline, f"{session_id} never reached {status}"
        time.sleep(0.05)


def test_full_lifecycle(admin: Admin, api_version: str) -> None:
    hook = ArrHook()
    session_id = hook.create_session("Standard", "0:10:00")
    first = hook.get_session(session_id)
    assert first.session_id == session_id
    assert first.status is SessionStatus.STARTING
    assert first.size == "standard"
    assert first.max_lease_time == timedelta(minutes=10)
    assert admin.active() == 1

    wait_for(hook, session_id, SessionStatus.READY)
    ready = hook.get_session(session_id)
    assert ready.hostname
    assert ready.elapsed_time is not None  # whole minutes in 2021-01-01, so maybe 0

    assert [s.session_id for s in hook.list_sessions()] == [session_id]

    hook.update_session(session_id, "0:20:00")
    assert hook.get_session(session_id).max_lease_time == timedelta(minutes=20)
    assert hook.extend_session(session_id, timedelta(minutes=10)) == timedelta(minutes=30)
    assert hook.get_session(session_id).max_lease_time == timedelta(minutes=30)

    hook.stop_session(session_id)
    assert hook.get_session(session_id).status in (SessionStatus.STOPPING, SessionStatus.STOPPED)
    wait_for(hook, session_id, SessionStatus.STOPPED)
    hook.stop_session(session_id)  # stopping twice is fine
    assert admin.active() == 0
    # An ended session stays readable.
    assert hook.get_session(session_id).status is SessionStatus.STOPPED


def test_token_is_fetched_once_and_reused(admin: Admin) -> None:
    hook = ArrHook()
    session_id = hook.create_session()
    for _ in range(5):
        hook.get_session(session_id)
    hook.list_sessions()
    hook.stop_session(session_id)
    assert admin.counts()["token"] == 1
    assert hook.sts_calls == 1


def test_token_refreshed_once_after_a_401(admin: Admin) -> None:
    hook = ArrHook()
    session_id = hook.create_session()
    admin.expire_tokens()
    assert hook.get_session(session_id).session_id == session_id
    assert admin.counts()["token"] == 2
    hook.stop_session(session_id)


def test_wrong_key_is_an_auth_error(monkeypatch: pytest.MonkeyPatch, emulator, caplog) -> None:  # type: ignore[no-untyped-def]
    conn = json.loads(connection_json(emulator.url))
    conn["password"] = "not-the-key"
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", json.dumps(conn))
    with pytest.raises(ArrAuthError, match="STS refused"):
        ArrHook().list_sessions()
    ok, message = ArrHook().test_connection()
    assert not ok and "STS refused" in message


def test_test_connection(admin: Admin) -> None:
    ok, message = ArrHook().test_connection()
    assert ok, message
    assert ACCOUNT_ID in message and "0 active" in message
    assert admin.counts()["token"] == 1


@pytest.mark.parametrize("retry_after", [1, None])
def test_429_is_retried_honouring_retry_after(admin: Admin, retry_after: int | None) -> None:
    hook = ArrHook()
    session_id = hook.create_session()
    admin.fault(operation="get", action="status", status=429, retry_after=retry_after, count=2)
    started = time.monotonic()
    assert hook.get_session(session_id).session_id == session_id
    waited = time.monotonic() - started
    if retry_after:
        assert waited >= 2 * retry_after  # two waits of at least Retry-After each
    assert admin.counts()["throttled"] >= 2
    hook.stop_session(session_id)


def test_429_storm_is_waited_out_for_the_throttle_budget_not_an_attempt_count(admin: Admin) -> None:
    hook = ArrHook(retry_limit=2, retry_wait_max=0.2, throttle_timeout=2)
    session_id = hook.create_session()
    admin.fault(operation="get", action="status", status=429, retry_after=None)
    with pytest.raises(ArrThrottledError) as info:
        hook.get_session(session_id)
    assert info.value.http_status == 429 and info.value.ms_cv
    assert info.value.throttled > 2, "more 429s than retry_limit: the budget is time, not attempts"
    assert info.value.waited is not None and info.value.waited <= 2
    assert "still throttled after" in str(info.value) and "throttle_timeout" in str(info.value)
    admin.clear_faults()
    hook.stop_session(session_id)


def test_5xx_burst_and_dropped_connections_are_retried(admin: Admin) -> None:
    hook = ArrHook()
    session_id = hook.create_session()
    admin.fault(operation="get", action="status", status=503, count=2)
    admin.fault(operation="get", action="drop", count=1)
    assert hook.get_session(session_id).session_id == session_id
    admin.fault(operation="stop", action="status", status=500, count=2)
    hook.stop_session(session_id)
    assert admin.active() == 0


def test_persistent_5xx_gives_up_with_a_service_error(admin: Admin) -> None:
    hook = ArrHook(retry_limit=2, retry_wait_max=0.1)
    admin.fault(operation="list", action="status", status=500)
    with pytest.raises(ArrServiceError) as info:
        hook.list_sessions()
    assert info.value.http_status == 500
    assert "500" in str(info.value) and "MS-CV" in str(info.value)


def test_v1_create_with_lost_answer_is_not_retried(admin: Admin, api_version: str) -> None:
    hook = ArrHook()
    admin.fault(operation="create", action="lose_answer", count=1)
    if api_version == "v1":
        with pytest.raises(ArrSessionMayExistError) as info:
            hook.create_session("standard", "0:30:00")
        created = [s["id"] for s in admin.state()["sessions"]]
        assert len(created) == 1, "exactly one create reached the service"
        assert admin.counts()["create"] == 1
        assert info.value.candidates == tuple(created)
        assert created[0] in str(info.value)
        hook.stop_session(created[0])
    else:
        # 2021-01-01: the PUT is idempotent, so it is retried and finds its own session.
        session_id = hook.create_session("standard", "0:30:00", session_id="lost-answer-1")
        assert session_id == "lost-answer-1"
        assert [s["id"] for s in admin.state()["sessions"]] == ["lost-answer-1"]
        hook.stop_session(session_id)
    assert admin.active() == 0


def test_v1_create_5xx_is_not_retried(admin: Admin, api_version: str) -> None:
    if api_version != "v1":
        pytest.skip("v1 only")
    admin.fault(operation="create", action="status", status=503, count=1)
    with pytest.raises(ArrSessionMayExistError, match="may exist"):
        ArrHook().create_session()
    assert admin.counts()["create"] == 1


def test_create_refused_connection_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ARR_DEFAULT",
        connection_json("http://127.0.0.1:9", retry_limit=2, retry_wait_min=0.01, retry_wait_max=0.05),
    )
    with pytest.raises(ArrConnectionError) as info:
        ArrHook().create_session()
    assert not info.value.request_sent


def test_2021_reattach_and_conflict(admin: Admin, api_version: str) -> None:
    if api_version != "2021-01-01":
        pytest.skip("client-chosen ids are a 2021-01-01 feature")
    hook = ArrHook()
    first = hook.create_or_reattach_session(size="standard", max_lease_time="0:30:00", session_id="same-id")
    again = hook.create_or_reattach_session(size="standard", max_lease_time="0:30:00", session_id="same-id")
    assert not first.reattached and again.reattached
    assert len(admin.state()["sessions"]) == 1
    from airflow_provider_arr.exceptions import ArrConflictError

    with pytest.raises(ArrConflictError, match="already exists with other settings"):
        hook.create_session("premium", "0:30:00", session_id="same-id")
    hook.update_session("same-id", "0:40:00")
    with pytest.raises(ArrLeaseError, match="must be larger than the session's current lease") as info:
        hook.update_session("same-id", "0:35:00")
    assert info.value.http_status == 422 and info.value.session_id == "same-id"
    hook.stop_session("same-id")


def test_unknown_session_is_not_found(admin: Admin) -> None:
    with pytest.raises(ArrNotFoundError) as info:
        ArrHook().get_session("does-not-exist")
    assert info.value.session_id == "does-not-exist" and info.value.http_status == 404


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda h: h.create_session("huge"), "size"),
        (lambda h: h.create_session("standard", "abc"), "max_lease_time"),
        (lambda h: h.create_session("standard", "0:0:0"), "max_lease_time"),
        (lambda h: h.create_session("standard", "25:00:00"), "max_lease_time"),
        (lambda h: h.create_session("standard", "1.01:00:00"), "max_lease_time"),
        (lambda h: h.create_session("standard", "1:00:00", models="x"), "models"),
        (lambda h: h.get_session(""), "session_id"),
        (lambda h: h.get_session("a/b"), "session_id"),
        (lambda h: h.stop_session("x" * 300), "session_id"),
        (lambda h: h.update_session("abc", "-1:00:00"), "max_lease_time"),
    ],
)
def test_bad_input_fails_before_any_request(admin: Admin, call, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ArrInputError, match=field):
        call(ArrHook())
    assert admin.counts()["requests"] == 0


def test_secrets_never_reach_logs_or_errors(
    admin: Admin, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = ArrHook()
    session_id = hook.create_session()
    hook.get_session(session_id)
    token = hook.protocol.tokens.token
    assert token
    admin.fault(operation="get", action="status", status=500)
    with pytest.raises(ArrServiceError) as info:
        ArrHook(retry_limit=1).get_session(session_id)
    admin.clear_faults()
    hook.stop_session(session_id)
    logged = capfd.readouterr().out + caplog.text
    assert "ARR GET" in logged and "-> 500 in" in logged  # the calls, the failed one too, were logged
    for text in (logged, str(info.value), repr(info.value), repr(hook.config)):
        assert ACCOUNT_KEY not in text
        assert token not in text


def test_list_follows_every_page(emulator_factory, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    server = emulator_factory(page_size=3)
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", connection_json(server.url, api_version="2021-01-01"))
    hook = ArrHook()
    created = {hook.create_session(session_id=f"paged-{i}") for i in range(8)}
    listed = hook.list_sessions()
    assert {s.session_id for s in listed} == created and len(listed) == 8
    assert Admin.of(server).counts()["list"] == 3  # 3 + 3 + 2
    for session_id in created:
        hook.stop_session(session_id)


def test_ensure_stopped_is_idempotent(admin: Admin) -> None:
    hook = ArrHook()
    assert "unknown to the service (404)" in hook.ensure_stopped("never-created")
    session_id = hook.create_session()
    assert "stop requested" in hook.ensure_stopped(session_id)
    wait_for(hook, session_id, SessionStatus.STOPPED)
    # A service that refuses to stop an ended session: still a success, said as such.
    admin.fault(operation="stop", action="status", status=409, count=1)
    assert hook.ensure_stopped(session_id) == f"session {session_id} is already stopped: nothing to stop"
    # ... but a refusal for a session that is still running is an error.
    running = hook.create_session()
    admin.fault(operation="stop", action="status", status=409, count=1)
    from airflow_provider_arr.exceptions import ArrSessionLeftRunningError

    with pytest.raises(ArrSessionLeftRunningError) as info:
        hook.ensure_stopped(running)
    assert f"session {running} is still running and billed" in str(info.value)
    from airflow_provider_arr.cli import stop_command

    assert stop_command(running) in str(info.value)
    assert info.value.http_status == 409
    hook.stop_session(running)


def test_key_and_token_are_registered_with_the_secrets_masker(admin: Admin) -> None:
    from airflow.sdk.log import _secrets_masker

    hook = ArrHook()
    hook.list_sessions()
    token = hook.protocol.tokens.token
    assert token
    redacted = _secrets_masker().redact(f"key {ACCOUNT_KEY} token {token}")
    assert ACCOUNT_KEY not in redacted and token not in redacted


def test_retry_budget_bounds_a_429_storm(admin: Admin) -> None:
    """A 2.5 s throttle budget and Retry-After: 1 s: the budget ends the storm, whatever the
    number of attempts allowed."""
    hook = ArrHook(retry_limit=50, throttle_timeout=2.5)
    hook.list_sessions()  # the token, outside the storm
    admin.fault(operation="list", action="status", status=429, retry_after=1)
    with pytest.raises(ArrThrottledError):
        hook.list_sessions()
    throttled = admin.counts()["throttled"]
    admin.clear_faults()
    # Attempts at about 0, 1 and 2 s; a wait that would end past 2.5 s is not started.
    assert 2 <= throttled <= 3, throttled


def test_every_call_logs_method_path_status_time_and_ms_cv(
    admin: Admin, capfd: pytest.CaptureFixture[str], api_version: str
) -> None:
    import re

    hook = ArrHook()
    session_id = hook.create_session()
    hook.get_session(session_id)
    hook.stop_session(session_id)
    out = capfd.readouterr().out  # Airflow's structlog writes the task log to stdout
    pattern = re.compile(r"ARR (GET|POST|PUT|PATCH|DELETE) /\S+ -> \d{3} in \d+ ms \(MS-CV [^)\s]+\)")
    calls = [m.group(0) for m in pattern.finditer(out)]
    assert len(calls) >= 4, out  # token, create, get, stop
    methods = [line.split()[1] for line in calls]
    create = "PUT" if api_version == "2021-01-01" else "POST"
    stop = "POST" if api_version == "2021-01-01" else "DELETE"
    assert methods[0] == "GET"  # the token
    assert create in methods and stop in methods
    assert any(session_id in line for line in calls)


def test_service_error_body_is_quoted(admin: Admin, api_version: str) -> None:
    hook = ArrHook()
    with pytest.raises(ArrNotFoundError) as info:
        hook.get_session("never-created")
    error = info.value
    assert error.http_status == 404 and error.ms_cv and error.session_id == "never-created"
    assert "never-created" in str(error)
    if api_version == "2021-01-01":  # {"error": {"code": ..., "message": ...}}: both are quoted
        body = json.loads(error.body or "{}")
        assert body["error"]["code"] in str(error) and body["error"]["message"] in str(error)


def test_2021_fields_once_ready(emulator_factory, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    server = emulator_factory()
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", connection_json(server.url, api_version="2021-01-01"))
    hook = ArrHook()
    session_id = hook.create_session(size="premium", max_lease_time="0:30:00")
    starting = hook.get_session(session_id)
    assert starting.hostname is None and starting.handshake_port is None  # only once ready
    assert starting.creation_time is not None and starting.creation_time.tzinfo is not None
    wait_for(hook, session_id, SessionStatus.READY)
    ready = hook.get_session(session_id)
    assert ready.hostname and ready.handshake_port and ready.arr_inspector_port
    assert ready.teraflops and ready.teraflops > 0
    assert ready.size == "premium" and ready.max_lease_time == timedelta(minutes=30)
    hook.stop_session(session_id)


def test_2021_error_code_of_a_failed_start(emulator_factory, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    server = emulator_factory(error_on_start="no capacity in westus2")
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", connection_json(server.url, api_version="2021-01-01"))
    hook = ArrHook()
    session_id = hook.create_session()
    wait_for(hook, session_id, SessionStatus.ERROR)
    failed = hook.get_session(session_id)
    assert failed.message and "no capacity" in failed.message
    assert failed.error_code


def test_extend_refuses_a_total_over_24_h_or_not_past_the_elapsed_time(admin: Admin) -> None:
    hook = ArrHook()
    session_id = hook.create_session(max_lease_time="23:30:00")
    with pytest.raises(ArrInputError, match=r"extend_by=.*over the service's 24 h limit"):
        hook.extend_session(session_id, "1:00:00")
    admin_state = admin.state()["sessions"][0]
    assert admin_state["lease_seconds"] == 23.5 * 3600  # nothing was PATCHed
    assert admin.counts()["update"] == 0
    hook.stop_session(session_id)

    short = hook.create_session(max_lease_time="0:10:00")
    admin.advance(8 * 60)
    from airflow_provider_arr.models import check_new_lease

    current = hook.get_session(short)
    assert current.elapsed_time is not None and current.elapsed_time >= timedelta(minutes=8)
    with pytest.raises(ArrInputError, match="already elapsed"):
        check_new_lease(current, timedelta(minutes=7), field="max_lease_time", value="0:07:00")
    hook.stop_session(short)
    wait_for(hook, short, SessionStatus.STOPPED)
    with pytest.raises(ArrInputError, match="can no longer be extended"):
        hook.extend_session(short, "0:10:00")
    assert admin.counts()["update"] == 0
