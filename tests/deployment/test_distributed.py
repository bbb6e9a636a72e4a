"""The provider in a distributed Airflow (see ``airflow_deployment``): many runs, and components killed.

Every scenario triggers runs of ``arr_render_scenes`` (one session per scene, mapped) over the REST
API, against the emulator throttled as the service is (0.2 calls/s per account, bursts of 5), and
ends with every run in the state a user expects and every session stopped:

1. 20 runs of 2 scenes at once: spread over both Celery workers and both triggerers; the account's
   rate limit holds (no task fails on a 429); every session stopped.
2. ``kill -9`` of the triggerer holding waits: the other triggerer resumes them after the
   triggerer health-check threshold; no wait lost or doubled, no extra session.
3. ``kill -9`` of the worker running a (long) render: Airflow's task heartbeat check fails the
   task, the teardown stops the session on the other worker; the worker is restarted.
4. ``kill -9`` of one scheduler mid-run: the other one carries the runs to the end.

Each scenario adds a row (runs, sessions created/stopped/leaked, 429 answers, wall time) to the
table printed at the end and written to benchmarks/DEPLOYMENT.md.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import pytest

from tests.conftest import Admin
from tests.deployment.airflow_deployment import (
    SCENES_DAG_ID,
    TERMINAL_RUN_STATES,
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
    dep.check(set(wait_hosts) >= TRIGGERERS, f"waits did not run in both triggerers: {wait_hosts}")
    dep.check(len(waits) == 2 * runs, f"{len(waits)} waits deferred to a triggerer, {2 * runs} expected")
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
