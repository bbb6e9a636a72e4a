"""Run the provider's sensor the way a worker and a triggerer would, in this process, and time
how long each execution holds a worker slot.

No scheduler is involved: a reschedule is a sleep until the reschedule date followed by a new
execution, a deferral is the trigger run on a shared "triggerer" event loop followed by
``execute_complete`` on a fresh operator (as a resumed task would be). The times therefore count
the provider's own work, not Airflow's task start-up or scheduling latency (reported apart).

Import this module only after :func:`common.setup_airflow_env`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import requests
from common import ACCOUNT_ID, ACCOUNT_KEY

MODES = ("deferrable", "reschedule", "poke", "thread")
TERMINAL = {"ready", "error", "expired", "stopped"}


class FakeTI:
    """What the sensor needs of a task instance: XCom pushes and the first reschedule date."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}
        self.first_reschedule: datetime | None = None
        self.try_number = 1
        self.map_index = -1

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return self.first_reschedule


class Triggerer:
    """One asyncio event loop in a thread, running triggers as the triggerer does."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="triggerer", daemon=True)
        self.thread.start()

    def run(self, trigger: Any) -> dict[str, Any]:
        """Run ``trigger`` to its first event; returns the payload (blocks the calling thread)."""

        async def first_event() -> dict[str, Any]:
            async for event in trigger.run():
                return dict(event.payload)
            raise RuntimeError("the trigger ended without an event")

        return asyncio.run_coroutine_threadsafe(first_event(), self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class WaitResult:
    """How one wait for ``ready`` went."""

    mode: str
    session_id: str
    started: float  # monotonic
    done: float = 0.0  # monotonic: the moment the task (or thread) knew the session was ready
    executions: list[float] = field(default_factory=list)  # seconds each task run held a slot
    polls: int = 0
    outcome: Any = None

    @property
    def slot_seconds(self) -> float:
        return sum(self.executions)

    @property
    def wait_seconds(self) -> float:
        return self.done - self.started

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "slot_seconds": self.slot_seconds,
            "wait_seconds": self.wait_seconds,
            "executions": len(self.executions),
            "execution_seconds": self.executions,
            "polls": self.polls,
            "outcome": self.outcome,
        }


def _sensor(mode: str, session_id: str, conn_id: str, interval: float) -> Any:
    from airflow_provider_arr.sensors.session import ArrSessionReadySensor

    return ArrSessionReadySensor(
        task_id=f"wait_{mode}",
        session_id=session_id,
        arr_conn_id=conn_id,
        poll_interval=interval,
        deferrable=mode == "deferrable",
        mode="reschedule" if mode == "reschedule" else "poke",
        timeout=3600,
    )


def wait_with_sensor(
    mode: str, session_id: str, *, conn_id: str, interval: float, triggerer: Triggerer
) -> WaitResult:
    """Wait for ``session_id`` with the provider's sensor in ``mode`` (not ``thread``)."""
    from airflow.sdk.exceptions import AirflowRescheduleException, TaskDeferred

    result = WaitResult(mode, session_id, started=time.monotonic())
    ti = FakeTI()
    context: dict[str, Any] = {"ti": ti}
    while True:
        sensor = _sensor(mode, session_id, conn_id, interval)  # every task run is a new process
        began = time.monotonic()
        try:
            result.outcome = sensor.execute(context)
        except AirflowRescheduleException as exc:
            result.executions.append(time.monotonic() - began)
            if ti.first_reschedule is None:
                ti.first_reschedule = datetime.fromtimestamp(
                    time.time() - (time.monotonic() - began), timezone.utc
                )
            time.sleep(max(0.0, (exc.reschedule_date - datetime.now(timezone.utc)).total_seconds()))
            continue
        except TaskDeferred as deferred:
            result.executions.append(time.monotonic() - began)
            event = triggerer.run(deferred.trigger)
            resumed = _sensor(mode, session_id, conn_id, interval)
            began = time.monotonic()
            result.outcome = resumed.execute_complete(context, event=event)
            result.done = time.monotonic()
            result.executions.append(result.done - began)
            return result
        result.done = time.monotonic()
        result.executions.append(result.done - began)
        return result


def wait_with_thread(session_id: str, *, url: str, interval: float) -> WaitResult:
    """A thread-per-session poller in the style of the official SDK's LRO poller: a token once,
    then a read every ``interval`` seconds until a terminal status; the thread is held throughout.
    """
    result = WaitResult("thread", session_id, started=time.monotonic())
    http = requests.Session()
    token = http.get(
        f"{url}/accounts/{ACCOUNT_ID}/token",
        headers={"Authorization": f"Bearer {ACCOUNT_ID}:{ACCOUNT_KEY}"},
        timeout=30,
    ).json()["AccessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    target = f"{url}/v1/accounts/{ACCOUNT_ID}/sessions/{session_id}/properties"
    while True:
        answer = get_once_more_if_dropped(http, target, headers)
        result.polls += 1
        status = answer.json()["sessionStatus"].lower() if answer.status_code == 200 else "retry"
        if status in TERMINAL:
            result.done = time.monotonic()
            result.outcome = status
            result.executions.append(result.done - result.started)
            http.close()
            return result
        time.sleep(interval)


def get_once_more_if_dropped(http: requests.Session, url: str, headers: dict[str, str]) -> requests.Response:
    """GET, sent again once at once if the kept-alive connection was closed under it (the server
    closes connections idle for 5 s, the poll interval): what urllib3's or the SDK's retries do."""
    try:
        return http.get(url, headers=headers, timeout=30)
    except requests.ConnectionError:
        return http.get(url, headers=headers, timeout=30)


def wait(
    mode: str, session_id: str, *, conn_id: str, url: str, interval: float, triggerer: Triggerer
) -> WaitResult:
    if mode == "thread":
        return wait_with_thread(session_id, url=url, interval=interval)
    return wait_with_sensor(mode, session_id, conn_id=conn_id, interval=interval, triggerer=triggerer)


def warm_up() -> None:
    """Import what a task would have imported before it runs (not part of any measurement)."""
    import airflow_provider_arr.hooks.arr
    import airflow_provider_arr.sensors.session
    import airflow_provider_arr.triggers.session  # noqa: F401
