"""The sans-IO protocol driven with canned answers: no server, no socket, no sleep."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_arr.client.config import ClientConfig
from airflow_provider_arr.client.dialects import API_2021, API_V1
from airflow_provider_arr.client.errors import error_for, parse_retry_after
from airflow_provider_arr.client.messages import ApiRequest, ApiResponse, Exchange
from airflow_provider_arr.client.protocol import ArrProtocol
from airflow_provider_arr.client.retry import is_retryable
from airflow_provider_arr.client.transport import Finished, first_step, next_step
from airflow_provider_arr.exceptions import (
    ArrAuthError,
    ArrBadRequestError,
    ArrConflictError,
    ArrConnectionError,
    ArrError,
    ArrNotFoundError,
    ArrServiceError,
    ArrSessionMayExistError,
    ArrThrottledError,
    ArrUnexpectedResponseError,
)
from airflow_provider_arr.models import SessionStatus

KEY = "THE-ACCOUNT-KEY"
ENDPOINT = "https://arr.example"
TOKEN = "header.eyJleHAiOiA0MTAyNDQ0ODAwfQ.sig"  # exp in 2100


def protocol(api_version: str = API_V1) -> ArrProtocol:
    config = ClientConfig(
        account_id="acct", account_key=KEY, endpoint=ENDPOINT, sts_endpoint="https://sts.example",
        api_version=api_version,
    )  # fmt: skip
    return ArrProtocol(config)


def answer(status: int, body: Any = None, **headers: str) -> ApiResponse:
    raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    return ApiResponse.of(status, [("MS-CV", "cv-1"), *headers.items()], raw)


def token_answer() -> ApiResponse:
    return answer(200, {"AccessToken": TOKEN})


def drive(exchange: Exchange[Any], *answers: ApiResponse | ArrError) -> tuple[Any, list[ApiRequest]]:
    """Feed ``answers`` one per request; return the result and the requests the protocol made."""
    sent: list[ApiRequest] = []
    queue = list(answers)
    step = first_step(exchange)
    while not isinstance(step, Finished):
        sent.append(step)
        assert queue, f"the protocol sent {step.label} but no answer was left"
        step = next_step(exchange, queue.pop(0))
    assert not queue, f"{len(queue)} canned answers were not asked for"
    return step.value, sent


V1_SESSION = {
    "sessionId": "s-1",
    "sessionStatus": "Ready",
    "sessionHostname": "h.example",
    "sessionSize": "Standard",
    "sessionMaxLeaseTime": "01:00:00",
    "sessionElapsedTime": "00:05:00",
    "message": None,
}
V2021_SESSION = {
    "id": "s-1",
    "status": "Starting",
    "size": "Premium",
    "maxLeaseTimeMinutes": 90,
    "elapsedTimeMinutes": 2,
    "creationTime": "2026-12-02T10:00:00Z",
    "error": None,
}


# -- auth --------------------------------------------------------------------------------------


def test_first_call_fetches_a_token_with_the_key_then_sends_the_token() -> None:
    proto = protocol()
    session, sent = drive(proto.get_session("s-1"), token_answer(), answer(200, V1_SESSION))
    token_call, get_call = sent
    assert token_call.operation == "token" and token_call.url == "https://sts.example/accounts/acct/token"
    assert proto.headers(token_call)["Authorization"] == f"Bearer acct:{KEY}"
    assert proto.headers(get_call)["Authorization"] == f"Bearer {TOKEN}"
    assert KEY not in repr(token_call) and KEY not in repr(get_call)
    assert session.status is SessionStatus.READY and session.hostname == "h.example"


def test_cached_token_is_reused() -> None:
    proto = protocol()
    drive(proto.get_session("s-1"), token_answer(), answer(200, V1_SESSION))
    _, sent = drive(proto.get_session("s-1"), answer(200, V1_SESSION))
    assert [r.operation for r in sent] == ["get"]
    assert proto.tokens.fetched == 1


def test_401_refreshes_the_token_once_and_resends() -> None:
    proto = protocol()
    drive(proto.list_sessions(), token_answer(), answer(200, {"sessions": []}))
    _, sent = drive(proto.list_sessions(), answer(401), token_answer(), answer(200, {"sessions": []}))
    assert [r.operation for r in sent] == ["list", "token", "list"]
    assert proto.tokens.fetched == 2


def test_a_second_401_is_an_auth_error() -> None:
    with pytest.raises(ArrAuthError, match="answered 401"):
        drive(protocol().list_sessions(), token_answer(), answer(401), token_answer(), answer(401))


def test_sts_refusing_the_key_names_the_account() -> None:
    with pytest.raises(ArrAuthError, match="refused the key of account 'acct'"):
        drive(protocol().list_sessions(), answer(401))


def test_sts_answer_without_a_token_is_unexpected() -> None:
    with pytest.raises(ArrUnexpectedResponseError, match="'AccessToken' is missing"):
        drive(protocol().list_sessions(), answer(200, {"token": "x"}))


def test_on_secret_learns_each_token() -> None:
    learnt: list[str] = []
    proto = ArrProtocol(protocol().config, on_secret=learnt.append)
    drive(proto.list_sessions(), token_answer(), answer(200, {"sessions": []}))
    assert learnt == [TOKEN]


# -- retry decisions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retry_safe", "expected"),
    [
        (ArrThrottledError("429"), False, True),  # a 429 was not processed: even a v1 create
        (ArrServiceError("503"), True, True),
        (ArrServiceError("503"), False, False),  # a v1 create may have been processed
        (ArrConnectionError("reset", request_sent=True), True, True),
        (ArrConnectionError("reset", request_sent=True), False, False),
        (ArrConnectionError("refused", request_sent=False), False, True),  # never reached it
        (ArrConnectionError("dns", request_sent=False, permanent=True), True, False),  # no retry helps
        (ArrBadRequestError("400"), True, False),
        (ArrNotFoundError("404"), True, False),
        (ArrAuthError("403"), True, False),
    ],
)
def test_retry_decisions(error: ArrError, retry_safe: bool, expected: bool) -> None:
    request = ApiRequest("x", "GET", ENDPOINT, retry_safe=retry_safe)
    assert is_retryable(error, request) is expected


def test_only_v1_create_is_unsafe_to_repeat() -> None:
    v1, v2021 = protocol(API_V1).dialect, protocol(API_2021).dialect
    lease = timedelta(hours=1)
    assert not v1.create(session_id=None, size="standard", lease=lease, models=[]).retry_safe
    assert v2021.create(session_id="a", size="standard", lease=lease, models=[]).retry_safe
    assert all(r.retry_safe for r in (v1.get("a"), v1.stop("a"), v1.update("a", lease), v1.list_request()))


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ArrBadRequestError),
        (401, ArrAuthError),
        (403, ArrAuthError),
        (404, ArrNotFoundError),
        (409, ArrConflictError),
        (429, ArrThrottledError),
        (503, ArrServiceError),
    ],
)
def test_error_mapping_quotes_status_message_and_ms_cv(status: int, kind: type[ArrError]) -> None:
    request = ApiRequest("get", "GET", f"{ENDPOINT}/v1/accounts/acct/sessions/s-1", session_id="s-1")
    error = error_for(request, answer(status, {"error": {"code": "Code", "message": "said so"}}))
    assert isinstance(error, kind)
    text = str(error)
    assert f"answered {status}: Code: said so" in text and "MS-CV=cv-1" in text and "session_id=s-1" in text


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    request = ApiRequest("get", "GET", ENDPOINT)
    throttled = error_for(request, answer(429, None, **{"Retry-After": "3"}))
    assert isinstance(throttled, ArrThrottledError) and throttled.retry_after == 3.0


# -- the two dialects ---------------------------------------------------------------------------


def test_v1_create_posts_and_reads_the_id() -> None:
    result, sent = drive(
        protocol(API_V1).create_session(
            session_id=None, size="standard", lease=timedelta(hours=4), models=["https://m/a.arrAsset"]
        ),
        token_answer(),
        answer(202, {"sessionId": "new-1"}),
    )
    create = sent[1]
    assert (create.method, create.path) == ("POST", "/v1/accounts/acct/sessions/create")
    assert create.json == {"maxLeaseTime": "04:00:00", "models": ["https://m/a.arrAsset"], "size": "standard"}
    assert result.session_id == "new-1" and not result.reattached and result.session is None


def test_2021_create_puts_the_chosen_id_and_tells_a_reattach() -> None:
    proto = protocol(API_2021)
    args = {"session_id": "s-1", "size": "premium", "lease": timedelta(minutes=90), "models": []}
    created, sent = drive(proto.create_session(**args), token_answer(), answer(201, V2021_SESSION))
    put = sent[1]
    assert (put.method, put.path, dict(put.params or {})) == (
        "PUT",
        "/accounts/acct/sessions/s-1",
        {"api-version": "2021-01-01"},
    )
    assert put.json == {"maxLeaseTimeMinutes": 90, "size": "Premium"}
    assert not created.reattached and created.session is not None
    assert created.session.max_lease_time == timedelta(minutes=90) and created.session.size == "premium"
    again, _ = drive(proto.create_session(**args), answer(200, V2021_SESSION))
    assert again.reattached


def v1_create() -> Exchange[Any]:
    return protocol(API_V1).create_session(
        session_id=None, size="standard", lease=timedelta(hours=1), models=[]
    )


def test_v1_create_5xx_is_not_repeated_and_names_the_candidates() -> None:
    listed = {"sessions": [{**V1_SESSION, "sessionStatus": "starting", "sessionId": "maybe-mine"}]}
    with pytest.raises(ArrSessionMayExistError) as info:
        drive(
            protocol(API_V1).create_session(
                session_id=None, size="standard", lease=timedelta(hours=1), models=[]
            ),
            token_answer(),
            ArrServiceError("503", http_status=503, operation="create"),
            answer(200, listed),
        )
    assert info.value.candidates == ("maybe-mine",)


@pytest.mark.parametrize(
    "failure",
    [
        ArrServiceError("503 from the token service", http_status=503, operation="token"),
        ArrConnectionError("TLS", request_sent=False, permanent=True, operation="token"),
    ],
)
def test_v1_create_whose_token_failed_was_never_sent_and_lists_nothing(failure: ArrError) -> None:
    with pytest.raises(type(failure)) as info:
        drive(v1_create(), failure)  # the only request: no create, no list
    assert not isinstance(info.value, ArrSessionMayExistError)


def test_v1_create_never_sent_is_an_ordinary_error() -> None:
    with pytest.raises(ArrConnectionError):
        drive(
            protocol(API_V1).create_session(
                session_id=None, size="standard", lease=timedelta(hours=1), models=[]
            ),
            token_answer(),
            ArrConnectionError("refused", request_sent=False, operation="create"),
        )


def test_2021_list_follows_next_link_on_the_same_host_only() -> None:
    proto = protocol(API_2021)
    page1 = {"sessions": [V2021_SESSION], "@nextLink": f"{ENDPOINT}/accounts/acct/sessions?page=2"}
    page2 = {"sessions": [{**V2021_SESSION, "id": "s-2"}]}
    sessions, sent = drive(proto.list_sessions(), token_answer(), answer(200, page1), answer(200, page2))
    assert [s.session_id for s in sessions] == ["s-1", "s-2"]
    assert sent[2].url.endswith("?page=2") and sent[2].params == {"api-version": "2021-01-01"}
    elsewhere = {"sessions": [], "@nextLink": "https://evil.example/accounts/acct/sessions"}
    with pytest.raises(ArrUnexpectedResponseError, match="another host"):
        drive(proto.list_sessions(), answer(200, elsewhere))


def test_2021_error_object_carries_the_service_message() -> None:
    failed = {**V2021_SESSION, "status": "Error", "error": {"code": "Capacity", "message": "no GPU"}}
    session, _ = drive(protocol(API_2021).get_session("s-1"), token_answer(), answer(200, failed))
    assert session.status is SessionStatus.ERROR and session.message == "no GPU"
    assert session.error_code == "Capacity"


def test_lease_updates_are_totals_in_each_dialect() -> None:
    lease = timedelta(hours=2)
    assert protocol(API_V1).dialect.update("s", lease).json == {"maxLeaseTime": "02:00:00"}
    assert protocol(API_2021).dialect.update("s", lease).json == {"maxLeaseTimeMinutes": 120}


# -- malformed answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>", "not JSON"),
        (b"", "empty"),
        ([1, 2], "JSON object was expected, got list"),
        ({**V1_SESSION, "sessionStatus": "Sleeping"}, "unknown status 'Sleeping'"),
        ({**V1_SESSION, "sessionStatus": None}, "'sessionStatus' is missing"),
        ({**V1_SESSION, "sessionHostname": 7}, "'sessionHostname' should be a string"),
        ({**V1_SESSION, "sessionMaxLeaseTime": "forever"}, "not a timespan"),
    ],
)
def test_malformed_v1_session_is_unexpected_and_quoted(body: Any, why: str) -> None:
    with pytest.raises(ArrUnexpectedResponseError, match=why) as info:
        drive(protocol().get_session("s-1"), token_answer(), answer(200, body))
    assert info.value.http_status == 200 and info.value.ms_cv == "cv-1"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"sessions": "none"}, "'sessions' should be a list"),
        ({"sessions": ["s-1"]}, "a session should be a JSON object"),
        ({"sessions": [], "@nextLink": 5}, "'@nextLink' should be a string"),
    ],
)
def test_malformed_list_is_unexpected(body: Any, why: str) -> None:
    with pytest.raises(ArrUnexpectedResponseError, match=why):
        drive(protocol(API_2021).list_sessions(), token_answer(), answer(200, body))


def test_malformed_2021_fields() -> None:
    with pytest.raises(ArrUnexpectedResponseError, match="'maxLeaseTimeMinutes' should be a number"):
        drive(
            protocol(API_2021).get_session("s-1"),
            token_answer(),
            answer(200, {**V2021_SESSION, "maxLeaseTimeMinutes": "90"}),
        )
    with pytest.raises(ArrUnexpectedResponseError, match="'error' should be an object"):
        drive(
            protocol(API_2021).get_session("s-1"), token_answer(), answer(200, {**V2021_SESSION, "error": 3})
        )


# -- stop ---------------------------------------------------------------------------------------


def test_ensure_stopped_is_idempotent() -> None:
    proto = protocol()
    said, _ = drive(proto.ensure_stopped("s-1"), token_answer(), answer(204))
    assert said == "session s-1 stop requested"
    said, _ = drive(proto.ensure_stopped("s-1"), ArrNotFoundError("404"))
    assert "unknown to the service" in said
    stopped = {**V1_SESSION, "sessionStatus": "Stopped"}
    said, sent = drive(proto.ensure_stopped("s-1"), ArrConflictError("409"), answer(200, stopped))
    assert said == "session s-1 is already stopped: nothing to stop" and sent[-1].operation == "get"
    with pytest.raises(ArrConflictError):
        drive(proto.ensure_stopped("s-1"), ArrConflictError("409"), answer(200, V1_SESSION))
