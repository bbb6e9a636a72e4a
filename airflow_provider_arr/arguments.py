"""Arguments checked like Airflow users expect: literals when the DAG is parsed, templates and
upstream outputs (XComArgs) once resolved at execute time, with the same error either way."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, ClassVar

from airflow_provider_arr.exceptions import ArrInputError
from airflow_provider_arr.models import (
    is_template,
    validate_flag,
    validate_lease,
    validate_models,
    validate_poll_interval,
    validate_seconds,
    validate_session_id,
    validate_size,
)

#: What a rendered template of a missing XCom looks like.
NO_SESSION = (None, "", "None")


def conn_id(value: object, *, field: str = "arr_conn_id") -> str:
    """A connection id: a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ArrInputError(f"{field} must be the id of an Airflow connection, got {value!r}")
    return value


def optional_session_id(value: object) -> str | None:
    """A session id, or nothing (None, or a template that rendered to nothing)."""
    return None if value in NO_SESSION else validate_session_id(value)


def optional_lease(name: str) -> Callable[[object], Any]:
    """A lease argument that may be left out."""
    return lambda value: None if value is None else validate_lease(value, field=name)


Check = Callable[[Any], Any]
CHECKS: dict[str, Check] = {
    "arr_conn_id": conn_id,
    "size": validate_size,
    "max_lease_time": validate_lease,
    "models": validate_models,
    "session_id": validate_session_id,
    "poll_interval": validate_poll_interval,
    "ready_timeout": partial(validate_seconds, field="ready_timeout"),
    "wait_for_ready": partial(validate_flag, field="wait_for_ready"),
    "deferrable": partial(validate_flag, field="deferrable"),
    "stop_on_kill": partial(validate_flag, field="stop_on_kill"),
}


class CheckedArguments:
    """Mixin for operators and sensors: ``argument_checks`` names each argument and its check."""

    argument_checks: ClassVar[Mapping[str, Check]] = {}

    def check_literal_arguments(self) -> None:
        """At parse time: check every argument whose value is already known."""
        for name, check in self.argument_checks.items():
            value = getattr(self, name)
            if not is_template(value):
                check(value)

    def resolved_arguments(self) -> dict[str, Any]:
        """At execute time: every argument, rendered and checked."""
        return {name: check(getattr(self, name)) for name, check in self.argument_checks.items()}
