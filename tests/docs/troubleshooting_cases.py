"""The errors of docs/troubleshooting.md, produced for real against the emulator.

Each case arranges one failure and returns the exception a user would see. The test
(test_troubleshooting.py) checks that the page quotes each one, and
``python -m tests.docs.troubleshooting_cases`` prints them, for pasting into the page.
Variable parts (ids, ports, MS-CV, numbers) are compared loosely, see :func:`normalise`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from airflow_provider_arr.emulator import EmulatorConfig, EmulatorServer

ACCOUNT_KEY = "emulator-account-key-not-a-secret"
LOG = logging.getLogger("arr.docs")
FAST = {"retry_wait_min": 0.05, "retry_wait_max": 0.5}


def normalise(text: str) -> str:
    """Text with its variable parts made alike: ids, ports, MS-CV, paths, numbers, spacing."""
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", text)
    text = re.sub(r"MS-CV[=\s:]+[^,)\s]+", "MS-CV=<ms-cv>", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    text = re.sub(r"/tmp/\S+?\.pem", "<ca>", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    text = text.replace("…", "...")
    return " ".join(text.split())


@contextmanager
def emulator(**knobs: Any) -> Iterator[EmulatorServer]:
    """An emulator with an account of its own (the client paces calls per account and process, so
    that no case inherits another's slowed-down rate), sessions starting in 30 emulated s at x100."""
    tls = knobs.pop("tls", False)
    config = {"startup_delay": 30.0, "stop_delay": 5.0, "time_scale": 100.0, **knobs}
    server = EmulatorServer(
        EmulatorConfig(account_id=str(uuid.uuid4()), account_key=ACCOUNT_KEY, **config), tls=tls
    ).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def connection(
    server: EmulatorServer,
    host: str | None,
    *,
    password: str = ACCOUNT_KEY,
    raw_extra: str | None = None,
    **extra: Any,
) -> Iterator[None]:
    """``arr_default`` for ``server``'s account by environment variable, for the duration of the block."""
    login = server.config.account_id
    conn: dict[str, Any] = {"conn_type": "azure_remote_rendering", "login": login, "password": password}
    if host:
        conn["host"] = host
    conn["extra"] = raw_extra if raw_extra is not None else {**FAST, **extra}
    old = os.environ.get("AIRFLOW_CONN_ARR_DEFAULT")
    os.environ["AIRFLOW_CONN_ARR_DEFAULT"] = json.dumps(conn)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("AIRFLOW_CONN_ARR_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_ARR_DEFAULT"] = old


def admin(server: EmulatorServer, method: str, path: str, body: Any = None) -> Any:
    import requests

    answer = requests.request(
        method, f"{server.url}/_emulator{path}", json=body, timeout=10, verify=server.ca_bundle or True
    )
    answer.raise_for_status()
    return answer.json()


def raised(call: Callable[[], Any]) -> BaseException:
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("no error was raised")


def hook() -> Any:
    from airflow_provider_arr.hooks.arr import ArrHook

    return ArrHook()


# -- the cases ---------------------------------------------------------------------------------------


def bare_region_account_domain() -> BaseException:
    with emulator() as server, connection(server, server.url, account_domain="westus2"):
        return raised(lambda: hook().list_sessions())


def wrong_account_domain() -> BaseException:
    domain = "westus9.mixedreality.azure.com"
    with emulator() as server, connection(server, server.url, account_domain=domain):
        return raised(lambda: hook().list_sessions())


def wrong_account_key() -> BaseException:
    with (
        emulator() as server,
        connection(server, server.url, password="not-the-key", sts_endpoint=server.url),
    ):
        return raised(lambda: hook().list_sessions())


def forbidden() -> BaseException:
    with emulator() as server, connection(server, server.url, sts_endpoint=server.url):
        admin(server, "POST", "/faults", {"operation": "list", "action": "status", "status": 403})
        return raised(lambda: hook().list_sessions())


def throttled_waited_out() -> str:
    """Not an error: the summary line a task logs after waiting out 429 answers."""
    with emulator() as server, connection(server, server.url, sts_endpoint=server.url):
        admin(
            server,
            "POST",
            "/faults",
            {"operation": "list", "action": "status", "status": 429, "retry_after": 1, "count": 2},
        )
        h = hook()
        h.list_sessions()
        return str(h.transport.stats.summary())


def throttled_exhausted() -> BaseException:
    with emulator() as server, connection(server, server.url, sts_endpoint=server.url, throttle_timeout=3):
        rule = {"operation": "list", "action": "status", "status": 429, "retry_after": 1}
        admin(server, "POST", "/faults", rule)
        return raised(lambda: hook().list_sessions())


def session_error() -> BaseException:
    from airflow_provider_arr.readiness import poll_ready

    with (
        emulator(error_on_start="GPU pool exhausted") as server,
        connection(server, server.url, sts_endpoint=server.url),
    ):
        h = hook()
        sid = h.create_session(size="standard", max_lease_time="1:00:00")
        admin(server, "POST", "/clock/advance", {"seconds": 60})
        return raised(lambda: poll_ready(h, sid, LOG))


def lease_expired() -> BaseException:
    from airflow_provider_arr.readiness import poll_ready

    with emulator(startup_delay=600) as server, connection(server, server.url, sts_endpoint=server.url):
        h = hook()
        sid = h.create_session(size="standard", max_lease_time="0:05:00")
        admin(server, "POST", "/clock/advance", {"seconds": 360})
        return raised(lambda: poll_ready(h, sid, LOG))


def sensor_timeout() -> BaseException:
    from airflow_provider_arr import readiness
    from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger

    read_event = getattr(readiness, "address_from_event", None) or readiness.hostname_from_event

    with emulator(startup_delay=100000) as server, connection(server, server.url, sts_endpoint=server.url):
        sid = hook().create_session(size="standard", max_lease_time="1:00:00")
        # The deadline falls between the first read (at once) and the second (5 s later).
        trigger = ArrSessionReadyTrigger(session_id=sid, poll_interval=5, deadline=time.time() + 4)

        async def first_event() -> Any:
            async for event in trigger.run():
                return event.payload
            return None

        event = asyncio.run(first_event())
        return raised(lambda: read_event(event, sid))


def lost_create_v1() -> BaseException:
    from airflow_provider_arr.hooks.recovery import create_session_safely

    with emulator() as server, connection(server, server.url, sts_endpoint=server.url):
        admin(server, "POST", "/faults", {"operation": "create", "action": "lose_answer", "count": 1})
        return raised(
            lambda: create_session_safely(
                hook(),
                size="standard",
                lease=timedelta(hours=1),
                models=[],
                session_id=None,
                default_session_id="unused-under-v1",
                fresh_session_id="unused-under-v1-try1",
                will_retry=False,
                log=LOG,
            )
        )


def stop_left_running() -> BaseException:
    # The service failing (503) for the whole stop budget; a pace that never runs out of turns.
    settings = {
        "stop_timeout": 3,
        "retry_wait_min": 1,
        "retry_wait_max": 2,
        "rate_limit": 10,
        "rate_burst": 50,
    }
    with emulator() as server, connection(server, server.url, sts_endpoint=server.url, **settings):
        h = hook()
        sid = h.create_session(size="standard", max_lease_time="1:00:00")
        admin(server, "POST", "/faults", {"operation": "stop", "action": "status", "status": 503})
        return raised(lambda: h.ensure_stopped(sid))


def host_does_not_resolve() -> BaseException:
    with emulator() as server, connection(server, "https://arr.example.invalid", sts_endpoint=server.url):
        return raised(lambda: hook().list_sessions())


def certificate_does_not_verify() -> BaseException:
    with emulator(tls=True) as server, connection(server, server.url, sts_endpoint=server.url):
        return raised(lambda: hook().list_sessions())


def extra_not_json() -> BaseException:
    with emulator() as server:
        broken = '{"sts_endpoint": "' + server.url + '",}'  # a trailing comma
        with connection(server, server.url, raw_extra=broken):
            return raised(lambda: hook().list_sessions())


def extra_unknown_key() -> BaseException:
    with emulator() as server, connection(server, server.url, sts_endpoint=server.url, retry_limt=3):
        return raised(lambda: hook().list_sessions())


CASES: dict[str, Callable[[], Any]] = {
    "bare_region_account_domain": bare_region_account_domain,
    "wrong_account_domain": wrong_account_domain,
    "wrong_account_key": wrong_account_key,
    "forbidden": forbidden,
    "throttled_waited_out": throttled_waited_out,
    "throttled_exhausted": throttled_exhausted,
    "session_error": session_error,
    "lease_expired": lease_expired,
    "sensor_timeout": sensor_timeout,
    "lost_create_v1": lost_create_v1,
    "stop_left_running": stop_left_running,
    "host_does_not_resolve": host_does_not_resolve,
    "certificate_does_not_verify": certificate_does_not_verify,
    "extra_not_json": extra_not_json,
    "extra_unknown_key": extra_unknown_key,
}


def shown(result: Any) -> str:
    """What the user sees: ``ExceptionType: message``, or a log line as it is."""
    if isinstance(result, BaseException):
        return f"{type(result).__name__}: {result}"
    return str(result)


if __name__ == "__main__":
    for name, case in CASES.items():
        try:
            print(f"== {name}\n{shown(case())}\n")
        except Exception as exc:  # the case itself broke: say so, go on
            print(f"== {name}\nCASE FAILED: {type(exc).__name__}: {exc}\n")
