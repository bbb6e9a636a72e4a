"""Which sessions this provider created, and for which DAG run: the orphan sweep's records.

Under v1 the service chooses session ids, so nothing in a session says who made it. The create
operator therefore writes one **record** per session right after a successful create, with
:func:`record_owner`: an Airflow Variable whose key is derived from the session id
(``arr_session_owner__<id>``), holding JSON with the dag, run, task, map index, creation time,
size and lease. One Variable per session: creates running in parallel never write the same key,
so no record is lost. The sweep reads a session's record back by the same key (under 2021-01-01
too, where ids are deterministic, :func:`~airflow_provider_arr.operators.session.session_id_for_task`,
but one-way).

Reading, only through interfaces Airflow 3 gives task code (never the metadata database):

* records: ``airflow.sdk.Variable`` get/set/delete (3.0+); listing keys by prefix,
  ``Variable.keys(prefix)``, only from 3.3 (used to prune old records when available);
* the owning run's state: ``RuntimeTaskInstance.get_dr_count(dag_id, run_ids=[...])`` (0: the
  run was deleted) then ``RuntimeTaskInstance.get_dagrun_state(dag_id, run_id)``, both in the
  Task SDK of every Airflow 3.0 to 3.3 release, and served by ``dag.test()``'s in-process API too.

Outside a task (the ``airflow arr`` command, run where the Airflow CLI runs), there is no Task SDK
channel: :class:`AirflowModelStore` reads the same Variables and run states through Airflow's own
models, as ``airflow variables get`` and ``airflow dags state`` do.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_arr.models import format_timespan, parse_timespan

if TYPE_CHECKING:
    from airflow.sdk import Context

KEY_PREFIX = "arr_session_owner__"
#: Airflow's Variable keys are at most 250 characters.
_MAX_KEY = 250
PROVIDER = "airflow-provider-arr"

#: Run states the sweep reads back (besides Airflow's own: queued, running, success, failed).
RUN_DELETED = "deleted"
RUN_UNKNOWN = "unknown"
LIVE_RUN_STATES = frozenset({"queued", "running"})

_log = logging.getLogger(__name__)


def record_key(session_id: str) -> str:
    """The Variable key of a session's record (readable; hashed when the id is too long)."""
    key = KEY_PREFIX + session_id
    if len(key) <= _MAX_KEY:
        return key
    return KEY_PREFIX + "sha256-" + hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class OwnerRecord:
    """Who created a session: the task instance, when, and with what size and lease."""

    session_id: str
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    created_at: datetime | None = None
    lease: timedelta | None = None
    size: str | None = None

    @property
    def owner(self) -> str:
        """``dag / run / task[map index]``, for tables and logs."""
        task = self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"
        return f"{self.dag_id} / {self.run_id} / {task}"

    def to_json(self) -> str:
        """The Variable's value."""
        data: dict[str, Any] = asdict(self)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        data["lease"] = format_timespan(self.lease) if self.lease is not None else None
        data["provider"] = PROVIDER
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> OwnerRecord:
        """Parse a Variable's value; raises ValueError (or KeyError) for anything else."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("provider") != PROVIDER:
            raise ValueError("not a record of airflow-provider-arr")
        created = data.get("created_at")
        lease = data.get("lease")
        return cls(
            session_id=str(data["session_id"]),
            dag_id=str(data["dag_id"]),
            run_id=str(data["run_id"]),
            task_id=str(data["task_id"]),
            map_index=int(data.get("map_index", -1)),
            created_at=datetime.fromisoformat(created) if created else None,
            lease=parse_timespan(lease) if lease else None,
            size=data.get("size"),
        )


def record_owner(
    context: Context, session_id: str, *, size: str | None = None, lease: timedelta | None = None
) -> None:
    """Record that this task instance created ``session_id`` (the create operator calls it).

    Never raises: a session without a record is only seen as foreign by the sweep (and so left
    alone), which is no reason to fail a create that succeeded; the failure is logged.
    """
    try:
        from airflow.sdk import Variable

        ti = context["ti"]
        map_index = getattr(ti, "map_index", -1)
        record = OwnerRecord(
            session_id=session_id,
            dag_id=str(ti.dag_id),
            run_id=str(ti.run_id),
            task_id=str(ti.task_id),
            map_index=-1 if map_index is None else int(map_index),
            created_at=datetime.now(timezone.utc),
            lease=lease,
            size=size,
        )
        Variable.set(
            record_key(session_id),
            record.to_json(),
            description=f"ARR session {session_id}, created by {record.owner} (read by the orphan sweep)",
        )
    except Exception as exc:
        _log.warning(
            "could not record the owner of ARR session %s (%s: %s); the orphan sweep will treat it as "
            "foreign and leave it alone",
            session_id,
            type(exc).__name__,
            exc,
        )


def forget_owner(session_id: str) -> None:
    """Delete a session's record once it is stopped (for the stop operator); never raises."""
    try:
        from airflow.sdk import Variable

        Variable.delete(record_key(session_id))
    except Exception as exc:
        _log.debug("no owner record of ARR session %s deleted: %s", session_id, exc)


