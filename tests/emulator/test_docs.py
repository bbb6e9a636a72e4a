"""docs/emulator.md names every option (with its default), environment variable and admin call."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from fastapi.routing import APIRoute

from airflow_provider_arr.emulator import create_app
from airflow_provider_arr.emulator.__main__ import build_parser
from airflow_provider_arr.emulator.config import ADMIN_TOKEN_ENV, STATE_FILE_ENV

DOC = (Path(__file__).resolve().parents[2] / "docs" / "emulator.md").read_text()


def option_rows() -> dict[str, str]:
    """Each option of the table, with its row."""
    rows = {}
    for line in DOC.splitlines():
        if line.startswith("| `--"):
            for option in re.findall(r"`(--[a-z-]+)", line.split("|")[1]):
                rows[option] = line
    return rows


def test_every_option_is_documented_with_its_default() -> None:
    rows = option_rows()
    options = [a for a in build_parser()._actions if not isinstance(a, argparse._HelpAction)]
    assert options
    for action in options:
        option = action.option_strings[-1]
        assert option in rows, f"{option} is not in the options table of docs/emulator.md"
        cells = [c.strip() for c in rows[option].split("|")]
        default = cells[2]
        if isinstance(action, argparse._StoreTrueAction):
            assert default == "off", option
        elif action.default is None:
            assert default == "none", option
        else:
            assert default == f"`{action.default}`", option
    assert set(rows) == {a.option_strings[-1] for a in options}, "the table names an option that is gone"


def test_every_environment_variable_is_documented() -> None:
    for variable in (STATE_FILE_ENV, ADMIN_TOKEN_ENV):
        assert f"| `{variable}` |" in DOC


def test_every_admin_call_is_documented() -> None:
    documented = set()
    for heading in re.findall(r"^### (.*)$", DOC, re.M):
        methods = re.findall(r"\b(GET|POST|DELETE)\b", heading)
        paths = re.findall(r"(/_emulator[^`\s]*)`", heading)
        documented |= {(method, path) for method in methods for path in paths}
    routes = [r for r in create_app().routes if isinstance(r, APIRoute) and r.path.startswith("/_emulator")]
    served = {(m, r.path.replace("{session_id}", "{id}")) for r in routes for m in r.methods}
    assert len(served) == 10
    assert served == documented
