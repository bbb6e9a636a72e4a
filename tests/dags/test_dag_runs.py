"""DAGs run end to end with dag.test() against the emulator, in both API dialects.

After every run the emulator must hold no active session: the teardown stop always runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_arr.emulator import EmulatorServer
from tests.conftest import Admin, connection_json

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db", "arr_conn")]
DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture
def emulator(emulator_factory: Any) -> EmulatorServer:
    """The default path: the emulator throttled at the service's documented rate (0.2 calls/s,
    bursts of 5), so every DAG run here is paced as in production. The throttle counts real
    seconds and the leases emulated ones: at x20 (not the suite's x100) a 30-minute lease lasts
    90 real seconds, the time of a dozen paced calls with room to spare."""
    return emulator_factory(throttle_rate=0.2, throttle_burst=5, time_scale=20.0)


@pytest.fixture
def arr_conn(monkeypatch: pytest.MonkeyPatch, emulator: EmulatorServer, api_version: str) -> str:
    """``arr_default`` at its defaults (rate, budgets), but for fast retries of injected faults."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_ARR_DEFAULT",
        connection_json(emulator.url, api_version=api_version, retry_wait_min=0.05, retry_wait_max=1),
    )
    return "arr_default"


def run(dag: Any, **conf: Any) -> tuple[str, dict[str, str]]:
    """Run a DAG in-process; return the run's state and each task's state."""
    dag_run = dag.test(run_conf=conf or None)
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    return str(dag_run.state), states


@pytest.fixture
def captured() -> list[dict[str, Any]]:
    from tests.dag_files.arr_test_dags import CAPTURED

    CAPTURED.clear()
    return CAPTURED


def test_example_dag_success(example_dag: Any, admin: Admin) -> None:
    state, tasks = run(example_dag, poll_interval=5, render_seconds=0)
    assert state == "success", tasks
    assert tasks == {"create": "success", "wait_ready": "success", "render": "success", "stop": "success"}
    sessions = admin.state()["sessions"]
    assert len(sessions) == 1
    assert sessions[0]["status"].lower() in ("stopping", "stopped")
    assert admin.active() == 0


def test_example_dag_session_error_on_start(example_dag: Any, admin: Admin) -> None:
    admin.config(error_on_start="GPU pool exhausted")
    state, tasks = run(example_dag, poll_interval=5)
    assert state == "failed"
    assert tasks["wait_ready"] == "failed" and tasks["render"] == "upstream_failed"
    assert tasks["stop"] == "success"
    assert admin.active() == 0


def test_example_dag_lease_expires_while_waiting(example_dag: Any, admin: Admin) -> None:
    # A lease shorter than the start-up: the session expires before it is ready. (2021-01-01
    # sends whole minutes, so the start-up must exceed a minute: 120 emulated s, 1.2 s real.)
    admin.config(startup_delay=120)
    state, tasks = run(example_dag, poll_interval=5, max_lease_time="0:01:00")
    assert state == "failed"
    assert tasks["wait_ready"] == "failed" and tasks["stop"] == "success"
    assert admin.active() == 0


def test_render_failure_still_stops(admin: Admin) -> None:
    from tests.dag_files.arr_test_dags import arr_test_render_fails

    state, tasks = run(arr_test_render_fails)
    assert state == "failed"
    assert tasks["render"] == "failed" and tasks["stop"] == "success"
    assert admin.active() == 0


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_sensor_modes_and_extend(mode: str, admin: Admin, captured: list[dict[str, Any]]) -> None:
    from tests.dag_files.arr_test_dags import SENSOR_DAGS

    state, tasks = run(SENSOR_DAGS[mode])
    assert state == "success", tasks
    (seen,) = captured
    assert seen["create"] == seen["session_id"]
    assert seen["wait"] and seen["wait"] == seen["wait_hostname"]
    assert seen["extend_by"] == "00:45:00"  # 30 min + 15 min: the lease is a total
    assert seen["extend_to"] == "01:00:00"
    assert admin.active() == 0


@pytest.mark.parametrize("kind", ["blocking", "deferrable"])
def test_create_waits_for_ready(kind: str, admin: Admin, captured: list[dict[str, Any]]) -> None:
    from tests.dag_files.arr_test_dags import CREATE_WAIT_DAGS

    state, tasks = run(CREATE_WAIT_DAGS[kind])
    assert state == "success", tasks
    (seen,) = captured
    assert seen["create"] == seen["session_id"] and seen["create_hostname"]
    assert admin.active() == 0


