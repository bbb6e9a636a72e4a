"""The operators and the sensor on their own: ``execute`` with a minimal task context, against
the emulator over real HTTP (the DAG tests run them inside real DAG runs)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_arr._compat import TaskDeferred
from airflow_provider_arr.emulator import EmulatorServer
from airflow_provider_arr.exceptions import ArrInputError, ArrSessionFailedError
from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.operators.session import (
    ArrCreateSessionOperator,
    ArrExtendSessionOperator,
    ArrStopSessionOperator,
    session_id_for_task,
)
from airflow_provider_arr.readiness import EVENT_FAILED, EVENT_READY
from airflow_provider_arr.sensors.session import ArrSessionReadySensor
from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger
from tests.conftest import Admin, connection_json

pytestmark = pytest.mark.usefixtures("arr_conn")


class TaskInstance:
    """The part of Airflow's runtime task instance that the operators use."""

    def __init__(self, task_id: str = "create", *, try_number: int = 1, max_tries: int = 0) -> None:
        self.dag_id, self.run_id, self.task_id, self.map_index = "unit_dag", "manual__1", task_id, -1
        self.try_number, self.max_tries = try_number, max_tries
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value") -> Any:
        return self.xcom.get(key)


def context(ti: TaskInstance | None = None) -> Any:
    return {"ti": ti or TaskInstance()}


def active(admin: Admin) -> list[str]:
    return [s["id"] for s in admin.state()["sessions"] if s["status"] in ("starting", "ready")]


def emulator_as_default(
    factory: Callable[..., EmulatorServer], monkeypatch: pytest.MonkeyPatch, api_version: str, startup: float
) -> Admin:
    server = factory(startup_delay=startup)
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", connection_json(server.url, api_version=api_version))
    return Admin.of(server)


@pytest.fixture
def instant(
    emulator_factory: Callable[..., EmulatorServer], monkeypatch: pytest.MonkeyPatch, api_version: str
) -> Admin:
    """An emulator whose sessions are ready at once, as ``arr_default``."""
    return emulator_as_default(emulator_factory, monkeypatch, api_version, 0)


@pytest.fixture
def slow(
    emulator_factory: Callable[..., EmulatorServer], monkeypatch: pytest.MonkeyPatch, api_version: str
) -> Admin:
    """An emulator whose sessions start in 30 emulated minutes (18 s of real time), as ``arr_default``:
    tests move its clock with ``advance``."""
    return emulator_as_default(emulator_factory, monkeypatch, api_version, 1800)


# -- create --------------------------------------------------------------------------------------


def test_create_pushes_the_id_and_returns_it(admin: Admin, api_version: str) -> None:
    ti = TaskInstance()
    sid = ArrCreateSessionOperator(task_id="create", size="Premium", max_lease_time="0:30:00").execute(
        context(ti)
    )
    assert ti.xcom["session_id"] == sid and active(admin) == [sid]
    if api_version == "2021-01-01":
        assert sid == session_id_for_task(context(ti))
    ArrHook().ensure_stopped(sid)


def test_a_retried_create_reattaches_instead_of_making_a_second_session(
    admin: Admin, api_version: str
) -> None:
    if api_version == "v1":
        pytest.skip("v1: the service picks ids, a retry cannot find the earlier try's session")
    first = ArrCreateSessionOperator(task_id="create").execute(context(TaskInstance(max_tries=1)))
    again = ArrCreateSessionOperator(task_id="create").execute(
        context(TaskInstance(try_number=2, max_tries=1))
    )
    assert first == again and active(admin) == [first]
    ArrHook().ensure_stopped(first)


def test_create_after_the_earlier_session_ended_makes_a_fresh_one(admin: Admin, api_version: str) -> None:
    if api_version == "v1":
        pytest.skip("v1: no reattaching")
    first = ArrCreateSessionOperator(task_id="create").execute(context(TaskInstance(max_tries=1)))
    admin.force(first, "error", "GPU lost")
    fresh = ArrCreateSessionOperator(task_id="create").execute(
        context(TaskInstance(try_number=2, max_tries=1))
    )
    assert fresh != first and fresh.endswith(
        session_id_for_task(context(TaskInstance()), suffix="try2")[-16:]
    )
    assert active(admin) == [fresh]
    ArrHook().ensure_stopped(fresh)


def test_create_waits_for_ready_and_pushes_the_hostname(instant: Admin) -> None:
    ti = TaskInstance()
    sid = ArrCreateSessionOperator(task_id="create", wait_for_ready=True, deferrable=False).execute(
        context(ti)
    )
    assert ti.xcom["hostname"] and ti.xcom["session_id"] == sid
    ArrHook().ensure_stopped(sid)


