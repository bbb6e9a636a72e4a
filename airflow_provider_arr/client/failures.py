"""Why a request got no answer, in words that name the setting to fix.

A transport error is one of five kinds. Three can never be fixed by a retry and fail at once:
a host that does not resolve (``dns``), a certificate that does not verify or a CA bundle that
cannot be read (``tls``), a malformed URL (``url``). Two are transient: no connection could be
opened (``connect``: refused, connect timeout; the request was certainly not sent) and a
connection that broke after the request went out (``sent``: it may have been processed).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit

from airflow_provider_arr.client.messages import ApiRequest
from airflow_provider_arr.exceptions import ArrConnectionError

DNS, TLS, URL, CONNECT, SENT = "dns", "tls", "url", "connect", "sent"
PERMANENT = frozenset({DNS, TLS, URL})
NOT_SENT = PERMANENT | {CONNECT}
PUBLIC_DOMAIN = "mixedreality.azure.com"
RETIRED = (
    "the public Azure Remote Rendering service was retired on 2025-09-30: point the connection at "
    "a compatible service (host, and extra 'sts_endpoint' for its token service), for example the "
    "bundled emulator"
)
ERROR_TEXT_LIMIT = 300


def truncate(text: str, limit: int = ERROR_TEXT_LIMIT) -> str:
    """``text``, cut to ``limit`` characters."""
    return text if len(text) <= limit else text[:limit] + "…"


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or during, innermost last."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def kind_from_causes(exc: BaseException) -> str | None:
    """DNS or TLS, read from the exception chain or its text (transport libraries wrap both)."""
    for cause in causes(exc):
        if isinstance(cause, socket.gaierror):
            return DNS
        if isinstance(cause, (ssl.SSLCertVerificationError, ssl.SSLError)):
            return TLS
    text = " ".join(str(c) for c in causes(exc))
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return TLS
    if "Name or service not known" in text or "name resolution" in text or "nodename nor servname" in text:
        return DNS
    return None


def _fix(request: ApiRequest, kind: str) -> str:
    host = urlsplit(request.url).hostname or request.url
    where = (
        "the extra 'sts_endpoint' (or 'account_domain')"
        if request.operation == "token"
        else "the host (or the extra 'region')"
    )
    if kind == DNS:
        return f"host {host!r} does not resolve: check {where} of the connection"
    if kind == TLS:
        return (
            f"the TLS certificate of {host!r} could not be verified: set the connection's extra "
            "'verify' to the path of the CA bundle that signed it"
        )
    if kind == URL:
        return f"{request.url!r} is not a valid URL: check {where} of the connection"
    return ""


def connection_error(request: ApiRequest, exc: BaseException, kind: str) -> ArrConnectionError:
    """The error for a request that got no complete answer, naming what to fix when it can."""
    message = f"{request.label} failed: {type(exc).__name__}: {truncate(str(exc))}"
    fix = _fix(request, kind)
    if fix:
        message += f"; {fix}"
    if (urlsplit(request.url).hostname or "").endswith(PUBLIC_DOMAIN):
        message += f"; {RETIRED}"
    return ArrConnectionError(
        message,
        operation=request.operation,
        request_sent=kind not in NOT_SENT,
        permanent=kind in PERMANENT,
        session_id=request.session_id,
    )
