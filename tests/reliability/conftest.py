"""The fault-matrix harness: run DAGs against one emulator per scenario, check after every run
that no session is left active and no secret showed up, and print the matrix at the end.

``pytest_terminal_summary`` prints the table whatever the verbosity (``make test`` runs ``-q``).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_arr.emulator import EmulatorServer
from tests.conftest import _HOME, ACCOUNT_KEY, Admin, connection_json

#: A distinctive part of the key, in case something printed it partly or re-encoded around it.
KEY_TAIL = ACCOUNT_KEY.rsplit("-", 1)[-1]
#: Anything shaped like a JWT (header.payload.signature, base64url of JSON objects).
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
STS_ISSUER_PART = "arr-emulator"

#: The example DAG's conf, every param always: dag.test() runs the module's very task objects,
#: and a run's conf stays in their params (tests/dags' max_lease_time "0:01:00" would leak in).
EXAMPLE_CONF = {
    "size": "standard",
    "max_lease_time": "1:00:00",
    "models": [],
    "poll_interval": 5,
    "render_seconds": 0,
}


# ------------------------------------------------------------------------------------------------
# The matrix table


@dataclass
class Row:
    """What one scenario did over its runs."""

    scenario: str
    runs: int = 0
    states: Counter[str] = field(default_factory=Counter)
    leaked: int = 0
    calls: int = 0
    created: int = 0
    seconds: float = 0.0


MATRIX: dict[str, Row] = {}


def record(scenario: str, state: str, *, leaked: int, calls: int, created: int, seconds: float) -> None:
    """Add one run to the matrix."""
    row = MATRIX.setdefault(scenario, Row(scenario))
    row.runs += 1
    row.states[state] += 1
    row.leaked += leaked
    row.calls += calls
    row.created += created
    row.seconds += seconds


def matrix_lines() -> list[str]:
    """The matrix as a text table."""
    header = ("scenario", "runs", "DAG-run state", "leaked", "calls", "sessions", "seconds")
    rows = [
        (
            r.scenario,
            str(r.runs),
            ", ".join(f"{s} x{n}" for s, n in sorted(r.states.items())),
            str(r.leaked),
            str(r.calls),
            str(r.created),
            f"{r.seconds:.1f}",
        )
        for r in sorted(MATRIX.values(), key=lambda r: _order(r.scenario))
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|-" + "-|-".join("-" * w for w in widths) + "-|"
    total = Row("total")
    for r in MATRIX.values():
        total.runs += r.runs
        total.leaked += r.leaked
        total.calls += r.calls
        total.created += r.created
        total.seconds += r.seconds
    footer = (
        "total",
        str(total.runs),
        "",
        str(total.leaked),
        str(total.calls),
        str(total.created),
        f"{total.seconds:.1f}",
    )
    return [line(header), rule, *(line(r) for r in rows), rule, line(footer)]


def _order(scenario: str) -> tuple[int, str]:
    head = scenario.split(" ", 1)[0].rstrip(".abcdefgh")
    return (int(head) if head.isdigit() else 99, scenario)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the fault matrix when any scenario ran."""
    if not MATRIX:
        return
    terminalreporter.write_sep("=", "ARR fault matrix (sessions leaked = active after the run)")
    for text in matrix_lines():
        terminalreporter.write_line(text)


# ------------------------------------------------------------------------------------------------
# Secrets


def _jwt_is_ours(token: str) -> bool:
    """True for a JWT issued by the (emulated) ARR STS, rather than e.g. Airflow's own."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, IndexError):
        return True  # unreadable: count it, to be safe
    return not isinstance(claims, dict) or "account-id" in claims or STS_ISSUER_PART in str(claims)


class SecretGuard:
    """Knows the account key and every token an emulator issued, and finds them in texts.

    Tokens are recorded as the emulator issues them (its registry forgets them when they are
    expired by the admin API), and any STS-issued JWT is caught by shape even if unknown.
    """

    def __init__(self, key: str = ACCOUNT_KEY) -> None:
        self.key = key
        self.tokens: list[str] = []

    def watch(self, server: EmulatorServer) -> None:
        """Record every token ``server`` issues from now on (restarts keep the registry)."""
        registry = server.state.tokens
        if getattr(registry, "_guarded", False):
            return
        issue = registry.issue

        def recording_issue(account_id: str, ttl: float) -> str:
            token = issue(account_id, ttl)
            self.tokens.append(token)
            return token

        registry.issue = recording_issue  # type: ignore[method-assign]
        registry._guarded = True  # type: ignore[attr-defined]

    def secrets(self) -> list[str]:
        """The key, its distinctive tail, and every token seen."""
        tail = self.key.rsplit("-", 1)[-1]
        return [self.key, *([tail] if len(tail) >= 12 else []), *self.tokens]

    def leaks(self, text: str) -> list[str]:
        """Descriptions of every secret found in ``text`` (empty when clean)."""
        found = [
            ("the account key" if s in (self.key, KEY_TAIL) else "an access token") + f" {s[:12]}..."
            for s in self.secrets()
            if s and s in text
        ]
        found += [f"an STS JWT {m[:16]}..." for m in JWT_RE.findall(text) if _jwt_is_ours(m)]
        return found

    def check(self, text: str, where: str) -> None:
        """Fail if ``text`` holds a secret, saying where it was and around what."""
        leaks = self.leaks(text)
        if leaks:
            snippet = _around(text, leaks[0].split(" ")[-1].rstrip("."))
            pytest.fail(f"secret in {where}: {leaks} ... {snippet}")


def _around(text: str, needle: str, width: int = 120) -> str:
    index = text.find(needle)
    return text[max(0, index - width) : index + width] if index >= 0 else ""


def scan_metadata_db(guard: SecretGuard, db: Path, where: str) -> dict[str, int]:
    """Scan every row of every table of the metadata DB (XCom, rendered fields, trigger kwargs,
    next_kwargs, run conf, audit log...); return the row count of each table, for the caller
    to check that what should be there is."""
    counts: dict[str, int] = {}
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()  # table names come from sqlite itself
            counts[table] = len(rows)
            text = "\n".join(repr(r) for r in rows)
            guard.check(text, f"{where}: metadata DB table {table}")
    return counts


def scan_log_files(guard: SecretGuard, where: str) -> int:
    """Scan every file under AIRFLOW_HOME/logs (task logs, if dag.test wrote any)."""
    scanned = 0
    for path in (_HOME / "logs").rglob("*"):
        if path.is_file():
            guard.check(path.read_text(errors="replace"), f"{where}: log file {path}")
            scanned += 1
    return scanned


# ------------------------------------------------------------------------------------------------
# The harness


@dataclass
class RunResult:
    """One DAG run: its state, its tasks' states, and what was printed while it ran."""

    state: str
    tasks: dict[str, str]
    run_id: str
    output: str
    seconds: float

    def __str__(self) -> str:
        """The tasks' states and the error lines of the output (for assertion messages)."""
        errors = [line for line in self.output.splitlines() if re.search(r"error|Error|Traceback", line)]
        return f"{self.tasks}\n" + "\n".join(line[:400] for line in errors[-30:])


