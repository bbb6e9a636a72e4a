"""The on-call command, end to end against the emulator: in-process (main(argv)) and as the
real `airflow arr ...` / `airflow-arr ...` processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_arr.cli import main, provider_cli_supported, stop_command
from airflow_provider_arr.hooks.arr import ArrHook
from airflow_provider_arr.ownership import OwnerRecord, record_key
from tests.conftest import Admin

pytestmark = pytest.mark.usefixtures("airflow_db", "arr_conn")
BIN = Path(sys.executable).parent


def stopped(admin: Admin) -> set[str]:
    return {s["id"] for s in admin.state()["sessions"] if s["stop_requested"]}


@pytest.fixture
def orphan_and_foreign() -> Iterator[tuple[str, str]]:
    """An orphan (its record names a run that does not exist) and a foreign session."""
    from airflow.models.variable import Variable

    hook = ArrHook()
    orphan, foreign = hook.create_session(), hook.create_session()
    record = OwnerRecord(session_id=orphan, dag_id="render", run_id="deleted-run", task_id="create")
    Variable.set(record_key(orphan), record.to_json())
    yield orphan, foreign
    for sid in (orphan, foreign):
        hook.ensure_stopped(sid)
    Variable.delete(record_key(orphan))


def test_stop_command_is_the_command_to_paste() -> None:
    assert provider_cli_supported()  # the pinned Airflow 3.3 reads the provider's `cli` entry
    assert stop_command("abc-123") == "airflow arr sessions stop abc-123"
    assert stop_command("abc", conn_id="arr prod") == "airflow arr sessions stop abc --conn-id 'arr prod'"


def test_list_shows_owners_as_the_sweep_sees_them(
    admin: Admin, orphan_and_foreign: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    orphan, foreign = orphan_and_foreign
    assert main(["sessions", "list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert "render / deleted-run / create" in lines[orphan] and "would stop" in lines[orphan]
    assert "foreign" in lines[foreign] and "kept" in lines[foreign]
    assert admin.counts()["stop"] == 0


def test_sweep_is_a_dry_run_unless_apply(
    admin: Admin, orphan_and_foreign: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    orphan, _ = orphan_and_foreign
    assert main(["sessions", "sweep", "--price-per-hour", "3"]) == 0
    out = capsys.readouterr().out
    assert "add --apply" in out and "cost would end: 3.00 per hour" in out
    assert admin.counts()["stop"] == 0
    assert main(["sessions", "sweep", "--apply", "--pace", "0"]) == 0
    assert "1 stopped" in capsys.readouterr().out
    assert stopped(admin) == {orphan}


def test_stop_and_bad_input(admin: Admin, capsys: pytest.CaptureFixture[str]) -> None:
    sid = ArrHook().create_session()
    assert main(["sessions", "stop", sid]) == 0
    assert stopped(admin) == {sid}
    assert main(["sessions", "stop", sid]) == 0  # again: already stopping counts as stopped
    assert main(["sessions", "stop", "bad id!"]) == 1
    assert "session_id" in capsys.readouterr().err
    assert main(["sessions", "sweep", "--max-age", "soon"]) == 2
    assert "max_age" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sessions", "frobnicate"])  # argparse refuses it


@pytest.mark.slow
def test_the_real_commands(admin: Admin, orphan_and_foreign: tuple[str, str]) -> None:
    orphan, foreign = orphan_and_foreign
    from airflow.configuration import conf

    # Unit-test mode makes up a Fernet key per process: share this one, as a deployment shares its key.
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW__CORE__FERNET_KEY": conf.get("core", "fernet_key"),
    }
    listed = subprocess.run(
        [str(BIN / "airflow"), "arr", "sessions", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert orphan in listed.stdout and "render / deleted-run / create" in listed.stdout
    script = subprocess.run(
        [str(BIN / "airflow-arr"), "sessions", "sweep", "--apply", "--pace", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert script.returncode == 0, script.stderr[-2000:]
    assert stopped(admin) == {orphan}
    pasted = subprocess.run(
        stop_command(foreign), shell=True, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert pasted.returncode == 0, pasted.stderr[-2000:]
    assert stopped(admin) == {orphan, foreign}
