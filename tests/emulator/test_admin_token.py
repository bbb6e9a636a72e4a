"""The admin API's protection: a bearer token when one is configured, closed on a non-loopback
address without one, open on loopback without one; the ARR API itself is never affected."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_arr.emulator import EmulatorConfig, EmulatorProcess, EmulatorServer
from airflow_provider_arr.emulator.gate import is_loopback
from tests.conftest import Admin

from .conftest import Arr, assert_error

TOKEN = "admin-token-5f2b9c1e0d7a"
# Every admin route, with a body each accepts.
ADMIN_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/state", None),
    ("GET", "/config", None),
    ("POST", "/config", {"startup_delay": 1}),
    ("GET", "/faults", None),
    ("POST", "/faults", {"operation": "get", "action": "drop"}),
    ("DELETE", "/faults", None),
    ("POST", "/sessions/nope/status", {"status": "ready"}),
    ("POST", "/tokens/expire", None),
    ("POST", "/clock/advance", {"seconds": 1}),
    ("POST", "/reset", None),
    ("GET", "/no-such-admin-route", None),
]


def call(server_url: str, method: str, path: str, body: Any, authorization: str | None) -> requests.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return requests.request(method, f"{server_url}/_emulator{path}", json=body, headers=headers, timeout=10)


def assert_arr_api_works(server_url: str, account: str, key: str) -> None:
    """The STS and a session call answer as usual, without any admin token."""
    answer = requests.get(
        f"{server_url}/accounts/{account}/token",
        headers={"Authorization": f"Bearer {account}:{key}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["AccessToken"]
    listed = requests.get(
        f"{server_url}/v1/accounts/{account}/sessions",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert listed.status_code == 200, listed.text


def test_loopback_without_a_token_stays_open(emulator: EmulatorServer) -> None:
    for method, path, body in ADMIN_CALLS:
        assert call(emulator.url, method, path, body, None).status_code != 401, (method, path)


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_a_configured_token_is_required_on_every_admin_call(
    emulator_factory: Callable[..., EmulatorServer], host: str
) -> None:
    server = emulator_factory(host=host, admin_token=TOKEN)
    assert server.url.startswith("http://127.0.0.1:")  # the calls go to the loopback
    wrong = [None, "Bearer", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer é"]
    for method, path, body in ADMIN_CALLS:
        for authorization in wrong:
            answer = call(server.url, method, path, body, authorization)
            error = assert_error(answer, 401, "Unauthorized")
            assert answer.headers["WWW-Authenticate"] == 'Bearer realm="arr-emulator-admin"'
            assert "Authorization: Bearer" in error["message"]
            assert TOKEN not in answer.text
    # None of the refused calls did anything.
    admin = Admin.of(server)
    assert admin.config()["startup_delay"] == 30 and admin.state()["faults"] == []
    for method, path, body in ADMIN_CALLS:
        for authorization in (f"Bearer {TOKEN}", f"bearer  {TOKEN} "):
            answer = call(server.url, method, path, body, authorization)
            assert answer.status_code != 401, (method, path, answer.text)
    assert_arr_api_works(server.url, server.config.account_id, server.config.account_key)


def test_the_shared_admin_client_sends_the_token(emulator_factory: Callable[..., EmulatorServer]) -> None:
    server = emulator_factory(host="0.0.0.0", admin_token=TOKEN)
    admin = Admin.of(server)
    assert admin.token == TOKEN
    admin.config(startup_delay=7)
    assert admin.config()["startup_delay"] == 7
    with pytest.raises(requests.HTTPError, match="401"):
        Admin(server.url).state()


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_wildcard_address_without_a_token_closes_the_admin_api(
    emulator_factory: Callable[..., EmulatorServer], host: str
) -> None:
    server = emulator_factory(host=host)
    for method, path, body in ADMIN_CALLS:
        for authorization in (None, "Bearer anything"):
            answer = call(server.url, method, path, body, authorization)
            error = assert_error(answer, 401, "Unauthorized")
            message = error["message"]
            assert "disabled" in message and f"listens on {host}" in message
            assert "--admin-token" in message and "ARR_EMULATOR_ADMIN_TOKEN" in message
            assert "Authorization: Bearer" in message
    assert server.admin_state()["counts"]["requests"] == 0  # nothing got through
    assert_arr_api_works(server.url, server.config.account_id, server.config.account_key)


def _lan_address() -> str | None:
    """A non-loopback IPv4 address of this machine, if it has one: the source address of a route
    out (connecting a UDP socket sends nothing)."""
    for target in ("10.255.255.255", "192.0.2.1", "198.51.100.1"):
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            address = str(probe.getsockname()[0])
            if not is_loopback(address) and address != "0.0.0.0":
                return address
    return None


def test_a_lan_address_without_a_token_closes_the_admin_api(
    emulator_factory: Callable[..., EmulatorServer],
) -> None:
    address = _lan_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    server = emulator_factory(host=address)
    error = assert_error(call(server.url, "GET", "/state", None, None), 401)
    assert f"listens on {address}" in error["message"]
    assert_arr_api_works(server.url, server.config.account_id, server.config.account_key)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.20", False),
        ("fd00::2", False),
        ("arr-emulator", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_token_is_never_shown(tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]) -> None:
    config = EmulatorConfig(admin_token=TOKEN)
    assert TOKEN not in repr(config) and TOKEN not in str(config)
    assert "admin_token" not in config.to_dict()
    server = emulator_factory(admin_token=TOKEN, state_file=tmp_path / "state.json")
    arr = Arr(server)
    arr.v1_create()
    for path in ("/state", "/config", "/faults"):
        answer = arr.admin.request("GET", path)
        assert answer.status_code == 200 and TOKEN not in answer.text, path
    assert TOKEN not in (tmp_path / "state.json").read_text()
    with pytest.raises(ValueError, match="unknown knob 'admin_token'"):
        server.state.configure({"admin_token": "other"})
    with pytest.raises(ValueError, match="admin_token must be non-empty"):
        EmulatorConfig(admin_token="")


def test_the_command_line_takes_the_token_from_the_option_or_the_environment() -> None:
    for extra_args, env in (([f"--admin-token={TOKEN}"], {}), ([], {"ARR_EMULATOR_ADMIN_TOKEN": TOKEN})):
        with EmulatorProcess(extra_args=extra_args, env=env) as process:
            assert process.url is not None
            assert call(process.url, "GET", "/state", None, None).status_code == 401
            answer = call(process.url, "GET", "/config", None, f"Bearer {TOKEN}")
            assert answer.status_code == 200 and TOKEN not in answer.text


def test_the_command_line_warns_when_the_admin_api_is_closed() -> None:
    with EmulatorProcess(host="0.0.0.0", stderr=subprocess.PIPE) as process:
        assert process.url is not None and process.process is not None
        body = call(process.url, "GET", "/state", None, None).json()
        assert "ARR_EMULATOR_ADMIN_TOKEN" in json.dumps(body)
        process.stop()
        assert process.process.stderr is not None
        warning = process.process.stderr.read()
    assert "admin API (/_emulator) is disabled" in warning and "--admin-token" in warning
