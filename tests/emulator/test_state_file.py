"""The state file: sessions, tokens and the emulated clock survive a restart, even a SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_arr.emulator import EmulatorConfig, EmulatorProcess, EmulatorServer
from airflow_provider_arr.emulator.statefile import StateFileError
from tests.conftest import ACCOUNT_ID, ACCOUNT_KEY, Admin

from .conftest import API

# Statuses hold still while the test watches (a start-up or a stop takes 60 real seconds) while
# the clock runs fast enough for its progress over a restart to be measured.
SCALE = 10.0
SLOW_LIFECYCLE = {"startup_delay": 600.0, "stop_delay": 600.0, "time_scale": SCALE}
# What a restart must keep of each session, as GET /_emulator/state shows it.
KEPT = (
    "id",
    "account_id",
    "dialect",
    "status",
    "size",
    "created",
    "max_lease_time",
    "lease_seconds",
    "ready_at",
    "ended",
    "stop_requested",
    "message",
    "hostname",
)


class Client:
    """The service as a user's code sees it: one token, fetched once, both dialects."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token or self.fetch_token()

    def fetch_token(self) -> str:
        answer = requests.get(
            f"{self.url}/accounts/{ACCOUNT_ID}/token",
            headers={"Authorization": f"Bearer {ACCOUNT_ID}:{ACCOUNT_KEY}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["AccessToken"])

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method,
            f"{self.url}{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
            **kwargs,
        )

    def v1_create(self) -> str:
        answer = self.call(
            "POST",
            f"/v1/accounts/{ACCOUNT_ID}/sessions/create",
            json={"maxLeaseTime": "1:00:00", "size": "standard"},
        )
        assert answer.status_code == 202, answer.text
        return str(answer.json()["sessionId"])

    def v2_create(self, session_id: str, minutes: int = 60) -> None:
        answer = self.call(
            "PUT",
            f"/accounts/{ACCOUNT_ID}/sessions/{session_id}",
            params=API,
            json={"maxLeaseTimeMinutes": minutes, "size": "Premium"},
        )
        assert answer.status_code == 201, answer.text


def arrange_sessions(client: Client, admin: Admin) -> dict[str, str]:
    """Sessions of both dialects in every status; returns {name: id}."""
    ids = {
        "v1-starting": client.v1_create(),
        "v1-ready": client.v1_create(),
        "v1-expired": client.v1_create(),
        "v1-stopped": client.v1_create(),
    }
    for name in ("v2-ready-extended", "v2-error", "v2-stopping"):
        client.v2_create(name)
        ids[name] = name
    admin.force(ids["v1-ready"], "ready")
    admin.force(ids["v2-ready-extended"], "ready")
    admin.force(ids["v1-expired"], "expired")
    admin.force(ids["v1-stopped"], "stopped")
    admin.force("v2-error", "error", "No capacity in westus2")
    answer = client.call(
        "PATCH",
        f"/accounts/{ACCOUNT_ID}/sessions/v2-ready-extended",
        params=API,
        json={"maxLeaseTimeMinutes": 90},
    )
    assert answer.status_code == 200, answer.text
    # The last change before the kill: answered, so it must survive it.
    answer = client.call("POST", f"/accounts/{ACCOUNT_ID}/sessions/v2-stopping/:stop", params=API)
    assert answer.status_code == 204, answer.text
    return ids


def sessions_by_id(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in state["sessions"]}


def emulator_process(state_file: Path, **env: str) -> EmulatorProcess:
    config = EmulatorConfig(
        account_id=ACCOUNT_ID,
        account_key=ACCOUNT_KEY,
        state_file=None if env else state_file,
        **SLOW_LIFECYCLE,
    )
    return EmulatorProcess(config, env=env)


def test_sigkill_and_restart_keep_sessions_tokens_and_the_clock(tmp_path: Path) -> None:
    state_file = tmp_path / "data" / "arr-emulator-state.json"
    state_file.parent.mkdir()
    first = emulator_process(state_file).start()
    try:
        assert first.url is not None
        client, admin = Client(first.url), Admin(first.url)
        ids = arrange_sessions(client, admin)
        before_asked = time.time()
        before = sessions_by_id(admin.state())
        before_answered = time.time()
    finally:
        first.kill()
    assert first.process is not None and first.process.returncode == -9
    time.sleep(1.0)  # downtime: 10 emulated seconds

    # The second start reads the file from the environment variable, as a container would.
    second = emulator_process(state_file, ARR_EMULATOR_STATE_FILE=str(state_file)).start()
    try:
        assert second.url is not None and second.url != first.url  # --port 0: another port
        admin = Admin(second.url)
        after_asked = time.time()
        after = sessions_by_id(admin.state())
        after_answered = time.time()

        assert set(after) == set(before) == set(ids.values())
        for session_id, old in before.items():
            new = after[session_id]
            assert {k: new[k] for k in KEPT} == {k: old[k] for k in KEPT}, session_id
        statuses = {name: after[i]["status"] for name, i in ids.items()}
        assert statuses == {
            "v1-starting": "starting",
            "v1-ready": "ready",
            "v1-expired": "expired",
            "v1-stopped": "stopped",
            "v2-ready-extended": "ready",
            "v2-error": "error",
            "v2-stopping": "stopping",
        }
        assert after[ids["v2-ready-extended"]]["lease_seconds"] == 90 * 60
        assert after["v2-error"]["message"] == "No capacity in westus2"

        # The clock ran on while the emulator was down, at the time scale; ended sessions hold.
        for name in ("v1-starting", "v1-ready", "v2-ready-extended"):
            grown = after[ids[name]]["elapsed_seconds"] - before[ids[name]]["elapsed_seconds"]
            assert (after_asked - before_answered) * SCALE - 0.5 <= grown, name
            assert grown <= (after_answered - before_asked) * SCALE + 0.5, name
        for name in ("v1-expired", "v1-stopped", "v2-error", "v2-stopping"):
            assert after[ids[name]]["elapsed_seconds"] == before[ids[name]]["elapsed_seconds"], name

        # The token fetched before the kill still works, in both dialects.
        same_token = Client(second.url, token=client.token)
        v1 = same_token.call("GET", f"/v1/accounts/{ACCOUNT_ID}/sessions/{ids['v1-ready']}/properties")
        assert v1.status_code == 200 and v1.json()["sessionStatus"] == "Ready", v1.text
        v2 = same_token.call("GET", f"/accounts/{ACCOUNT_ID}/sessions/v2-error", params=API)
        assert v2.status_code == 200 and v2.json()["status"] == "Error", v2.text
        assert v2.json()["error"]["message"] == "No capacity in westus2"
        listed = same_token.call("GET", f"/v1/accounts/{ACCOUNT_ID}/sessions").json()["sessions"]
        assert [s["sessionId"] for s in listed] == [
            ids["v1-starting"],
            ids["v1-ready"],
            "v2-ready-extended",
            "v2-stopping",
        ]

        # v2 create stays idempotent over the restart; a new session comes after the old ones.
        again = same_token.call(
            "PUT",
            f"/accounts/{ACCOUNT_ID}/sessions/v2-ready-extended",
            params=API,
            json={"maxLeaseTimeMinutes": 60, "size": "Premium"},
        )
        assert again.status_code == 200, again.text
        same_token.v2_create("v2-new")
        page = same_token.call("GET", f"/accounts/{ACCOUNT_ID}/sessions", params=API).json()["sessions"]
        assert [s["id"] for s in page][-1] == "v2-new"
    finally:
        second.stop()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b'{"format": "something-else"}',
        b"[]",
        json.dumps({"format": "arr-emulator-state", "version": 2}).encode(),
    ],
)
def test_a_corrupt_file_is_a_startup_error_naming_it(tmp_path: Path, content: bytes) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_bytes(content)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_provider_arr.emulator",
            "--port",
            "0",
            "--state-file",
            str(state_file),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("ARR_EMULATOR_")},
    )
    assert done.returncode == 1
    assert "listening" not in done.stdout
    assert f"state file {state_file}" in done.stderr and "corrupt" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert state_file.read_bytes() == content  # left for the user to look at

    with pytest.raises(StateFileError, match=f"state file {state_file}"):
        EmulatorServer(EmulatorConfig(state_file=state_file))


