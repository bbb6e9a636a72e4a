"""The emulator's knobs: one dataclass, shared by the CLI, the in-process server and the admin API."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ACCOUNT_ID = "00000000-0000-0000-0000-000000000001"
DEFAULT_ACCOUNT_KEY = "emulator-account-key-not-a-secret"
#: Environment variables the command line reads when its option is not given.
STATE_FILE_ENV = "ARR_EMULATOR_STATE_FILE"
ADMIN_TOKEN_ENV = "ARR_EMULATOR_ADMIN_TOKEN"

# The JSON type each knob takes in POST /_emulator/config, and whether null is allowed.
_FLOAT, _INT, _STR, _BOOL = "number", "integer", "string", "boolean"
_KNOB_TYPES: dict[str, tuple[str, bool]] = {
    "account_id": (_STR, False),
    "account_key": (_STR, False),
    "startup_delay": (_FLOAT, False),
    "stop_delay": (_FLOAT, False),
    "time_scale": (_FLOAT, False),
    "token_ttl": (_FLOAT, False),
    "throttle_rate": (_FLOAT, True),
    "throttle_burst": (_INT, False),
    "retry_after": (_BOOL, False),
    "error_rate": (_FLOAT, False),
    "slow": (_FLOAT, False),
    "error_on_start": (_STR, True),
    "page_size": (_INT, False),
    "seed": (_INT, True),
    "region": (_STR, False),
}


@dataclass(frozen=True)
class EmulatorConfig:
    """Every knob of the emulator.

    Durations of the session lifecycle are *emulated* seconds, which run ``time_scale`` times
    faster than real ones; ``token_ttl``, ``slow`` and throttling work in real seconds (a JWT's
    ``exp`` is wall-clock time).

    :param account_id: the one account the emulator serves.
    :param account_key: its key; the STS answers a token for ``Bearer {account_id}:{account_key}``.
    :param startup_delay: emulated seconds a session stays ``Starting``.
    :param stop_delay: emulated seconds a stopped session stays ``Stopping``.
    :param time_scale: emulated seconds per real second.
    :param token_ttl: lifetime of an access token, real seconds.
    :param throttle_rate: requests per second allowed per account (token bucket), ``None`` for no limit.
    :param throttle_burst: capacity of the token bucket.
    :param retry_after: whether a throttled answer (429) carries ``Retry-After``.
    :param error_rate: fraction of session calls answered 500 or 503 at random.
    :param slow: real seconds added before every ARR and STS answer.
    :param error_on_start: if set, new sessions end in ``Error`` with this message instead of ``Ready``.
    :param page_size: sessions per page of the 2021-01-01 list.
    :param seed: seed of the random draws (``error_rate``, fault probabilities), for repeatable runs.
    :param region: the region named in session hostnames.
    :param state_file: keep sessions, tokens and the emulated clock in this JSON file (written on
        every change, read at start), so that they survive a restart; ``None`` keeps them in
        memory only. Not a runtime knob.
    :param admin_token: if set, every ``/_emulator`` call must send ``Authorization: Bearer
        <admin_token>``; required for the admin API when listening on a non-loopback address.
        Never shown: not in ``repr``, :meth:`to_dict`, the admin API or the state file.
    """

    account_id: str = DEFAULT_ACCOUNT_ID
    account_key: str = DEFAULT_ACCOUNT_KEY
    startup_delay: float = 60.0
    stop_delay: float = 5.0
    time_scale: float = 1.0
    token_ttl: float = 86400.0
    throttle_rate: float | None = None
    throttle_burst: int = 5
    retry_after: bool = True
    error_rate: float = 0.0
    slow: float = 0.0
    error_on_start: str | None = None
    page_size: int = 10
    seed: int | None = None
    region: str = "westus2"
    state_file: Path | None = None
    admin_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.state_file, str):
            object.__setattr__(self, "state_file", Path(self.state_file))
        problems = self._problems()
        if problems:
            raise ValueError("invalid emulator configuration: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        problems = []
        if not self.account_id or any(c in self.account_id for c in "/:?# "):
            problems.append("account_id must be non-empty, without '/', ':', '?', '#' or spaces")
        if not self.account_key:
            problems.append("account_key must be non-empty")
        for name in ("startup_delay", "stop_delay", "slow"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                problems.append(f"{name} must be a finite number >= 0")
        for name in ("time_scale", "token_ttl"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                problems.append(f"{name} must be a finite number > 0")
        if self.throttle_rate is not None and (
            not math.isfinite(self.throttle_rate) or self.throttle_rate <= 0
        ):
            problems.append("throttle_rate must be > 0, or None for no throttling")
        if self.throttle_burst < 1:
            problems.append("throttle_burst must be >= 1")
        if not 0.0 <= self.error_rate <= 1.0:
            problems.append("error_rate must be between 0 and 1")
        if self.page_size < 1:
            problems.append("page_size must be >= 1")
        if not self.region or not self.region.isalnum():
            problems.append("region must be a non-empty alphanumeric name")
        token = self.admin_token
        if token is not None and (not token or token != token.strip()):
            problems.append("admin_token must be non-empty, without leading or trailing spaces")
        return problems

    def to_dict(self) -> dict[str, Any]:
        """The knobs as a JSON-ready dict (the account key included: it is the emulator's own).

        ``admin_token`` is left out, ``state_file`` is a string or ``None``.
        """
        values = dataclasses.asdict(self)
        del values["admin_token"]
        if self.state_file is not None:
            values["state_file"] = str(self.state_file)
        return values

    def updated(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """A copy with ``changes`` (JSON values, as POST /_emulator/config receives them) applied.

        :raises ValueError: for an unknown knob, a value of the wrong JSON type, or an invalid result.
        """
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in _KNOB_TYPES:
                raise ValueError(f"unknown knob {name!r}; knobs: {', '.join(_KNOB_TYPES)}")
            values[name] = _coerce(name, value)
        return dataclasses.replace(self, **values)


def _coerce(name: str, value: Any) -> Any:
    kind, nullable = _KNOB_TYPES[name]
    if value is None:
        if nullable:
            return None
        raise ValueError(f"{name} cannot be null")
    # bool is a subclass of int in Python, never a number in JSON.
    if kind == _BOOL and isinstance(value, bool):
        return value
    if kind == _INT and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == _FLOAT and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == _STR and isinstance(value, str):
        return value
    raise ValueError(f"{name} must be a JSON {kind}{' or null' if nullable else ''}, got {value!r}")
