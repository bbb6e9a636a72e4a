"""MkDocs hooks: what the pages take from the code, so that they cannot drift from it.

* ``--8<-- "path/to/file.py:name"`` includes the lines between ``# [START name]`` and
  ``# [END name]`` of a repository file (the markers Airflow's own docs use), dedented. A file or
  section that does not exist fails the build. Whole-file includes (``--8<-- "CHANGELOG.md"``) are
  left to ``pymdownx.snippets``.
* ``<!-- arr:extras-table -->`` becomes the table of every connection extra, generated from
  ``airflow_provider_arr/connection_form.py`` (``EXTRAS``, which the connection form and the client
  read too).
* ``docs/compatibility.md`` (written by ``make compat``) gets a stand-in page while it has not been
  generated yet, so that links to it hold.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_MARKER = "<!-- arr:extras-table -->"
SECTION_INCLUDE = re.compile(
    r'^(?P<indent>[ \t]*)--8<-- "(?P<path>[^":]+\.py):(?P<name>[A-Za-z0-9_\-]+)"\s*$', re.M
)
COMPAT_STANDIN = """# Compatibility

The Airflow x Python matrix is written here by `make compat` (it installs the wheel with each
Airflow release on each Python in a clean virtual environment and runs a smoke suite there).
This build was made before that table was generated.
"""


class DocsError(Exception):
    """A page asks for something the code does not have (MkDocs reports it and fails the build)."""


def section(path: str, name: str) -> str:
    """The dedented lines between ``# [START name]`` and ``# [END name]`` of ``path``."""
    file = ROOT / path
    if not file.is_file():
        raise DocsError(f"snippet file {path!r} does not exist")
    lines = file.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == f"# [START {name}]"]
    ends = [i for i, line in enumerate(lines) if line.strip() == f"# [END {name}]"]
    if len(starts) != 1 or len(ends) != 1 or ends[0] <= starts[0]:
        raise DocsError(f"{path}: expected one '# [START {name}]' before one '# [END {name}]'")
    body = [line for line in lines[starts[0] + 1 : ends[0]] if not re.match(r"\s*# \[(START|END) ", line)]
    return textwrap.dedent("\n".join(body)).strip("\n")


def _cell(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def extras_table() -> str:
    """The Markdown table of every connection extra, from ``connection_form.EXTRAS``."""
    from airflow_provider_arr.connection_form import EXTRAS

    rows = ["| extra | form label | type | default | meaning |", "|---|---|---|---|---|"]
    for extra in EXTRAS:
        kind = " or ".join(f"`{c}`" for c in extra.choices) if extra.choices else extra.kind
        description = extra.description.replace("|", "\\|")
        rows.append(f"| `{extra.name}` | {extra.label} | {kind} | {_cell(extra.default)} | {description} |")
    return "\n".join(rows)


def expand(markdown: str) -> str:
    """Apply the section includes and the extras table to one page's Markdown."""

    def include(match: re.Match[str]) -> str:
        text = section(match["path"], match["name"])
        return textwrap.indent(text, match["indent"]) if match["indent"] else text

    markdown = SECTION_INCLUDE.sub(include, markdown)
    if EXTRAS_MARKER in markdown:
        markdown = markdown.replace(EXTRAS_MARKER, extras_table())
    return markdown


# -- MkDocs events ---------------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    """Stand in for docs/compatibility.md until ``make compat`` writes it."""
    from mkdocs.structure.files import File

    if files.get_file_from_path("compatibility.md") is None:
        files.append(File.generated(config, "compatibility.md", content=COMPAT_STANDIN))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Expand this page's section includes and generated tables."""
    return expand(markdown)