class Harness:
    """One emulator for a scenario; runs, checks and records each run of it."""

    def __init__(
        self,
        server: EmulatorServer,
        monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
        guard: SecretGuard,
    ) -> None:
        self.server = server
        self.admin = Admin.of(server)
        self.monkeypatch = monkeypatch
        self.capfd = capfd
        self.caplog = caplog
        self.guard = guard
        self.extra_calls = 0
        self.extra_created = 0
        self.texts: list[str] = []
        guard.watch(server)
        caplog.set_level(logging.INFO)
        self.connect()

    def connect(self, api_version: str = "v1", **extra: Any) -> None:
        """Point ``arr_default`` at the emulator, with fast retries and an open pacer unless told
        otherwise (the faults are injected; the rate limit has tests of its own)."""
        extra = {
            "retry_wait_min": 0.05,
            "retry_wait_max": 1,
            "rate_limit": 100,
            "rate_burst": 100,
            "throttle_timeout": 20,
            "stop_timeout": 20,
            **extra,
        }
        self.monkeypatch.setenv(
            "AIRFLOW_CONN_ARR_DEFAULT", connection_json(self.server.url, api_version=api_version, **extra)
        )

    def reset(self, **knobs: Any) -> None:
        """Forget the previous run (sessions, counters, faults), then set ``knobs``."""
        self.admin.reset()
        self.extra_calls = self.extra_created = 0
        self.drain()
        if knobs:
            self.admin.config(**knobs)

    def drain(self) -> str:
        """What was printed or logged since the last drain."""
        out = self.capfd.readouterr()
        text = out.out + out.err + self.caplog.text
        self.caplog.clear()
        self.texts.append(text)
        return text

    def remember_counts(self) -> None:
        """Keep the calls and sessions counted so far (before a restart wipes the counters)."""
        state = self.admin.state()
        self.extra_calls += state["counts"]["requests"]
        self.extra_created += len(state["sessions"])

    def run(self, dag: Any, **conf: Any) -> RunResult:
        """Run ``dag`` with dag.test() in this process."""
        started = time.monotonic()
        dag_run = dag.test(run_conf=conf or None)
        seconds = time.monotonic() - started
        tasks = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
        return RunResult(str(dag_run.state), tasks, dag_run.run_id, self.drain(), seconds)

    def finish(self, scenario: str, label: str, *, seconds: float, text: str = "") -> dict[str, Any]:
        """After a run: no session active, no secret printed; record it in the matrix."""
        state = self.admin.state()
        leaked = int(state["active"])
        calls = int(state["counts"]["requests"]) + self.extra_calls
        created = len(state["sessions"]) + self.extra_created
        record(scenario, label, leaked=leaked, calls=calls, created=created, seconds=seconds)
        self.guard.check(text + self.drain(), f"{scenario}: output and logs")
        assert leaked == 0, f"{scenario}: {leaked} session(s) left active: {state['sessions']}"
        return state

    def scan_stores(self, where: str) -> dict[str, int]:
        """Scan the metadata DB and the log files for secrets."""
        scan_log_files(self.guard, where)
        return scan_metadata_db(self.guard, _HOME / "airflow.db", where)


@pytest.fixture
def guard() -> SecretGuard:
    """The secrets of this test (the account key; tokens as they are issued)."""
    return SecretGuard()


@pytest.fixture
def harness(
    *,
    airflow_db: Path,
    emulator_factory: Callable[..., EmulatorServer],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    guard: SecretGuard,
) -> Iterator[Harness]:
    """One emulator (sessions ready 20 ms after creation) and the harness around it; at the end,
    the metadata DB and log files are scanned for secrets."""
    server = emulator_factory(startup_delay=2, stop_delay=5, time_scale=100)
    harness = Harness(server, monkeypatch, capfd, caplog, guard)
    yield harness
    harness.scan_stores("after the scenario")
