"""The emulated Secure Token Service and the token checks of the session API."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import pytest
import requests

from airflow_provider_arr.emulator import EmulatorServer

from .conftest import ACCOUNT, KEY, Arr, assert_error


def claims_of(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@pytest.mark.parametrize("prefix", ["/accounts", "/Accounts"])
def test_token_is_a_jwt_with_the_expected_claims(emulator: EmulatorServer, prefix: str) -> None:
    answer = requests.get(
        f"{emulator.url}{prefix}/{ACCOUNT}/token?api-version=2019-02-28-preview&anything=1",
        headers={"Authorization": f"Bearer {ACCOUNT}:{KEY}", "X-MRC-CV": "abc"},
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.headers["MS-CV"]
    assert answer.headers["Content-Type"].startswith("application/json")
    body = answer.json()
    assert list(body) == ["AccessToken"]
    claims = claims_of(body["AccessToken"])
    assert claims["account-id"] == ACCOUNT and claims["jti"]
    now = time.time()
    assert isinstance(claims["exp"], int) and now + 86400 - 5 < claims["exp"] <= now + 86400
    assert claims["iat"] == claims["nbf"] and abs(int(claims["iat"]) - now) < 5  # type: ignore[call-overload]
    assert emulator.state.tokens.decode(body["AccessToken"])["account-id"] == ACCOUNT
    assert emulator.admin_state()["counts"]["token"] == 1


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {ACCOUNT}:wrong", f"Basic {ACCOUNT}:{KEY}", f"Bearer {ACCOUNT}", "Bearer", "Bearer é:ü"],
)
def test_wrong_or_missing_credentials_are_401(emulator: EmulatorServer, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = requests.get(f"{emulator.url}/accounts/{ACCOUNT}/token", headers=headers, timeout=10)
    assert_error(answer, 401, "Unauthorized")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_account_is_401(emulator: EmulatorServer) -> None:
    other = "99999999-0000-0000-0000-000000000000"
    answer = requests.get(
        f"{emulator.url}/accounts/{other}/token",
        headers={"Authorization": f"Bearer {ACCOUNT}:{KEY}"},
        timeout=10,
    )
    assert_error(answer, 401)


def test_session_calls_need_a_valid_token(arr: Arr) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": f"Bearer {ACCOUNT}:{KEY}"}):
        answer = arr.v1("GET", auth=False, headers=headers)
        assert_error(answer, 401, "Unauthorized")
        assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert arr.v1("GET").status_code == 200
    assert arr.admin.counts()["unauthorized"] == 3


def test_tokens_expire_after_their_ttl(emulator_factory: Callable[..., EmulatorServer]) -> None:
    arr = Arr(emulator_factory(token_ttl=0.3))
    assert arr.v1("GET").status_code == 200
    time.sleep(0.35)
    assert_error(arr.v1("GET"), 401)
    arr.token = arr.fetch_token()
    assert arr.v1("GET").status_code == 200


def test_admin_expires_every_token_issued_so_far(arr: Arr) -> None:
    other = arr.fetch_token()
    answer = arr.admin.request("POST", "/tokens/expire")
    assert answer.status_code == 200 and answer.json() == {"expired": 2}
    assert_error(arr.v1("GET"), 401)
    assert_error(arr.v1("GET", headers={"Authorization": f"Bearer {other}"}), 401)
    arr.token = arr.fetch_token()
    assert arr.v2("GET").status_code == 200


def test_a_token_of_another_instance_is_refused(emulator_factory: Callable[..., EmulatorServer]) -> None:
    first, second = Arr(emulator_factory()), Arr(emulator_factory())
    answer = second.v1("GET", headers={"Authorization": f"Bearer {first.token}"})
    assert_error(answer, 401)


def test_another_account_in_the_path_is_404(arr: Arr) -> None:
    other = "99999999-0000-0000-0000-000000000000"
    assert_error(arr.request("GET", f"/v1/accounts/{other}/sessions"), 404, "NotFound")
    assert_error(arr.request("GET", f"/accounts/{other}/sessions", params={"api-version": "2021-01-01"}), 404)
