"""Every templated argument takes Jinja and upstream outputs (XComArgs) at parse time and is
checked once resolved, at execute time, with the same error naming it; a bad literal still
fails when the DAG file is parsed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from airflow_provider_arr.exceptions import ArrInputError
from airflow_provider_arr.operators.session import (
    ArrCreateSessionOperator,
    ArrExtendSessionOperator,
    ArrStopSessionOperator,
)
from airflow_provider_arr.sensors.session import ArrSessionReadySensor

CREATE: dict[str, tuple[Any, Any]] = {  # argument: (a good resolved value, a bad one)
    "size": ("Premium", "huge"),
    "max_lease_time": ("1.00:00:00", "25:00:00"),
    "models": (["https://store/a.arrAsset"], "https://store/a.arrAsset"),
    "session_id": ("my-session_1", "a/b"),
    "poll_interval": ("7.5", 2),
    "ready_timeout": (timedelta(minutes=5), "soon"),
    "wait_for_ready": (True, "yes"),
    "deferrable": (False, 1),
    "arr_conn_id": ("arr_other", ""),
}
EXTEND: dict[str, tuple[Any, Any]] = {
    "session_id": ("s-1", "None"),
    "extend_by": ("0:30:00", "-1:00:00"),
    "arr_conn_id": ("arr_other", None),
}
STOP: dict[str, tuple[Any, Any]] = {"session_id": ("s-1", "a b"), "arr_conn_id": ("arr_other", 3)}
SENSOR: dict[str, tuple[Any, Any]] = {
    "session_id": ("s-1", "None"),
    "poll_interval": (5, "often"),
    "deferrable": (True, "no"),
    "stop_on_kill": (False, None),
    "arr_conn_id": ("arr_other", ""),
}
CASES = [
    (ArrCreateSessionOperator, {}, CREATE),
    (ArrExtendSessionOperator, {"session_id": "s-1", "extend_by": "0:10:00"}, EXTEND),
    (ArrStopSessionOperator, {"session_id": "s-1"}, STOP),
    (ArrSessionReadySensor, {"session_id": "s-1"}, SENSOR),
]
PARAMS = [
    pytest.param(cls, base, name, good, bad, id=f"{cls.__name__}.{name}")
    for cls, base, table in CASES
    for name, (good, bad) in table.items()
]


@pytest.mark.parametrize(("cls", "base", "name", "good", "bad"), PARAMS)
def test_template_is_checked_once_resolved(
    cls: type, base: dict[str, Any], name: str, good: Any, bad: Any
) -> None:
    task = cls(task_id="t", **{**base, name: "{{ params.value }}"})  # accepted at parse time
    setattr(task, name, good)  # what rendering the template gave
    task.resolved_arguments()
    setattr(task, name, bad)
    with pytest.raises(ArrInputError, match=name):
        task.resolved_arguments()


@pytest.mark.parametrize(("cls", "base", "name", "good", "bad"), PARAMS)
def test_bad_literal_fails_at_parse_time_naming_the_argument(
    cls: type, base: dict[str, Any], name: str, good: Any, bad: Any
) -> None:
    cls(task_id="t", **{**base, name: good})
    with pytest.raises(ArrInputError, match=name):
        cls(task_id="t", **{**base, name: bad})


def test_upstream_outputs_are_accepted_where_the_dag_is_parsed() -> None:
    from airflow.sdk import DAG, task

    with DAG("xcomarg_inputs", start_date=datetime(2026, 1, 1), schedule=None):

        @task
        def settings() -> dict[str, Any]:
            return {}

        upstream = settings()
        create = ArrCreateSessionOperator(
            task_id="create",
            size=upstream["size"],
            max_lease_time=upstream["lease"],
            models=upstream["models"],
        )
        ArrExtendSessionOperator(task_id="extend", session_id=create.output, extend_by=upstream["more"])
        ArrSessionReadySensor(task_id="wait", session_id=create.output, poll_interval=upstream["every"])
        ArrStopSessionOperator(task_id="stop", session_id=create.output)
