"""Imports that moved between Airflow 3.0 and 3.3, in one place."""

from __future__ import annotations

try:  # Airflow >= 3.1: the Task SDK owns the exceptions
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        TaskDeferred,
    )
except ImportError:  # pragma: no cover - Airflow 3.0
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        TaskDeferred,
    )

try:
    from airflow.sdk.log import mask_secret
except ImportError:  # pragma: no cover - Airflow 3.0
    from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef,unused-ignore]

_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Register ``value`` with Airflow's secrets masker once per process.

    Every registration is a message to the task supervisor; registering the account key again
    for every hook (or a token for every call) only multiplies where the value travels.
    """
    if value and value not in _registered:
        _registered.add(value)
        mask_secret(value)


__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "TaskDeferred",
    "mask_secret",
    "register_secret",
]
