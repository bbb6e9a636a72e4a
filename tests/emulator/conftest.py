"""Fixtures for the emulator's own tests: a bare HTTP client of the service (its admin calls go
through the shared :class:`Admin`); the emulators come from the shared ``emulator_factory``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from airflow_provider_arr.emulator import EmulatorServer
from tests.conftest import ACCOUNT_ID, ACCOUNT_KEY, Admin

ACCOUNT = ACCOUNT_ID
KEY = ACCOUNT_KEY
API = {"api-version": "2021-01-01"}


class Arr:
    """A bare client of the emulated service: one requests session, a token, both dialects;
    :attr:`admin` is the server's admin API."""

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.url = server.url
        self.account = server.config.account_id
        self.admin = Admin.of(server)
        self.http = requests.Session()
        # The environment's REQUESTS_CA_BUNDLE would override a session's verify.
        self.http.trust_env = False
        self.http.verify = server.ca_bundle or True
        self.token = self.fetch_token()

    # -- raw ------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if auth:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return self.http.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)

    def fetch_token(self, key: str | None = None, path: str = "/accounts") -> str:
        answer = self.http.get(
            f"{self.url}{path}/{self.account}/token",
            headers={"Authorization": f"Bearer {self.account}:{key or self.server.config.account_key}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["AccessToken"])

    # -- v1 -------------------------------------------------------------------------------------

    def v1(self, method: str, tail: str = "", **kwargs: Any) -> requests.Response:
        return self.request(method, f"/v1/accounts/{self.account}/sessions{tail}", **kwargs)

    def v1_create(self, lease: str = "1:0:0", size: str = "standard") -> str:
        answer = self.v1("POST", "/create", json={"maxLeaseTime": lease, "models": [], "size": size})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["sessionId"])

    def v1_get(self, session_id: str) -> dict[str, Any]:
        answer = self.v1("GET", f"/{session_id}/properties")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    # -- 2021-01-01 -----------------------------------------------------------------------------

    def v2(
        self, method: str, tail: str = "", *, params: dict[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        return self.request(
            method,
            f"/accounts/{self.account}/sessions{tail}",
            params=API if params is None else params,
            **kwargs,
        )

    def v2_create(self, session_id: str, minutes: int = 60, size: str = "Standard") -> dict[str, Any]:
        answer = self.v2("PUT", f"/{session_id}", json={"maxLeaseTimeMinutes": minutes, "size": size})
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def v2_get(self, session_id: str) -> dict[str, Any]:
        answer = self.v2("GET", f"/{session_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (cheap: the emulator's clock is fast in these tests)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def arr(emulator: EmulatorServer) -> Arr:
    """A client of the ``emulator`` fixture holding a token."""
    return Arr(emulator)


def assert_error(answer: requests.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The answer is an error of this status in the service's shape, with an MS-CV."""
    assert answer.status_code == status, answer.text
    assert answer.headers.get("MS-CV"), answer.headers
    body = answer.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return dict(body["error"])
