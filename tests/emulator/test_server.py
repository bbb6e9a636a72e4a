"""Running the emulator: in-process server, restart, TLS, the CLI and the child process."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest
import requests

from airflow_provider_arr.emulator import EmulatorConfig, EmulatorProcess, EmulatorServer
from airflow_provider_arr.emulator.__main__ import main

from .conftest import ACCOUNT, KEY, Arr, assert_error


def test_starts_and_stops_without_hanging() -> None:
    server = EmulatorServer(EmulatorConfig()).start()
    assert server.port != 0 and server.url == f"http://127.0.0.1:{server.port}"
    assert requests.get(f"{server.url}/_emulator/state", timeout=5).status_code == 200
    server.stop()
    assert not server.running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/_emulator/state", timeout=5)
    server.stop()  # idempotent


def test_stop_does_not_wait_for_long_delays(emulator_factory: Any) -> None:
    server: EmulatorServer = emulator_factory()
    arr = Arr(server)
    arr.admin.fault(operation="list", action="delay", delay=30)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            arr.v1("GET")
        except requests.RequestException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.1)
    stopping = time.monotonic()
    server.stop()
    # Not a speed limit: the call in flight is delayed by 30 s, and stop must not wait for it.
    assert time.monotonic() - stopping < 15.0
    caller.join(5)
    assert len(outcome) == 1, "the call in flight sees its connection go"


def test_context_manager_and_admin_state() -> None:
    with EmulatorServer(EmulatorConfig(account_id=ACCOUNT, account_key=KEY)) as server:
        assert server.running
        assert server.admin_state()["sessions"] == []
        assert server.app.emulator is server.state
    assert not server.running


def test_restart_keeps_the_port_and_drops_sessions(emulator_factory: Any) -> None:
    server: EmulatorServer = emulator_factory()
    arr = Arr(server)
    arr.v1_create()
    arr.admin.fault(operation="get", action="drop")
    port, url = server.port, server.url
    server.restart()
    assert (server.port, server.url) == (port, url)
    state = arr.admin.request("GET", "/state").json()
    assert state["sessions"] == [] and state["faults"] == [] and state["counts"]["requests"] == 0
    assert arr.v1("GET").status_code == 200  # the token is still good
    server.restart(keep_tokens=False)
    assert_error(arr.v1("GET"), 401)


def test_port_in_use_is_an_error(emulator: EmulatorServer) -> None:
    with pytest.raises(OSError):
        EmulatorServer(port=emulator.port).start()


def test_tls_with_requests_and_httpx(emulator_factory: Any) -> None:
    server: EmulatorServer = emulator_factory(tls=True)
    assert server.url.startswith("https://") and server.ca_bundle
    arr = Arr(server)
    session_id = arr.v1_create()
    assert arr.v1_get(session_id)["sessionId"] == session_id
    with pytest.raises(requests.exceptions.SSLError):
        session = requests.Session()
        session.trust_env = False
        session.get(f"{server.url}/_emulator/state", verify=True, timeout=5)
    context = ssl.create_default_context(cafile=server.ca_bundle)
    with httpx.Client(verify=context) as client:
        assert client.get(f"{server.url}/_emulator/state").json()["active"] == 1
        arr.admin.fault(operation="list", action="drop", count=1)
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.get(
                f"{server.url}/v1/accounts/{ACCOUNT}/sessions",
                headers={"Authorization": f"Bearer {arr.token}"},
            )
    stopping = time.monotonic()
    server.stop()
    # Not a speed limit: an idle TLS keep-alive connection must not hold the stop for the
    # graceful-shutdown and keep-alive timeouts (uvicorn's own, 1 s and 75 s), so well under 75 s.
    assert time.monotonic() - stopping < 30.0


def test_cli_help_documents_every_flag() -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "airflow_provider_arr.emulator", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode == 0
    flags = """--host --port --account-id --account-key --startup-delay --stop-delay --time-scale --token-ttl
        --throttle-rate --throttle-burst --no-retry-after --error-rate --error-on-start --slow --page-size
        --seed --tls --tls-cert --tls-key --access-log"""
    for flag in flags.split():
        assert flag in answer.stdout
    text = " ".join(answer.stdout.split())
    assert "(default: 8765)" in text and "(default: 60.0)" in text


def test_cli_rejects_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--time-scale", "0"])
    assert info.value.code == 2 and "time_scale" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--tls-cert", "x.pem"])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_child_process_on_port_0_answers_and_stops_cleanly(sig: signal.Signals) -> None:
    config = EmulatorConfig(account_id=ACCOUNT, account_key=KEY, startup_delay=1, time_scale=100)
    process = EmulatorProcess(config, stderr=subprocess.PIPE).start()
    try:
        assert process.url is not None and process.url.startswith("http://127.0.0.1:")
        assert not process.url.endswith(":0")
        answer = requests.get(
            f"{process.url}/accounts/{ACCOUNT}/token",
            headers={"Authorization": f"Bearer {ACCOUNT}:{KEY}"},
            timeout=10,
        )
        assert answer.status_code == 200 and answer.json()["AccessToken"]
        config_seen = requests.get(f"{process.url}/_emulator/config", timeout=10).json()
        assert config_seen["time_scale"] == 100 and config_seen["startup_delay"] == 1
    finally:
        assert process.process is not None
        process.process.send_signal(sig)
        returncode = process.process.wait(10)
        stderr = process.process.stderr.read() if process.process.stderr else ""
    assert returncode == 0, stderr
    assert "Traceback" not in stderr


def test_child_process_with_tls() -> None:
    with EmulatorProcess(tls=True) as process:
        assert process.url is not None and process.url.startswith("https://")
        assert process.ca_bundle is not None
        answer = requests.get(f"{process.url}/_emulator/state", verify=process.ca_bundle, timeout=10)
        assert answer.status_code == 200
    assert process.process is not None and process.process.returncode == 0
