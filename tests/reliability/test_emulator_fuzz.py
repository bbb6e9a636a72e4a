"""The emulator under fuzzing: its OpenAPI schema, served at /openapi.json, driven by schemathesis.

No answer may be a 5xx (nothing is injected here), the server must not crash, and every 4xx must
be in the service's error shape ``{"error": {"code", "message"}}`` with an MS-CV. Explicit tests
add what a generator rarely finds: invalid JSON, wrong types, and oversized bodies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from airflow_provider_arr.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_arr.emulator.app import create_app
from tests.conftest import ACCOUNT_ID, ACCOUNT_KEY

pytestmark = pytest.mark.slow

MAX_BODY = 64 * 1024  # the emulator's limit on request bodies
API = {"api-version": "2021-01-01"}


class ErrorRecords(logging.Handler):
    """Every ERROR (or worse) logged in this process while the module runs: the emulator logs
    an exception that escaped a route, and uvicorn a crashed request."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


ERRORS = ErrorRecords()
FUZZED: list[int] = []


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    """One emulator for the module (no fault, no throttling), its errors recorded."""
    config = EmulatorConfig(account_id=ACCOUNT_ID, account_key=ACCOUNT_KEY, startup_delay=30, time_scale=100)
    root = logging.getLogger()
    root.addHandler(ERRORS)
    try:
        with EmulatorServer(config) as running:
            yield running
    finally:
        root.removeHandler(ERRORS)


@pytest.fixture(scope="module")
def token(server: EmulatorServer) -> str:
    answer = requests.get(
        f"{server.url}/accounts/{ACCOUNT_ID}/token",
        headers={"Authorization": f"Bearer {ACCOUNT_ID}:{ACCOUNT_KEY}"},
        timeout=10,
    )
    answer.raise_for_status()
    return str(answer.json()["AccessToken"])


def emulator_schema() -> dict[str, Any]:
    """The OpenAPI schema the emulator serves at /openapi.json (the app builds it without I/O)."""
    return create_app(EmulatorConfig(account_id=ACCOUNT_ID, account_key=ACCOUNT_KEY)).openapi()


# Loaded at collection time, so that there is one test per operation (schemathesis's lazy loader
# does not work with this pytest); test_the_served_schema_is_the_fuzzed_one checks it is the same.
schema = schemathesis.openapi.from_dict(emulator_schema())


def header(response: Any, name: str) -> str | None:
    """A header of a requests or a schemathesis answer (the latter: lower-case names, lists)."""
    value = response.headers.get(name) or response.headers.get(name.lower())
    return (value[0] if value else None) if isinstance(value, list) else value


def assert_service_shape(response: Any, where: str) -> None:
    """An answer as the service gives it: an MS-CV, and for errors the error object."""
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
    assert header(response, "MS-CV"), f"{where}: no MS-CV header"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body, dict) and set(body) == {"error"}, f"{where}: {response.text[:300]}"
        error = body["error"]
        assert isinstance(error.get("code"), str) and error["code"], f"{where}: {body}"
        assert isinstance(error.get("message"), str) and error["message"], f"{where}: {body}"


#: Every operation of the schema, one test each with an id of its own: schemathesis's
#: ``schema.parametrize()`` gives all its items one node id, which pytest-xdist runs only once.
OPERATIONS = [result.ok() for result in schema.get_all_operations()]
FUZZING = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,
)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_fuzz_the_schema(operation: Any, server: EmulatorServer, token: str) -> None:
    """100 generated requests for one operation of the schema, valid and invalid."""

    @FUZZING
    @given(
        case=st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        )
    )
    def fuzz(case: Any) -> None:
        # A valid token (the STS takes the account key), and half the time the real account id,
        # so that the fuzzing reaches past authentication and the account check into the routes.
        secret = f"{ACCOUNT_ID}:{ACCOUNT_KEY}" if case.path.endswith("/token") else token
        if case.path_parameters and "account_id" in case.path_parameters and len(repr(case.body)) % 2:
            case.path_parameters["account_id"] = ACCOUNT_ID
        response = case.call(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=10)
        FUZZED.append(response.status_code)
        assert_service_shape(response, f"{case.method} {case.formatted_path}")

    fuzz()


