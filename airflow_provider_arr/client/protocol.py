"""The operations of the session API as request/answer exchanges, free of I/O.

Each operation is a generator that yields :class:`~.messages.ApiRequest` objects and receives
:class:`~.messages.ApiResponse` objects (or has the transport's :class:`ArrError` thrown into
it); the drivers in :mod:`.transport` only perform the I/O and the retries. Token handling,
status parsing, paging and error mapping therefore exist once, whatever the transport, and can
be tested with canned answers (tests/unit/test_protocol.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow_provider_arr.client.auth import TokenCache, read_token, token_request
from airflow_provider_arr.client.config import ClientConfig
from airflow_provider_arr.client.dialects import DIALECTS, Dialect
from airflow_provider_arr.client.errors import error_for, json_object
from airflow_provider_arr.client.messages import ApiRequest, ApiResponse, Exchange
from airflow_provider_arr.exceptions import (
    ArrBadRequestError,
    ArrConflictError,
    ArrConnectionError,
    ArrError,
    ArrNotFoundError,
    ArrServiceError,
    ArrSessionMayExistError,
    ArrUnexpectedResponseError,
)
from airflow_provider_arr.models import RenderingSession

MAX_LIST_PAGES = 1000


@dataclass(frozen=True)
class CreateResult:
    """What a create did: the session id, whether it found an existing session, and the session
    as the answer described it (2021-01-01 only; v1 answers with the id alone)."""

    session_id: str
    reattached: bool
    session: RenderingSession | None


class ArrProtocol:
    """The operations of the session API as request/response exchanges, without I/O.

    :param config: the validated connection settings.
    :param on_secret: called with every secret learnt (each token) so that the caller registers
        it with Airflow's secrets masker.
    """

    def __init__(self, config: ClientConfig, *, on_secret: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.dialect: Dialect = DIALECTS[config.api_version](config.endpoint, config.account_id)
        self.tokens = TokenCache()
        self._on_secret = on_secret or (lambda _secret: None)

    # -- auth --------------------------------------------------------------------------------

    def token_request(self) -> ApiRequest:
        """The STS call; the only request that carries the account key."""
        return token_request(self.config.sts_endpoint, self.config.account_id, self.config.account_key)

    def fetch_token(self) -> Exchange[str]:
        """Get a new token from the STS and cache it."""
        request = self.token_request()
        response = yield request
        token = read_token(
            request, response, account_id=self.config.account_id, sts_endpoint=self.config.sts_endpoint
        )
        self._on_secret(token)
        self.tokens.store(token)
        return token

    def authorized(self, request: ApiRequest) -> Exchange[ApiResponse]:
        """Send ``request`` with the cached token; on a 401, refresh the token once and resend."""
        if self.tokens.current() is None:
            yield from self.fetch_token()
        response = yield request
        if response.status == 401:
            self.tokens.invalidate()
            yield from self.fetch_token()
            response = yield request
            if response.status == 401:
                raise error_for(request, response)
        return response

    def headers(self, request: ApiRequest) -> dict[str, str]:
        """Headers for one send of ``request`` (the token is read at send time)."""
        from airflow_provider_arr import __version__

        headers = {"Accept": "application/json", "User-Agent": f"airflow-provider-arr/{__version__}"}
        if request.authenticated and self.tokens.token:
            headers["Authorization"] = f"Bearer {self.tokens.token}"
        headers.update(request.extra_headers)
        return headers

    # -- operations ----------------------------------------------------------------------------

    def create_session(
        self, *, session_id: str | None, size: str, lease: timedelta, models: list[Any]
    ) -> Exchange[CreateResult]:
        """Create a session (or, with client-chosen ids, find the one a lost answer created)."""
        request = self.dialect.create(session_id=session_id, size=size, lease=lease, models=models)
        try:
            response = yield from self.authorized(request)
        except (ArrServiceError, ArrConnectionError) as exc:
            # Only an answer to the create itself that may have been processed hides a session:
            # a failure of the token call, or before the request went out, is an ordinary error.
            sent = exc.operation == "create" and getattr(exc, "request_sent", True)
            if self.dialect.client_chosen_ids or not sent:
                raise
            raise (yield from self._may_exist(exc, size, lease)) from exc
        if self.dialect.client_chosen_ids:
            session = self.dialect.session(json_object(request, response), request, response)
            return CreateResult(session.session_id, reattached=response.status == 200, session=session)
        try:
            created = self.dialect.created_id(request, response)
        except ArrUnexpectedResponseError as exc:
            # Accepted (2xx), so the session exists, but its id could not be read from the answer.
            raise (yield from self._may_exist(exc, size, lease)) from exc
        return CreateResult(created, reattached=False, session=None)

    def _may_exist(self, exc: ArrError, size: str, lease: timedelta) -> Exchange[ArrSessionMayExistError]:
        """The error for a v1 create that the service may have processed, listing candidates."""
        candidates = yield from self._same_settings(size, lease)
        listed = ", ".join(candidates) if candidates else "none found"
        return ArrSessionMayExistError(
            "ARR create failed after the service may have processed it, so a session may exist "
            "and be billed; v1 create is not idempotent and was not retried. Active sessions "
            f"with the same size and lease: {listed}. Stop the one this task created if it is "
            f"not another task's (cause: {exc.message})",
            candidates=candidates,
            **exc.details(),
        )

    def _same_settings(self, size: str, lease: timedelta) -> Exchange[tuple[str, ...]]:
        """Active sessions of this size and lease (the candidates for a lost create)."""
        try:
            sessions = yield from self.list_sessions()
        except ArrError:
            return ()
        return tuple(
            s.session_id
            for s in sessions
            if s.status.is_active and s.size == size and s.max_lease_time == lease
        )

    def get_session(self, session_id: str) -> Exchange[RenderingSession]:
        """Read one session."""
        request = self.dialect.get(session_id)
        response = yield from self.authorized(request)
        return self.dialect.session(json_object(request, response), request, response)

    def list_sessions(self) -> Exchange[list[RenderingSession]]:
        """List the account's sessions, following every page."""
        sessions, _pages = yield from self.list_sessions_paged()
        return sessions

    def list_sessions_paged(self) -> Exchange[tuple[list[RenderingSession], int]]:
        """List the account's sessions, following every page; and say how many pages (calls) it took."""
        sessions: list[RenderingSession] = []
        next_link: str | None = None
        for page_number in range(1, MAX_LIST_PAGES + 1):
            request = self.dialect.list_request(next_link)
            response = yield from self.authorized(request)
            page, next_link = self.dialect.list_page(request, response)
            sessions.extend(page)
            if next_link is None:
                return sessions, page_number
        raise ArrUnexpectedResponseError(f"ARR list did not end after {MAX_LIST_PAGES} pages")

    def update_session(self, session_id: str, lease: timedelta) -> Exchange[None]:
        """Set the session's lease: the new total since the session started."""
        yield from self.authorized(self.dialect.update(session_id, lease))

    def stop_session(self, session_id: str) -> Exchange[None]:
        """Ask the service to stop the session."""
        yield from self.authorized(self.dialect.stop(session_id))

    def ensure_stopped(self, session_id: str) -> Exchange[str]:
        """Stop a session unless it has ended or is unknown; say which, for the log.

        Idempotent: a 404 means there is nothing to stop, and a refusal (400/409) of a session
        that has already ended is not a failure.
        """
        try:
            yield from self.stop_session(session_id)
        except ArrNotFoundError:
            return f"session {session_id} is unknown to the service (404): nothing to stop"
        except (ArrBadRequestError, ArrConflictError):
            session = yield from self.get_session(session_id)
            if session.status.is_active:
                raise
            return f"session {session_id} is already {session.status.value}: nothing to stop"
        return f"session {session_id} stop requested"