def test_create_failing_while_waiting_stops_its_session(admin: Admin, captured: list[dict[str, Any]]) -> None:
    from tests.dag_files.arr_test_dags import CREATE_WAIT_DAGS

    admin.config(error_on_start="no capacity")
    state, tasks = run(CREATE_WAIT_DAGS["blocking"])
    assert state == "failed" and tasks["create"] == "failed"
    assert len(admin.state()["sessions"]) == 1
    assert admin.active() == 0


def test_create_stops_its_session_when_it_cannot_tell_xcom_the_id(admin: Admin, api_version: str) -> None:
    """The XCom push is how the teardown learns the id: if it fails, the create stops the session."""
    from types import SimpleNamespace

    from airflow_provider_arr.operators.session import ArrCreateSessionOperator

    def broken_push(**_: Any) -> None:
        raise ConnectionError("the API server went away")

    ti = SimpleNamespace(
        dag_id="d",
        run_id="r",
        task_id="create",
        map_index=-1,
        try_number=1,
        max_tries=0,
        xcom_push=broken_push,
    )
    with pytest.raises(ConnectionError):
        ArrCreateSessionOperator(task_id="create").execute({"ti": ti})  # type: ignore[arg-type]
    sessions = admin.state()["sessions"]
    assert len(sessions) == 1 and sessions[0]["stop_requested"], sessions
    assert admin.active() == 0


def test_stop_operator_runs_whatever_happened_upstream() -> None:
    from airflow_provider_arr.operators.session import ArrStopSessionOperator

    assert ArrStopSessionOperator(task_id="stop", session_id="s").trigger_rule == "all_done"


@pytest.mark.parametrize("ended", ["stopping", "stopped", "expired", "error"])
@pytest.mark.parametrize("mode", ["poke", "deferrable"])
def test_sensor_fails_fast_on_a_session_that_will_never_be_ready(admin: Admin, ended: str, mode: str) -> None:
    """Poke mode fails at its first read; a deferrable sensor defers at once (no read in the
    worker) and fails at its trigger's first read: never a wait until the timeout."""
    import asyncio
    from types import SimpleNamespace

    from airflow_provider_arr._compat import TaskDeferred
    from airflow_provider_arr.exceptions import ArrSessionFailedError
    from airflow_provider_arr.hooks.arr import ArrHook
    from airflow_provider_arr.sensors.session import ArrSessionReadySensor
    from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger

    session_id = ArrHook().create_session()
    admin.force(session_id, ended, message=f"forced {ended} by the test")
    sensor = ArrSessionReadySensor(
        task_id="wait", session_id=session_id, deferrable=mode == "deferrable", timeout=3600
    )
    ti = SimpleNamespace(xcom_push=lambda **_: None, try_number=1)
    context: Any = {"ti": ti, "task_instance": ti}
    said = "stopp" if ended == "stopping" else ended  # 2021-01-01 has no Stopping: it says Stopped
    with pytest.raises(ArrSessionFailedError, match=said) as info:
        if mode == "poke":
            sensor.execute(context)
        else:
            with pytest.raises(TaskDeferred) as deferred:
                sensor.execute(context)
            assert admin.counts()["get"] == 0, "the worker defers without reading"
            _, kwargs = deferred.value.trigger.serialize()
            trigger = ArrSessionReadyTrigger(**kwargs)  # as the triggerer rebuilds it

            async def first_event() -> dict[str, Any]:
                try:
                    async for event in trigger.run():
                        return dict(event.payload)
                    raise AssertionError("the trigger ended without an event")
                finally:
                    await trigger.cleanup()

            sensor.execute_complete(context, asyncio.run(first_event()))
    assert info.value.session_id == session_id
    assert admin.counts()["get"] == 1  # one read, no waiting for the timeout
    ArrHook().ensure_stopped(session_id)


def test_scenes_dag_one_session_per_scene_each_stopped(admin: Admin) -> None:
    sys.path.insert(0, str(DAGS))
    try:
        sys.modules.pop("arr_render_scenes", None)
        import arr_render_scenes
    finally:
        sys.path.remove(str(DAGS))
    scenes = [f"https://example.blob.core.windows.net/scenes/{name}.arrAsset" for name in "abc"]
    dag_run = arr_render_scenes.dag.test(run_conf={"scenes": scenes, "poll_interval": 5})
    tis = dag_run.get_task_instances()
    states = sorted((ti.task_id, ti.map_index, str(ti.state)) for ti in tis)
    assert str(dag_run.state) == "success", states
    expected = [("scene_models", -1, "success")] + [
        (task, i, "success") for task in ("create", "render", "stop", "wait_ready") for i in range(3)
    ]
    assert states == sorted(expected)
    sessions = admin.state()["sessions"]
    assert len(sessions) == 3
    assert all(s["stop_requested"] for s in sessions)
    assert admin.active() == 0
