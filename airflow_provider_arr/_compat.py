"""What differs between Airflow 3.0, 3.1, 3.2 and 3.3, in one place.

Every import whose home moved between Airflow minors is made here, and the rest of the package
imports it from this module. Features that only newer versions have are flagged here too
(``AIRFLOW_V_3_x_PLUS``), with the code that degrades gracefully on the older ones.

Where things live, checked against the installed 3.0.6, 3.1.8, 3.2.2 and 3.3.2:

- ``BaseHook``: ``airflow.hooks.base`` in 3.0, ``airflow.sdk`` from 3.1.
- ``conf``: ``airflow.configuration`` in 3.0 and 3.1, ``airflow.sdk`` from 3.2.
- ``AirflowException``, ``TaskDeferred``...: ``airflow.exceptions`` before 3.2, then
  ``airflow.sdk.exceptions``.
- ``mask_secret``: ``airflow.sdk.execution_time.secrets_masker`` in 3.0, ``airflow.sdk.log`` from 3.1.
- The connection form: the hook's ``get_connection_form_widgets()`` before 3.2, the provider
  info's ``conn-fields`` from 3.2 (see :mod:`airflow_provider_arr.connection_form`).
- ``BaseTrigger.on_kill()``: called on a user's kill of a deferred task from 3.3 only.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION

# The same in every 3.x, re-exported so that modules import Airflow's names from one place.
from airflow.sdk import (
    BaseOperator,
    BaseOperatorLink,
    BaseSensorOperator,
    Connection,
    Context,
    PokeReturnValue,
)
from airflow.sdk.execution_time.xcom import XCom
from airflow.triggers.base import BaseTrigger, TriggerEvent
from packaging.version import Version

_BASE = Version(Version(AIRFLOW_VERSION).base_version).release[:2]

AIRFLOW_V_3_1_PLUS: bool = _BASE >= (3, 1)
AIRFLOW_V_3_2_PLUS: bool = _BASE >= (3, 2)
AIRFLOW_V_3_3_PLUS: bool = _BASE >= (3, 3)

# What the Task SDK of 3.0 lacks. The fallbacks are what the task runner of that version uses,
# so ``except TaskDeferred`` and friends catch the very classes Airflow raises.
if AIRFLOW_V_3_1_PLUS:
    from airflow.sdk import BaseHook
else:  # pragma: no cover - Airflow 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef,attr-defined,unused-ignore]

try:  # Airflow >= 3.2
    from airflow.sdk import conf
except ImportError:  # pragma: no cover - Airflow 3.0, 3.1
    from airflow.configuration import conf  # type: ignore[assignment,no-redef,attr-defined,unused-ignore]

try:  # Airflow >= 3.2: the Task SDK owns the exceptions
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        TaskDeferred,
    )
except ImportError:  # pragma: no cover - Airflow 3.0, 3.1
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined,unused-ignore]
        AirflowException,
        AirflowFailException,
        AirflowSensorTimeout,
        TaskDeferred,
    )

try:  # Airflow >= 3.1
    from airflow.sdk.log import mask_secret
except ImportError:  # pragma: no cover - Airflow 3.0
    from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef,unused-ignore]

#: Whether the triggerer calls ``BaseTrigger.on_kill()`` when a user kills a deferred task
#: (marks it failed or success, or clears it): apache/airflow#65590, released in 3.3.0.
TRIGGER_ON_KILL: bool = AIRFLOW_V_3_3_PLUS

#: Whether Airflow builds the connection form from ``conn-fields`` in the provider info (3.2+);
#: before, it calls the hook's ``get_connection_form_widgets()``.
DECLARATIVE_CONNECTION_FORM: bool = AIRFLOW_V_3_2_PLUS

_log = logging.getLogger(__name__)


def note_trigger_on_kill(log: Any = None, *, wanted: bool = True) -> bool:
    """Say once per wait, in the trigger's log, when a kill of the deferred task will not stop the session.

    Call it at the start of ``BaseTrigger.run()``. Before Airflow 3.3 the triggerer never calls
    ``on_kill()``: a user marking the waiting task failed or success, or clearing it, only cancels
    the wait, and the session is stopped by the DAG's teardown (``ArrStopSessionOperator``) or, at
    worst, by the end of its lease. Returns whether ``on_kill()`` will be called.

    :param log: the trigger's logger (``self.log``); this module's logger when None.
    :param wanted: whether the trigger would stop the session on a kill (``stop_on_kill``).
    """
    if TRIGGER_ON_KILL or not wanted:
        return TRIGGER_ON_KILL
    (log or _log).info(
        "ARR Airflow %s does not call a trigger's on_kill (3.3+): if this task is killed while it "
        "waits, the session is not stopped here; the DAG's stop task (teardown) or its lease ends it",
        AIRFLOW_VERSION,
    )
    return False


_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Register ``value`` with Airflow's secrets masker once per process.

    Every registration is a message to the task supervisor; registering the account key again
    for every hook (or a token for every call) only multiplies where the value travels.
    """
    if value and value not in _registered:
        _registered.add(value)
        if _supervisor_in_this_process():
            _mask_in_this_process(value)
        else:
            mask_secret(value)


def _supervisor_in_this_process() -> bool:
    """Whether the task's supervisor runs in this process (``airflow dags test``, ``dag.test()``).

    There, the task and its supervisor share one secrets masker, and sending ``MaskSecret`` is
    worse than useless: ``InProcessSupervisorComms.send`` logs every message it is given, the
    value included, at DEBUG level (the real supervisor omits that body).
    """
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:  # pragma: no cover
        return False
    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    return type(comms).__name__ == "InProcessSupervisorComms"


def _mask_in_this_process(value: str) -> None:
    """Add ``value`` to this process's secrets masker only, with no message to a supervisor."""
    try:  # Airflow >= 3.1 (task SDK 1.1)
        from airflow.sdk._shared.secrets_masker import _secrets_masker
    except ImportError:  # pragma: no cover - Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import (  # type: ignore[attr-defined,no-redef,unused-ignore]
            _secrets_masker,
        )
    _secrets_masker().add_mask(value)


__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "DECLARATIVE_CONNECTION_FORM",
    "TRIGGER_ON_KILL",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "BaseTrigger",
    "Connection",
    "Context",
    "PokeReturnValue",
    "TaskDeferred",
    "TriggerEvent",
    "XCom",
    "conf",
    "mask_secret",
    "note_trigger_on_kill",
    "register_secret",
]
