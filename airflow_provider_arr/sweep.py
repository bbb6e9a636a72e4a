"""The orphan sweep: list the account's sessions, judge them, stop the orphans, log a table.

The judgement is pure (:func:`airflow_provider_arr.orphans.judge`); this module does the I/O
around it: one list call, the owner records and run states (an
:class:`~airflow_provider_arr.ownership.OwnerStore`), then one stop per orphan, spaced ``pace``
seconds apart so that a sweep of many orphans stays within the service's rate limit (about one
call per 5 to 10 s per account, shared with every other user of the account).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_arr.exceptions import ArrError
from airflow_provider_arr.models import format_timespan
from airflow_provider_arr.orphans import (
    STOP_FAILED,
    STOPPED,
    WOULD_STOP,
    Judgement,
    SweepParams,
    judge,
    parse_price,
)
from airflow_provider_arr.ownership import OwnerRecord, OwnerStore

if TYPE_CHECKING:
    from airflow_provider_arr.hooks.arr import ArrHook

#: Seconds between two stop calls of one sweep (the service's rule of thumb is 5 to 10 s).
DEFAULT_PACE = 5.0
_log = logging.getLogger(__name__)

COLUMNS = ("session", "status", "size", "age", "lease left", "owner", "verdict", "why")


def _span(value: timedelta | None) -> str:
    return format_timespan(value) if value is not None else "n/a"


@dataclass
class SweepReport:
    """What a sweep saw and did."""

    judgements: list[Judgement]
    params: SweepParams
    price_per_hour: float | None = None
    errors: list[str] = field(default_factory=list)

    def with_verdict(self, verdict: str) -> list[Judgement]:
        """The sessions with this verdict."""
        return [j for j in self.judgements if j.verdict == verdict]

    @property
    def ended(self) -> list[Judgement]:
        """The sessions stopped (or, in a dry run, that would be)."""
        return self.with_verdict(WOULD_STOP if self.params.dry_run else STOPPED)

    def rows(self) -> list[tuple[str, ...]]:
        """One row per session, in :data:`COLUMNS` order."""
        return [
            (
                j.session.session_id,
                j.session.status.value,
                (j.session.size or "n/a").lower(),
                _span(j.age),
                _span(j.lease_left),
                j.owner,
                j.verdict,
                j.reason,
            )
            for j in self.judgements
        ]

    def table(self) -> str:
        """The rows as a fixed-width text table."""
        rows = [COLUMNS, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: how many sessions, how many ended, and what that saves."""
        ended = self.ended
        verb = "would be stopped (dry run)" if self.params.dry_run else "stopped"
        text = (
            f"ARR sweep: {len(self.judgements)} session(s) seen, {len(ended)} {verb}, "
            f"{len(self.with_verdict(STOP_FAILED))} failed to stop"
        )
        if self.price_per_hour is not None and ended:
            hourly = self.price_per_hour * len(ended)
            left = sum(
                (max(j.lease_left, timedelta(0)).total_seconds() for j in ended if j.lease_left is not None),
                0.0,
            )
            what = "would end" if self.params.dry_run else "ended"
            text += (
                f"; cost {what}: {hourly:.2f} per hour ({len(ended)} x {self.price_per_hour:.2f}), "
                f"up to {self.price_per_hour * left / 3600:.2f} over the rest of their leases"
            )
        elif ended:
            text += "; no price_per_hour (connection extra or Param), so no cost figure"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (the sweep task's return value)."""
        return {
            "dry_run": self.params.dry_run,
            "sessions": [dict(zip(COLUMNS, row, strict=True)) for row in self.rows()],
            "stopped": [j.session.session_id for j in self.with_verdict(STOPPED)],
            "would_stop": [j.session.session_id for j in self.with_verdict(WOULD_STOP)],
            "failed": [j.session.session_id for j in self.with_verdict(STOP_FAILED)],
            "summary": self.summary(),
        }


def price_from_connection(hook: ArrHook) -> float | None:
    """The connection extra ``price_per_hour``, if set."""
    conn = hook.get_connection(hook.arr_conn_id)
    extra = conn.extra_dejson if conn.extra else {}
    value = extra.get("price_per_hour", extra.get("extra__azure_remote_rendering__price_per_hour"))
    return parse_price(value)


def sweep(
    hook: ArrHook,
    store: OwnerStore,
    params: SweepParams,
    *,
    now: datetime | None = None,
    pace: float = DEFAULT_PACE,
    log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SweepReport:
    """List, judge, and stop the orphans (unless ``params.dry_run``); log and return the report.

    A stop that answers 404, or finds the session already stopping or ended, counts as done.
    """
    log = log or _log
    now = now or datetime.now(timezone.utc)
    price = params.price_per_hour
    if price is None:
        price = price_from_connection(hook)
    sessions = hook.list_sessions()
    last_call = time.monotonic()
    records: dict[str, OwnerRecord] = {}
    for session in sessions:
        record = store.owner(session.session_id)
        if record is not None:
            records[session.session_id] = record
    run_states = {
        (r.dag_id, r.run_id): store.run_state(r.dag_id, r.run_id)
        for r in {(r.dag_id, r.run_id): r for r in records.values()}.values()
    }
    judged = judge(sessions, records, run_states, now, params)
    report = SweepReport([], params, price)
    for j in judged:
        if not j.stop:
            report.judgements.append(j)
            continue
        if params.dry_run:
            report.judgements.append(replace(j, verdict=WOULD_STOP))
            continue
        wait = last_call + pace - time.monotonic()
        if wait > 0:
            sleep(wait)
        last_call = time.monotonic()
        try:
            outcome = hook.ensure_stopped(j.session.session_id)
        except ArrError as exc:
            report.errors.append(f"{j.session.session_id}: {exc}")
            report.judgements.append(replace(j, verdict=STOP_FAILED, reason=f"{j.reason}; {exc}"))
            continue
        report.judgements.append(replace(j, verdict=STOPPED, reason=f"{j.reason}; {outcome}"))
        if j.record is not None:
            try:
                store.forget(j.session.session_id)
            except Exception as exc:  # the session is stopped; a stale record only costs a lookup
                log.warning("could not delete the owner record of %s: %s", j.session.session_id, exc)
    log.info("ARR sweep (%s):\n%s", "dry run" if params.dry_run else "applied", report.table())
    log.info("%s", report.summary())
    for error in report.errors:
        log.error("ARR sweep could not stop %s", error)
    return report


def prune_records(
    store: Any,
    active_ids: Sequence[str],
    *,
    older_than: timedelta = timedelta(days=2),
    now: datetime | None = None,
) -> int:
    """Delete the records of sessions no longer active, older than ``older_than`` (no lease is
    longer than 24 h); only where the store can list its keys (Airflow >= 3.3). Returns how many."""
    keys_of = getattr(store, "record_keys", None)
    keys = keys_of() if keys_of else None
    if not keys:
        return 0
    from airflow_provider_arr.ownership import KEY_PREFIX

    now = now or datetime.now(timezone.utc)
    active = set(active_ids)
    pruned = 0
    for key in keys:
        session_id = key.removeprefix(KEY_PREFIX)
        if session_id in active:
            continue
        record = store.owner(session_id)
        if record is None or record.created_at is None or now - record.created_at < older_than:
            continue
        store.forget(session_id)
        pruned += 1
    return pruned
