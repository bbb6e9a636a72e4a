"""The session store and lifecycle, evaluated lazily from timestamps on an emulated clock.

A session never changes on its own: its status is computed on every read from when it was
created, its lease, and when (if ever) it was stopped or forced into a state by the admin API.
That is also why a state file only has to be written when a call changes something.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pydantic

from .clock import EmulatedClock
from .config import EmulatorConfig
from .errors import ApiError
from .faults import FaultRules, TokenBucket
from .statefile import StateFileError, read_state_file, write_state_file
from .timespan import format_timespan
from .tokens import TokenRegistry

STARTING, READY, STOPPING, STOPPED, EXPIRED, ERROR = (
    "starting",
    "ready",
    "stopping",
    "stopped",
    "expired",
    "error",
)
STATUSES = (STARTING, READY, STOPPING, STOPPED, EXPIRED, ERROR)
ACTIVE = frozenset({STARTING, READY})
SIZES = ("standard", "premium")
DIALECT_V1, DIALECT_2021 = "v1", "2021-01-01"

EXPIRED_MESSAGE = "The session reached its maximum lease time."
STOPPED_MESSAGE = "The session was stopped."
TERAFLOPS = {"standard": 10.6, "premium": 21.2}
COUNTERS = (
    "requests",
    "token",
    "create",
    "get",
    "list",
    "update",
    "stop",
    "throttled",
    "injected_errors",
    "dropped",
    "delayed",
    "unauthorized",
)


class Phase(NamedTuple):
    """Where a session is at some instant.

    :param status: one of :data:`STATUSES`.
    :param ended: the emulated time it stopped running (stop request, expiry, failure), if it has.
    :param message: why it ended, for ``error`` and ``expired``.
    :param was_ready: whether it reached ``ready`` (and so has a hostname and ports).
    """

    status: str
    ended: float | None
    message: str | None
    was_ready: bool


@dataclass(slots=True)
class Session:
    """One rendering session; times are emulated epoch seconds, durations emulated seconds."""

    id: str
    account_id: str
    dialect: str
    size: str
    seq: int
    created: float
    lease: float
    created_lease: float
    ready_at: float
    fail_message: str | None
    hostname: str
    handshake_port: int
    inspector_port: int
    stop_at: float | None = None
    stopped_at: float | None = None
    terminal: tuple[str, float, str | None] | None = None

    def phase(self, now: float) -> Phase:
        """The status at emulated time ``now``."""
        expiry = self.created + self.lease
        ended: float | None
        if self.terminal is not None:
            status, ended, message = self.terminal
        elif self.stop_at is not None:
            ended, message = self.stop_at, None
            assert self.stopped_at is not None
            status = STOPPED if now >= self.stopped_at else STOPPING
        elif self.fail_message is not None and self.ready_at < expiry and now >= self.ready_at:
            status, ended, message = ERROR, self.ready_at, self.fail_message
        elif now >= expiry:
            status, ended, message = EXPIRED, expiry, EXPIRED_MESSAGE
        elif now >= self.ready_at:
            status, ended, message = READY, None, None
        else:
            status, ended, message = STARTING, None, None
        until = now if ended is None else min(ended, now)
        was_ready = self.fail_message is None and self.ready_at < expiry and self.ready_at <= until
        return Phase(status, ended, message, was_ready)

    def elapsed(self, now: float, phase: Phase) -> float:
        """Emulated seconds since creation, frozen once the session ended."""
        until = now if phase.ended is None else min(phase.ended, now)
        return max(until - self.created, 0.0)


class _StateFile(pydantic.BaseModel):
    """What the state file holds (JSON). Times are epoch seconds: ``saved_at`` real, the rest
    emulated; the emulated clock resumes at ``emulated_time + (now - saved_at) * time_scale``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    format: Literal["arr-emulator-state"] = "arr-emulator-state"
    version: Literal[1] = 1
    saved_at: float
    emulated_time: float
    time_scale: float = pydantic.Field(gt=0)
    seq: int = pydantic.Field(ge=0)
    token_secret: str
    tokens: dict[str, tuple[float, str]]
    sessions: list[Session]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