class OwnerStore(Protocol):
    """Where the sweep reads records and run states."""

    def owner(self, session_id: str) -> OwnerRecord | None:
        """The session's record, or None if the provider did not create it (or left no record)."""

    def run_state(self, dag_id: str, run_id: str) -> str:
        """The run's state, :data:`RUN_DELETED` if it no longer exists, :data:`RUN_UNKNOWN` if it
        cannot be told."""

    def forget(self, session_id: str) -> None:
        """Delete the session's record (once it has been stopped)."""


def _parse(session_id: str, raw: object) -> OwnerRecord | None:
    if raw is None:
        return None
    try:
        record = OwnerRecord.from_json(str(raw))
    except (ValueError, KeyError, TypeError) as exc:
        _log.warning("ignoring the unreadable owner record of session %s: %s", session_id, exc)
        return None
    return record if record.session_id == session_id else None


class TaskSdkStore:
    """Records and run states through the Task SDK (inside a task, and under ``dag.test()``)."""

    def owner(self, session_id: str) -> OwnerRecord | None:
        """Read the record Variable."""
        from airflow.sdk import Variable

        return _parse(session_id, Variable.get(record_key(session_id), default=None))

    def run_state(self, dag_id: str, run_id: str) -> str:
        """``get_dr_count`` tells a deleted run, ``get_dagrun_state`` the state (Airflow 3.0+)."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        try:
            if RuntimeTaskInstance.get_dr_count(dag_id=dag_id, run_ids=[run_id]) == 0:
                return RUN_DELETED
            state = RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=run_id)
            return str(getattr(state, "value", state))
        except Exception as exc:
            _log.warning("could not read the state of run %s of DAG %s: %s", run_id, dag_id, exc)
            return RUN_UNKNOWN

    def forget(self, session_id: str) -> None:
        """Delete the record Variable."""
        from airflow.sdk import Variable

        Variable.delete(record_key(session_id))

    def record_keys(self) -> Iterable[str] | None:
        """Every record key (Airflow >= 3.3: ``Variable.keys``), or None where it cannot list."""
        from airflow.sdk import Variable

        keys = getattr(Variable, "keys", None)
        if keys is None:
            return None
        return [k for k in keys(prefix=KEY_PREFIX) if k.startswith(KEY_PREFIX)]


class AirflowModelStore:
    """Records and run states through Airflow's models, for the ``airflow arr`` command (no task).

    The same reads as ``airflow variables get`` and ``airflow dags state``: the command runs
    where the Airflow CLI runs, with its configuration.
    """

    def owner(self, session_id: str) -> OwnerRecord | None:
        """Read the record Variable."""
        from airflow.models.variable import Variable

        return _parse(session_id, Variable.get(record_key(session_id), default_var=None))

    def run_state(self, dag_id: str, run_id: str) -> str:
        """The run's state, or :data:`RUN_DELETED`."""
        from airflow.models.dagrun import DagRun

        try:
            runs = DagRun.find(dag_id=dag_id, run_id=[run_id])
        except Exception as exc:
            _log.warning("could not read the state of run %s of DAG %s: %s", run_id, dag_id, exc)
            return RUN_UNKNOWN
        if not runs:
            return RUN_DELETED
        return str(getattr(runs[0].state, "value", runs[0].state))

    def forget(self, session_id: str) -> None:
        """Delete the record Variable."""
        from airflow.models.variable import Variable

        Variable.delete(record_key(session_id))


class MemoryStore:
    """Records and run states held in memory (for tests, and for callers that know them)."""

    def __init__(
        self, records: Iterable[OwnerRecord] = (), run_states: dict[tuple[str, str], str] | None = None
    ) -> None:
        self.records = {r.session_id: r for r in records}
        self.run_states = dict(run_states or {})

    def owner(self, session_id: str) -> OwnerRecord | None:
        """The record, if any."""
        return self.records.get(session_id)

    def run_state(self, dag_id: str, run_id: str) -> str:
        """The state given, else :data:`RUN_DELETED`."""
        return self.run_states.get((dag_id, run_id), RUN_DELETED)

    def forget(self, session_id: str) -> None:
        """Drop the record."""
        self.records.pop(session_id, None)
