"""docs/troubleshooting.md quotes the errors users see, as the code raises them today.

Each case of troubleshooting_cases.py arranges the failure against the emulator; the page must
hold the resulting text (ids, ports, MS-CV and numbers compared loosely).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.troubleshooting_cases import CASES, normalise, shown

PAGE = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", sorted(CASES))
def test_page_quotes_the_real_message(name: str) -> None:
    text = shown(CASES[name]())
    assert normalise(text) in normalise(PAGE.read_text()), (
        f"docs/troubleshooting.md does not quote the {name} message as raised today:\n{text}"
    )
