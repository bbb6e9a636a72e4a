"""The example DAG in a real Airflow deployment (see ``airflow_deployment``), driven over its REST API.

1. the triggerer holding ``wait_ready`` is stopped (SIGTERM) while it is deferred: the wait
   resumes in the deployment's other triggerer, the run succeeds, one session was made and the
   teardown stopped it after the render (the triggerer's shutdown did *not* run the trigger's
   ``on_kill``); the stopped triggerer is started again;
2. the render step fails (the DAG's ``simulate_render_failure`` param, set in the trigger's conf):
   the run fails, the deferred wait had succeeded, and the teardown stopped the ready session;
3. a user marks the deferred ``wait_ready`` failed: the trigger's ``on_kill`` stops the session
   (Airflow 3.3+), the teardown runs too, and no session is left active.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest

from tests.conftest import Admin
from tests.deployment.airflow_deployment import (
    DAG_ID,
    LONG_STARTUP_DELAY,
    POLL_INTERVAL,
    Deployment,
    logged_at,
    only_session,
)

pytestmark = [pytest.mark.slow]


@pytest.mark.timeout(300)  # with the module's setup
def test_triggerer_restart_while_deferred(deployment: Deployment, admin: Admin) -> None:
    dep = deployment
    check = dep.check
    started = time.monotonic()
    run_id = dep.trigger({"poll_interval": POLL_INTERVAL})

    dep.wait_ti(run_id, "wait_ready", "deferred", timeout=120)
    # The trigger must be running in the first triggerer (it has read the session) before the kill.
    dep.wait_trigger_running(run_id)
    session = only_session(dep, admin)
    check(session["status"] == "starting", f"the session is already {session['status']} before the kill")

    holders = dep.trigger_holders(DAG_ID)
    holder = next(h for (run, _, _), h in holders.items() if run == run_id)
    first_triggerer = dep.graceful_stop(holder)
    states = dep.ti_states(run_id)
    check(states["wait_ready"] == "deferred", f"wait_ready not deferred after the triggerer's stop: {states}")
    session = only_session(dep, admin)
    check(
        session["status"] in ("starting", "ready") and not session["stop_requested"],
        f"the triggerer's shutdown stopped the session (on_kill taken for a user's kill?): {session}",
    )

    # The other triggerer of the deployment takes the wait over; the stopped one comes back.
    state = dep.wait_run(run_id, timeout=150)
    dep.restart(holder)
    states = dep.ti_states(run_id)
    check(state == "success" and set(states.values()) == {"success"}, f"run ended {state}, tasks {states}")

    # One session, ready before the render (which checks it is ready), stopped by the teardown.
    session = only_session(dep, admin)
    counts = admin.counts()
    stopped = session["status"] in ("stopping", "stopped") and session["stop_requested"]
    check(stopped, f"the session was not stopped: {session}")
    check(session["ready_at"] is not None, f"the session was never ready: {session}")
    check(session["ended"] > session["ready_at"], f"stopped before it was ready: {session}")
    check(counts["create"] == 1, f"one create expected: {counts}")
    check(counts["stop"] == 1, f"one stop expected (the teardown's): {counts}")
    check(admin.active() == 0, "a session is still active")
    stop_log = "".join(dep.task_logs(run_id, "stop").values())
    check(
        f"session {session['id']} stop requested" in stop_log,
        f"the teardown did not stop it: {stop_log[-3000:]}",
    )

    # The wait resumed in the other triggerer: the trigger saw the session ready there, not in the
    # stopped one, and the stopped one's shutdown did not take it for a user's kill.
    ran = dep.trigger_runs(DAG_ID, [run_id])[f"{run_id}[-1]"]
    check(len(ran) == 2 and ran[0] == holder and ran[1] != holder, f"the trigger ran in {ran}")
    hosts = dep.triggerer_hostnames()
    logs = dep.task_logs(run_id, "wait_ready")
    by_host = {
        hosts.get(int(m.group(1)), ""): text
        for name, text in logs.items()
        if (m := re.search(r"\.trigger\.(\d+)\.log$", name))
    }
    first_log = by_host.get(holder, "")
    second_log = by_host.get(ran[1], "")
    ready = re.compile(r"ARR session \S+ is ready")
    check("is starting" in first_log, f"the first triggerer never ran the trigger; logs: {list(logs)}")
    check(not ready.search(first_log), f"the first triggerer saw the session ready: {first_log[-3000:]}")
    check(bool(ready.search(second_log)), f"the second triggerer did not see it ready; logs: {list(logs)}")
    check(
        "the task was killed, so" not in "".join(logs.values()),
        "the trigger's on_kill ran on a triggerer restart",
    )
    print(
        f"\ntriggerer restart: first triggerer {first_triggerer}; run {state} in "
        f"{time.monotonic() - started:.0f} s; timeline:\n  " + "\n  ".join(dep.events)
    )


@pytest.mark.timeout(300)
def test_failing_render_still_stops_the_session(deployment: Deployment, admin: Admin) -> None:
    dep = deployment
    check = dep.check
    started = time.monotonic()
    run_id = dep.trigger({"poll_interval": POLL_INTERVAL, "simulate_render_failure": True})

    expected = {"create": "success", "wait_ready": "success", "render": "failed", "stop": "success"}
    states = dep.expect_run(run_id, 150, "failed", expected)

    session = only_session(dep, admin)
    counts = admin.counts()
    check(session["ready_at"] is not None, f"the render ran before the session was ready: {session}")
    check(
        session["status"] in ("stopping", "stopped") and session["stop_requested"],
        f"the teardown did not stop the session the failed render left ready: {session}",
    )
    check(counts["create"] == 1 and counts["stop"] == 1, f"one create and one stop expected: {counts}")
    check(admin.active() == 0, "a session is still active")
    render_log = "".join(dep.task_logs(run_id, "render").values())
    check("failed on purpose" in render_log, f"render did not fail as asked: {render_log[-3000:]}")
    stop_log = "".join(dep.task_logs(run_id, "stop").values())
    check(f"session {session['id']} stop requested" in stop_log, f"the teardown log: {stop_log[-3000:]}")
    deferred = "".join(dep.task_logs(run_id, "wait_ready").values())
    check(".trigger." in "".join(dep.task_logs(run_id, "wait_ready")), "wait_ready did not defer")
    check(re.search(r"ARR session \S+ is ready", deferred), "the trigger did not see the session ready")
    print(f"\nfailing render: run failed in {time.monotonic() - started:.0f} s, tasks {states}")


@pytest.mark.timeout(300)
def test_mark_deferred_task_failed_stops_session(deployment: Deployment, admin: Admin) -> None:
    dep = deployment
    check = dep.check
    started = time.monotonic()
    admin.config(startup_delay=LONG_STARTUP_DELAY)  # still starting when the user gives up
    run_id = dep.trigger({"poll_interval": POLL_INTERVAL})

    dep.wait_ti(run_id, "wait_ready", "deferred", timeout=120)
    dep.wait_trigger_running(run_id)  # on_kill runs only for a trigger running in a triggerer
    session = only_session(dep, admin)
    check(session["status"] == "starting", f"the session should still be starting: {session}")

    dep.api(
        "PATCH",
        f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/wait_ready",
        json={"new_state": "failed", "note": "given up by tests/deployment"},
    )
    dep.note("wait_ready marked failed through the REST API")
    dep.wait_for(lambda: admin.active() == 0, 60, "the session to be stopped", every=0.25)
    stop_task_then = dep.ti_states(run_id).get("stop")
    dep.note(f"no active session; the stop task is {stop_task_then}")

    expected = {"create": "success", "wait_ready": "failed", "render": "upstream_failed", "stop": "success"}
    dep.expect_run(run_id, 120, "failed", expected)

    session = only_session(dep, admin)
    counts = admin.counts()
    check(session["status"] in ("stopping", "stopped"), f"not stopped: {session}")
    check(session["ready_at"] is None, f"the session became ready: {session}")
    check(admin.active() == 0, "a session is still active")
    check(counts["create"] == 1 and counts["stop"] >= 1, f"one create and a stop expected: {counts}")
    # The triggerer cancels the trigger (and runs its on_kill) on its next look at the database,
    # which may come after the teardown has already stopped the session and the run has ended.
    dep.wait_for(
        lambda: logged_at(dep.trigger_logs(run_id), "the task was killed, so"),
        60,
        "the trigger's on_kill to stop the session (its log line)",
    )
    trigger_logs = dep.trigger_logs(run_id)
    # Which of on_kill and the teardown stops first is a race (either is right): report it, from
    # the hook's "stop requested" lines (logged once the service answered).
    on_kill_stop = logged_at(trigger_logs, "stop requested")
    teardown_stop = logged_at("".join(dep.task_logs(run_id, "stop").values()), "stop requested")
    on_kill_first = on_kill_stop is not None and (teardown_stop is None or on_kill_stop < teardown_stop)

    def hms(when: datetime | None) -> str:
        return f"{when:%H:%M:%S.%f}" if when else "never"

    print(
        f"\nmark failed: run failed in {time.monotonic() - started:.0f} s; stop answered to on_kill at "
        f"{hms(on_kill_stop)}, to the teardown at {hms(teardown_stop)} "
        f"({'on_kill' if on_kill_first else 'teardown'} first; the stop task was "
        f"{stop_task_then} when the session was seen inactive); "
        f"{counts['stop']} stop requests; timeline:\n  " + "\n  ".join(dep.events)
    )