def test_the_served_schema_is_the_fuzzed_one(server: EmulatorServer) -> None:
    served = requests.get(f"{server.url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == emulator_schema()
    assert len(served.json()["paths"]) >= 8  # STS, v1 and 2021-01-01 (admin API excluded)


def test_the_fuzzing_crashed_nothing(server: EmulatorServer) -> None:
    """After the fuzzing (it runs first, in file order): still serving, nothing injected, no
    error logged, and the fuzzing got past authentication into the routes."""
    if not FUZZED:
        pytest.skip("checks what test_fuzz_the_schema did: run the module")
    state = requests.get(f"{server.url}/_emulator/state", timeout=10).json()
    assert state["counts"]["injected_errors"] == 0
    assert server.running
    assert not ERRORS.records, [r.getMessage() for r in ERRORS.records]
    assert max(FUZZED) < 500
    assert {200, 201, 202, 204} <= set(FUZZED) and {400, 401, 404} <= set(FUZZED)


# ------------------------------------------------------------------------------------------------
# What the generator rarely sends


def calls(server: EmulatorServer) -> list[tuple[str, str, dict[str, str] | None]]:
    """The operations with a body: (method, URL, query)."""
    v1 = f"{server.url}/v1/accounts/{ACCOUNT_ID}/sessions"
    v2 = f"{server.url}/accounts/{ACCOUNT_ID}/sessions"
    return [
        ("POST", f"{v1}/create", None),
        ("PATCH", f"{v1}/some-session", None),
        ("PUT", f"{v2}/fuzz-put", API),
        ("PATCH", f"{v2}/fuzz-put", API),
    ]


@pytest.fixture
def http(token: str) -> Iterator[requests.Session]:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    yield session
    session.close()


@pytest.mark.parametrize(
    "body",
    [b"{", b"not json", b'{"maxLeaseTime": "1:0:0",}', b"\xff\xfe\x00", b"", b"null", b"[]", b'"text"'],
    ids=["open-brace", "text", "trailing-comma", "binary", "empty", "null", "list", "string"],
)
def test_invalid_json_is_a_400(server: EmulatorServer, http: requests.Session, body: bytes) -> None:
    for method, url, params in calls(server):
        answer = http.request(
            method, url, params=params, data=body, headers={"Content-Type": "application/json"}, timeout=10
        )
        assert_service_shape(answer, f"{method} {url} {body!r}")
        assert 400 <= answer.status_code < 500, answer.text
        assert answer.status_code != 404 or "some-session" in url


@pytest.mark.parametrize(
    "payload",
    [
        {"maxLeaseTime": 5, "size": "standard"},
        {"maxLeaseTime": "1:0:0", "size": 3},
        {"maxLeaseTime": ["1:0:0"], "size": "standard", "models": "nope"},
        {"maxLeaseTimeMinutes": "sixty", "size": "Standard"},
        {"maxLeaseTimeMinutes": True, "size": "Standard"},
        {"maxLeaseTimeMinutes": 60.5, "size": "Standard"},
        {"maxLeaseTimeMinutes": -1, "size": "Standard"},
        {"maxLeaseTimeMinutes": 10**30, "size": "Standard"},
        {"maxLeaseTimeMinutes": 60, "size": {"name": "Standard"}},
        {"maxLeaseTimeMinutes": None, "size": None},
    ],
)
def test_wrong_types_are_a_400_class_answer(
    server: EmulatorServer, http: requests.Session, payload: dict[str, Any]
) -> None:
    for method, url, params in calls(server):
        answer = http.request(method, url, params=params, json=payload, timeout=10)
        assert_service_shape(answer, f"{method} {url} {payload}")
        # 400 for a bad value; a valid PUT id answers 200/201, v1's unknown session 404: never 5xx.
        assert answer.status_code < 500


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_bodies_are_refused(server: EmulatorServer, http: requests.Session, chunked: bool) -> None:
    big = json.dumps({"maxLeaseTime": "1:0:0", "size": "standard", "models": ["x" * 1000] * 100}).encode()
    assert len(big) > MAX_BODY
    for method, url, params in calls(server):
        data: Any = iter([big[i : i + 8192] for i in range(0, len(big), 8192)]) if chunked else big
        answer = http.request(
            method, url, params=params, data=data, headers={"Content-Type": "application/json"}, timeout=10
        )
        assert_service_shape(answer, f"{method} {url} ({len(big)} bytes)")
        assert answer.status_code == 413, answer.text


def test_unknown_routes_and_methods_answer_in_the_service_shape(
    server: EmulatorServer, http: requests.Session
) -> None:
    for method, path in [
        ("GET", "/nope"),
        ("DELETE", f"/accounts/{ACCOUNT_ID}/sessions"),
        ("GET", f"/v1/accounts/{ACCOUNT_ID}/sessions/x/y/z"),
        ("POST", f"/accounts/{ACCOUNT_ID}/token"),
    ]:
        answer = http.request(method, f"{server.url}{path}", timeout=10)
        assert_service_shape(answer, f"{method} {path}")
        assert 400 <= answer.status_code < 500
