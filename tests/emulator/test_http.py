"""HTTP-level contract: MS-CV everywhere, the error shape for any bad input, the OpenAPI schema."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_arr.emulator import EmulatorServer, create_app
from airflow_provider_arr.emulator.gate import Gate

from .conftest import Arr, assert_error


def test_every_kind_of_answer_carries_an_ms_cv(arr: Arr) -> None:
    session_id = arr.v1_create()
    arr.v2_create("s1")
    answers = [
        arr.v1("GET"),
        arr.v1("GET", f"/{session_id}/properties"),
        arr.v1("PATCH", f"/{session_id}", json={"maxLeaseTime": "2:0:0"}),
        arr.v2("PUT", "/s2", json={"maxLeaseTimeMinutes": 60, "size": "Standard"}),
        arr.v2("PUT", "/s1", json={"maxLeaseTimeMinutes": 60, "size": "Standard"}),
        arr.v2("PUT", "/s1", json={"maxLeaseTimeMinutes": 99, "size": "Standard"}),
        arr.v2("PATCH", "/s1", json={"maxLeaseTimeMinutes": 1}),
        arr.v2("POST", "/s1/:stop"),
        arr.v1("DELETE", f"/{session_id}"),
        arr.v1("GET", auth=False),
        arr.v1("GET", "/nope/properties"),
        arr.v1("POST", "/create", data=b"{"),
        arr.request("GET", "/nowhere"),
        arr.request("GET", "/openapi.json"),
        arr.http.get(f"{arr.url}/accounts/{arr.account}/token", timeout=10),
    ]
    cvs = [answer.headers.get("MS-CV") for answer in answers]
    assert all(cvs), [(a.status_code, a.request.url) for a in answers if not a.headers.get("MS-CV")]
    assert len(set(cvs)) == len(cvs)
    assert all(cv.endswith(".0") and len(cv) == 24 for cv in cvs if cv)
    assert {a.status_code for a in answers} >= {200, 201, 204, 400, 401, 404, 409, 422}


def test_unknown_routes_and_methods_use_the_error_shape(arr: Arr) -> None:
    assert_error(arr.request("GET", "/nowhere"), 404, "NotFound")
    assert_error(arr.request("GET", f"/v1/accounts/{arr.account}/sessions/"), 404)
    answer = arr.v1("GET", "/some-id")  # only PATCH and DELETE exist there
    assert_error(answer, 405, "MethodNotAllowed")
    assert "PATCH" in answer.headers["Allow"]
    assert_error(arr.v2("DELETE", "/s1"), 405)
    # "create" is no session id: only the create route's method is advertised there.
    assert arr.v1("GET", "/create").headers["Allow"] == "POST"
    assert arr.v2("DELETE", "/s1").headers["Allow"] == "GET, PATCH, PUT"


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("application/json", b"not json"),
        ("application/json", b'{"maxLeaseTimeMinutes": 60, "size": "Standard"'),
        ("text/plain", b"hello"),
        ("application/json", b"null"),
        ("application/json", b'"text"'),
        ("application/json", b'{"maxLeaseTimeMinutes": 1e999, "size": "Standard"}'),
        ("application/json", b'{"maxLeaseTimeMinutes": ' + b"9" * 5000 + b', "size": "Standard"}'),
        ("application/json", b'{"maxLeaseTimeMinutes": NaN, "size": "Standard"}'),
    ],
)
def test_bad_bodies_never_get_fastapi_shapes_or_5xx(arr: Arr, content_type: str, raw: bytes) -> None:
    answer = arr.v2("PUT", "/s1", data=raw, headers={"Content-Type": content_type})
    assert_error(answer, 400, "BadRequest")
    assert "detail" not in answer.json()


def test_oversized_bodies_are_413(arr: Arr) -> None:
    big = {"maxLeaseTime": "1:0:0", "size": "standard", "models": ["x" * 70_000]}
    assert_error(arr.v1("POST", "/create", json=big), 413, "PayloadTooLarge")

    def chunks() -> Iterator[bytes]:
        yield b'{"maxLeaseTime": "1:0:0", "size": "standard", "models": ["'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"]}'

    answer = arr.v1("POST", "/create", data=chunks(), headers={"Content-Type": "application/json"})
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert_error(answer, 413)
    assert arr.admin.request("GET", "/state").json()["sessions"] == []


def test_head_is_not_served(arr: Arr) -> None:
    for auth in (False, True):
        answer = arr.v1("HEAD", auth=auth)
        assert answer.status_code == 405 and answer.headers["MS-CV"]


def test_openapi_schema_documents_the_arr_api(arr: Arr) -> None:
    answer = arr.request("GET", "/openapi.json", auth=False)
    assert answer.status_code == 200
    schema = answer.json()
    paths = schema["paths"]
    assert set(paths) == {
        "/accounts/{account_id}/token",
        "/v1/accounts/{account_id}/sessions/create",
        "/v1/accounts/{account_id}/sessions",
        "/v1/accounts/{account_id}/sessions/{session_id}/properties",
        "/v1/accounts/{account_id}/sessions/{session_id}",
        "/accounts/{account_id}/sessions/{session_id}",
        "/accounts/{account_id}/sessions/{session_id}/:stop",
        "/accounts/{account_id}/sessions",
    }
    create = paths["/accounts/{account_id}/sessions/{session_id}"]["put"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["maxLeaseTimeMinutes", "size"]
    assert body["properties"]["maxLeaseTimeMinutes"] == {
        **body["properties"]["maxLeaseTimeMinutes"],
        "minimum": 1,
        "maximum": 1440,
    }
    assert {"200", "201", "400", "401", "409", "429"} <= set(create["responses"])
    assert create["responses"]["201"]["headers"]["MS-CV"]["required"] is True
    api_version = next(p for p in create["parameters"] if p["name"] == "api-version")
    assert api_version["required"] and api_version["schema"]["enum"] == ["2021-01-01"]
    v1_create = paths["/v1/accounts/{account_id}/sessions/create"]["post"]
    assert "maxLeaseTime" in v1_create["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "HTTPValidationError" not in answer.text and "_emulator" not in answer.text
    assert schema["components"]["securitySchemes"]["MrcBearerAuth"]["scheme"] == "bearer"


def test_an_unexpected_error_is_a_500_in_the_service_shape(arr: Arr, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode() -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(arr.server.state, "snapshot", explode)
    assert_error(arr.admin.request("GET", "/state"), 500, "InternalServerError")


def test_drop_without_uvicorn_leaves_the_answer_incomplete() -> None:
    """Under a server whose ``send`` holds no transport, the gate announces a body it never sends."""
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    gate = Gate(create_app(), create_app().emulator)
    asyncio.run(gate._drop(send, send))
    assert len(sent) == 1 and sent[0]["type"] == "http.response.start"
    assert (b"content-length", b"64") in sent[0]["headers"]


def test_session_ids_with_encoded_slashes_do_not_reach_the_routes(arr: Arr, emulator: EmulatorServer) -> None:
    assert_error(arr.v1("GET", "/a%2Fb/properties"), 404)
    assert arr.admin.counts()["get"] == 0
