"""The FastAPI app: STS, both session dialects, and the ``/_emulator`` admin API.

Routes build plain dicts and return :class:`~starlette.responses.Response` objects directly; the
pydantic models of :mod:`.schemas` only document the API. Every error, including FastAPI's own
validation errors and unknown routes, is answered in the service's shape.
"""

from __future__ import annotations

import hmac
from enum import Enum
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp

from . import schemas
from .config import EmulatorConfig
from .dialects import (
    API_VERSION,
    MAX_BODY_BYTES,
    SESSION_ID_PATTERN,
    api_version_error,
    check_api_version,
    check_session_id,
    lease_minutes,
    parse_json_object,
    parse_size,
    session_2021,
    update_minutes,
    v1_create_settings,
    v1_lease,
    v1_properties,
)
from .errors import ApiError, bad_request, error_payload, json_response, unauthorized
from .gate import Gate
from .state import ACTIVE, DIALECT_2021, DIALECT_V1, STOPPING, EmulatorState

_V1_LISTED = frozenset({*ACTIVE, STOPPING})
_DESCRIPTION = """\
The Azure Remote Rendering session API as the bundled emulator serves it: the Secure Token
Service, the v1 dialect (`/v1/accounts/...`) and the 2021-01-01 dialect (`/accounts/...`,
`?api-version=2021-01-01`). Every answer carries an `MS-CV` header; every error is
`{"error": {"code": ..., "message": ...}}`.
"""

AccountId = Annotated[str, Path(description="The Remote Rendering account id (a GUID).")]
SessionId = Annotated[
    str,
    Path(
        description="Client-chosen id: letters, digits, '-' and '_', at most 256 characters.",
        max_length=256,
        pattern=SESSION_ID_PATTERN,
    ),
]
V1SessionId = Annotated[str, Path(description="The id the create call answered.")]
ApiVersion = Annotated[
    str,
    Query(alias="api-version", description="Must be 2021-01-01.", json_schema_extra={"enum": [API_VERSION]}),
]
_BEARER: dict[str, Any] = {"security": [{"MrcBearerAuth": []}]}


class EmulatorApp(FastAPI):
    """A FastAPI app with the :class:`~.gate.Gate` outside its whole middleware stack."""

    emulator: EmulatorState

    def build_middleware_stack(self) -> ASGIApp:
        """Starlette's stack, wrapped in the gate."""
        return Gate(super().build_middleware_stack(), self.emulator)


