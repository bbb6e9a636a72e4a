"""``make compat``: the provider's wheel on every Airflow 3 minor and every Python it supports.

Builds the wheel once, then for each cell of the matrix (Airflow version x Python) makes a clean
virtual environment under ``.compat/`` with that Python (a ``pyenv`` interpreter), installs
``apache-airflow==X`` and the wheel from PyPI, and runs the smoke suite there, from a directory
outside the repository so that only the installed wheel can be imported:

1. every module of the package imports, and the API server's connection form for the ARR
   connection type has the extras of ``connection_form.EXTRAS`` (``scripts/compat_cell.py``);
2. ``get_provider_info()`` validates against the ``provider_info.schema.json`` of that Airflow
   (``tests/unit/test_provider_info.py``, run by pytest in the cell);
3. ``airflow providers list`` shows the provider with its version;
4. the example DAG ``arr_render_session`` runs end to end with ``airflow dags test`` (which runs
   the deferrable sensor's trigger in line) against the wheel's own ``arr-emulator``, throttled at
   the documented rate; the run and its four tasks succeed, the sensor did defer, and the emulator
   reports every session stopped.

A cell whose Python the Airflow release does not support (its ``Requires-Python``, read from the
metadata of ``apache-airflow`` and ``apache-airflow-core`` on PyPI) is reported as such, not run.
The table goes to stdout and, for the full matrix (or with ``--doc``), to ``docs/compatibility.md``.

    python scripts/compat.py                               # the whole matrix, 2 cells at a time
    python scripts/compat.py --airflow 3.3.2 --python 3.11  # one cell
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_VERSIONS = ("3.0.6", "3.1.8", "3.2.2", "3.3.2")
PYTHON_VERSIONS = ("3.10", "3.11", "3.12", "3.13")
PIP = "pip==25.3"
#: Installed in every cell beside Airflow and the wheel: pytest runs the provider-info test, and
#: wtforms is what Airflow 3.0/3.1 build the connection form's extras with (it comes with the FAB
#: provider of the official image; without it those versions show no extras for any provider).
CELL_EXTRAS = ("pytest", "wtforms")
#: What a cell had to pin beyond ``apache-airflow==X``, with why: the official constraint files
#: cannot be downloaded here, so pip resolves the newest of everything from PyPI.
PINS: dict[str, list[tuple[str, str]]] = {
    "3.0.6": [
        (
            "fastapi<0.132",
            "FastAPI 0.132 rejects JSON bodies sent without a Content-Type, as the Task SDK 1.0 "
            "client sends them: every task fails to start (HTTP 422 on PATCH /task-instances/{id}/run)",
        ),
    ],
    "3.2.2": [
        (
            "fastapi<0.137",
            "with FastAPI >= 0.137 the execution API cannot build its routes (pydantic: 'Model "
            "TITerminalStatePayload needs a discriminator field'), so no task starts; Airflow 3.3.2 "
            "declares this very cap itself",
        ),
        (
            "svcs<26",
            "svcs 26 deletes app.state.svcs_registry when a lifespan context is finalized, and the "
            "in-process execution API of Airflow 3.2's `dags test` drops its lifespan's exit stack "
            "(fixed in 3.3): every task fails to start with KeyError 'svcs_registry'",
        ),
    ],
}

DAG_ID = "arr_render_session"
DAG_FILE = REPO / "dags" / "arr_render_session.py"
PROVIDER_INFO_TEST = REPO / "tests" / "unit" / "test_provider_info.py"
CELL_CHECKS = REPO / "scripts" / "compat_cell.py"
ACCOUNT_ID = "11111111-2222-3333-4444-555555555555"
ACCOUNT_KEY = "COMPAT-ACCOUNT-KEY-0123456789abcdef"
#: The throttle the README documents for the service (~1 call per 5 s per account, bursts of 5).
THROTTLE = ("--throttle-rate", "0.2", "--throttle-burst", "5")
#: A session starts in 300 emulated seconds, 30 real ones: long enough that the sensor, which
#: reads the session once before deferring, always finds it starting (a task takes up to ~10 s
#: to start under ``dags test`` on a loaded machine), and the trigger polls it several times.
EMULATOR_CLOCK = ("--startup-delay", "300", "--stop-delay", "5", "--time-scale", "10")
DAG_CONF = {"poll_interval": 5, "max_lease_time": "0:30:00"}
TASKS = ("create", "wait_ready", "render", "stop")

PASS, FAIL, UNSUPPORTED = "pass", "fail", "not supported by Airflow"


@dataclass
class Cell:
    """One Airflow x Python combination and what became of it."""

    airflow: str
    python: str
    outcome: str = ""
    seconds: float = 0.0
    detail: str = ""
    interpreter: str = ""
    log: str = ""
    steps: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"airflow-{self.airflow}-py{self.python}"


class CellFailed(Exception):
    """A smoke step failed; the message says which and why."""


# -- the matrix's inputs -----------------------------------------------------------------------


def find_interpreter(python: str) -> Path | None:
    """The newest ``pyenv`` interpreter of the ``3.N`` line, else ``python3.N`` on PATH."""
    try:
        root = Path(
            subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = [
        p
        for p in (root / "versions").glob(f"{python}.*")
        if re.fullmatch(rf"{re.escape(python)}\.\d+", p.name) and (p / "bin" / "python").exists()
    ]
    if found:
        newest = max(found, key=lambda p: Version(p.name))
        return newest / "bin" / "python"
    on_path = shutil.which(f"python{python}")
    return Path(on_path) if on_path else None


def interpreter_version(interpreter: Path) -> str:
    out = subprocess.run(
        [str(interpreter), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


_requires_lock = threading.Lock()


def requires_python(airflow: str, cache: Path) -> dict[str, str]:
    """``Requires-Python`` of ``apache-airflow`` and ``apache-airflow-core`` at that version, from PyPI."""
    with _requires_lock:
        saved = cache / "requires-python.json"
        known: dict[str, dict[str, str]] = json.loads(saved.read_text()) if saved.exists() else {}
        if airflow in known:
            return known[airflow]
        where = cache / "metadata" / airflow
        where.mkdir(parents=True, exist_ok=True)
        run_checked(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--no-deps", "--ignore-requires-python", "--only-binary=:all:", "--dest", str(where),
                f"apache-airflow=={airflow}", f"apache-airflow-core=={airflow}",
            ],
            timeout=600,
        )  # fmt: skip
        found: dict[str, str] = {}
        for wheel in where.glob("*.whl"):
            with zipfile.ZipFile(wheel) as zf:
                meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
                headers = HeaderParser().parsestr(zf.read(meta).decode())
            found[headers["Name"]] = headers.get("Requires-Python") or ""
        if len(found) != 2:
            raise RuntimeError(f"metadata of Airflow {airflow}: found {sorted(found)} in {where}")
        known[airflow] = found
        saved.write_text(json.dumps(known, indent=1, sort_keys=True))
        return found


def build_wheel(out: Path) -> Path:
    """The wheel, built once from this checkout (the build tools of the running environment)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run_checked(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)],
        timeout=600,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


