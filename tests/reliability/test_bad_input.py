"""Every bad input gives a clear error: one that names the field, or for a bad service answer the
HTTP status, an excerpt of the body and the MS-CV; never a raw KeyError, TypeError or ValueError.

Inputs go through the hook, the operators (at construction, and at execute time for values a
template would render), the sensor and the connection. Malformed answers come from a tiny real
HTTP server (:class:`StubService`) that answers a chosen body with an MS-CV header.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_arr.exceptions import (
    ArrError,
    ArrInputError,
    ArrServiceError,
    ArrSessionMayExistError,
    ArrUnexpectedResponseError,
)
from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.operators.session import (
    ArrCreateSessionOperator,
    ArrExtendSessionOperator,
    ArrStopSessionOperator,
)
from airflow_provider_arr.sensors.session import ArrSessionReadySensor
from tests.conftest import ACCOUNT_ID, ACCOUNT_KEY

RAW = (KeyError, TypeError, ValueError, AttributeError, IndexError)

# ------------------------------------------------------------------------------------------------
# A stub of the service: a real HTTP server answering what the test says


@dataclass
class Answer:
    """What the stub answers to every session call."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


class StubService:
    """A real HTTP server: the STS answers a token, every other call gets :attr:`answer`, with an
    ``MS-CV`` header that names the call (``stub-cv-<n>.0``)."""

    def __init__(self) -> None:
        self.answer = Answer()
        self.calls = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                stub.calls += 1
                if self.path.endswith("/token"):
                    answer = Answer(200, json.dumps({"AccessToken": "stub-token-0123456789"}).encode())
                else:
                    answer = stub.answer
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.send_header("MS-CV", f"stub-cv-{stub.calls}.0")
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> StubService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stub_server() -> Iterator[StubService]:
    """The stub service, for the whole module."""
    with StubService() as service:
        yield service


@pytest.fixture
def stub(stub_server: StubService) -> StubService:
    """The stub service, its answer and call count reset."""
    stub_server.answer = Answer()
    stub_server.calls = 0
    return stub_server


def connect(monkeypatch: pytest.MonkeyPatch, url: str, api_version: str = "v1", **fields: Any) -> None:
    """``arr_default`` with the given fields (``extra`` merged), one attempt per call."""
    conn: dict[str, Any] = {
        "conn_type": "azure_remote_rendering",
        "login": ACCOUNT_ID,
        "password": ACCOUNT_KEY,
        "host": url,
        "extra": {"sts_endpoint": url, "api_version": api_version, "retry_limit": 1},
    }
    conn["extra"].update(fields.pop("extra", {}))
    conn.update(fields)
    monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", json.dumps(conn))


def raised(call: Callable[[], Any]) -> BaseException:
    """The exception ``call`` raises (failing the test if it raises none)."""
    try:
        call()
    except BaseException as exc:
        return exc
    pytest.fail("no error was raised")


def assert_clear(exc: BaseException, *needles: str) -> None:
    """A provider error (not a raw Python one) whose message says every ``needle``."""
    assert isinstance(exc, ArrError), f"{type(exc).__name__}: {exc}"
    assert not isinstance(exc, RAW), f"a raw {type(exc).__name__}: {exc}"
    text = str(exc)
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"


# ------------------------------------------------------------------------------------------------
# Bad arguments and connections: each row is (what, call, the field its error must name)


def create_op(**kwargs: Any) -> ArrCreateSessionOperator:
    return ArrCreateSessionOperator(task_id="create", **kwargs)


def rendered(op: Any, **values: Any) -> Callable[[], Any]:
    """``op.execute`` with template fields set as a template would render them."""

    def run() -> Any:
        for name, value in values.items():
            setattr(op, name, value)
        return op.execute({})

    return run


