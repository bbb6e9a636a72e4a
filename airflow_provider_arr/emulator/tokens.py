"""Access tokens of the emulated Secure Token Service."""

from __future__ import annotations

import math
import secrets
import time
import uuid
from collections.abc import Callable, Mapping

import jwt

ISSUER = "https://sts.mixedreality.azure.com/arr-emulator"
# Sweep expired tokens out of the registry once it holds this many.
_SWEEP_AT = 4096


class TokenRegistry:
    """Issues HS256 JWTs and checks them.

    Every token is signed with a secret of this instance and remembered with its expiry, so that
    checking one on the hot path is a dict lookup rather than a signature verification; a token
    the registry does not hold (another instance's, a forged one, an expired-by-admin one) is
    invalid.

    :param wall: the real clock (expiries are wall-clock times).
    :param secret: the signing secret (a new random one if omitted).
    :param tokens: tokens issued before, ``{token: (expiry, account id)}`` (a restored state).
    """

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        *,
        secret: bytes | None = None,
        tokens: Mapping[str, tuple[float, str]] | None = None,
    ) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._wall = wall
        self._tokens: dict[str, tuple[float, str]] = dict(tokens or {})
        #: Called after every change (issue, expiry), e.g. to save the state.
        self.on_change: Callable[[], None] | None = None

    def issue(self, account_id: str, ttl: float) -> str:
        """A new token for ``account_id``, valid ``ttl`` real seconds."""
        now = self._wall()
        expires = now + ttl
        claims = {
            "iss": ISSUER,
            "aud": "https://remoterendering.mixedreality.azure.com",
            "account-id": account_id,
            "jti": str(uuid.uuid4()),
            "iat": int(now),
            "nbf": int(now),
            # Rounded down, so that a client trusting ``exp`` never uses a token past its real expiry.
            "exp": max(math.floor(expires), int(now)),
        }
        token = jwt.encode(claims, self._secret, algorithm="HS256")
        if len(self._tokens) >= _SWEEP_AT:
            self._tokens = {t: v for t, v in self._tokens.items() if v[0] > now}
        self._tokens[token] = (expires, account_id)
        self._changed()
        return token

    def account_of(self, token: str) -> str | None:
        """The account a valid token was issued for, or ``None`` if it is unknown or expired."""
        entry = self._tokens.get(token)
        if entry is None or entry[0] <= self._wall():
            return None
        return entry[1]

    def decode(self, token: str) -> dict[str, object]:
        """The claims of a token this instance signed (for tests and diagnostics)."""
        return dict(jwt.decode(token, self._secret, algorithms=["HS256"], options={"verify_aud": False}))

    def expire_all(self) -> int:
        """Invalidate every token issued so far; returns how many were still valid."""
        now = self._wall()
        valid = sum(1 for expires, _ in self._tokens.values() if expires > now)
        self._tokens.clear()
        self._changed()
        return valid

    def export(self) -> tuple[bytes, dict[str, tuple[float, str]]]:
        """The secret and the still-valid tokens, to restore a registry that accepts them."""
        now = self._wall()
        return self._secret, {t: v for t, v in self._tokens.items() if v[0] > now}

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()
