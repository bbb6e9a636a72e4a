"""Failures no retry can fix fail at once naming the setting to fix; transient ones are retried;
a broken connection setting is an error naming the connection and the key, never a fallback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_arr.emulator import EmulatorServer
from airflow_provider_arr.exceptions import (
    ArrConnectionError,
    ArrInputError,
    ArrServiceError,
    ArrSessionMayExistError,
)
from airflow_provider_arr.hooks.arr import ArrHook
from tests.conftest import ACCOUNT_ID, ACCOUNT_KEY, Admin, connection_json

#: Attempts that would take minutes if they were retried with the defaults.
SLOW_RETRIES = {"retry_wait_min": 5, "retry_wait_max": 30}


def use(monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any] | str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", conn if isinstance(conn, str) else json.dumps(conn))


def failing_at_once(call: Callable[[], Any], expected: type[Exception]) -> Exception:
    """``call`` raises ``expected``; with SLOW_RETRIES, a single retry would take 5 s or more."""
    started = time.monotonic()
    with pytest.raises(expected) as info:
        call()
    print(f"failed after {time.monotonic() - started:.2f} s")
    return info.value


def test_a_host_that_does_not_resolve_fails_at_once_naming_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, connection_json("https://arr.does-not-resolve.invalid", **SLOW_RETRIES))
    error = failing_at_once(lambda: ArrHook().list_sessions(), ArrConnectionError)
    assert isinstance(error, ArrConnectionError) and error.permanent and not error.request_sent
    assert "'arr.does-not-resolve.invalid' does not resolve" in str(error)
    assert "the extra 'sts_endpoint'" in str(error)  # the first call is the token's


def test_a_certificate_that_does_not_verify_fails_at_once_naming_verify(
    emulator_factory: Callable[..., EmulatorServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = emulator_factory(tls=True)
    use(monkeypatch, connection_json(server.url, **SLOW_RETRIES))  # its CA is not trusted
    error = failing_at_once(lambda: ArrHook().list_sessions(), ArrConnectionError)
    assert "could not be verified" in str(error) and "extra 'verify'" in str(error)
    use(monkeypatch, connection_json(server.url, verify=server.ca_bundle))
    assert ArrHook().list_sessions() == []


def test_a_verify_path_to_a_missing_file_is_an_input_error(
    monkeypatch: pytest.MonkeyPatch, emulator: Any
) -> None:
    use(monkeypatch, connection_json(emulator.url, verify="/no/such/ca.pem"))
    with pytest.raises(ArrInputError, match=r"extra 'verify' '/no/such/ca\.pem' is not a readable CA bundle"):
        ArrHook().list_sessions()


def test_a_v1_create_whose_token_call_fails_raises_no_false_alarm(
    monkeypatch: pytest.MonkeyPatch, emulator: Any
) -> None:
    admin = Admin.of(emulator)
    use(monkeypatch, connection_json(emulator.url, retry_wait_min=0.01, retry_wait_max=0.05))
    admin.fault(operation="token", action="status", status=503)
    with pytest.raises(ArrServiceError) as info:
        ArrHook().create_session()
    assert not isinstance(info.value, ArrSessionMayExistError) and info.value.operation == "token"
    assert admin.counts()["list"] == 0 and admin.counts()["create"] == 0


def test_the_retired_public_service_is_named_when_it_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn = {"conn_type": "azure_remote_rendering", "login": ACCOUNT_ID, "password": ACCOUNT_KEY}
    use(monkeypatch, {**conn, "extra": {"region": "westus2", "retry_limit": 1}})
    error = failing_at_once(lambda: ArrHook().list_sessions(), ArrConnectionError)
    assert "retired on 2025-09-30" in str(error) and "'sts_endpoint'" in str(error)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('{"region": "westus2",}', "its extra is not valid JSON"),
        ("[1, 2]", "its extra must be a JSON object"),
        ('{"regoin": "westus2"}', "extra 'regoin' is not a setting of this provider; did you mean 'region'?"),
        ('{"region": "westus2", "timeout": "soon"}', "timeout must be a number"),
        ('{"region": "westus2", "retry_limit": 2.5}', "retry_limit must be a whole number"),
        ('{"region": "westus2", "verify": 3}', "extra 'verify' must be true, false or a CA bundle path"),
    ],
)
def test_a_broken_extra_names_the_connection_and_the_key(
    monkeypatch: pytest.MonkeyPatch, extra: str, message: str
) -> None:
    conn = {"conn_type": "azure_remote_rendering", "login": ACCOUNT_ID, "password": ACCOUNT_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", json.dumps({**conn, "extra": extra}))
    with pytest.raises(ArrInputError) as info:
        ArrHook().config  # noqa: B018 - reading the connection is the test
    assert "connection 'arr_default'" in str(info.value) and message in str(info.value)


def test_legacy_form_keys_are_read(monkeypatch: pytest.MonkeyPatch, emulator: Any) -> None:
    extra = {"extra__azure_remote_rendering__sts_endpoint": emulator.url}
    conn = {"conn_type": "azure_remote_rendering", "login": ACCOUNT_ID, "password": ACCOUNT_KEY}
    use(monkeypatch, {**conn, "host": emulator.url, "extra": extra})
    assert ArrHook().list_sessions() == []
