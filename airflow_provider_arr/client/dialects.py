"""The two API versions: how each builds its requests and reads its answers.

Everything that differs between v1 and 2021-01-01 lives here and nowhere else: the URLs and
verbs, create by POST (service-chosen id, not idempotent) or PUT (client-chosen id, idempotent),
model preloading, lease units, field names, paging.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from airflow_provider_arr.client.errors import AnswerFields, json_object, unexpected
from airflow_provider_arr.client.messages import ApiRequest, ApiResponse, LogLike
from airflow_provider_arr.exceptions import ArrInputError, ArrUnexpectedResponseError
from airflow_provider_arr.models import RenderingSession, format_timespan, lease_minutes, validate_session_id

API_V1 = "v1"
API_2021 = "2021-01-01"
API_VERSIONS = (API_V1, API_2021)


def new_session_id(prefix: str = "arr") -> str:
    """A fresh client-chosen session id for the 2021-01-01 dialect."""
    return validate_session_id(f"{prefix}-{uuid.uuid4()}")


class Dialect(ABC):
    """Builds the requests of one API version and reads its answers into the common model."""

    #: True when the client chooses session ids, which makes create idempotent.
    client_chosen_ids: bool

    def __init__(self, endpoint: str, account_id: str) -> None:
        self.endpoint = endpoint
        self.account = quote(account_id, safe="")

    @abstractmethod
    def create_arguments(
        self, session_id: str | None, default_id: str | None, models: list[Any], log: LogLike
    ) -> tuple[str | None, list[Any]]:
        """The session id and models a create sends, from what the caller asked.

        :param session_id: the id the caller chose, if any.
        :param default_id: the id to use when the caller chose none (a task's deterministic id).
        """

    @abstractmethod
    def create(
        self, *, session_id: str | None, size: str, lease: timedelta, models: list[Any]
    ) -> ApiRequest: ...

    @abstractmethod
    def created_id(self, request: ApiRequest, response: ApiResponse) -> str: ...

    @abstractmethod
    def get(self, session_id: str) -> ApiRequest: ...

    @abstractmethod
    def session(
        self, data: Mapping[str, Any], request: ApiRequest, response: ApiResponse
    ) -> RenderingSession:
        """Read one session object of an answer."""

    @abstractmethod
    def list_request(self, next_link: str | None = None) -> ApiRequest: ...

    @abstractmethod
    def list_page(
        self, request: ApiRequest, response: ApiResponse
    ) -> tuple[list[RenderingSession], str | None]: ...

    @abstractmethod
    def update(self, session_id: str, lease: timedelta) -> ApiRequest: ...

    @abstractmethod
    def stop(self, session_id: str) -> ApiRequest: ...

    def sessions_in(
        self, key: str, request: ApiRequest, response: ApiResponse
    ) -> tuple[list[RenderingSession], dict[str, Any]]:
        """The sessions listed under ``key`` of an answer, and the whole answer."""
        data = json_object(request, response)
        items = data.get(key)
        if not isinstance(items, list):
            raise unexpected(request, response, f"field {key!r} should be a list")
        sessions = []
        for item in items:
            if not isinstance(item, dict):
                raise unexpected(request, response, f"a session should be a JSON object, got {item!r}")
            sessions.append(self.session(item, request, response))
        return sessions, data

    def _session_url(self, session_id: str, tail: str = "") -> str:
        return self._url(f"/{quote(session_id, safe='')}{tail}")

    @abstractmethod
    def _url(self, tail: str = "") -> str: ...


class V1Dialect(Dialect):
    """The v1 API of the seed documentation: the service chooses ids; create is not idempotent."""

    client_chosen_ids = False

    def _url(self, tail: str = "") -> str:
        return f"{self.endpoint}/v1/accounts/{self.account}/sessions{tail}"

    def create_arguments(
        self, session_id: str | None, default_id: str | None, models: list[Any], log: LogLike
    ) -> tuple[str | None, list[Any]]:
        if session_id is not None:
            raise ArrInputError(
                f"session_id {session_id!r} cannot be chosen with api_version 'v1' (the service picks "
                "it); use api_version '2021-01-01' for client-chosen, idempotent creates"
            )
        return None, models

    def create(self, *, session_id: str | None, size: str, lease: timedelta, models: list[Any]) -> ApiRequest:
        return ApiRequest(
            "create",
            "POST",
            self._url("/create"),
            json={"maxLeaseTime": format_timespan(lease), "models": models, "size": size},
            retry_safe=False,
        )

    def created_id(self, request: ApiRequest, response: ApiResponse) -> str:
        return AnswerFields(json_object(request, response), request, response).required_text("sessionId")

    def get(self, session_id: str) -> ApiRequest:
        return ApiRequest("get", "GET", self._session_url(session_id, "/properties"), session_id=session_id)

    def session(
        self, data: Mapping[str, Any], request: ApiRequest, response: ApiResponse
    ) -> RenderingSession:
        f = AnswerFields(data, request, response)
        return RenderingSession(
            **_identity(f, request, "sessionId", "sessionStatus", "sessionHostname", "sessionSize"),
            max_lease_time=f.timespan("sessionMaxLeaseTime"),
            elapsed_time=f.timespan("sessionElapsedTime"),
            message=f.text("message"),
        )

    def list_request(self, next_link: str | None = None) -> ApiRequest:
        return ApiRequest("list", "GET", self._url())

    def list_page(
        self, request: ApiRequest, response: ApiResponse
    ) -> tuple[list[RenderingSession], str | None]:
        sessions, _ = self.sessions_in("sessions", request, response)
        return sessions, None

    def update(self, session_id: str, lease: timedelta) -> ApiRequest:
        return ApiRequest(
            "update",
            "PATCH",
            self._session_url(session_id),
            json={"maxLeaseTime": format_timespan(lease)},
            session_id=session_id,
        )

    def stop(self, session_id: str) -> ApiRequest:
        return ApiRequest("stop", "DELETE", self._session_url(session_id), session_id=session_id)


class V2021Dialect(Dialect):
    """The 2021-01-01 API (what the official SDK speaks): client-chosen ids, idempotent create."""

    client_chosen_ids = True
    params = {"api-version": API_2021}

    def _url(self, tail: str = "") -> str:
        return f"{self.endpoint}/accounts/{self.account}/sessions{tail}"

    def create_arguments(
        self, session_id: str | None, default_id: str | None, models: list[Any], log: LogLike
    ) -> tuple[str | None, list[Any]]:
        if models:
            log.warning("api_version 2021-01-01 has no model preloading; ignoring models")
        return session_id or default_id or new_session_id(), []

    def create(self, *, session_id: str | None, size: str, lease: timedelta, models: list[Any]) -> ApiRequest:
        assert session_id is not None, "the 2021-01-01 dialect needs a client-chosen session id"
        return ApiRequest(
            "create",
            "PUT",
            self._session_url(session_id),
            params=self.params,
            json={"maxLeaseTimeMinutes": lease_minutes(lease), "size": size.capitalize()},
            session_id=session_id,
        )

    def created_id(self, request: ApiRequest, response: ApiResponse) -> str:
        return self.session(json_object(request, response), request, response).session_id

    def get(self, session_id: str) -> ApiRequest:
        return ApiRequest(
            "get", "GET", self._session_url(session_id), params=self.params, session_id=session_id
        )

    def session(
        self, data: Mapping[str, Any], request: ApiRequest, response: ApiResponse
    ) -> RenderingSession:
        f = AnswerFields(data, request, response)
        error = data.get("error")
        code = message = None
        if isinstance(error, dict):
            code = error.get("code") if isinstance(error.get("code"), str) else None
            message = error.get("message") if isinstance(error.get("message"), str) else None
        elif error is not None:
            raise f.fail(f"field 'error' should be an object or null, got {error!r}")
        return RenderingSession(
            **_identity(f, request, "id", "status", "hostname", "size"),
            max_lease_time=f.minutes("maxLeaseTimeMinutes"),
            elapsed_time=f.minutes("elapsedTimeMinutes"),
            message=message,
            arr_inspector_port=f.integer("arrInspectorPort"),
            handshake_port=f.integer("handshakePort"),
            teraflops=f.number("teraflops"),
            creation_time=f.datetime("creationTime"),
            error_code=code,
        )

    def list_request(self, next_link: str | None = None) -> ApiRequest:
        if next_link is None:
            return ApiRequest("list", "GET", self._url(), params=self.params)
        # Follow @nextLink only on our own service: it carries our bearer token.
        ours, theirs = urlsplit(self.endpoint), urlsplit(next_link)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
            raise ArrUnexpectedResponseError(
                f"ARR list answered an @nextLink on another host ({next_link!r}); not following it"
            )
        params = None if "api-version=" in (theirs.query or "") else self.params
        return ApiRequest("list", "GET", next_link, params=params)

    def list_page(
        self, request: ApiRequest, response: ApiResponse
    ) -> tuple[list[RenderingSession], str | None]:
        sessions, data = self.sessions_in("sessions", request, response)
        next_link = data.get("@nextLink")
        if next_link is not None and not isinstance(next_link, str):
            raise unexpected(request, response, f"'@nextLink' should be a string, got {next_link!r}")
        return sessions, next_link or None

    def update(self, session_id: str, lease: timedelta) -> ApiRequest:
        return ApiRequest(
            "update",
            "PATCH",
            self._session_url(session_id),
            params=self.params,
            json={"maxLeaseTimeMinutes": lease_minutes(lease)},
            session_id=session_id,
        )

    def stop(self, session_id: str) -> ApiRequest:
        return ApiRequest(
            "stop", "POST", self._session_url(session_id, "/:stop"), params=self.params, session_id=session_id
        )


def _identity(f: AnswerFields, request: ApiRequest, *keys: str) -> dict[str, Any]:
    """The fields both dialects have, under their own names: id, status, hostname, size."""
    id_key, status_key, host_key, size_key = keys
    size = f.text(size_key)
    return {
        "session_id": f.text(id_key) or request.session_id or "",
        "status": f.status(status_key),
        "hostname": f.text(host_key),
        "size": size.lower() if size else None,
    }


DIALECTS: dict[str, type[Dialect]] = {API_V1: V1Dialect, API_2021: V2021Dialect}