def test_deferrable_create_defers_and_a_failed_event_stops_the_session(admin: Admin) -> None:
    op = ArrCreateSessionOperator(task_id="create", wait_for_ready=True, deferrable=True, poll_interval=7)
    ti = TaskInstance()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(ti))
    trigger = deferred.value.trigger
    assert isinstance(trigger, ArrSessionReadyTrigger)
    assert trigger.session_id == ti.xcom["session_id"] and trigger.poll_interval == 7
    event = {"status": EVENT_FAILED, "message": "went to error", "session_id": trigger.session_id}
    with pytest.raises(ArrSessionFailedError, match="went to error"):
        op.execute_complete(context(ti), event)
    assert active(admin) == []


def test_killed_create_stops_its_session(admin: Admin) -> None:
    op = ArrCreateSessionOperator(task_id="create")
    sid = op.execute(context())
    op.on_kill()
    assert sid not in active(admin)


def test_create_rejects_bad_literals_at_parse_and_bad_renders_at_execute(admin: Admin) -> None:
    with pytest.raises(ArrInputError, match="size"):
        ArrCreateSessionOperator(task_id="create", size="huge")
    op = ArrCreateSessionOperator(task_id="create", max_lease_time="{{ params.lease }}")
    op.max_lease_time = "25:00:00"  # what the template rendered to
    with pytest.raises(ArrInputError, match="max_lease_time"):
        op.execute(context())
    assert admin.counts()["create"] == 0


# -- extend and stop -----------------------------------------------------------------------------


def test_extend_by_adds_to_the_total_and_max_lease_time_sets_it(admin: Admin) -> None:
    sid = ArrHook().create_session(max_lease_time="0:30:00")
    assert ArrExtendSessionOperator(task_id="x", session_id=sid, extend_by="0:15:00").execute(context()) == (
        "00:45:00"
    )
    assert ArrExtendSessionOperator(task_id="x", session_id=sid, max_lease_time="2:00:00").execute(
        context()
    ) == ("02:00:00")
    assert ArrHook().get_session(sid).max_lease_time == timedelta(hours=2)
    admin.advance(3 * 3600)  # the session has now run past any lease under 3 h
    with pytest.raises(ArrInputError):
        ArrExtendSessionOperator(task_id="x", session_id=sid, max_lease_time="1:00:00").execute(context())


def test_extend_needs_exactly_one_of_its_two_arguments() -> None:
    with pytest.raises(ArrInputError, match="exactly one"):
        ArrExtendSessionOperator(task_id="x", session_id="s", extend_by="1:0:0", max_lease_time="2:0:0")


@pytest.mark.parametrize("missing", [None, "", "None"])
def test_stop_without_a_session_sends_nothing(missing: str | None, admin: Admin) -> None:
    ArrStopSessionOperator(task_id="stop", session_id=missing).execute(context())
    assert admin.counts()["requests"] == 0


def test_stop_is_idempotent(admin: Admin) -> None:
    sid = ArrHook().create_session()
    op = ArrStopSessionOperator(task_id="stop", session_id=sid)
    assert op.trigger_rule == "all_done"
    op.execute(context())
    op.execute(context())
    assert active(admin) == []


# -- the sensor ----------------------------------------------------------------------------------


def test_poke_waits_while_starting_then_pushes_the_hostname(slow: Admin) -> None:
    sid = ArrHook().create_session()
    sensor = ArrSessionReadySensor(task_id="wait", session_id=sid)
    ti = TaskInstance("wait")
    assert not sensor.poke(context(ti)).is_done
    slow.advance(1800)
    done = sensor.poke(context(ti))
    assert done.is_done and done.xcom_value == ti.xcom["hostname"] and done.xcom_value
    ArrHook().ensure_stopped(sid)


def test_poke_fails_at_once_with_the_service_message(slow: Admin) -> None:
    sid = ArrHook().create_session()
    slow.force(sid, "error", "no capacity in region")
    with pytest.raises(ArrSessionFailedError, match="no capacity in region"):
        ArrSessionReadySensor(task_id="wait", session_id=sid).poke(context())


def test_deferrable_sensor_defers_at_once_without_a_call(slow: Admin) -> None:
    sid = ArrHook().create_session()
    before = slow.counts()["requests"]
    sensor = ArrSessionReadySensor(task_id="wait", session_id=sid, deferrable=True, poll_interval=6)
    started = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context(TaskInstance("wait")))
    assert slow.counts()["requests"] == before, "the triggerer reads; the worker does not"
    trigger = deferred.value.trigger
    assert isinstance(trigger, ArrSessionReadyTrigger) and trigger.poll_interval == 6
    assert trigger.first_poll_at is None, "the trigger reads at once (the shared poll spaces reads)"
    assert trigger.deadline is not None and trigger.deadline >= started + sensor.timeout
    event = {"status": EVENT_READY, "hostname": "h.example", "session_id": sid}
    assert sensor.execute_complete(context(TaskInstance("wait")), event) == "h.example"
    ArrHook().ensure_stopped(sid)


def test_sensor_rejects_a_fast_poll_interval() -> None:
    with pytest.raises(ArrInputError, match="poll_interval"):
        ArrSessionReadySensor(task_id="wait", session_id="s", poll_interval=1)