def test_an_unreadable_or_unwritable_path_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(StateFileError, match=f"cannot read the emulator state file {tmp_path}"):
        EmulatorServer(EmulatorConfig(state_file=tmp_path))  # a directory
    missing = tmp_path / "no-such-dir" / "state.json"
    with pytest.raises(StateFileError, match=f"cannot write the emulator state file {missing}"):
        EmulatorServer(EmulatorConfig(state_file=missing))


def test_in_process_restart_keeps_sessions_with_a_state_file(
    tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]
) -> None:
    state_file = tmp_path / "state.json"
    server = emulator_factory(state_file=state_file, **SLOW_LIFECYCLE)
    client, admin = Client(server.url), Admin.of(server)
    session_id = client.v1_create()
    admin.config(startup_delay=1)  # runtime knob changes are not kept
    before = sessions_by_id(admin.state())[session_id]
    server.restart()
    after = sessions_by_id(admin.state())[session_id]
    assert {k: after[k] for k in KEPT} == {k: before[k] for k in KEPT}
    assert after["elapsed_seconds"] > before["elapsed_seconds"]
    assert admin.config()["startup_delay"] == 600
    assert (
        client.call("GET", f"/v1/accounts/{ACCOUNT_ID}/sessions/{session_id}/properties").status_code == 200
    )

    server.restart(keep_tokens=False)
    assert (
        client.call("GET", f"/v1/accounts/{ACCOUNT_ID}/sessions/{session_id}/properties").status_code == 401
    )
    assert session_id in sessions_by_id(admin.state())


