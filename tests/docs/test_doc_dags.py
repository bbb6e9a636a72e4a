"""The DAGs the docs include (getting started, the README, the how-tos) run end to end on the emulator,
in both API dialects."""

from __future__ import annotations

import pytest

from tests.conftest import Admin

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("airflow_db", "arr_conn")]


def test_first_dag_renders_and_stops(admin: Admin) -> None:
    from tests.dag_files.arr_docs_dags import dag

    run = dag.test()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    assert states == {"create": "success", "wait_ready": "success", "render": "success", "stop": "success"}
    assert admin.counts()["create"] == 1
    assert admin.active() == 0


def test_howto_dag_every_operator_and_sensor_mode(admin: Admin) -> None:
    from tests.dag_files.arr_docs_howto_dags import docs_session_ops

    run = docs_session_ops.test()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert str(run.state) == "success", states
    assert set(states.values()) == {"success"}, states
    (session,) = admin.state()["sessions"]
    assert session["lease_seconds"] == 3600  # extend_by 0:15:00 on 0:30:00, then set to 1:00:00
    assert session["status"] in ("stopping", "stopped")
    assert admin.active() == 0
