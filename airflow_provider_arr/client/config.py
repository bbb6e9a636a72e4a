"""A connection's fields and extras, validated into the settings a client runs with.

The extras and their defaults are declared once, in :mod:`airflow_provider_arr.connection_form`.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_arr.client.dialects import API_V1, API_VERSIONS
from airflow_provider_arr.client.retry import RetrySettings
from airflow_provider_arr.connection_form import EXTRA_NAMES, EXTRAS, LEGACY_EXTRA_PREFIX
from airflow_provider_arr.exceptions import ArrInputError
from airflow_provider_arr.models import validate_region

DEFAULT_STS = "https://sts.mixedreality.azure.com"
DEFAULTS: dict[str, Any] = {e.name: e.default for e in EXTRAS}


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs, read from an Airflow connection and validated."""

    account_id: str
    account_key: str = field(repr=False)
    endpoint: str
    sts_endpoint: str = DEFAULT_STS
    api_version: str = API_V1
    timeout: float = DEFAULTS["timeout"]
    retry: RetrySettings = field(default_factory=RetrySettings)
    verify: bool | str = True
    rate_limit: float = DEFAULTS["rate_limit"]
    rate_burst: int = DEFAULTS["rate_burst"]
    conn_id: str | None = None

    @classmethod
    def from_connection(
        cls,
        *,
        conn_id: str | None,
        login: str | None,
        password: str | None,
        host: str | None,
        extra: Mapping[str, Any],
        port: int | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> ClientConfig:
        """Build a config from the fields of a connection, naming the field that is wrong."""
        read = _ExtraReader(conn_id, extra, overrides or {})
        read.refuse_unknown()
        account_id = (login or "").strip()
        if not account_id:
            raise ArrInputError(f"{read.where}: login (the ARR account id) is empty")
        if not password:
            raise ArrInputError(f"{read.where}: password (the ARR account key) is empty")
        return cls(
            account_id=account_id,
            account_key=password,
            endpoint=_endpoint(read, host, port),
            sts_endpoint=_sts_endpoint(read),
            api_version=_api_version(read),
            timeout=read.number("timeout"),
            retry=RetrySettings(
                attempts=read.number("retry_limit", integer=True),
                wait_min=read.number("retry_wait_min", allow_zero=True),
                wait_max=read.number("retry_wait_max"),
                total=read.number("retry_total_timeout"),
                throttle_timeout=read.number("throttle_timeout", allow_zero=True),
                stop_timeout=read.number("stop_timeout"),
            ),
            verify=_verify(read),
            rate_limit=read.number("rate_limit"),
            rate_burst=read.number("rate_burst", integer=True),
            conn_id=conn_id,
        )


class _ExtraReader:
    """Reads one connection's extras: hook overrides first, then the extra (either key form)."""

    def __init__(self, conn_id: str | None, extra: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
        self.where = f"connection {conn_id!r}" if conn_id else "connection"
        self.extra, self.overrides = extra, overrides

    def refuse_unknown(self) -> None:
        """A key the client does not read is a typo or a setting that does nothing: say so."""
        for key in self.extra:
            name = key.removeprefix(LEGACY_EXTRA_PREFIX)
            if name not in EXTRA_NAMES:
                close = difflib.get_close_matches(name, sorted(EXTRA_NAMES), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ArrInputError(
                    f"{self.where}: extra {key!r} is not a setting of this provider{hint} "
                    f"(known: {', '.join(sorted(EXTRA_NAMES))})"
                )

    def get(self, name: str) -> Any:
        if self.overrides.get(name) is not None:
            return self.overrides[name]
        for key in (name, LEGACY_EXTRA_PREFIX + name):
            value = self.extra.get(key)
            if value not in (None, ""):
                return value
        return None

    def number(self, name: str, *, integer: bool = False, allow_zero: bool = False) -> Any:
        value = self.get(name)
        if value is None:
            return DEFAULTS[name]
        try:
            parsed = float(value)
            if isinstance(value, bool) or not math.isfinite(parsed) or (integer and parsed != int(parsed)):
                raise ValueError(value)
        except (TypeError, ValueError):
            kind = "a whole number" if integer else "a number"
            raise ArrInputError(f"{self.where}: {name} must be {kind}, got {value!r}") from None
        if integer:
            parsed = int(parsed)
        if parsed < 0 or (parsed == 0 and not allow_zero):
            raise ArrInputError(f"{self.where}: {name} must be positive, got {value!r}")
        return parsed


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ArrInputError(f"{what} {url!r} is not an http(s) URL")


def _endpoint(read: _ExtraReader, host: str | None, port: int | None = None) -> str:
    region = read.get("region")
    if region is not None:
        region = validate_region(region, field=f"{read.where}: extra 'region'")
    endpoint = (host or "").strip()
    if endpoint:
        if "://" not in endpoint:
            endpoint = "https://" + endpoint
        _check_url(endpoint, f"{read.where}: host")
        if port:  # the connection's port field (a URI's), unless the host names one already
            parts = urlsplit(endpoint)
            if parts.port is None:
                endpoint = parts._replace(netloc=f"{parts.netloc}:{int(port)}").geturl()
    elif region:
        endpoint = f"https://remoterendering.{region}.mixedreality.azure.com"
    else:
        raise ArrInputError(
            f"{read.where}: no service endpoint; set host (e.g. "
            "https://remoterendering.westus2.mixedreality.azure.com) or the extra 'region'"
        )
    return endpoint.rstrip("/")


def _sts_endpoint(read: _ExtraReader) -> str:
    sts, domain = read.get("sts_endpoint"), read.get("account_domain")
    if sts:
        sts = str(sts).strip()
        _check_url(sts, f"{read.where}: extra 'sts_endpoint'")
        return sts.rstrip("/")
    if domain:
        domain = str(domain).strip().lower()
        if "." not in domain:
            raise ArrInputError(
                f"{read.where}: extra 'account_domain' {domain!r} looks like a bare region; use the "
                f"account domain, e.g. '{domain}.mixedreality.azure.com'"
            )
        return f"https://sts.{domain}"
    return DEFAULT_STS


def _api_version(read: _ExtraReader) -> str:
    api_version = str(read.get("api_version") or API_V1).strip()
    if api_version not in API_VERSIONS:
        raise ArrInputError(
            f"{read.where}: extra 'api_version' must be one of {list(API_VERSIONS)}, got {api_version!r}"
        )
    return api_version


def _verify(read: _ExtraReader) -> bool | str:
    raw = read.get("verify")
    if raw is None or isinstance(raw, bool):
        return True if raw is None else raw
    if not isinstance(raw, str):
        raise ArrInputError(
            f"{read.where}: extra 'verify' must be true, false or a CA bundle path, got {raw!r}"
        )
    flag = {"true": True, "false": False}.get(raw.strip().lower())
    if flag is not None:
        return flag
    if not os.path.isfile(raw):
        raise ArrInputError(
            f"{read.where}: extra 'verify' {raw!r} is not a readable CA bundle file; give the path of "
            "the PEM file that signed the service's certificate (or true, or false)"
        )
    return raw