# -- one cell ----------------------------------------------------------------------------------


def run_checked(argv: Sequence[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if done.returncode != 0:
        raise CellFailed(
            f"{' '.join(map(str, argv[:6]))} exited {done.returncode}: "
            f"{(done.stdout + done.stderr).strip()[-1500:]}"
        )
    return done


class Runner:
    """Runs one cell's steps, each logged and timed."""

    def __init__(self, cell: Cell, root: Path, wheel: Path, interpreter: Path) -> None:
        self.cell = cell
        self.root = root
        self.venv = root / "venv"
        self.bin = self.venv / "bin"
        self.home = root / "airflow-home"
        self.work = root / "work"  # the cwd of every command: the repository is not importable
        self.wheel = wheel
        self.interpreter = interpreter
        self.log_path = root / "cell.log"
        self.output = ""  # the last command's stdout and stderr
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))
        }

    def log(self, text: str) -> None:
        with self.log_path.open("a") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        self.log(f"==> {name}")
        try:
            yield
        except CellFailed as exc:
            raise CellFailed(f"{name}: {exc}") from None
        except subprocess.TimeoutExpired as exc:
            raise CellFailed(f"{name}: timed out after {exc.timeout:.0f} s") from None
        finally:
            self.cell.steps[name] = round(time.monotonic() - started, 1)

    def sh(self, *argv: str | Path, timeout: float = 600, env: dict[str, str] | None = None) -> str:
        args = [str(a) for a in argv]
        self.log("$ " + " ".join(args))
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or self.env,
            cwd=self.work,
            check=False,
        )
        self.output = done.stdout + done.stderr
        self.log(self.output)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise CellFailed(f"`{' '.join(args[:4])} ...` exited {done.returncode}:\n{tail}")
        return done.stdout

    def run(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.home.mkdir()
        (self.home / "dags").mkdir()
        self.cell.log = str(
            self.log_path.relative_to(REPO) if self.log_path.is_relative_to(REPO) else self.log_path
        )
        with self.step("venv"):
            self.sh(self.interpreter, "-m", "venv", self.venv)
            self.sh(
                self.bin / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", PIP
            )
        with self.step("install"):
            pins = [requirement for requirement, _ in PINS.get(self.cell.airflow, [])]
            self.sh(
                self.bin / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                f"apache-airflow=={self.cell.airflow}", str(self.wheel), *CELL_EXTRAS, *pins,
                timeout=1500,
            )  # fmt: skip
            (self.root / "pip-freeze.txt").write_text(
                self.sh(self.bin / "python", "-m", "pip", "freeze", "--disable-pip-version-check")
            )
        airflow_env = self.airflow_env()
        with self.step("imports and connection form"):
            shutil.copy(CELL_CHECKS, self.work / CELL_CHECKS.name)
            out = self.sh(self.bin / "python", self.work / CELL_CHECKS.name, env=airflow_env)
            report = json.loads(out.strip().splitlines()[-1])
            self.check_form(report["form"])
        with self.step("provider info schema"):
            shutil.copy(PROVIDER_INFO_TEST, self.work / PROVIDER_INFO_TEST.name)
            self.sh(
                self.bin / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
                self.work / PROVIDER_INFO_TEST.name, env=airflow_env,
            )  # fmt: skip
        with self.step("db migrate"):
            self.sh(self.bin / "airflow", "db", "migrate", env=airflow_env, timeout=600)
        with self.step("providers list"):
            out = self.sh(self.bin / "airflow", "providers", "list", "--output", "json", env=airflow_env)
            # Airflow 3.0 logs to stdout too: the JSON is the line that is a list of objects.
            (listing,) = [line for line in out.splitlines() if line.startswith("[{")]
            providers = json.loads(listing)
            ours = [p for p in providers if p.get("package_name") == "airflow-provider-arr"]
            version = self.wheel.name.split("-")[1]
            if not ours or ours[0].get("version") != version:
                raise CellFailed(f"airflow providers list has no airflow-provider-arr {version}: {ours}")
        with self.step("dags test"), self.emulator() as url:
            self.run_dag(airflow_env, url)

    def airflow_env(self) -> dict[str, str]:
        env = dict(self.env)
        env.update(
            {
                "PATH": f"{self.bin}:{self.env.get('PATH', '')}",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            }
        )
        return env

    def check_form(self, form: dict[str, Any]) -> None:
        wanted = sorted(json.loads(self.sh(self.bin / "python", "-c", EXTRA_NAMES_SNIPPET)))
        if form["extra_fields"] != wanted:
            raise CellFailed(f"the UI's connection form has extras {form['extra_fields']}, wanted {wanted}")
        standard = form["standard_fields"]
        if not (
            standard.get("port", {}).get("hidden") and standard.get("login", {}).get("title") == "Account ID"
        ):
            raise CellFailed(f"the UI's connection form lost its field behaviour: {standard}")
        if form["provider_deprecations"]:
            raise CellFailed(f"Airflow warned about the provider's form: {form['provider_deprecations']}")

    @contextmanager
    def emulator(self) -> Iterator[str]:
        """The wheel's ``arr-emulator``, from the cell's venv, on a free port, throttled."""
        argv = [
            str(self.bin / "arr-emulator"), "--port", "0", "--account-id", ACCOUNT_ID,
            "--account-key", ACCOUNT_KEY, *THROTTLE, *EMULATOR_CLOCK,
        ]  # fmt: skip
        self.log("$ " + " ".join(argv).replace(ACCOUNT_KEY, "***"))
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env, cwd=self.work
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            found = re.search(r"listening on (\S+)", line)
            if not found:
                raise CellFailed(f"arr-emulator printed {line!r} (exit {proc.poll()})")
            yield found.group(1)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def run_dag(self, airflow_env: dict[str, str], url: str) -> None:
        shutil.copy(DAG_FILE, self.home / "dags" / DAG_FILE.name)
        env = dict(airflow_env)
        env["AIRFLOW_CONN_ARR_DEFAULT"] = json.dumps(
            {
                "conn_type": "azure_remote_rendering",
                "login": ACCOUNT_ID,
                "password": ACCOUNT_KEY,
                "host": url,
                "extra": {"sts_endpoint": url},
            }
        )
        self.sh(
            self.bin / "airflow", "dags", "test", DAG_ID, "--conf", json.dumps(DAG_CONF), env=env, timeout=900
        )
        logged = self.output
        if "[DAG TEST] running trigger in line" not in logged:
            raise CellFailed(
                "wait_ready never deferred: no '[DAG TEST] running trigger in line' in the output"
            )
        # Airflow 3.0's in-process supervisor debug-logs the secrets masker's own requests, the
        # secret included ("Sending request msg=MaskSecret(value=...)"), for every connection's
        # password (its own Connection.get masks it): Airflow's, not the provider's.
        leaks = [line for line in logged.splitlines() if ACCOUNT_KEY in line and "MaskSecret(" not in line]
        if leaks:
            raise CellFailed(f"the account key appears in the output of airflow dags test: {leaks[0][:300]}")
        with sqlite3.connect(self.home / "airflow.db") as db:
            runs = db.execute("SELECT run_id, state FROM dag_run WHERE dag_id = ?", (DAG_ID,)).fetchall()
            tis = dict(
                db.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ?", (DAG_ID,)).fetchall()
            )
        if len(runs) != 1 or runs[0][1] != "success":
            raise CellFailed(f"dag runs {runs}, wanted one success; tasks {tis}")
        if {t: tis.get(t) for t in TASKS} != dict.fromkeys(TASKS, "success"):
            raise CellFailed(f"task states {tis}")
        with urllib.request.urlopen(f"{url}/_emulator/state", timeout=30) as answer:
            state = json.load(answer)
        statuses = [s["status"] for s in state["sessions"]]
        if len(statuses) != 1 or state["active"] != 0 or statuses[0].lower() != "stopped":
            raise CellFailed(
                f"the emulator's sessions are {statuses} (active {state['active']}), wanted one stopped"
            )
        self.log(f"emulator counts: {state['counts']}")


EXTRA_NAMES_SNIPPET = (
    "import json; from airflow_provider_arr.connection_form import EXTRA_NAMES; "
    "print(json.dumps(sorted(EXTRA_NAMES)))"
)


def run_cell(cell: Cell, cache: Path, wheel: Path) -> Cell:
    started = time.monotonic()
    try:
        interpreter = find_interpreter(cell.python)
        if interpreter is None:
            cell.outcome, cell.detail = (
                FAIL,
                f"no Python {cell.python} interpreter (pyenv install {cell.python})",
            )
            return cell
        full = interpreter_version(interpreter)
        cell.interpreter = full
        needs = requires_python(cell.airflow, cache)
        # The X.Y line too: "!=3.13" excludes 3.13.0 but, to PEP 440, not 3.13.1, and it means the line.
        refused = {
            name: spec
            for name, spec in needs.items()
            if spec and not all(SpecifierSet(spec).contains(v, prereleases=True) for v in (full, cell.python))
        }
        if refused:
            cell.outcome = UNSUPPORTED
            cell.detail = ", ".join(
                f"{name} Requires-Python {spec}" for name, spec in sorted(refused.items())
            )
            return cell
        Runner(cell, cache / "cells" / cell.name, wheel, interpreter).run()
        cell.outcome = PASS
    except CellFailed as exc:
        cell.outcome, cell.detail = FAIL, str(exc)
    except Exception as exc:  # a bug of this script must still leave the other cells' results
        cell.outcome, cell.detail = FAIL, f"{type(exc).__name__}: {exc}"
    finally:
        cell.seconds = round(time.monotonic() - started, 1)
    return cell


# -- the table ---------------------------------------------------------------------------------


def label(cell: Cell) -> str:
    if cell.outcome == UNSUPPORTED:
        return UNSUPPORTED
    return f"{cell.outcome} ({cell.seconds:.0f} s)"


def table(cells: list[Cell]) -> str:
    airflows = sorted({c.airflow for c in cells}, key=Version)
    pythons = sorted({c.python for c in cells}, key=Version)
    by = {(c.airflow, c.python): c for c in cells}
    lines = ["| Airflow | " + " | ".join(f"Python {p}" for p in pythons) + " |"]
    lines.append("|---" * (len(pythons) + 1) + "|")
    for a in airflows:
        row = [label(by[a, p]) if (a, p) in by else "" for p in pythons]
        lines.append(f"| {a} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def details(cells: list[Cell]) -> str:
    out = []
    for c in cells:
        if c.outcome == FAIL:
            out.append(f"- **{c.airflow} x Python {c.python}** failed: {c.detail.strip()}")
        elif c.outcome == UNSUPPORTED:
            out.append(f"- {c.airflow} x Python {c.python}: {c.detail}")
    return "\n".join(out)


def document(cells: list[Cell], wheel: Path, started: str) -> str:
    pins = (
        "\n".join(f"- Airflow {a}: `{req}`: {why}." for a, p in sorted(PINS.items()) for req, why in p)
        or "- none: every cell resolved from PyPI with only `apache-airflow==X` pinned."
    )
    interpreters = sorted({f"{c.python}: {c.interpreter}" for c in cells if c.interpreter})
    return f"""# Compatibility

The provider's wheel, installed with `pip install apache-airflow==X <wheel>` in a clean virtual
environment of each Python, and smoke-tested there by `make compat` (`scripts/compat.py`): every
module imports; the API server's connection form has every extra of
`connection_form.EXTRAS` and the field behaviour (`get_connection_form_widgets()` before 3.2,
`conn-fields` from 3.2); `get_provider_info()` validates against that Airflow's
`provider_info.schema.json`; `airflow providers list` shows the provider; and the example DAG
`{DAG_ID}` runs end to end with `airflow dags test` (the deferrable sensor's trigger runs in
line) against the wheel's `arr-emulator` throttled at the documented rate
(`{" ".join(THROTTLE)}`), ending with its session stopped (`GET /_emulator/state`).
A Python that the Airflow release's `Requires-Python` excludes is "{UNSUPPORTED}".

Run {started} with `{wheel.name}`; seconds are the whole cell (venv, install, checks) on a
2-core machine shared with other work.

{table(cells)}

{details(cells)}

Interpreters (pyenv): {", ".join(interpreters)}.

Installed beside Airflow and the wheel in every cell: {", ".join(f"`{e}`" for e in CELL_EXTRAS)}
(pytest runs the provider-info test; wtforms is what Airflow 3.0 and 3.1 build provider
connection-form extras with, and comes with the FAB provider). The official constraint files
cannot be downloaded in this environment, so pip resolves the newest of every dependency from
PyPI. Pins that had to be added:

{pins}

Known differences between the versions (the first and last handled in `airflow_provider_arr/_compat.py`):

- Before Airflow 3.3 the triggerer never calls a trigger's `on_kill()`: a user marking the
  waiting task failed or success (or clearing it) does not stop the session from the trigger;
  the DAG's `stop` teardown, or the session's lease, ends it.
- Airflow 3.0's `airflow dags test` prints the secrets masker's own requests at debug level,
  secret included (`Sending request msg=MaskSecret(value=...)`): it does so for any connection's
  password, as its own `Connection.get` masks it; the smoke's leak check ignores those lines
  only, and finds the key nowhere else.
- Before Airflow 3.2 the connection form comes from the hook's `get_connection_form_widgets()`
  (wtforms fields built from the same `EXTRAS`), which needs wtforms installed.

Reproduce one cell: `.venv/bin/python scripts/compat.py --airflow 3.3.2 --python 3.11`.
Logs and `pip freeze` of each cell: `.compat/cells/<cell>/`.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--airflow", action="append", help=f"Airflow version(s), default {AIRFLOW_VERSIONS}")
    parser.add_argument("--python", action="append", help=f"Python line(s), default {PYTHON_VERSIONS}")
    parser.add_argument("--jobs", type=int, default=2, choices=(1, 2), help="cells run at once (2 cores)")
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".compat", help="venvs, logs, wheel")
    parser.add_argument("--wheel", type=Path, help="test this wheel instead of building one")
    parser.add_argument("--doc", type=Path, help="write the table there (default: the full matrix only)")
    parser.add_argument("--json", type=Path, help="also write the cells' results as JSON there")
    args = parser.parse_args(argv)

    airflows = [v for arg in args.airflow or AIRFLOW_VERSIONS for v in arg.split(",")]
    pythons = [v for arg in args.python or PYTHON_VERSIONS for v in arg.split(",")]
    full = args.airflow is None and args.python is None
    doc = args.doc or (REPO / "docs" / "compatibility.md" if full else None)
    cache = args.cache_dir.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    wheel = args.wheel.resolve() if args.wheel else build_wheel(cache / "dist")
    print(f"wheel: {wheel.name}; cells: {len(airflows) * len(pythons)}, {args.jobs} at a time", flush=True)
    cells = [Cell(a, p) for a in airflows for p in pythons]

    def one(cell: Cell) -> Cell:
        done = run_cell(cell, cache, wheel)
        print(f"{done.airflow:>6} x {done.python:<5} {label(done)}  {done.detail[:300]}", flush=True)
        return done

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(one, cells))

    print()
    print(table(results))
    if details(results):
        print()
        print(details(results))
    if doc:
        doc.write_text(document(results, wheel, started))
        print(f"\nwritten to {doc}")
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in results], indent=1))
    return 0 if all(c.outcome in (PASS, UNSUPPORTED) for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())
