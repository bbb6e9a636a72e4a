"""The provider in a distributed Airflow (see ``airflow_deployment``): many runs, and components killed.

Scenarios 1 to 4 trigger runs of ``arr_render_scenes`` (one session per scene, mapped) over the
REST API (5 and 6 other DAGs of dags/, as said below), against the emulator throttled as the
service is (0.2 calls/s per account, bursts of 5); each ends with every run in the state a user
expects and every session stopped:

1. 20 runs of 2 scenes at once: spread over both Celery workers and both triggerers; the account's
   rate limit holds (no task fails on a 429); every session stopped.
2. ``kill -9`` of the triggerer holding waits: the other triggerer resumes them after the
   triggerer health-check threshold; no wait lost or doubled, no extra session.
3. ``kill -9`` of the worker running a (long) render: Airflow's task heartbeat check fails the
   task, the teardown stops the session on the other worker; the worker is restarted.
4. ``kill -9`` of one scheduler mid-run: the other one carries the runs to the end.
5. ``kill -9`` of the triggerer holding a lease guard (``arr_render_guarded``: the deferrable
   ``ArrLeaseGuardOperator`` beside a long render): the other triggerer takes the guard over, the
   lease keeps being extended in time (the session never expires while the render runs) and never
   past the cap, and the teardown stops the session.
6. The orphan sweep (``arr_session_sweep``, unpaused and triggered with ``dry_run`` off) after runs
   of ``arr_render_scenes`` were aborted by hand with their teardown skipped (as when it cannot
   run): one marked failed, one marked failed and then deleted. It stops exactly their sessions,
   keeps the session of a run still rendering, and succeeds; a run marked failed with its teardown
   left alone gets it run by Airflow (no orphan).

Each scenario adds a row (runs, sessions created/stopped/leaked, 429 answers, wall time) to the
table printed at the end and written to benchmarks/DEPLOYMENT.md.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

import pytest

from tests.conftest import Admin
from tests.deployment.airflow_deployment import (
    SCENES_DAG_ID,
    TERMINAL_RUN_STATES,
    TIME_SCALE,
    Deployment,
    ScenarioResult,
    record,
)

pytestmark = [pytest.mark.slow]

DAG = SCENES_DAG_ID
SCENES = [
    "https://example.blob.core.windows.net/scenes/a.arrAsset",
    "https://example.blob.core.windows.net/scenes/b.arrAsset",
]
# Emulated time runs 25x: a 12-hour lease is ~29 real minutes, more than any scenario lasts.
LEASE = "12:00:00"
WORKERS = {"airflow-worker-1", "airflow-worker-2"}
TRIGGERERS = {"airflow-triggerer-1", "airflow-triggerer-2"}


def conf(scenes: list[str], **extra: Any) -> dict[str, Any]:
    return {"scenes": scenes, "max_lease_time": LEASE, "poll_interval": 20, **extra}


def wait_runs(dep: Deployment, run_ids: list[str], timeout: float) -> dict[str, str]:
    """Until every run has ended; their states."""
    states: dict[str, str] = {}

    def ended() -> bool:
        for run_id in run_ids:
            if states.get(run_id) not in TERMINAL_RUN_STATES:
                states[run_id] = dep.run_state(run_id, DAG)
        return all(s in TERMINAL_RUN_STATES for s in states.values())

    dep.wait_for(ended, timeout, f"{len(run_ids)} runs of {DAG} to end", every=5)
    dep.note(f"runs ended: {Counter(states.values())}")
    return states


def tis_of(dep: Deployment, run_ids: list[str]) -> list[dict[str, Any]]:
    return [ti for run_id in run_ids for ti in dep.task_instances(run_id, DAG)]


def failed_on_429(dep: Deployment, tis: list[dict[str, Any]]) -> list[str]:
    """Failed task instances whose log shows a 429 (the service's throttling) as the cause."""
    out = []
    for ti in tis:
        if ti["state"] != "failed":
            continue
        logs = "".join(dep.task_logs(ti["dag_run_id"], ti["task_id"], DAG).values())
        if re.search(r"\b429\b|[Tt]hrottl", logs):
            out.append(f"{ti['dag_run_id']}/{ti['task_id']}[{ti['map_index']}]")
    return out


def settle(dep: Deployment) -> dict[str, int]:
    """The emulator's counts once the runs have ended (a stop just answered may still be counted)."""
    time.sleep(2)
    return dep.session_counts()


def row(name: str, runs: int, counts: dict[str, int], started: float, note: str = "") -> ScenarioResult:
    return ScenarioResult(
        scenario=name,
        runs=runs,
        created=counts["created"],
        stopped=counts["stopped"],
        leaked=counts["active"],
        throttled=counts["throttled"],
        wall=time.monotonic() - started,
        note=note,
    )


@pytest.mark.timeout(2400)
def test_20_mapped_runs_spread_over_workers_and_triggerers(deployment: Deployment, admin: Admin) -> None:
    dep = deployment
    dep.set_budget(2300)
    started = time.monotonic()
    runs = 20
    run_ids = [dep.trigger(conf(SCENES), DAG) for _ in range(runs)]
    states = wait_runs(dep, run_ids, timeout=2200)
    tis = tis_of(dep, run_ids)
    counts = settle(dep)
    throttled_failures = failed_on_429(dep, tis)
    failed = [
        f"{t['dag_run_id']}/{t['task_id']}[{t['map_index']}]={t['state']}"
        for t in tis
        if t["state"] != "success"
    ]
    hosts = Counter(t["hostname"] for t in tis if t["task_id"] in ("create", "render", "stop"))
    waits = dep.trigger_runs(DAG, run_ids)
    wait_hosts = Counter(h for held in waits.values() for h in held)
    note = (
        f"runs {dict(Counter(states.values()))}; tasks not success: {len(failed)}, of which on a 429: "
        f"{len(throttled_failures)}; worker tasks by host {dict(hosts)}; "
        f"waits by triggerer {dict(wait_hosts)}"
    )
    record(row("1. 20 runs x 2 scenes", runs, counts, started, note))

    dep.check(
        not throttled_failures, f"{len(throttled_failures)} tasks failed on a 429: {throttled_failures[:20]}"
    )
    dep.check(
        set(states.values()) == {"success"}, f"runs: {Counter(states.values())}; not success: {failed[:30]}"
    )
    dep.check(not failed, f"task instances not successful: {failed[:30]}")
    expected = {"scene_models": 1, "create": 2, "wait_ready": 2, "render": 2, "stop": 2}
    per_run = Counter(t["task_id"] for t in tis)
    dep.check(per_run == Counter({k: v * runs for k, v in expected.items()}), f"task instances: {per_run}")
    dep.check(counts["created"] == 2 * runs, f"{counts['created']} sessions created, {2 * runs} expected")
    dep.check(counts["stopped"] == counts["created"] and counts["active"] == 0, f"sessions: {counts}")
    dep.check(set(hosts) >= WORKERS, f"tasks did not run on both workers: {hosts}")
    # A deferrable sensor defers at once: every wait runs in a triggerer, both of them in use.
    dep.check(len(waits) == 2 * runs, f"{len(waits)} of {2 * runs} waits deferred to a triggerer")
    dep.check(set(wait_hosts) >= TRIGGERERS, f"waits did not run in both triggerers: {wait_hosts}")
    print(f"\n20 mapped runs: {note}; timeline:\n  " + "\n  ".join(dep.events[-10:]))


@pytest.mark.timeout(900)
def test_kill9_triggerer_holding_waits(deployment: Deployment, admin: Admin) -> None:
    dep = deployment
    dep.set_budget(800)
    started = time.monotonic()
    admin.config(startup_delay=1500)  # 60 real seconds: the waits outlive the kill and the takeover
    run_ids = [dep.trigger(conf(SCENES), DAG) for _ in range(2)]

    # Every wait deferred, its trigger running in a triggerer (it has read its session once there).
    def all_held() -> dict[tuple[str, str, int], str] | None:
        holders = {k: h for k, h in dep.trigger_holders(DAG).items() if k[0] in run_ids}
        ran = dep.trigger_runs(DAG, run_ids)
        return holders if len(holders) == 4 and len(ran) == 4 else None

    holders = dep.wait_for(all_held, 400, "the 4 waits to run in the triggerers", every=2)
    victim, held = Counter(holders.values()).most_common(1)[0]
    dep.check(victim in TRIGGERERS, f"a wait held by {victim}")
    killed_at = time.monotonic()
    dep.kill9(victim)
    survivor = (TRIGGERERS - {victim}).pop()
    moved = [k for k, h in holders.items() if h == victim]

    def taken_over() -> bool:
        now = dep.trigger_holders(DAG)
        return all(now.get(k) == survivor for k in moved if k in now) and any(k in now for k in moved)

    dep.wait_for(taken_over, 300, f"{survivor} to take over the waits of {victim}", every=1)
    takeover = time.monotonic() - killed_at
    dep.note(f"{survivor} holds the {len(moved)} waits of {victim} {takeover:.0f} s after the kill")
    states = wait_runs(dep, run_ids, timeout=500)
    tis = tis_of(dep, run_ids)
    counts = settle(dep)
    dep.restart(victim)
    waits = dep.trigger_runs(DAG, run_ids)
    note = f"{victim} held {held} of 4 waits; {survivor} took them over {takeover:.0f} s after the kill"
    record(row("2. kill -9 triggerer holding waits", len(run_ids), counts, started, note))

    failed = [
        f"{t['dag_run_id']}/{t['task_id']}[{t['map_index']}]={t['state']}"
        for t in tis
        if t["state"] != "success"
    ]
    dep.check(set(states.values()) == {"success"} and not failed, f"runs {states}; not success: {failed}")
    for key in moved:
        ran = waits[f"{key[0]}[{key[2]}]"]
        dep.check(ran == [victim, survivor], f"wait {key} ran in {ran}, expected {victim} then {survivor}")
    for key, ran in waits.items():
        dep.check(len(ran) == len(set(ran)) and len(ran) <= 2, f"wait {key} ran in {ran}")
    waits_tis = [t for t in tis if t["task_id"] == "wait_ready"]
    dep.check(all(t["try_number"] == 1 for t in waits_tis), f"a wait was retried: {waits_tis}")
    dep.check(counts["created"] == 4, f"{counts['created']} sessions created, 4 expected (no extra session)")
    dep.check(counts["stopped"] == 4 and counts["active"] == 0, f"sessions: {counts}")
    print(f"\ntriggerer kill -9: {note}; timeline:\n  " + "\n  ".join(dep.events[-12:]))


@pytest.mark.timeout(600)
def test_kill9_worker_running_a_render(deployment: Deployment, admin: Admin) -> None:
    dep = deployment
    dep.set_budget(550)
    started = time.monotonic()
    admin.config(startup_delay=250)  # 10 real seconds
    run_id = dep.trigger(conf(SCENES[:1], render_seconds=900), DAG)

    def rendering() -> dict[str, Any] | None:
        for ti in dep.task_instances(run_id, DAG):
            if ti["task_id"] == "render" and ti["state"] == "running" and ti["hostname"]:
                return ti
        return None

    render = dep.wait_for(rendering, 300, "the render to run on a worker", every=2)
    victim = str(render["hostname"])
    dep.check(victim in WORKERS, f"render runs on {victim}")
    time.sleep(3)  # a heartbeat or two from the task: it is well under way
    dep.kill9(victim)
    state = dep.wait_run(run_id, 300, DAG)
    tis = {(t["task_id"], t["map_index"]): t for t in dep.task_instances(run_id, DAG)}
    counts = settle(dep)
    dep.restart(victim)
    stop = tis[("stop", 0)]
    note = (
        f"render on {victim} killed: render {tis[('render', 0)]['state']}, teardown stop "
        f"{stop['state']} on {stop['hostname']}"
    )
    record(row("3. kill -9 worker running a render", 1, counts, started, note))

    dep.check(state == "failed", f"the run ended {state}: {tis}")
    dep.check(tis[("render", 0)]["state"] == "failed", f"render: {tis[('render', 0)]}")
    dep.check(stop["state"] == "success", f"the teardown did not run: {stop}")
    dep.check(stop["hostname"] in WORKERS - {victim}, f"the teardown ran on {stop['hostname']}")
    dep.check(counts == {**counts, "created": 1, "stopped": 1, "active": 0}, f"sessions: {counts}")
    print(f"\nworker kill -9: {note}; timeline:\n  " + "\n  ".join(dep.events[-8:]))


@pytest.mark.timeout(600)
def test_kill9_scheduler_mid_run(deployment: Deployment, admin: Admin) -> None:
    dep = deployment
    dep.set_budget(550)
    started = time.monotonic()
    admin.config(startup_delay=500)  # 20 real seconds
    run_ids = [dep.trigger(conf(SCENES), DAG) for _ in range(2)]
    victim, survivor = "airflow-scheduler-1", "airflow-scheduler-2"
    jobs = {h: i for i, h in dep.live_jobs("SchedulerJob").items()}

    def created() -> bool:
        return (
            sum(1 for t in tis_of(dep, run_ids) if t["task_id"] == "create" and t["state"] == "success") >= 2
        )

    dep.wait_for(created, 300, "sessions to be created", every=2)
    dep.kill9(victim)
    killed_at = dep.sql("SELECT now()")[0][0]
    states = wait_runs(dep, run_ids, timeout=450)
    tis = tis_of(dep, run_ids)
    counts = settle(dep)
    queued_after = dep.sql(
        "SELECT DISTINCT queued_by_job_id FROM task_instance WHERE dag_id = %s AND run_id = ANY(%s) "
        "AND queued_dttm > %s",
        DAG,
        run_ids,
        killed_at,
    )
    dep.restart(victim)
    queuers = sorted(int(r[0]) for r in queued_after if r[0] is not None)
    note = (
        f"{victim} killed after the first creates; tasks queued afterwards by jobs {queuers} "
        f"({survivor} is job {jobs.get(survivor)})"
    )
    record(row("4. kill -9 a scheduler mid-run", len(run_ids), counts, started, note))

    failed = [
        f"{t['dag_run_id']}/{t['task_id']}[{t['map_index']}]={t['state']}"
        for t in tis
        if t["state"] != "success"
    ]
    dep.check(set(states.values()) == {"success"} and not failed, f"runs {states}; not success: {failed}")
    dep.check(queuers == [jobs[survivor]], f"tasks queued after the kill by {queuers}, not only {survivor}")
    dep.check(
        counts["created"] == 4 and counts["stopped"] == 4 and counts["active"] == 0, f"sessions: {counts}"
    )
    print(f"\nscheduler kill -9: {note}; timeline:\n  " + "\n  ".join(dep.events[-8:]))


GUARDED_DAG = "arr_render_guarded"
SWEEP_DAG = "arr_session_sweep"
# One scene per run (arr_render_session runs one run at a time: max_active_runs=1).
SESSION_DAG = DAG
# The guard's settings on the session's clock (x25): it extends every step - margin = 10 emulated
# minutes (24 real seconds), and a lease it set lasts at least the margin, 48 real seconds: more
# than a triggerer takeover (15 s health threshold and a few heartbeats).
GUARD_LEASE = "0:30:00"
GUARD = {"guard_step": "0:30:00", "guard_margin": "0:20:00", "guard_cap": "2:00:00"}
GUARD_CAP_SECONDS = 2 * 3600


def wait_dag(dep: Deployment, dag_id: str) -> None:
    """Until the dag-processor has registered ``dag_id`` (the harness waits for the two render DAGs)."""
    dep.wait_for(
        lambda: dep.http.get(f"{dep.api_url}/api/v2/dags/{dag_id}", timeout=10).status_code == 200,
        120,
        f"the dag-processor to register {dag_id}",
        every=2,
    )


def not_success(tis: list[dict[str, Any]]) -> list[str]:
    return [
        f"{t['dag_run_id']}/{t['task_id']}[{t['map_index']}]={t['state']}"
        for t in tis
        if t["state"] != "success"
    ]


@pytest.mark.timeout(900)
def test_kill9_triggerer_holding_the_lease_guard(deployment: Deployment, admin: Admin) -> None:
    dep = deployment
    dep.set_budget(800)
    started = time.monotonic()
    admin.config(startup_delay=250)  # 10 real seconds
    wait_dag(dep, GUARDED_DAG)
    run_conf = {
        "max_lease_time": GUARD_LEASE,
        "render_seconds": 120,
        "time_scale": TIME_SCALE,
        "poll_interval": 5,
        **GUARD,
    }
    run_id = dep.trigger(run_conf, GUARDED_DAG)
    initial = 30 * 60
    # The session as the emulator showed it, at every poll of this test (its lease, elapsed time, status).
    samples: list[dict[str, Any]] = []

    def sample() -> dict[str, Any] | None:
        sessions = dep.admin.state()["sessions"] if dep.admin else []
        if sessions:
            samples.append({**sessions[0], "at": time.monotonic()})
        return sessions[0] if sessions else None

    def guard_holders() -> dict[tuple[str, str, int], str]:
        return {k: h for k, h in dep.trigger_holders(GUARDED_DAG).items() if k[:2] == (run_id, "lease_guard")}

    # The guard runs in a triggerer and has extended the lease once already.
    def guarding() -> str | None:
        session = sample()
        holders = guard_holders()
        extended = session is not None and session["lease_seconds"] > initial
        return next(iter(holders.values())) if holders and extended else None

    victim = str(dep.wait_for(guarding, 300, "the lease guard to extend the lease from a triggerer", every=2))
    dep.check(victim in TRIGGERERS, f"the guard held by {victim}")
    lease_at_kill = samples[-1]["lease_seconds"]
    killed_at = time.monotonic()
    dep.kill9(victim)
    survivor = (TRIGGERERS - {victim}).pop()

    def taken_over() -> bool:
        sample()
        return survivor in guard_holders().values()

    dep.wait_for(taken_over, 300, f"{survivor} to take over the lease guard of {victim}", every=1)
    takeover = time.monotonic() - killed_at
    dep.note(f"{survivor} holds the lease guard {takeover:.0f} s after the kill of {victim}")

    def ended() -> str | None:
        sample()
        state = dep.run_state(run_id, GUARDED_DAG)
        return state if state in TERMINAL_RUN_STATES else None

    state = str(dep.wait_for(ended, 500, f"{run_id} to end", every=2))
    tis = dep.task_instances(run_id, GUARDED_DAG)
    counts = settle(dep)
    sample()
    dep.restart(victim)
    guard_ran = dep.trigger_runs(GUARDED_DAG, [run_id], task_id="lease_guard")
    leases = [s["lease_seconds"] for s in samples]
    extended_after_kill = [
        s["lease_seconds"] for s in samples if s["at"] > killed_at and s["lease_seconds"] > lease_at_kill
    ]
    statuses = Counter(s["status"] for s in samples)
    # The smallest lease left seen while the session was in use (before the teardown's stop).
    in_use = [s for s in samples if not s["stop_requested"]]
    min_left = min((s["lease_seconds"] - s["elapsed_seconds"]) / TIME_SCALE for s in in_use)
    by_task = {t["task_id"]: t for t in tis}
    note = (
        f"guard held by {victim}, taken over by {survivor} {takeover:.0f} s after the kill; lease "
        f"{initial // 60} -> {max(leases) // 60:.0f} min in {len(set(leases)) - 1} extensions (cap "
        f"{GUARD_CAP_SECONDS // 60} min, clock x{TIME_SCALE:g}); least lease left while in use "
        f"{min_left:.0f} real s; run {state}"
    )
    record(row("5. kill -9 triggerer holding the lease guard", 1, counts, started, note))

    dep.check(state == "success" and not not_success(tis), f"run {state}; not success: {not_success(tis)}")
    dep.check(by_task["lease_guard"]["try_number"] == 1, f"the guard was retried: {by_task['lease_guard']}")
    dep.check(
        guard_ran.get(f"{run_id}[0]") == [victim, survivor],
        f"the guard's trigger ran in {guard_ran}, expected {victim} then {survivor}",
    )
    dep.check(
        extended_after_kill, f"the lease was not extended after the kill (was {lease_at_kill} s): {leases}"
    )
    dep.check("expired" not in statuses, f"the session expired: statuses seen {statuses}")
    dep.check(min_left > 0, f"the lease ran out while the session was in use: {min_left:.0f} s left")
    dep.check(max(leases) <= GUARD_CAP_SECONDS, f"the lease went past the cap: {max(leases)} s")
    dep.check(len(set(leases)) - 1 >= 3, f"fewer than 3 extensions: {sorted(set(leases))}")
    final = admin.state()["sessions"]
    dep.check(
        len(final) == 1 and final[0]["stop_requested"] and final[0]["status"] in ("stopped", "stopping"),
        f"the session did not end by the teardown's stop: {final}",
    )
    dep.check(
        counts["created"] == 1 and counts["stopped"] == 1 and counts["active"] == 0, f"sessions: {counts}"
    )
    print(f"\nlease guard, triggerer kill -9: {note}; timeline:\n  " + "\n  ".join(dep.events[-8:]))


def session_conf(render_seconds: int) -> dict[str, Any]:
    """A run of one scene: one session, a teardown ``stop`` not expanded until the render ends."""
    return conf(SCENES[:1], render_seconds=render_seconds)


def session_owners(dep: Deployment) -> dict[str, str]:
    """Session id -> the run that created it, from the create operator's owner records (Variables)."""
    body = dep.api("GET", "/api/v2/variables", params={"limit": 1000}).json()
    out = {}
    for var in body["variables"]:
        if str(var["key"]).startswith("arr_session_owner__"):
            record = json.loads(var["value"])
            out[str(record["session_id"])] = str(record["run_id"])
    return out


def ended_state(dep: Deployment, run_id: str, timeout: float) -> str:
    return str(
        dep.wait_for(
            lambda: (s := dep.run_state(run_id, SESSION_DAG)) in TERMINAL_RUN_STATES and s,
            timeout,
            f"{run_id} to end",
            every=2,
        )
    )


@pytest.mark.timeout(900)
def test_orphan_sweep_stops_what_aborted_runs_left(deployment: Deployment, admin: Admin) -> None:
    dep = deployment
    dep.set_budget(800)
    started = time.monotonic()
    admin.config(startup_delay=250)  # 10 real seconds
    wait_dag(dep, SWEEP_DAG)
    # Four runs, each rendering on a session of its own. Two are aborted by hand with their teardown
    # skipped (as when it cannot run): one marked failed, one marked failed and then deleted (Airflow
    # deletes no running run): their sessions are the orphans. One is marked failed with its
    # teardown left alone (Airflow runs it: no orphan). One keeps rendering past the sweep.
    aborted = [dep.trigger(session_conf(900), SESSION_DAG) for _ in range(3)]
    deleted_run, failed_run, teardown_run = aborted
    live_run = dep.trigger(session_conf(120), SESSION_DAG)
    run_ids = [*aborted, live_run]

    def rendering() -> bool:
        return all(
            any(
                t["task_id"] == "render" and t["state"] == "running"
                for t in dep.task_instances(r, SESSION_DAG)
            )
            for r in run_ids
        )

    dep.wait_for(rendering, 300, "the 4 runs to render", every=2)
    owners = {s: r for s, r in session_owners(dep).items() if r in run_ids}
    session_of = {r: s for s, r in owners.items()}
    dep.check(set(session_of) == set(run_ids), f"owner records {owners} for runs {run_ids}")

    for run_id in (deleted_run, failed_run):
        # The mapped stop is one unexpanded task instance (map index -1) until its upstream ends.
        dep.api(
            "PATCH",
            f"/api/v2/dags/{SESSION_DAG}/dagRuns/{run_id}/taskInstances/stop",
            json={"new_state": "skipped"},
        )
    for run_id in aborted:
        dep.api("PATCH", f"/api/v2/dags/{SESSION_DAG}/dagRuns/{run_id}", json={"state": "failed"})
    dep.note(f"teardowns of {deleted_run} and {failed_run} skipped; {aborted} marked failed")
    states = {r: ended_state(dep, r, 300) for r in aborted}
    dep.api("DELETE", f"/api/v2/dags/{SESSION_DAG}/dagRuns/{deleted_run}")
    dep.note(f"deleted {deleted_run} (session {session_of[deleted_run]})")
    teardown_tis = {t["task_id"]: t for t in dep.task_instances(teardown_run, SESSION_DAG)}
    time.sleep(2)
    before = {s["id"]: s for s in admin.state()["sessions"]}
    active_before = {sid for sid, s in before.items() if s["status"] in ("starting", "ready")}
    orphans = {session_of[deleted_run], session_of[failed_run]}

    dep.api("PATCH", f"/api/v2/dags/{SWEEP_DAG}", json={"is_paused": False})
    sweep_run = dep.trigger({"dry_run": False}, SWEEP_DAG)
    sweep_state = dep.wait_run(sweep_run, 300, SWEEP_DAG)
    live_state_at_sweep_end = dep.run_state(live_run, SESSION_DAG)
    after = {s["id"]: s for s in admin.state()["sessions"]}
    stopped_by_sweep = {sid for sid in active_before if after[sid]["stop_requested"]}
    xcom = dep.api(
        "GET", f"/api/v2/dags/{SWEEP_DAG}/dagRuns/{sweep_run}/taskInstances/sweep/xcomEntries/return_value"
    ).json()
    report = xcom["value"]
    if isinstance(report, str):
        report = json.loads(report)
    dep.api("PATCH", f"/api/v2/dags/{SWEEP_DAG}", json={"is_paused": True})
    sweep_wall = time.monotonic() - started

    live_state = dep.wait_run(live_run, 400, SESSION_DAG)
    live_tis = dep.task_instances(live_run, SESSION_DAG)
    counts = settle(dep)
    note = (
        f"orphans: a deleted run's and a failed run's (teardowns skipped), both stopped by the sweep "
        f"({sweep_state}: stopped {len(report['stopped'])} of {len(report['sessions'])} listed); a run "
        f"marked failed with its teardown: stop {teardown_tis['stop']['state']}; the live run's session "
        f"kept, run {live_state}; sweep done {sweep_wall:.0f} s in"
    )
    record(row("6. orphan sweep after aborted runs", len(run_ids), counts, started, note))

    dep.check(all(s == "failed" for s in states.values()), f"aborted runs ended {states}")
    dep.check(
        teardown_tis["stop"]["state"] == "success"
        and before[session_of[teardown_run]]["stop_requested"]
        and session_of[teardown_run] not in active_before,
        f"the teardown of the run marked failed did not stop its session: {teardown_tis['stop']}",
    )
    dep.check(
        active_before == orphans | {session_of[live_run]},
        f"active before the sweep: {active_before}; orphans {orphans}, live {session_of[live_run]}",
    )
    dep.check(sweep_state == "success", f"the sweep run ended {sweep_state}")
    dep.check(
        live_state_at_sweep_end == "running", f"the live run was {live_state_at_sweep_end} at the sweep's end"
    )
    dep.check(
        stopped_by_sweep == orphans, f"the sweep stopped {stopped_by_sweep}, the orphans were {orphans}"
    )
    dep.check(set(report["stopped"]) == orphans, f"the sweep's report: {report}")
    dep.check(not report["failed"], f"stops failed: {report}")
    dep.check(not after[session_of[live_run]]["stop_requested"], "the sweep stopped the live run's session")
    dep.check(
        dep.http.get(f"{dep.api_url}/api/v2/dags/{SESSION_DAG}/dagRuns/{deleted_run}", timeout=10).status_code
        == 404,
        "the deleted run is still there",
    )
    dep.check(
        live_state == "success" and not not_success(live_tis),
        f"live run {live_state}: {not_success(live_tis)}",
    )
    dep.check(counts["created"] == 4, f"{counts['created']} sessions created, 4 expected")
    dep.check(counts["stopped"] == 4 and counts["active"] == 0, f"sessions: {counts}")
    print(
        f"\norphan sweep: {note}; report {report['summary']}; timeline:\n  " + "\n  ".join(dep.events[-12:])
    )