HOOK = ArrHook  # made inside each call, after the connection is set
INPUTS: list[tuple[str, Callable[[], Any], str]] = [
    # sizes
    ("size 'huge'", lambda: HOOK().create_session(size="huge"), "size"),
    ("size ''", lambda: HOOK().create_session(size=""), "size"),
    ("size None", lambda: HOOK().create_session(size=None), "size"),  # type: ignore[arg-type]
    ("size 3", lambda: HOOK().create_session(size=3), "size"),  # type: ignore[arg-type]
    ("operator size 'huge'", lambda: create_op(size="huge"), "size"),
    ("operator size rendered 'huge'", rendered(create_op(size="{{ params.size }}"), size="huge"), "size"),
    # timespans
    ("lease 'abc'", lambda: HOOK().create_session(max_lease_time="abc"), "max_lease_time"),
    ("lease '-1:00:00'", lambda: HOOK().create_session(max_lease_time="-1:00:00"), "max_lease_time"),
    ("lease '0:0:0'", lambda: HOOK().create_session(max_lease_time="0:0:0"), "max_lease_time"),
    ("lease '25:00:00'", lambda: HOOK().create_session(max_lease_time="25:00:00"), "max_lease_time"),
    ("lease '1:60:00'", lambda: HOOK().create_session(max_lease_time="1:60:00"), "max_lease_time"),
    (
        "lease '1.01:00:00' (over 24 h)",
        lambda: HOOK().create_session(max_lease_time="1.01:00:00"),
        "24 hours",
    ),
    ("lease None", lambda: HOOK().create_session(max_lease_time=None), "max_lease_time"),  # type: ignore[arg-type]
    ("update lease '0:0:0'", lambda: HOOK().update_session("s-1", "0:0:0"), "max_lease_time"),
    ("extend_by 'abc'", lambda: HOOK().extend_session("s-1", "abc"), "extend_by"),
    ("operator lease '25:00:00'", lambda: create_op(max_lease_time="25:00:00"), "max_lease_time"),
    (
        "operator lease rendered '1:60:00'",
        rendered(create_op(max_lease_time="{{ params.lease }}"), max_lease_time="1:60:00"),
        "max_lease_time",
    ),
    ("models a string", lambda: HOOK().create_session(models="https://x/a.arrAsset"), "models"),
    # ids
    ("get id ''", lambda: HOOK().get_session(""), "session_id"),
    ("get id 'a/b'", lambda: HOOK().get_session("a/b"), "session_id"),
    ("get id of 300 characters", lambda: HOOK().get_session("x" * 300), "session_id"),
    ("get id None", lambda: HOOK().get_session(None), "session_id"),  # type: ignore[arg-type]
    ("stop id 'a/b'", lambda: HOOK().stop_session("a/b"), "session_id"),
    ("v1 create with a chosen id", lambda: HOOK().create_session(session_id="mine"), "session_id"),
    (
        "operator session_id rendered 'a/b'",
        rendered(create_op(session_id="{{ x }}"), session_id="a/b"),
        "session_id",
    ),
    (
        "stop operator id of 300 characters",
        rendered(ArrStopSessionOperator(task_id="stop", session_id="{{ x }}"), session_id="x" * 300),
        "session_id",
    ),
    (
        "extend operator id ''",
        rendered(
            ArrExtendSessionOperator(task_id="e", session_id="{{ x }}", extend_by="0:10:00"), session_id=""
        ),
        "session_id",
    ),
    (
        "sensor id 'a/b'",
        rendered(ArrSessionReadySensor(task_id="w", session_id="{{ x }}"), session_id="a/b"),
        "session_id",
    ),
    # max_lease_time / extend_by: exactly one
    (
        "extend with both",
        lambda: ArrExtendSessionOperator(
            task_id="e", session_id="s", max_lease_time="2:0:0", extend_by="0:30:0"
        ),
        "exactly one of max_lease_time",
    ),
    ("extend with neither", lambda: ArrExtendSessionOperator(task_id="e", session_id="s"), "exactly one of"),
    (
        "extend_by '1:60:00'",
        lambda: ArrExtendSessionOperator(task_id="e", session_id="s", extend_by="1:60:00"),
        "extend_by",
    ),
    # poll intervals under 5 s
    (
        "sensor poll_interval 3",
        lambda: ArrSessionReadySensor(task_id="w", session_id="s", poll_interval=3),
        "poll_interval",
    ),
    (
        "sensor poll_interval 4.9",
        lambda: ArrSessionReadySensor(task_id="w", session_id="s", poll_interval=4.9),
        "poll_interval",
    ),
    (
        "sensor poll_interval 'abc'",
        lambda: ArrSessionReadySensor(task_id="w", session_id="s", poll_interval="abc"),
        "poll_interval",
    ),
    (
        "sensor poll_interval rendered '2'",
        rendered(
            ArrSessionReadySensor(task_id="w", session_id="s", poll_interval="{{ x }}"), poll_interval="2"
        ),
        "poll_interval",
    ),
    ("create poll_interval 1", lambda: create_op(poll_interval=1), "poll_interval"),
]

CONNECTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("no account id", {"login": None}, "login"),
    ("blank account id", {"login": "  "}, "login"),
    ("no account key", {"password": None}, "password"),
    ("no endpoint, no region", {"host": None}, "no service endpoint"),
    ("a region that is not ARR's", {"host": None, "extra": {"region": "marsnorth"}}, "region"),
    ("an endpoint that is not a URL", {"host": "ftp://remoterendering.example"}, "host"),
    (
        "a bare region as account domain",
        {"extra": {"sts_endpoint": None, "account_domain": "westus2"}},
        "account_domain",
    ),
    ("an unknown api_version", {"extra": {"api_version": "2099-01-01"}}, "api_version"),
    ("a timeout that is not a number", {"extra": {"timeout": "soon"}}, "timeout"),
    ("retry_limit 0", {"extra": {"retry_limit": 0}}, "retry_limit"),
    ("an sts_endpoint that is not a URL", {"extra": {"sts_endpoint": "sts.example"}}, "sts_endpoint"),
]


@pytest.mark.parametrize(("what", "call", "field"), INPUTS, ids=[row[0] for row in INPUTS])
def test_bad_argument(
    what: str, call: Callable[[], Any], field: str, stub: StubService, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, stub.url)
    exc = raised(call)
    assert_clear(exc, field)
    assert isinstance(exc, ArrInputError)
    assert stub.calls == 0  # refused before any request


@pytest.mark.parametrize(("what", "fields", "needle"), CONNECTIONS, ids=[row[0] for row in CONNECTIONS])
def test_bad_connection(
    what: str, fields: dict[str, Any], needle: str, stub: StubService, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, stub.url, **fields)
    exc = raised(lambda: ArrHook().list_sessions())
    assert_clear(exc, needle, "arr_default")  # names the field and the connection
    assert isinstance(exc, ArrInputError)
    assert stub.calls == 0


def test_the_table_is_big_enough() -> None:
    assert len(INPUTS) + len(CONNECTIONS) + len(ANSWERS) >= 30


# ------------------------------------------------------------------------------------------------
# Malformed service answers: (what, dialect, operation, answer, what the error must say)

HTML = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
V1_OK = {"sessionId": "s-1", "sessionStatus": "Ready", "sessionSize": "Standard"}
V2_OK = {"id": "s-1", "status": "Ready", "size": "Standard"}


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()


