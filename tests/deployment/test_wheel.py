"""The package as data teams install it: the wheel, in a fresh virtual environment with Airflow.

``make dist`` builds the sdist and the wheel (``python -m build``, the wheel from the sdist). The
wheel is installed with the pinned dependencies into a new virtual environment that has no
editable install and no repository on its path, and what a user would check is checked there,
with that environment's own ``airflow`` and ``arr-emulator`` commands, run from outside the
repository: Airflow lists the provider with its version, registers the connection type with its
form fields, and ``airflow connections test`` reaches a running ``arr-emulator`` through the hook.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import airflow_provider_arr
from tests.conftest import ACCOUNT_ID, ACCOUNT_KEY, Admin, connection_json

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
VERSION = airflow_provider_arr.__version__
DIST = "airflow_provider_arr"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built as ``make dist`` builds them."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheels = list(out.glob("*.whl"))
    sdists = list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


class Env:
    """A fresh virtual environment with the wheel installed, and a clean process environment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "venv" / "bin"
        self.home = root / "airflow-home"
        self.home.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON"))}
        self.env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db",
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "PATH": f"{self.bin}:{os.environ.get('PATH', '')}",
            }
        )

    def run(self, *argv: str, timeout: float = 180, check: bool = True) -> str:
        """Run a command of the environment; its output (stdout, then stderr when not checked)."""
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.root,  # not the repository: nothing of it may be importable
            timeout=timeout,
            check=False,
        )
        if not check:
            return done.stdout + done.stderr
        assert done.returncode == 0, (
            f"{argv} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
        return done.stdout

    def airflow_json(self, *args: str) -> Any:
        out = self.run(str(self.bin / "airflow"), *args, "--output", "json")
        return json.loads(out[out.index("[") :])


@pytest.fixture(scope="module")
def installed(dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Env:
    env = Env(tmp_path_factory.mktemp("wheel-env"))
    subprocess.run([sys.executable, "-m", "venv", str(env.root / "venv")], check=True, timeout=120)
    env.run(
        str(env.bin / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-c",
        str(REPO / "constraints.txt"),
        str(dist["wheel"]),
        timeout=900,
    )
    return env


def test_wheel_carries_the_package_the_types_and_the_emulator_not_the_tests(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = wheel.namelist()
        meta = wheel.read(f"{DIST}-{VERSION}.dist-info/entry_points.txt").decode()
        metadata = wheel.read(f"{DIST}-{VERSION}.dist-info/METADATA").decode()
    assert f"{DIST}/py.typed" in names
    assert f"{DIST}/emulator/app.py" in names and f"{DIST}/emulator/__main__.py" in names
    for module in ("hooks/arr.py", "operators/session.py", "sensors/session.py", "triggers/session.py"):
        assert f"{DIST}/{module}" in names, module
    assert not [n for n in names if n.startswith(("tests/", "dags/", "benchmarks/", "scripts/"))]
    assert (
        "[apache_airflow_provider]" in meta
        and "provider_info = airflow_provider_arr:get_provider_info" in meta
    )
    assert "arr-emulator = airflow_provider_arr.emulator.__main__:main" in meta
    assert f"Version: {VERSION}" in metadata
    assert re.search(r"^Requires-Dist: apache-airflow<4,>=3\.0$", metadata, re.M), metadata[:2000]
    assert f"{DIST}-{VERSION}.dist-info/licenses/LICENSE" in names


def test_metadata_is_that_of_an_official_provider(dist: dict[str, Path]) -> None:
    """SPDX license and its file, project URLs, dependencies (httpx too), no published dev extra."""
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        metadata = wheel.read(f"{DIST}-{VERSION}.dist-info/METADATA").decode()
        license_text = wheel.read(f"{DIST}-{VERSION}.dist-info/licenses/LICENSE").decode()
    headers, _, description = metadata.partition("\n\n")
    assert re.search(r"^License-Expression: Apache-2\.0$", headers, re.M), headers
    assert re.search(r"^License-File: LICENSE$", headers, re.M), headers
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in license_text
    assert not re.search(r"^Classifier: License ::", headers, re.M)  # PEP 639: the expression alone
    assert re.search(r"^Classifier: Development Status :: 4 - Beta$", headers, re.M)
    assert re.search(r"^Author: ", headers, re.M)
    urls = dict(re.findall(r"^Project-URL: ([^,]+), (\S+)$", headers, re.M))
    assert set(urls) == {"Homepage", "Documentation", "Source", "Issues", "Changelog"}, urls
    assert all(
        u.startswith("https://github.com/airflow-provider-arr/airflow-provider-arr") for u in urls.values()
    )
    requires = re.findall(r"^Requires-Dist: ([A-Za-z0-9_.-]+)([^;\n]*)$", headers, re.M)
    assert {name for name, _ in requires} == {"apache-airflow", "requests", "tenacity", "httpx"}, requires
    # The development tools are a PEP 735 dependency group: never published as an extra.
    assert re.findall(r"^Provides-Extra: (\S+)$", headers, re.M) == ["emulator"]
    # The README renders on the package index: its images are absolute URLs.
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", description)
    assert images and all(
        i.startswith("https://raw.githubusercontent.com/airflow-provider-arr/airflow-provider-arr/main/")
        for i in images
    ), images


def test_sdist_builds_the_wheel_and_has_the_sources(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = sdist.getnames()
    root = f"airflow_provider_arr-{VERSION}"
    for path in ("pyproject.toml", "README.md", "LICENSE", f"{DIST}/py.typed", f"{DIST}/emulator/app.py"):
        assert f"{root}/{path}" in names, path


def test_airflow_lists_the_provider_with_its_version(installed: Env) -> None:
    providers = installed.airflow_json("providers", "list")
    ours = [p for p in providers if p["package_name"] == "airflow-provider-arr"]
    assert ours and ours[0]["version"] == VERSION, providers


def test_connection_type_is_registered_with_its_form_fields(installed: Env) -> None:
    hooks = installed.airflow_json("providers", "hooks")
    ours = [h for h in hooks if h.get("connection_type") == "azure_remote_rendering"]
    assert ours and ours[0]["class"] == "airflow_provider_arr.hooks.arr.ArrHook", hooks
    widgets = installed.airflow_json("providers", "widgets")
    fields = {w["connection_parameter_name"] for w in widgets if w["package_name"] == "airflow-provider-arr"}
    for name in ("region", "account_domain", "sts_endpoint", "api_version"):
        assert f"extra__azure_remote_rendering__{name}" in fields, fields
    behaviours = installed.airflow_json("providers", "behaviours")
    assert {"field_behaviours": "azure_remote_rendering"} in behaviours


@pytest.fixture
def running_emulator(installed: Env) -> Iterator[str]:
    """The wheel's own ``arr-emulator`` command, on a free port."""
    proc = subprocess.Popen(
        [
            str(installed.bin / "arr-emulator"),
            "--port",
            "0",
            "--account-id",
            ACCOUNT_ID,
            "--account-key",
            ACCOUNT_KEY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=installed.env,
        cwd=installed.root,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"ARR emulator listening on (\S+)", line)
        assert found, f"arr-emulator printed {line!r} (exit {proc.poll()})"
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(20)


def test_arr_emulator_runs_and_airflow_connections_tooling_reaches_it(
    installed: Env, running_emulator: str
) -> None:
    installed.run(str(installed.bin / "arr-emulator"), "--help", timeout=60)
    installed.run(str(installed.bin / "airflow"), "db", "migrate", timeout=300)
    installed.run(
        str(installed.bin / "airflow"),
        "connections",
        "add",
        "arr_wheel",
        "--conn-json",
        connection_json(running_emulator),
    )
    got = installed.airflow_json("connections", "get", "arr_wheel")
    assert got[0]["conn_type"] == "azure_remote_rendering"
    assert got[0]["login"] == ACCOUNT_ID and got[0]["host"] == running_emulator
    before = Admin(running_emulator).counts()
    tested = installed.run(str(installed.bin / "airflow"), "connections", "test", "arr_wheel")
    assert "Connection success!" in tested, tested
    # It was the hook's test_connection: a token, then a list of the sessions.
    after = Admin(running_emulator).counts()
    assert after["token"] == before["token"] + 1 and after["list"] == before["list"] + 1, after

    wrong = json.loads(connection_json(running_emulator))
    wrong["password"] = "WRONG-" + ACCOUNT_KEY
    installed.run(
        str(installed.bin / "airflow"), "connections", "add", "arr_wrong", "--conn-json", json.dumps(wrong)
    )
    output = installed.run(str(installed.bin / "airflow"), "connections", "test", "arr_wrong", check=False)
    assert "Connection failed!" in output, output[-3000:]
    assert "401" in output, output[-3000:]  # the STS refused the key: the error says so
    assert ACCOUNT_KEY not in output  # ... without showing it


@pytest.mark.timeout(1800)  # a clean venv with Airflow from PyPI, then a DAG run: minutes on 2 cores
def test_the_main_line_cell_of_the_compatibility_matrix(dist: dict[str, Path], tmp_path: Path) -> None:
    """``make compat`` for Airflow 3.3.2 x Python 3.11 alone, on this wheel (the other cells: not in CI).

    The cell installs ``apache-airflow==3.3.2`` and the wheel from PyPI in a clean venv, then runs
    the smoke suite there: imports, the UI's connection form, ``get_provider_info()`` against that
    Airflow's schema, ``airflow providers list``, and the example DAG end to end (deferrable sensor)
    against the throttled emulator, its session stopped at the end.
    """
    results = tmp_path / "cells.json"
    # Its own process group, killed whole at the end: a timeout must not orphan the cell's emulator.
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "scripts" / "compat.py"),
            "--airflow", "3.3.2",
            "--python", "3.11",
            "--wheel", str(dist["wheel"]),
            "--cache-dir", str(tmp_path / "compat"),
            "--json", str(results),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=1700)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert results.exists(), output[-3000:]
    (cell,) = json.loads(results.read_text())
    assert cell["outcome"] == "pass", f"{cell['detail']}\n{output[-3000:]}"
    assert proc.returncode == 0
    assert set(cell["steps"]) >= {"install", "provider info schema", "providers list", "dags test"}, cell
