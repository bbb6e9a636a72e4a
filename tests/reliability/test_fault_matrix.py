"""The fault matrix: whatever fails, no session is left running and no secret is shown.

Each scenario runs 3 times against one emulator (reset between runs). After every run the
harness asserts that the emulator holds 0 active sessions and that neither the account key nor
any token appears in what was printed or logged; after each scenario it scans the metadata DB
(XCom, rendered template fields, trigger kwargs...) and the log files. The matrix table is
printed at the end of the test session (see conftest.py).

How each scenario is realised:

1. the render step raises: the workload DAG's render task raises (``ACTIONS``).
2. the sensor times out while the session is still starting: a deferred sensor with a 1 s
   timeout; dag.test runs its trigger in line, which answers ``timeout`` at the deadline.
3. the session goes to error during start-up: the example DAG with ``error_on_start``.
4. the lease expires while the workload runs: render moves the emulated clock past the lease.
5. the create task is killed after the session was created: the real kill path. While the
   create (blocking ``wait_for_ready``) waits on a delayed poll, the test sends SIGTERM to its
   own process; the handler that Airflow's task runner installed calls ``on_kill`` on the running
   task instance, exactly as when the supervisor kills a task.
6. the deferred sensor is marked failed by a user: the trigger the sensor deferred with is run
   as the triggerer runs it, then cancelled with the triggerer's user-action message, which makes
   it call ``on_kill``.
7. the triggerer restarts while the sensor is deferred: the trigger coroutine is cancelled as a
   triggerer shutdown does (no message: no ``on_kill``), rebuilt from ``serialize()`` and resumed.
8. a 429 storm, with and without Retry-After, during create, polling and stop: fault rules.
9. bursts of 500/503 and dropped connections (and a lost answer) during polling and stop.
10. the STS token expires in the middle of a run: render expires every token between two calls
    of its hook.
11. a create whose answer is lost (``lose_answer``: the emulator creates, then drops the
    connection). v1: the operator compares the active sessions before and after, stops the one
    new session and names it (with a task retry: the retry makes a fresh one). 2021-01-01: the
    hook's repeated PUT reattaches; if every attempt is lost, a task retry reattaches (one
    session, not two), and on the last try the operator stops the session by its known id. Not
    in the matrix: a concurrent create of another DAG makes two candidates, none is stopped,
    both are named.
12. the emulator is restarted mid-run (after create, or during render): sessions vanish (404).
13. the service cannot be reached during the teardown, then is back within the stop budget:
    every connection to the stop is cut (``drop``) for a few seconds; the stop keeps trying.
14. the service cannot be reached during the whole teardown (past ``stop_timeout``): the stop
    fails with an error that names the session left running, until when it bills and the
    command that stops it by hand, which the test then runs as the person on call would.
15. the token service answers 503 during a v1 create: the create request was never sent, so
    the task fails with an ordinary error: no "a session may exist" alarm, no list, no session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_arr._compat import TaskDeferred
from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.sensors.session import ArrSessionReadySensor
from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger
from tests.dag_files import arr_fault_dags
from tests.dag_files.arr_fault_dags import ACTIONS
from tests.reliability.conftest import EXAMPLE_CONF, Harness

pytestmark = pytest.mark.slow

RUNS = 3
NEVER = 10**7  # emulated seconds: a start-up that does not end while the test watches
try:
    from airflow.jobs.triggerer_job_runner import _USER_ACTION_CANCEL_MSG as USER_ACTION
except ImportError:  # pragma: no cover - older Airflow
    USER_ACTION = "__airflow_user_action__"

WORKLOAD_OK = {"create", "checkpoint", "wait", "render", "stop"}


@pytest.fixture(autouse=True)
def _no_actions() -> Iterator[None]:
    ACTIONS.clear()
    yield
    ACTIONS.clear()


def only_session(state: dict[str, Any]) -> dict[str, Any]:
    (session,) = state["sessions"]
    return session


def states(**tasks: str) -> dict[str, str]:
    return dict(tasks)


# ------------------------------------------------------------------------------------------------
# 1-4: the workload fails, the sensor gives up, the session fails, the lease runs out


def test_01_render_raises(harness: Harness) -> None:
    def crash(session_id: str) -> None:
        raise RuntimeError(f"the renderer crashed on {session_id}")

    for _ in range(RUNS):
        harness.reset()
        ACTIONS["render"] = crash
        run = harness.run(arr_fault_dags.arr_fault_workload)
        assert run.state == "failed", str(run)
        assert run.tasks == states(
            create="success", checkpoint="success", wait="success", render="failed", stop="success"
        )
        assert "the renderer crashed" in run.output
        state = harness.finish("1 render raises", run.state, seconds=run.seconds, text=run.output)
        assert only_session(state)["stop_requested"]


def test_02_sensor_times_out_while_starting(harness: Harness) -> None:
    for _ in range(RUNS):
        harness.reset(startup_delay=NEVER)
        run = harness.run(arr_fault_dags.arr_fault_sensor_timeout)
        assert run.state == "failed", str(run)
        assert run.tasks == states(create="success", wait="failed", stop="success")
        # "still starting" once the trigger has read it; "not read yet" when the 1 s went first.
        assert re.search(r"was (still starting|not read yet) at the deadline", run.output)
        state = harness.finish("2 sensor timeout", run.state, seconds=run.seconds, text=run.output)
        session = only_session(state)
        assert session["stop_requested"] and session["ready_at"] is None  # stopped while starting


def test_03_session_error_on_start(harness: Harness, example_dag: Any) -> None:
    for _ in range(RUNS):
        harness.reset(error_on_start="GPU pool exhausted")
        run = harness.run(example_dag, **EXAMPLE_CONF)
        assert run.state == "failed", str(run)
        assert run.tasks == states(
            create="success", wait_ready="failed", render="upstream_failed", stop="success"
        )
        assert "GPU pool exhausted" in run.output
        counts = harness.admin.counts()
        assert counts["get"] == 1  # the sensor failed on its first read: no waiting for nothing
        state = harness.finish("3 error on start", run.state, seconds=run.seconds, text=run.output)
        assert only_session(state)["status"] == "error"


def test_04_lease_expires_during_the_workload(harness: Harness) -> None:
    lease = 30 * 60  # arr_fault_dags.LEASE, in seconds

    for _ in range(RUNS):
        harness.reset()
        ACTIONS["render"] = lambda _sid: harness.admin.advance(lease + 1)
        run = harness.run(arr_fault_dags.arr_fault_workload)
        assert run.state == "failed", str(run)
        assert run.tasks == states(
            create="success", checkpoint="success", wait="success", render="failed", stop="success"
        )
        assert "is expired after rendering" in run.output
        state = harness.finish("4 lease expires", run.state, seconds=run.seconds, text=run.output)
        assert only_session(state)["status"] == "expired"


# ------------------------------------------------------------------------------------------------
# 5-7: kills and restarts


class Killer(threading.Thread):
    """Send SIGTERM to this process once the create's first poll is in flight (held 1.5 s by a
    delay rule), then watch whether the session is stopped before that poll is even answered."""

    def __init__(self, harness: Harness) -> None:
        super().__init__(daemon=True)
        self.admin = harness.admin
        self.killed = False
        self.stopped_during_poll = False

    def run(self) -> None:
        deadline = time.monotonic() + 30
        while self.admin.counts().get("delayed", 0) < 1:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
        self.killed = True
        until = time.monotonic() + 1.0  # the poll is held 1.5 s: decide well before it returns
        while time.monotonic() < until:
            sessions = self.admin.state()["sessions"]
            if sessions and sessions[0]["stop_requested"]:
                self.stopped_during_poll = True
                return
            time.sleep(0.01)


def test_05_create_killed_after_the_session_was_created(harness: Harness) -> None:
    for _ in range(RUNS):
        harness.reset(startup_delay=NEVER)
        harness.admin.fault(operation="get", action="delay", delay=1.5, count=1)
        killer = Killer(harness)
        previous = signal.getsignal(signal.SIGTERM)
        killer.start()
        try:
            run = harness.run(arr_fault_dags.arr_fault_create_kill)
        finally:
            killer.join(10)
            signal.signal(signal.SIGTERM, previous)  # the task runner's handler outlives the task
        assert killer.killed, "the create never polled"
        assert killer.stopped_during_poll, "on_kill did not stop the session"
        assert run.state == "failed", str(run)
        # A teardown runs only when its setup succeeded: the create stopped its own session.
        assert run.tasks == states(create="failed", stop="upstream_failed")
        assert "which this task created" in run.output
        state = harness.finish("5 create killed (on_kill)", run.state, seconds=run.seconds, text=run.output)
        assert only_session(state)["stop_requested"]


def test_05_kill_during_a_2021_create_stops_the_session_it_was_creating(harness: Harness) -> None:
    """With 2021-01-01 the id is known before the answer: a kill that lands after the service made
    the session but before the answer arrived still stops it (not a matrix run: a white-box call
    of ``on_kill`` on an operator whose create call is in progress)."""
    from airflow_provider_arr.operators.session import ArrCreateSessionOperator

    harness.connect(api_version="2021-01-01")
    harness.reset(startup_delay=NEVER)
    session_id = ArrHook().create_session(session_id="being-created", max_lease_time="0:30:00")
    operator = ArrCreateSessionOperator(task_id="create", session_id=session_id)
    operator._remember(session_id)  # what the create does before its PUT goes out
    operator.on_kill()
    assert harness.admin.active() == 0
    assert only_session(harness.admin.state())["stop_requested"]


def deferred_trigger(session_id: str) -> ArrSessionReadyTrigger:
    """Defer a real sensor on ``session_id`` and rebuild its trigger as a triggerer would."""
    sensor = ArrSessionReadySensor(
        task_id="wait", session_id=session_id, poll_interval=5, timeout=120, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # the poke (the session is still starting) needs no context
    return rebuild(deferred.value.trigger)


def rebuild(trigger: Any) -> ArrSessionReadyTrigger:
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_arr.triggers.session.ArrSessionReadyTrigger"
    return ArrSessionReadyTrigger(**kwargs)


async def run_like_triggerer(trigger: ArrSessionReadyTrigger, events: list[dict[str, Any]]) -> None:
    """What the triggerer's ``run_trigger`` does with a trigger: collect its events; when
    cancelled by a user action (mark failed...), call ``on_kill``; when cancelled by a shutdown,
    do not; clean up either way."""
    try:
        async for event in trigger.run():
            events.append(dict(event.payload))
    except asyncio.CancelledError as cancelled:
        if cancelled.args and cancelled.args[0] == USER_ACTION:
            await asyncio.wait_for(trigger.on_kill(), timeout=30)
        raise
    finally:
        with contextlib.suppress(Exception):
            await trigger.cleanup()


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def start_waiting(
    harness: Harness, trigger: ArrSessionReadyTrigger, *, polled: bool
) -> tuple[Any, list[Any]]:
    """Run ``trigger`` as the triggerer does; return once it is waiting, before its first read of
    the session or (``polled``) after it (the trigger may wait a poll interval before reading,
    since the sensor read the session just before deferring)."""
    gets = harness.admin.counts()["get"]
    events: list[dict[str, Any]] = []
    task = asyncio.ensure_future(run_like_triggerer(trigger, events))
    if polled:
        await until(lambda: harness.admin.counts()["get"] > gets)
    else:
        await asyncio.sleep(0.1)
    assert not task.done()
    return task, events


async def test_06_deferred_sensor_marked_failed(harness: Harness) -> None:
    for index in range(RUNS):
        harness.reset(startup_delay=NEVER)
        started = time.monotonic()
        session_id = ArrHook().create_session(max_lease_time="0:30:00")
        trigger = deferred_trigger(session_id)
        task, events = await start_waiting(harness, trigger, polled=index % 2 == 1)
        assert harness.admin.active() == 1
        task.cancel(USER_ACTION)  # what the triggerer does when a user marks the task failed
        with pytest.raises(asyncio.CancelledError):
            await task
        assert events == []
        state = harness.finish(
            "6 deferred sensor marked failed (trigger on_kill)",
            "trigger killed",
            seconds=time.monotonic() - started,
        )
        session = only_session(state)
        assert session["stop_requested"] and session["status"] in ("stopping", "stopped")
        assert state["counts"]["stop"] == 1


async def test_07_triggerer_restart_resumes_the_wait(harness: Harness) -> None:
    for index in range(RUNS):
        harness.reset(startup_delay=NEVER)
        started = time.monotonic()
        session_id = ArrHook().create_session(max_lease_time="0:30:00")
        trigger = deferred_trigger(session_id)
        task, events = await start_waiting(harness, trigger, polled=index % 2 == 1)
        task.cancel()  # a triggerer shutting down cancels without a message: no on_kill
        with pytest.raises(asyncio.CancelledError):
            await task
        # Nothing was stopped early: the session is still starting and billed to this wait.
        during = harness.admin.state()
        assert during["active"] == 1 and during["counts"]["stop"] == 0 and events == []
        harness.admin.force(session_id, "ready")  # it became ready while no triggerer watched
        # Another triggerer picks the trigger up from the database: from its serialized form.
        await asyncio.wait_for(run_like_triggerer(rebuild(trigger), events), timeout=30)
        (event,) = events
        assert event["status"] == "success" and event["session_id"] == session_id and event["hostname"]
        counts = harness.admin.counts()
        assert counts["create"] == 1 and counts["stop"] == 0  # created once, never stopped early
        ArrHook().stop_session(session_id)  # the DAG's teardown, once the sensor resumed
        harness.finish(
            "7 triggerer restart (resume)", f"event {event['status']}", seconds=time.monotonic() - started
        )


# ------------------------------------------------------------------------------------------------
# 8-10: throttling, server errors, dropped connections, expired tokens


@pytest.mark.parametrize(
    ("retry_after", "storm"), [(1, 2), (None, 4)], ids=["with-retry-after", "without-retry-after"]
)
def test_08_429_storm(harness: Harness, example_dag: Any, retry_after: int | None, storm: int) -> None:
    label = f"8 429 storm ({'Retry-After 1 s' if retry_after else 'no Retry-After'})"
    for _ in range(RUNS):
        harness.reset()
        for operation in ("create", "get", "stop"):
            harness.admin.fault(
                operation=operation, action="status", status=429, retry_after=retry_after, count=storm
            )
        run = harness.run(example_dag, **EXAMPLE_CONF)
        assert run.state == "success", str(run)
        counts = harness.admin.counts()
        assert counts["throttled"] == 3 * storm and counts["create"] == storm + 1
        if retry_after:
            assert run.seconds >= 3 * storm * retry_after  # every Retry-After was waited out
        state = harness.finish(label, run.state, seconds=run.seconds, text=run.output)
        assert only_session(state)["stop_requested"]


def test_09_5xx_bursts_and_dropped_connections(harness: Harness, example_dag: Any) -> None:
    for _ in range(RUNS):
        harness.reset()
        for operation, faults in (
            ("get", [("status", 500), ("status", 503), ("drop", None)]),
            ("stop", [("status", 503), ("drop", None), ("lose_answer", None), ("status", 500)]),
        ):
            for action, status in faults:
                rule: dict[str, Any] = {"operation": operation, "action": action, "count": 1}
                if status:
                    rule["status"] = status
                harness.admin.fault(**rule)
        run = harness.run(example_dag, **EXAMPLE_CONF)
        assert run.state == "success", str(run)
        counts = harness.admin.counts()
        assert counts["injected_errors"] == 4 and counts["dropped"] == 3
        state = harness.finish("9 500/503 bursts, drops", run.state, seconds=run.seconds, text=run.output)
        assert only_session(state)["stop_requested"]


def test_10_token_expires_mid_run(harness: Harness) -> None:
    for _ in range(RUNS):
        harness.reset()
        ACTIONS["render"] = lambda _sid: harness.admin.expire_tokens()
        run = harness.run(arr_fault_dags.arr_fault_workload)
        assert run.state == "success", str(run)
        counts = harness.admin.counts()
        assert counts["unauthorized"] == 1  # render's second call: refused once, then refreshed
        assert counts["token"] == len(WORKLOAD_OK - {"checkpoint"}) + 1
        harness.finish("10 token expires mid-run", run.state, seconds=run.seconds, text=run.output)


# ------------------------------------------------------------------------------------------------
# 11: a create whose answer is lost


def test_11_lost_create_answer_v1(harness: Harness) -> None:
    for _ in range(RUNS):
        harness.reset()
        harness.admin.fault(operation="create", action="lose_answer", count=1)
        run = harness.run(arr_fault_dags.arr_fault_workload)
        assert run.state == "failed", str(run)
        assert run.tasks["create"] == "failed" and run.tasks["stop"] == "upstream_failed"
        state = harness.finish("11 lost create answer (v1)", run.state, seconds=run.seconds, text=run.output)
        orphan = only_session(state)
        assert orphan["stop_requested"]
        assert f"session {orphan['id']}, which appeared meanwhile" in run.output  # named
        assert "has been stopped" in run.output


def test_11_lost_create_answer_v1_task_retry(harness: Harness) -> None:
    for _ in range(RUNS):
        harness.reset()
        harness.admin.fault(operation="create", action="lose_answer", count=1)
        run = harness.run(arr_fault_dags.arr_fault_workload_retry)
        assert run.state == "success", str(run)
        state = harness.finish(
            "11 lost create answer (v1, task retry)", run.state, seconds=run.seconds, text=run.output
        )
        # The first try's orphan was stopped; the retry made and used a fresh session.
        assert len(state["sessions"]) == 2 and all(s["stop_requested"] for s in state["sessions"])


@pytest.mark.parametrize(
    ("case", "lost"),
    [("hook retry", 1), ("task retry", 2), ("all lost, last try", 2)],
    ids=["hook-retry", "task-retry", "no-retry-left"],
)
def test_11_lost_create_answer_2021(harness: Harness, case: str, lost: int) -> None:
    """The hook repeats the idempotent PUT (retry_limit 2). Losing one answer, its second
    attempt reattaches; losing both fails the try: a task retry reattaches, and without one the
    operator stops the session it may have made (its id is known)."""
    harness.connect(api_version="2021-01-01", retry_limit=2)
    retry = case == "task retry"
    dag = arr_fault_dags.arr_fault_workload_retry if retry else arr_fault_dags.arr_fault_workload
    for _ in range(RUNS):
        harness.reset()
        harness.admin.fault(operation="create", action="lose_answer", count=lost)
        run = harness.run(dag)
        state = harness.finish(
            f"11 lost create answer (2021, {case})", run.state, seconds=run.seconds, text=run.output
        )
        session = only_session(state)  # one session, not two
        assert session["stop_requested"]
        if case == "all lost, last try":
            assert run.state == "failed" and run.tasks["create"] == "failed", run.tasks
            assert f"the create of session {session['id']} failed" in run.output
            assert "no retry follows: stopping the session" in run.output
            assert state["counts"]["create"] == lost
        else:
            assert run.state == "success", str(run)
            assert state["counts"]["create"] == lost + 1
            assert "already existed with these settings" in run.output


def test_11_lost_create_answer_v1_with_concurrent_creates(harness: Harness) -> None:
    """Another DAG creates a session of the same size and lease while the answer is lost: the
    operator cannot tell which is its own, so it stops neither and names both (not a matrix run:
    leaving the other DAG's session alone is the point)."""
    harness.reset()
    harness.admin.fault(operation="create", action="delay", delay=1.0, count=1)
    harness.admin.fault(operation="create", action="lose_answer", count=1)

    def other_dag() -> None:
        deadline = time.monotonic() + 30
        while harness.admin.counts().get("delayed", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        harness.server.state.create(dialect="v1", size="standard", lease=30 * 60.0)

    other = threading.Thread(target=other_dag, daemon=True)
    other.start()
    run = harness.run(arr_fault_dags.arr_fault_workload)
    other.join(10)
    assert run.state == "failed" and run.tasks["create"] == "failed"
    state = harness.admin.state()
    ids = [s["id"] for s in state["sessions"]]
    assert len(ids) == 2 and state["active"] == 2  # neither was stopped
    assert "2 sessions of the same size and lease appeared meanwhile" in run.output
    for session_id in ids:
        assert session_id in run.output
        ArrHook().stop_session(session_id)  # what the user does, told by the error
    assert harness.admin.active() == 0
    harness.guard.check(run.output, "the concurrent lost create")


# ------------------------------------------------------------------------------------------------
# 12: the emulator restarts mid-run


def test_12_emulator_restarted_mid_run(harness: Harness) -> None:
    for index in range(RUNS):
        harness.reset()
        ACTIONS.clear()
        point = "after_create" if index % 2 == 0 else "render"
        keep_tokens = index % 3 != 2

        def restart(_sid: str, keep_tokens: bool = keep_tokens) -> None:
            harness.remember_counts()
            harness.server.restart(keep_tokens=keep_tokens)
            harness.guard.watch(harness.server)

        ACTIONS[point] = restart
        run = harness.run(arr_fault_dags.arr_fault_workload)
        assert run.state == "failed", str(run)
        failed = "wait" if point == "after_create" else "render"
        assert run.tasks[failed] == "failed" and run.tasks["stop"] == "success", (
            run.tasks,
            run.output[-3000:],
        )
        assert "404" in run.output and "nothing to stop" in run.output
        state = harness.finish("12 emulator restarted", run.state, seconds=run.seconds, text=run.output)
        assert state["sessions"] == []  # the restarted emulator knows no session


# ------------------------------------------------------------------------------------------------
# 13-15: a teardown that cannot reach the service; a token failure before a create


def test_13_teardown_unreachable_then_back_within_the_budget(harness: Harness) -> None:
    for _ in range(RUNS):
        harness.reset()
        harness.connect(stop_timeout=60)
        harness.admin.fault(operation="stop", action="drop", count=4)
        run = harness.run(arr_fault_dags.arr_fault_workload)
        assert run.state == "success", str(run)
        assert harness.admin.counts()["dropped"] == 4
        state = harness.finish(
            "13 teardown unreachable, back in time", run.state, seconds=run.seconds, text=run.output
        )
        assert only_session(state)["stop_requested"]


def test_14_teardown_unreachable_past_the_budget_names_the_session(harness: Harness) -> None:
    for _ in range(RUNS):
        harness.reset()
        harness.connect(stop_timeout=2)
        harness.admin.fault(operation="stop", action="drop")
        run = harness.run(arr_fault_dags.arr_fault_workload)
        # Airflow leaves a teardown's failure out of the run's state (docs/howto/stop.md).
        assert run.state == "success", str(run)
        assert run.tasks == states(
            create="success", checkpoint="success", wait="success", render="success", stop="failed"
        )
        session_id = only_session(harness.admin.state())["id"]
        assert f"session {session_id} is still running and billed" in run.output
        from airflow_provider_arr.cli import stop_command

        assert stop_command(session_id) in run.output
        assert "until its lease ends" in run.output
        harness.admin.clear_faults()
        ArrHook().ensure_stopped(session_id)  # what the person on call does, told by the error
        harness.finish("14 teardown unreachable past budget", run.state, seconds=run.seconds, text=run.output)


def test_15_token_service_5xx_during_a_v1_create_is_no_false_alarm(harness: Harness) -> None:
    for _ in range(RUNS):
        harness.reset()
        harness.admin.expire_tokens()
        harness.admin.fault(operation="token", action="status", status=503)
        run = harness.run(arr_fault_dags.arr_fault_workload)
        assert run.state == "failed" and run.tasks["create"] == "failed", str(run)
        assert "may exist" not in run.output and "ARR token (GET" in run.output
        counts = harness.admin.counts()
        assert counts["create"] == 0 and counts["list"] == 0
        state = harness.finish("15 token 5xx during create", run.state, seconds=run.seconds, text=run.output)
        assert state["sessions"] == []