async def _body(request: Request) -> bytes:
    """The request body, refusing to buffer more than the limit (for bodies without a length)."""
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > MAX_BODY_BYTES:
            raise ApiError(413, f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    return bytes(chunks)


async def _json(request: Request) -> dict[str, Any]:
    return parse_json_object(await _body(request))


def create_app(config: EmulatorConfig | None = None, *, state: EmulatorState | None = None) -> EmulatorApp:
    """Build the emulator's ASGI app.

    :param config: the knobs (defaults if omitted).
    :param state: an existing state to serve (``config`` is then ignored); the app's state is
        ``app.emulator`` either way.
    """
    state = state if state is not None else EmulatorState(config or EmulatorConfig())
    app = EmulatorApp(
        title="Azure Remote Rendering session API (emulator)",
        version=API_VERSION,
        description=_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
    )
    app.emulator = state
    _install_error_handlers(app)
    _add_sts_routes(app, state)
    _add_v1_routes(app, state)
    _add_2021_routes(app, state)
    _add_admin_routes(app, state)
    _install_openapi(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for error in exc.errors():
            location = tuple(error.get("loc", ()))
            missing = api_version_error(None)
            if location == ("query", "api-version") and missing is not None:
                return missing.response()
            problems.append(f"{'.'.join(map(str, location))}: {error.get('msg', 'invalid')}")
        return bad_request("Invalid request: " + "; ".join(problems)).response()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route matching the path only.
            headers["Allow"] = ", ".join(_allowed_methods(app, request))
        return json_response(exc.status_code, error_payload(exc.status_code, message), headers)

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        # Starlette answers with this, then re-raises for the gate to log.
        return json_response(500, error_payload(500, "Unexpected error in the emulator."))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Exception, unexpected_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods of the most specific routes matching the path (``.../sessions/create`` is not a
    session id)."""
    matching = [
        route
        for route in app.router.routes
        if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE
    ]
    fewest = min((route.path.count("{") for route in matching), default=0)
    return sorted({m for route in matching if route.path.count("{") == fewest for m in route.methods})


def _add_sts_routes(app: FastAPI, state: EmulatorState) -> None:
    async def get_token(request: Request, account_id: AccountId) -> Response:
        """Exchange ``Authorization: Bearer {accountId}:{accountKey}`` for an access token."""
        config = state.config
        scheme, _, credentials = (request.headers.get("authorization") or "").partition(" ")
        expected = f"{config.account_id}:{config.account_key}".encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credentials.strip().encode("latin-1"), expected
        ):
            raise unauthorized("Invalid or missing account credentials.")
        if account_id != config.account_id:
            raise unauthorized(f"Unknown account '{account_id}'.")
        return json_response(200, {"AccessToken": state.tokens.issue(account_id, config.token_ttl)})

    # The SDK's STS client asks for a capital A; only the documented spelling is in the schema.
    for path, documented in (("/accounts/{account_id}/token", True), ("/Accounts/{account_id}/token", False)):
        app.add_api_route(
            path,
            get_token,
            methods=["GET"],
            operation_id="GetToken" if documented else "GetTokenCapitalA",
            include_in_schema=documented,
            tags=["Secure Token Service"],
            response_class=Response,
            responses=schemas.responses({200: (schemas.TokenResponse, "An access token.")}, ()),
            openapi_extra={"security": [{"AccountKeyAuth": []}]},
        )


def _add_v1_routes(app: FastAPI, state: EmulatorState) -> None:
    base = "/v1/accounts/{account_id}/sessions"
    tags: list[str | Enum] = ["v1"]

    @app.post(
        f"{base}/create",
        status_code=202,
        tags=tags,
        operation_id="V1CreateSession",
        response_class=Response,
        responses=schemas.responses(
            {202: (schemas.V1CreateResponse, "Accepted: the session is starting.")}, (400, 404, 413)
        ),
        openapi_extra={**schemas.request_body(schemas.V1CreateRequest), **_BEARER},
    )
    async def v1_create(request: Request, account_id: AccountId) -> Response:
        """Create a session; the service chooses its id."""
        size, lease = v1_create_settings(await _json(request))
        session = state.create(dialect=DIALECT_V1, size=size, lease=lease)
        return json_response(
            202, {"sessionId": session.id}, {"Location": f"accounts/{account_id}/sessions/{session.id}"}
        )

    @app.get(
        base,
        tags=tags,
        operation_id="V1ListSessions",
        response_class=Response,
        responses=schemas.responses({200: (schemas.V1SessionList, "The active sessions.")}, (404,)),
        openapi_extra=_BEARER,
    )
    async def v1_list(account_id: AccountId) -> Response:
        """The sessions starting, ready or stopping."""
        now = state.now()
        sessions = state.listed(account_id, _V1_LISTED)
        return json_response(200, {"sessions": [v1_properties(s, now) for s in sessions]})

    @app.get(
        f"{base}/{{session_id}}/properties",
        tags=tags,
        operation_id="V1GetSessionProperties",
        response_class=Response,
        responses=schemas.responses({200: (schemas.V1SessionProperties, "The session.")}, (404,)),
        openapi_extra=_BEARER,
    )
    async def v1_get(account_id: AccountId, session_id: V1SessionId) -> Response:
        """One session, ended ones included."""
        session = state.find(account_id, session_id)
        return json_response(200, v1_properties(session, state.now()))

    @app.patch(
        f"{base}/{{session_id}}",
        tags=tags,
        operation_id="V1UpdateSession",
        response_class=Response,
        responses=schemas.responses({200: (None, "Updated (empty body).")}, (400, 404, 409, 413)),
        openapi_extra={**schemas.request_body(schemas.V1UpdateRequest), **_BEARER},
    )
    async def v1_update(request: Request, account_id: AccountId, session_id: V1SessionId) -> Response:
        """Set the lease: a total since the session started, not an increment."""
        lease = v1_lease(await _json(request))
        state.update_lease(state.find(account_id, session_id), lease, must_grow=False)
        return Response(status_code=200)

    @app.delete(
        f"{base}/{{session_id}}",
        status_code=204,
        tags=tags,
        operation_id="V1StopSession",
        response_class=Response,
        responses=schemas.responses({204: (None, "Stopping (or already ended).")}, (404,)),
        openapi_extra=_BEARER,
    )
    async def v1_stop(account_id: AccountId, session_id: V1SessionId) -> Response:
        """Stop a session; stopping an ended one is a no-op."""
        state.stop(state.find(account_id, session_id))
        return Response(status_code=204)


def _add_2021_routes(app: FastAPI, state: EmulatorState) -> None:
    base = "/accounts/{account_id}/sessions"
    tags: list[str | Enum] = ["2021-01-01"]

    @app.put(
        f"{base}/{{session_id}}",
        status_code=201,
        tags=tags,
        operation_id="CreateSession",
        response_class=Response,
        responses=schemas.responses(
            {
                200: (schemas.SessionProperties, "The session already existed with these settings."),
                201: (schemas.SessionProperties, "Created."),
            },
            (400, 404, 409, 413),
        ),
        openapi_extra={**schemas.request_body(schemas.CreateSessionSettings), **_BEARER},
    )
    async def create(
        request: Request, account_id: AccountId, session_id: SessionId, api_version: ApiVersion
    ) -> Response:
        """Create a session with a client-chosen id (idempotent)."""
        check_api_version(api_version)
        check_session_id(session_id)
        data = await _json(request)
        minutes, size = lease_minutes(data), parse_size(data)
        with state.lock:
            existing = state.sessions.get(session_id)
            if existing is not None and existing.account_id == account_id:
                if existing.size != size or existing.created_lease != minutes * 60:
                    raise ApiError(
                        409, f"A session with id '{session_id}' already exists with other settings."
                    )
                return json_response(200, session_2021(existing, state.now()))
            session = state.create(
                dialect=DIALECT_2021, size=size, lease=minutes * 60.0, session_id=session_id
            )
        return json_response(201, session_2021(session, state.now()))

    @app.get(
        f"{base}/{{session_id}}",
        tags=tags,
        operation_id="GetSession",
        response_class=Response,
        responses=schemas.responses({200: (schemas.SessionProperties, "The session.")}, (400, 404)),
        openapi_extra=_BEARER,
    )
    async def get(account_id: AccountId, session_id: SessionId, api_version: ApiVersion) -> Response:
        """One session, ended ones included."""
        check_api_version(api_version)
        check_session_id(session_id)
        return json_response(200, session_2021(state.find(account_id, session_id), state.now()))

    @app.patch(
        f"{base}/{{session_id}}",
        tags=tags,
        operation_id="UpdateSession",
        response_class=Response,
        responses=schemas.responses(
            {200: (schemas.SessionProperties, "The updated session.")}, (400, 404, 409, 413, 422)
        ),
        openapi_extra={**schemas.request_body(schemas.UpdateSessionSettings), **_BEARER},
    )
    async def update(
        request: Request, account_id: AccountId, session_id: SessionId, api_version: ApiVersion
    ) -> Response:
        """Raise the lease; it must grow (422 otherwise)."""
        check_api_version(api_version)
        check_session_id(session_id)
        minutes = update_minutes(await _json(request))
        session = state.find(account_id, session_id)
        state.update_lease(session, minutes * 60.0, must_grow=True)
        return json_response(200, session_2021(session, state.now()))

    @app.post(
        f"{base}/{{session_id}}/:stop",
        status_code=204,
        tags=tags,
        operation_id="StopSession",
        response_class=Response,
        responses=schemas.responses({204: (None, "Stopped (or already ended).")}, (400, 404)),
        openapi_extra=_BEARER,
    )
    async def stop(account_id: AccountId, session_id: SessionId, api_version: ApiVersion) -> Response:
        """Stop a session; stopping an ended one is a no-op."""
        check_api_version(api_version)
        check_session_id(session_id)
        state.stop(state.find(account_id, session_id))
        return Response(status_code=204)

    @app.get(
        base,
        tags=tags,
        operation_id="ListSessions",
        response_class=Response,
        responses=schemas.responses(
            {200: (schemas.SessionsList, "One page of running sessions.")}, (400, 404)
        ),
        openapi_extra=_BEARER,
    )
    async def list_sessions(request: Request, account_id: AccountId, api_version: ApiVersion) -> Response:
        """The sessions starting or ready, ``page_size`` at a time; ``@nextLink`` leads on."""
        check_api_version(api_version)
        after = 0
        token = request.query_params.get("continuationToken")
        if token is not None:
            try:
                after = int(token)
            except ValueError:
                raise bad_request("Invalid continuationToken.") from None
        page_size = state.config.page_size
        now = state.now()
        sessions = [s for s in state.listed(account_id, ACTIVE) if s.seq > after]
        body: dict[str, Any] = {"sessions": [session_2021(s, now) for s in sessions[:page_size]]}
        if len(sessions) > page_size:
            body["@nextLink"] = (
                f"{request.base_url}accounts/{account_id}/sessions"
                f"?api-version={API_VERSION}&continuationToken={sessions[page_size - 1].seq}"
            )
        return json_response(200, body)


def _add_admin_routes(app: FastAPI, state: EmulatorState) -> None:
    admin = "/_emulator"

    def route(path: str, method: str) -> Any:
        return app.api_route(f"{admin}{path}", methods=[method], include_in_schema=False)

    @route("/state", "GET")
    async def admin_state() -> Response:
        return json_response(200, state.snapshot())

    @route("/config", "GET")
    async def admin_config() -> Response:
        return json_response(200, state.config.to_dict())

    @route("/config", "POST")
    async def admin_configure(request: Request) -> Response:
        try:
            config = state.configure(await _json(request))
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return json_response(200, config.to_dict())

    @route("/faults", "GET")
    async def admin_faults() -> Response:
        with state.lock:
            return json_response(200, {"faults": state.faults.to_list()})

    @route("/faults", "POST")
    async def admin_add_fault(request: Request) -> Response:
        data = await _json(request)
        try:
            with state.lock:
                rule = state.faults.add(data)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return json_response(201, rule.to_dict())

    @route("/faults", "DELETE")
    async def admin_clear_faults() -> Response:
        with state.lock:
            return json_response(200, {"removed": state.faults.clear()})

    @route("/sessions/{session_id}/status", "POST")
    async def admin_force(request: Request, session_id: str) -> Response:
        data = await _json(request)
        status, message = data.get("status"), data.get("message")
        if not isinstance(status, str) or not (message is None or isinstance(message, str)):
            raise bad_request("Expected {'status': str, 'message': str | null}.")
        try:
            session = state.force(session_id, status.lower(), message)
        except KeyError:
            raise ApiError(404, f"No session with id '{session_id}' exists.") from None
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return json_response(200, state.admin_view(session))

    @route("/tokens/expire", "POST")
    async def admin_expire_tokens() -> Response:
        return json_response(200, {"expired": state.tokens.expire_all()})

    @route("/reset", "POST")
    async def admin_reset() -> Response:
        state.reset()
        return json_response(200, {"reset": True})

    @route("/clock/advance", "POST")
    async def admin_advance(request: Request) -> Response:
        seconds = (await _json(request)).get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise bad_request("Expected {'seconds': number >= 0} (emulated seconds).")
        state.advance_clock(float(seconds))
        return json_response(200, {"emulated_time": state.snapshot()["emulated_time"]})


def _install_openapi(app: EmulatorApp) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for operation in (op for item in schema["paths"].values() for op in item.values()):
                # The routes answer validation errors with 400 in the service's shape, never FastAPI's 422.
                answer = operation.get("responses", {}).get("422", {})
                if "HTTPValidationError" in str(answer):
                    del operation["responses"]["422"]
                # Examples that reach past the 404s: the account served, a well-formed session id.
                for parameter in operation.get("parameters", []):
                    if parameter["name"] == "account_id":
                        parameter["example"] = app.emulator.config.account_id
                    elif parameter["name"] == "session_id":
                        parameter["example"] = "contoso-session-1"
            components = schema.setdefault("components", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.get("schemas", {}).pop(name, None)
            components["securitySchemes"] = {
                "MrcBearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token of the Secure Token Service.",
                },
                "AccountKeyAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`{accountId}:{accountKey}`.",
                },
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
