"""What a create does after a lost answer (hooks/recovery.py), against the emulator."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from airflow_provider_arr.exceptions import ArrServiceError, ArrSessionMayExistError
from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.hooks.recovery import after_failed_create, after_lost_create, create_session_safely
from tests.conftest import Admin

pytestmark = pytest.mark.usefixtures("arr_conn")
log = logging.getLogger(__name__)
LEASE = timedelta(minutes=30)


def active(admin: Admin) -> set[str]:
    return {s["id"] for s in admin.state()["sessions"] if s["status"] in ("starting", "ready")}


def lost(*candidates: str) -> ArrSessionMayExistError:
    return ArrSessionMayExistError("the create answer was lost", candidates=candidates, http_status=503)


def safely(hook: ArrHook, **kw: object) -> str:
    args: dict[str, object] = {
        "size": "standard",
        "lease": LEASE,
        "models": [],
        "session_id": None,
        "default_session_id": "task-id",
        "fresh_session_id": "task-id-try2",
        "will_retry": False,
        "log": log,
    }
    return create_session_safely(hook, **{**args, **kw}).session_id  # type: ignore[arg-type]


@pytest.mark.parametrize("api_version", ["v1"], indirect=True)
def test_v1_lost_answer_stops_the_one_new_session(admin: Admin) -> None:
    hook = ArrHook()
    before = hook.create_session(max_lease_time=LEASE)  # someone else's, there before
    admin.fault(operation="create", action="lose_answer", count=1)
    with pytest.raises(ArrSessionMayExistError, match="has been stopped") as info:
        safely(hook)
    (orphan,) = info.value.candidates
    assert orphan != before and info.value.session_id == orphan
    assert active(admin) == {before}


@pytest.mark.parametrize("api_version", ["v1"], indirect=True)
def test_several_new_sessions_are_named_and_none_is_stopped(admin: Admin) -> None:
    hook = ArrHook()
    a, b = hook.create_session(max_lease_time=LEASE), hook.create_session(max_lease_time=LEASE)
    error = after_lost_create(hook, lost(a, b), frozenset(), log)
    assert "2 sessions" in error.message and a in error.message and b in error.message
    assert active(admin) == {a, b}


@pytest.mark.parametrize("api_version", ["v1"], indirect=True)
def test_nothing_new_or_nothing_known_stops_nothing(admin: Admin) -> None:
    hook = ArrHook()
    a = hook.create_session(max_lease_time=LEASE)
    assert "probably did not create one" in after_lost_create(hook, lost(a), frozenset({a}), log).message
    unknown = after_lost_create(hook, lost(a), None, log)
    assert "could not be listed before it" in unknown.message and unknown.candidates == (a,)
    assert active(admin) == {a}


@pytest.mark.parametrize("api_version", ["2021-01-01"], indirect=True)
@pytest.mark.parametrize("will_retry", [True, False])
def test_2021_failed_create_is_left_to_the_retry_or_stopped(admin: Admin, will_retry: bool) -> None:
    hook = ArrHook()
    sid = hook.create_session(session_id="maybe-made")
    after_failed_create(hook, sid, ArrServiceError("503"), will_retry=will_retry, log=log)
    assert (sid in active(admin)) is will_retry


@pytest.mark.parametrize("api_version", ["2021-01-01"], indirect=True)
def test_2021_uses_the_task_id_and_a_fresh_one_after_an_ended_session(admin: Admin) -> None:
    hook = ArrHook()
    assert safely(hook) == "task-id"
    admin.force("task-id", "expired")
    assert safely(hook) == "task-id-try2"
    assert active(admin) == {"task-id-try2"}


@pytest.mark.parametrize("api_version", ["2021-01-01"], indirect=True)
def test_the_id_is_known_before_the_call(admin: Admin) -> None:
    seen: list[str] = []
    admin.fault(operation="create", action="status", status=503)
    with pytest.raises(ArrServiceError):
        safely(ArrHook(retry_limit=1), on_session_id=seen.append)
    assert seen == ["task-id"]
    assert active(admin) == set()  # no retry left: a session the 503 hid would have been stopped
