"""The Secure Token Service: the token request, reading its answer, and the token cache."""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from airflow_provider_arr.client.errors import AnswerFields, json_object
from airflow_provider_arr.client.messages import ApiRequest, ApiResponse
from airflow_provider_arr.exceptions import ArrAuthError

TOKEN_LIFETIME_WITHOUT_EXP = 24 * 3600.0
TOKEN_REFRESH_MARGIN = 300.0


def jwt_expiry(token: str) -> tuple[float | None, float | None]:
    """Read ``exp`` and ``iat`` from a JWT without verifying it (the STS signed it, not us)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None, None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None, None
    if not isinstance(payload, dict):
        return None, None

    def num(key: str) -> float | None:
        value = payload.get(key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    return num("exp"), num("iat")


@dataclass
class TokenCache:
    """The STS token of one client, reused until 5 minutes before its expiry."""

    token: str | None = field(default=None, repr=False)  # a secret: never in repr
    refresh_at: float = 0.0
    fetched: int = 0

    def current(self, now: float | None = None) -> str | None:
        """The cached token, or None when there is none or it is due for refresh."""
        now = time.time() if now is None else now
        return self.token if self.token and now < self.refresh_at else None

    def store(self, token: str, now: float | None = None) -> None:
        """Keep a new token; without ``exp`` it is assumed to live 24 hours."""
        now = time.time() if now is None else now
        exp, iat = jwt_expiry(token)
        if exp is None:
            exp, iat = now + TOKEN_LIFETIME_WITHOUT_EXP, now
        lifetime = exp - (iat if iat is not None else now)
        # Short-lived tokens (an emulator's) would otherwise be due for refresh on arrival.
        margin = min(TOKEN_REFRESH_MARGIN, max(lifetime, 0.0) / 2)
        self.token, self.refresh_at = token, exp - margin
        self.fetched += 1

    def invalidate(self) -> None:
        """Forget the token (after a 401)."""
        self.token, self.refresh_at = None, 0.0


def token_request(sts_endpoint: str, account_id: str, account_key: str) -> ApiRequest:
    """The STS call; the only request that carries the account key."""
    account = quote(account_id, safe="")
    return ApiRequest(
        "token",
        "GET",
        f"{sts_endpoint}/accounts/{account}/token",
        authenticated=False,
        extra_headers={"Authorization": f"Bearer {account_id}:{account_key}"},
    )


def read_token(request: ApiRequest, response: ApiResponse, *, account_id: str, sts_endpoint: str) -> str:
    """The ``AccessToken`` of the STS answer; a 401 is the account key being refused."""
    if response.status == 401:
        raise ArrAuthError(
            f"the STS refused the key of account {account_id!r} ({sts_endpoint}); "
            "check the connection's login and password",
            operation="token",
            http_status=401,
            body=response.body,
            ms_cv=response.ms_cv,
        )
    return AnswerFields(json_object(request, response), request, response).required_text("AccessToken")