def test_the_clock_advance_is_kept(tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]) -> None:
    server = emulator_factory(state_file=tmp_path / "state.json", **SLOW_LIFECYCLE)
    client, admin = Client(server.url), Admin.of(server)
    session_id = client.v1_create()
    admin.advance(3600)  # past the 1 h lease
    server.restart()
    assert sessions_by_id(admin.state())[session_id]["status"] == "expired"


def test_reset_clears_the_file(tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]) -> None:
    state_file = tmp_path / "state.json"
    server = emulator_factory(state_file=state_file)
    client, admin = Client(server.url), Admin.of(server)
    client.v1_create()
    assert len(json.loads(state_file.read_text())["sessions"]) == 1
    admin.reset()
    assert json.loads(state_file.read_text())["sessions"] == []
    server.restart()
    assert admin.state()["sessions"] == []
    # Issued tokens outlive a reset (the STS is another service), and so a restart after it.
    assert client.call("GET", f"/v1/accounts/{ACCOUNT_ID}/sessions").status_code == 200


def test_expired_tokens_stay_expired(tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]) -> None:
    server = emulator_factory(state_file=tmp_path / "state.json")
    client, admin = Client(server.url), Admin.of(server)
    assert admin.expire_tokens() == 1
    server.restart()
    assert client.call("GET", f"/v1/accounts/{ACCOUNT_ID}/sessions").status_code == 401


def test_the_file_is_private_and_replaced_whole(
    tmp_path: Path, emulator_factory: Callable[..., EmulatorServer]
) -> None:
    state_file = tmp_path / "state.json"
    server = emulator_factory(state_file=state_file)
    client = Client(server.url)
    for _ in range(5):
        client.v1_create()
    assert state_file.stat().st_mode & 0o077 == 0  # it holds the token signing secret
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left behind
    assert server.admin_state()["state_file"] == str(state_file)


def test_without_a_state_file_a_restart_starts_empty(emulator_factory: Callable[..., EmulatorServer]) -> None:
    server = emulator_factory()
    Client(server.url).v1_create()
    server.restart()
    assert server.admin_state()["sessions"] == [] and server.admin_state()["state_file"] is None
