"""MkDocs hooks: what the pages take from the code, so that they cannot drift from it.

* ``--8<-- "path/to/file.py:name"``, alone on a line, becomes a Python code block of the lines
  between ``# [START name]`` and ``# [END name]`` of that repository file (the markers Airflow's
  own docs use), dedented and titled with the file's path. A file or section that does not exist
  fails the build. Whole-file includes (``--8<-- "CHANGELOG.md"``) are left to
  ``pymdownx.snippets``.
* ``<!-- arr:extras-table -->`` becomes the table of every connection extra, generated from
  ``airflow_provider_arr/connection_form.py`` (``EXTRAS``, which the connection form and the client
  read too).
* ``<!-- arr:report benchmarks/REPORT.md shift=2 -->`` includes a generated report (``make
  bench``, ``make deploy-test``) with its headings ``shift`` levels down (default 1) and its plots
  (``plots/*.png`` beside the report) served from ``bench/plots/``, so the page shows what the
  last run wrote.
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
REPORT_INCLUDE = re.compile(r"^<!-- arr:report (?P<path>\S+\.md)(?: shift=(?P<shift>\d))? -->[ \t]*$", re.M)
PLOTS = ROOT / "benchmarks" / "plots"
PLOTS_URI = "bench/plots"
SECTION_INCLUDE = re.compile(
    r'^(?P<indent>[ \t]*)--8<-- "(?P<path>[^":]+\.py):(?P<name>[A-Za-z0-9_\-]+)"[ \t]*$', re.M
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


def report(path: str, shift: int = 1) -> str:
    """A generated Markdown report, its headings ``shift`` levels down (outside code blocks) and
    its ``plots/`` images pointing at where the site serves them."""
    file = ROOT / path
    if not file.is_file():
        raise DocsError(f"report {path!r} does not exist")
    out, fenced = [], False
    for line in file.read_text().splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        heading = not fenced and re.match(r"#{1,5} ", line)
        shifted = "#" * shift + line if heading else line
        out.append(shifted.replace("](plots/", f"]({PLOTS_URI}/"))
    return "\n".join(out)


def expand(markdown: str) -> str:
    """Apply the section and report includes and the extras table to one page's Markdown."""

    def include(match: re.Match[str]) -> str:
        block = f'```python title="{match["path"]}"\n{section(match["path"], match["name"])}\n```'
        return textwrap.indent(block, match["indent"]) if match["indent"] else block

    markdown = SECTION_INCLUDE.sub(include, markdown)
    markdown = REPORT_INCLUDE.sub(lambda m: report(m["path"], int(m["shift"] or 1)), markdown)
    if EXTRAS_MARKER in markdown:
        markdown = markdown.replace(EXTRAS_MARKER, extras_table())
    return markdown


# -- MkDocs events ---------------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    """Serve the benchmark plots; stand in for docs/compatibility.md until ``make compat`` writes it."""
    from mkdocs.structure.files import File

    for plot in sorted(PLOTS.glob("*.png")):
        files.append(File.generated(config, f"{PLOTS_URI}/{plot.name}", abs_src_path=str(plot)))
    if files.get_file_from_path("compatibility.md") is None:
        files.append(File.generated(config, "compatibility.md", content=COMPAT_STANDIN))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Expand this page's section includes and generated tables."""
    return expand(markdown)