ANSWERS: list[tuple[str, str, str, Answer, tuple[str, ...]]] = [
    ("HTML error page", "v1", "get", Answer(502, HTML, "text/html"), ("502", "Bad Gateway")),
    ("HTML page with 200", "v1", "get", Answer(200, HTML, "text/html"), ("not JSON", "Bad Gateway")),
    ("empty body", "v1", "get", Answer(200, b""), ("body is empty",)),
    ("non-JSON 200", "v1", "get", Answer(200, b"OK", "text/plain"), ("not JSON", "body='OK'")),
    ("truncated JSON", "v1", "get", Answer(200, b'{"sessionId": "s-1", "sessionSta'), ("not JSON",)),
    ("a JSON list", "v1", "get", Answer(200, b"[]"), ("JSON object was expected",)),
    (
        "missing sessionStatus",
        "v1",
        "get",
        Answer(200, _json({"sessionId": "s-1", "sessionSize": "Standard"})),
        ("'sessionStatus' is missing",),
    ),
    (
        "unknown status value",
        "v1",
        "get",
        Answer(200, _json({**V1_OK, "sessionStatus": "Hibernating"})),
        ("'sessionStatus'", "'Hibernating'"),
    ),
    (
        "status not a string",
        "v1",
        "get",
        Answer(200, _json({**V1_OK, "sessionStatus": 3})),
        ("'sessionStatus'",),
    ),
    (
        "lease not a timespan",
        "v1",
        "get",
        Answer(200, _json({**V1_OK, "sessionMaxLeaseTime": "soon"})),
        ("'sessionMaxLeaseTime'", "'soon'"),
    ),
    ("list without sessions", "v1", "list", Answer(200, _json({"items": []})), ("'sessions'",)),
    ("list of strings", "v1", "list", Answer(200, _json({"sessions": ["s-1"]})), ("JSON object",)),
    ("HTML 404 page", "v1", "get", Answer(404, b"<html>Not Found</html>", "text/html"), ("404", "Not Found")),
    (
        "2021 unknown status",
        "2021-01-01",
        "get",
        Answer(200, _json({**V2_OK, "status": "Paused"})),
        ("'Paused'",),
    ),
    ("2021 missing status", "2021-01-01", "get", Answer(200, _json({"id": "s-1"})), ("'status' is missing",)),
    (
        "2021 error not an object",
        "2021-01-01",
        "get",
        Answer(200, _json({**V2_OK, "error": "boom"})),
        ("'error'",),
    ),
    (
        "2021 bad creationTime",
        "2021-01-01",
        "get",
        Answer(200, _json({**V2_OK, "creationTime": "yesterday"})),
        ("'creationTime'",),
    ),
    (
        "2021 port not a number",
        "2021-01-01",
        "get",
        Answer(200, _json({**V2_OK, "handshakePort": "x"})),
        ("'handshakePort'",),
    ),
    (
        "2021 @nextLink not a string",
        "2021-01-01",
        "list",
        Answer(200, _json({"sessions": [], "@nextLink": 5})),
        ("'@nextLink'",),
    ),
    ("2021 create answered HTML", "2021-01-01", "create", Answer(201, HTML, "text/html"), ("not JSON",)),
]


def call_for(operation: str) -> Callable[[ArrHook], Any]:
    return {
        "get": lambda hook: hook.get_session("s-1"),
        "list": lambda hook: hook.list_sessions(),
        "create": lambda hook: hook.create_session(session_id="s-1"),
    }[operation]


@pytest.mark.parametrize(
    ("what", "api_version", "operation", "answer", "needles"), ANSWERS, ids=[row[0] for row in ANSWERS]
)
def test_malformed_answer(
    *,
    what: str,
    api_version: str,
    operation: str,
    answer: Answer,
    needles: tuple[str, ...],
    stub: StubService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    connect(monkeypatch, stub.url, api_version=api_version)
    stub.answer = answer
    exc = raised(lambda: call_for(operation)(ArrHook()))
    # The status, the MS-CV of the very answer, and the service's words.
    assert_clear(exc, f"status={answer.status}", f"MS-CV=stub-cv-{stub.calls}.0", *needles)
    assert isinstance(exc, (ArrUnexpectedResponseError, ArrServiceError)) or answer.status == 404
    assert isinstance(exc, ArrError)
    assert exc.ms_cv == f"stub-cv-{stub.calls}.0" and exc.http_status == answer.status


@pytest.mark.parametrize("what", ["HTML page with 200", "unknown status value", "2021 unknown status"])
async def test_malformed_answer_in_the_trigger(
    what: str, stub: StubService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trigger (httpx) reads answers with the same code: an error event that says the same."""
    from airflow_provider_arr.triggers.session import ArrSessionReadyTrigger

    (row,) = [r for r in ANSWERS if r[0] == what]
    _, api_version, _, answer, needles = row
    connect(monkeypatch, stub.url, api_version=api_version)
    stub.answer = answer
    trigger = ArrSessionReadyTrigger(session_id="s-1", poll_interval=5)
    events = [event.payload async for event in trigger.run()]
    assert [e["status"] for e in events] == ["error"]
    for needle in (f"status={answer.status}", "MS-CV=stub-cv-", *needles):
        assert needle in events[0]["message"]


def test_v1_create_accepted_with_an_unreadable_answer_may_exist(
    stub: StubService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 202 whose id cannot be read means a session exists that nobody knows: not a mere parse
    error, but the "may exist" error that makes the create operator look for it."""
    connect(monkeypatch, stub.url)
    stub.answer = Answer(202, _json({"id": "s-1"}))  # the 2021 field name, not v1's sessionId
    exc = raised(lambda: ArrHook().create_session())
    assert_clear(exc, "may exist", "'sessionId' is missing", "status=202")
    assert isinstance(exc, ArrSessionMayExistError)