class EmulatorState:
    """Everything the emulator knows: config, clock, sessions, tokens, fault rules and counters.

    The ASGI app runs on one event loop and nothing here awaits, so each operation is atomic
    there; the lock makes direct calls from a test's thread safe as well.

    With ``config.state_file``, the sessions, the token registry and the emulated clock are read
    from that file (if it exists) and written back after every change, before the call that made
    it is answered. Counters, fault rules and runtime knob changes are not kept.

    :param config: the knobs.
    :param listen_host: the address the server listens on; the admin API needs a token when it
        is not a loopback address (``None``: in-process use, loopback).
    :raises StateFileError: if the state file exists but cannot be read or understood, or
        cannot be written.
    """

    def __init__(self, config: EmulatorConfig, *, listen_host: str | None = None) -> None:
        self.initial_config = config
        self.config = config
        self.listen_host = listen_host
        self.clock = EmulatedClock(config.time_scale)
        self.tokens = TokenRegistry()
        self.lock = threading.RLock()
        self.faults = FaultRules()
        self.rng = random.Random(config.seed)
        self.sessions: dict[str, Session] = {}
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.buckets: dict[str, TokenBucket] = {}
        self._seq = 0
        self.state_file: Path | None = config.state_file
        if self.state_file is not None:
            self._restore(self.state_file)
            self.save()  # fails now, not at the first call, if the file cannot be written
        self.tokens.on_change = self.save

    # -- the state file ------------------------------------------------------------------------

    def _restore(self, path: Path) -> None:
        data = read_state_file(path)
        if data is None:
            return
        try:
            saved = _StateFile.model_validate_json(data)
            secret = bytes.fromhex(saved.token_secret)
        except pydantic.ValidationError as exc:
            problems = [
                f"{'.'.join(map(str, error['loc'])) or 'content'}: {error['msg']}" for error in exc.errors()
            ]
            if len(problems) > 3:
                problems[3:] = [f"and {len(problems) - 3} more"]
            raise StateFileError(
                f"the emulator state file {path} is corrupt or not an emulator state file "
                f"(remove it to start empty): {'; '.join(problems)}"
            ) from None
        except ValueError:
            raise StateFileError(
                f"the emulator state file {path} is corrupt (remove it to start empty): "
                "token_secret: not hexadecimal"
            ) from None
        downtime = max(time.time() - saved.saved_at, 0.0)
        self.clock = EmulatedClock(
            self.config.time_scale, start=saved.emulated_time + downtime * saved.time_scale
        )
        self.tokens = TokenRegistry(secret=secret, tokens=saved.tokens)
        self.sessions = {session.id: session for session in saved.sessions}
        self._seq = saved.seq

    def save(self) -> None:
        """Write the state file (a no-op without one).

        :raises StateFileError: if it cannot be written.
        """
        if self.state_file is None:
            return
        with self.lock:
            secret, tokens = self.tokens.export()
            saved = _StateFile(
                saved_at=time.time(),
                emulated_time=self.clock.now(),
                time_scale=self.clock.time_scale,
                seq=self._seq,
                token_secret=secret.hex(),
                tokens=tokens,
                sessions=list(self.sessions.values()),
            )
            write_state_file(self.state_file, saved.model_dump_json(indent=1).encode())

    def adopt_tokens(self, tokens: TokenRegistry) -> None:
        """Serve with this token registry (another state's, kept across a restart)."""
        with self.lock:
            self.tokens = tokens
            tokens.on_change = self.save
            self.save()

    # -- knobs -------------------------------------------------------------------------------

    def now(self) -> float:
        """The emulated time."""
        return self.clock.now()

    def configure(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """Apply a partial update of the knobs at runtime.

        :raises ValueError: for unknown knobs or invalid values (nothing is changed then).
        """
        with self.lock:
            new = self.config.updated(changes)
            self._adopt(new, reseed="seed" in changes)
            self.save()  # a new time scale re-anchors the clock
            return new

    def _adopt(self, new: EmulatorConfig, *, reseed: bool) -> None:
        old, self.config = self.config, new
        if new.time_scale != old.time_scale:
            self.clock.set_time_scale(new.time_scale)
        if (new.throttle_rate, new.throttle_burst) != (old.throttle_rate, old.throttle_burst):
            self.buckets.clear()
        if reseed:
            self.rng.seed(new.seed)

    def reset(self) -> None:
        """Forget sessions, counters, fault rules and runtime knob changes (the sessions in the
        state file too).

        Issued tokens stay valid: the STS is a separate service, which a restart of the session
        service does not affect.
        """
        with self.lock:
            self.sessions.clear()
            self.counts = dict.fromkeys(COUNTERS, 0)
            self.faults.clear()
            self.buckets.clear()
            self._seq = 0
            self._adopt(self.initial_config, reseed=True)
            self.save()

    def advance_clock(self, seconds: float) -> None:
        """Move the emulated clock ``seconds`` ahead (negative values are ignored)."""
        with self.lock:
            self.clock.advance(seconds)
            self.save()

    def count(self, name: str) -> None:
        """Add one to a counter."""
        self.counts[name] = self.counts.get(name, 0) + 1

    def throttle(self, account_id: str) -> float:
        """0 if a call for this account may go on, else the seconds until it may."""
        rate = self.config.throttle_rate
        if rate is None:
            return 0.0
        now = time.monotonic()
        bucket = self.buckets.get(account_id)
        if bucket is None:
            bucket = self.buckets[account_id] = TokenBucket(rate, self.config.throttle_burst, now)
        return bucket.take(now)

    # -- sessions ------------------------------------------------------------------------------

    def create(self, *, dialect: str, size: str, lease: float, session_id: str | None = None) -> Session:
        """Start a new session (the id is a new GUID unless given)."""
        with self.lock:
            config = self.config
            now = self.now()
            self._seq += 1
            handshake = self.rng.randrange(49152, 65534)
            session = Session(
                id=session_id or str(uuid.uuid4()),
                account_id=config.account_id,
                dialect=dialect,
                size=size,
                seq=self._seq,
                created=now,
                lease=lease,
                created_lease=lease,
                ready_at=now + config.startup_delay,
                fail_message=config.error_on_start,
                hostname=f"{uuid.uuid4()}.remoterenderingvm.{config.region}.mixedreality.azure.com",
                handshake_port=handshake,
                inspector_port=handshake + 1,
            )
            self.sessions[session.id] = session
            self.save()
            return session

    def find(self, account_id: str, session_id: str) -> Session:
        """The session, or a 404 (for unknown ids and for another account's sessions)."""
        session = self.sessions.get(session_id)
        if session is None or session.account_id != account_id:
            raise ApiError(404, f"No session with id '{session_id}' exists.")
        return session

    def listed(self, account_id: str, statuses: frozenset[str]) -> list[Session]:
        """The account's sessions whose status is in ``statuses``, oldest first."""
        now = self.now()
        with self.lock:
            return [
                s
                for s in self.sessions.values()
                if s.account_id == account_id and s.phase(now).status in statuses
            ]

    def update_lease(self, session: Session, lease: float, *, must_grow: bool) -> None:
        """Set the lease (a total since creation) of a running session.

        :raises ApiError: 409 if the session is no longer running (the request is fine, the
            session's state is not), 422 if ``must_grow`` and the new lease is not larger than the
            current one.
        """
        with self.lock:
            status = session.phase(self.now()).status
            if status not in ACTIVE:
                raise ApiError(
                    409,
                    f"Session '{session.id}' is {status}: only a starting or ready session can be updated.",
                )
            if must_grow and lease <= session.lease:
                raise ApiError(
                    422,
                    f"The new maximum lease time ({format_timespan(lease)}) must be larger than the "
                    f"current one ({format_timespan(session.lease)}).",
                )
            session.lease = lease
            self.save()

    def stop(self, session: Session) -> None:
        """Stop a running session (``stopping``, then ``stopped``); an ended one is left alone."""
        with self.lock:
            now = self.now()
            if session.phase(now).status in ACTIVE:
                session.stop_at = now
                session.stopped_at = now + self.config.stop_delay
                self.save()

    def force(self, session_id: str, status: str, message: str | None = None) -> Session:
        """Put a session in ``status`` now, whatever its lifecycle says (admin API).

        ``starting`` restarts the start-up delay, ``ready`` makes it ready now, ``stopping`` stops
        it as a stop request would; ``stopped``, ``expired`` and ``error`` end it with ``message``.

        :raises KeyError: for an unknown session.
        :raises ValueError: for an unknown status.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        with self.lock:
            session = self.sessions[session_id]
            now = self.now()
            session.terminal = None
            session.stop_at = session.stopped_at = None
            if status in (STARTING, READY):
                session.fail_message = None
                session.ready_at = now + (self.config.startup_delay if status == STARTING else 0.0)
            elif status == STOPPING:
                session.stop_at = now
                session.stopped_at = now + self.config.stop_delay
            else:
                default = {ERROR: "The session was put in error by the emulator's admin API."}
                default[EXPIRED] = EXPIRED_MESSAGE
                default[STOPPED] = STOPPED_MESSAGE
                session.terminal = (status, now, message if message is not None else default[status])
            self.save()
            return session

    # -- admin views ---------------------------------------------------------------------------

    def admin_view(self, session: Session, now: float | None = None) -> dict[str, Any]:
        """A session as ``GET /_emulator/state`` shows it (lower-case status and size)."""
        now = self.now() if now is None else now
        phase = session.phase(now)
        return {
            "id": session.id,
            "account_id": session.account_id,
            "dialect": session.dialect,
            "status": phase.status,
            "size": session.size,
            "created": _iso(session.created),
            "max_lease_time": format_timespan(session.lease),
            "lease_seconds": session.lease,
            "elapsed_seconds": session.elapsed(now, phase),
            "ready_at": _iso(session.ready_at) if phase.was_ready else None,
            "ended": _iso(phase.ended) if phase.ended is not None else None,
            "stop_requested": session.stop_at is not None,
            "message": phase.message,
            "hostname": session.hostname if phase.was_ready else None,
        }

    def snapshot(self) -> dict[str, Any]:
        """The body of ``GET /_emulator/state``."""
        with self.lock:
            now = self.now()
            sessions = [self.admin_view(s, now) for s in self.sessions.values()]
            return {
                "sessions": sessions,
                "active": sum(1 for s in sessions if s["status"] in ACTIVE),
                "counts": dict(self.counts),
                "faults": self.faults.to_list(),
                "emulated_time": _iso(now),
                "time_scale": self.clock.time_scale,
                "state_file": str(self.state_file) if self.state_file is not None else None,
            }
