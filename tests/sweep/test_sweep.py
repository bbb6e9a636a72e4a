"""The orphan sweep against the emulator, in both dialects (owner records held in memory here;
tests/sweep/test_sweep_dag.py reads them through Airflow)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.orphans import KEPT, STOPPED, WOULD_STOP, SweepParams
from airflow_provider_arr.ownership import RUN_DELETED, MemoryStore, OwnerRecord
from airflow_provider_arr.sweep import sweep
from tests.conftest import Admin

pytestmark = pytest.mark.usefixtures("arr_conn")

#: Each kind of session and the state of its creating run (None: foreign, no record).
MIX = {"live": "running", "queued": "queued", "done": "success", "failed": "failed", "deleted": RUN_DELETED}


def arrange(hook: ArrHook, *, foreign: int = 1) -> tuple[dict[str, str], MemoryStore]:
    """Create one session per kind (and ``foreign`` sessions without a record)."""
    ids: dict[str, str] = {}
    records, states = [], {}
    for kind, state in MIX.items():
        sid = ids[kind] = hook.create_session(max_lease_time="2:00:00")
        records.append(OwnerRecord(session_id=sid, dag_id="render", run_id=f"run-{kind}", task_id="create"))
        if state != RUN_DELETED:
            states[("render", f"run-{kind}")] = state
    for n in range(foreign):
        ids[f"foreign{n}"] = hook.create_session(max_lease_time="2:00:00")
    return ids, MemoryStore(records, states)


def stop_requested(admin: Admin) -> dict[str, bool]:
    return {s["id"]: s["stop_requested"] for s in admin.state()["sessions"]}


def test_only_the_orphans_stop(admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    hook = ArrHook()
    ids, store = arrange(hook)
    caplog.set_level(logging.INFO)
    report = sweep(hook, store, SweepParams(dry_run=False, price_per_hour=2.5), pace=0)
    orphans = {ids["done"], ids["failed"], ids["deleted"]}
    assert {sid for sid, stopped in stop_requested(admin).items() if stopped} == orphans
    verdicts = {j.session.session_id: j.verdict for j in report.judgements}
    assert {sid for sid, v in verdicts.items() if v == STOPPED} == orphans
    assert verdicts[ids["live"]] == verdicts[ids["queued"]] == verdicts[ids["foreign0"]] == KEPT
    assert set(store.records) == {ids["live"], ids["queued"]}  # the stopped sessions' records are gone
    assert "render / run-live / create" in caplog.text and "foreign" in caplog.text
    assert "cost ended: 7.50 per hour (3 x 2.50)" in caplog.text
    hook_stops = admin.counts()["stop"]
    assert hook_stops == 3
    for sid in ids.values():
        hook.ensure_stopped(sid)


def test_a_dry_run_stops_nothing(admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    hook = ArrHook()
    ids, store = arrange(hook)
    caplog.set_level(logging.INFO)
    admin.advance(600)  # ten emulated minutes: every session is older than max_age
    params = SweepParams.build(dry_run=True, include_foreign=True, max_age=0.1)
    report = sweep(hook, store, params, pace=0)
    assert admin.counts()["stop"] == 0 and not any(stop_requested(admin).values())
    would = {j.session.session_id for j in report.judgements if j.verdict == WOULD_STOP}
    assert would == set(ids.values())  # over max_age, or run ended
    assert "would be stopped (dry run)" in caplog.text
    assert "no price_per_hour" in caplog.text
    for sid in ids.values():
        hook.ensure_stopped(sid)


def test_foreign_sessions_by_age_only_when_included(admin: Admin) -> None:
    hook = ArrHook()
    ids, store = arrange(hook, foreign=1)
    params = SweepParams.build(dry_run=False, include_foreign=True, max_age="23:00:00")
    report = sweep(hook, store, params, pace=0)
    verdicts = {j.session.session_id: j.verdict for j in report.judgements}
    assert verdicts[ids["foreign0"]] == KEPT  # younger than max_age
    for sid in ids.values():
        hook.ensure_stopped(sid)


class StoppingMeanwhile(MemoryStore):
    """Stops a session behind the sweep's back, between its list and its stop."""

    def __init__(self, admin: Admin, session_id: str, *args: Any) -> None:
        super().__init__(*args)
        self.admin, self.session_id = admin, session_id

    def run_state(self, dag_id: str, run_id: str) -> str:
        self.admin.force(self.session_id, "stopping")
        return super().run_state(dag_id, run_id)


def test_a_stop_answering_404_or_finding_it_stopping_counts_as_done(admin: Admin) -> None:
    hook = ArrHook()
    ids, store = arrange(hook, foreign=0)
    racing = StoppingMeanwhile(admin, ids["failed"], store.records.values(), store.run_states)
    admin.fault(operation="stop", action="status", status=404, count=1)
    report = sweep(hook, racing, SweepParams(dry_run=False), pace=0)
    assert not report.errors
    verdicts = {j.session.session_id: j.verdict for j in report.judgements}
    assert verdicts[ids["done"]] == verdicts[ids["failed"]] == verdicts[ids["deleted"]] == STOPPED
    assert any("404" in j.reason for j in report.judgements)
    for sid in ids.values():
        hook.ensure_stopped(sid)


@pytest.mark.slow
def test_the_sweep_stays_within_the_rate_limit(admin: Admin) -> None:
    setup = ArrHook()
    ids, store = arrange(setup, foreign=1)
    admin.config(throttle_rate=0.2, throttle_burst=5)  # one call per 5 s per account, bursts of 5
    before = admin.counts()
    report = sweep(ArrHook(), store, SweepParams(dry_run=False), pace=5.0)
    after = admin.counts()
    assert not report.errors and len(report.with_verdict(STOPPED)) == 3
    assert after["throttled"] == before["throttled"]  # not one 429
    admin.config(throttle_rate=None)
    for sid in ids.values():
        setup.ensure_stopped(sid)
    assert admin.active() == 0
