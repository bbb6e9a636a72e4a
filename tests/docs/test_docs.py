"""The documentation site holds to the code: code blocks parse, the connection extras documented
are those the client reads (and the other way round), included snippets exist, the changelog's
top version is the package's, links hold, and ``mkdocs build --strict`` passes."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

import airflow_provider_arr
from airflow_provider_arr.connection_form import CONN_TYPE, EXTRA_NAMES

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
sys.path.insert(0, str(DOCS))
import hooks as docs_hooks  # noqa: E402  (docs/hooks.py, the MkDocs hook)

sys.path.remove(str(DOCS))

PAGES = sorted(DOCS.rglob("*.md"))
FILES = [*PAGES, REPO / "README.md", REPO / "CHANGELOG.md"]
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.M | re.S,
)
URI = re.compile(r"""azure-remote-rendering://[^\s'"]+""")


def blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """The fenced blocks of ``language`` in ``path``: (line number, body)."""
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        info = match["info"].strip().split()
        if info and info[0] == language:
            body = "\n".join(line.removeprefix(match["indent"]) for line in match["body"].splitlines())
            found.append((text.count("\n", 0, match.start()) + 1, body))
    return found


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_there_are_pages_python_blocks_and_includes() -> None:
    assert len(PAGES) >= 10
    assert sum(len(blocks(p, "python")) for p in FILES) >= 2
    assert sum(len(docs_hooks.SECTION_INCLUDE.findall(p.read_text())) for p in PAGES) >= 8


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_python_blocks_parse(path: Path) -> None:
    """Every python block parses; one included from a tested file is checked in that file instead."""
    for line, body in blocks(path, "python"):
        if body.strip().startswith("--8<--"):
            continue
        try:
            ast.parse(body)
        except SyntaxError as exc:
            pytest.fail(f"{rel(path)}:{line + (exc.lineno or 0)}: python block does not parse: {exc.msg}")


@pytest.mark.parametrize("path", PAGES, ids=rel)
def test_section_includes_exist(path: Path) -> None:
    """Every ``--8<-- "file.py:name"`` names a ``# [START name]`` section that exists (the build
    fails too; this says which page and section)."""
    for match in docs_hooks.SECTION_INCLUDE.finditer(path.read_text()):
        assert docs_hooks.section(match["path"], match["name"]).strip(), match.group(0)


def test_sections_found_by_the_hook_are_what_it_includes() -> None:
    text = docs_hooks.section("tests/dag_files/arr_docs_dags.py", "first_dag")
    assert text.startswith("from datetime import timedelta")
    assert "[START" not in text and "[END" not in text
    with pytest.raises(docs_hooks.DocsError):
        docs_hooks.section("tests/dag_files/arr_docs_dags.py", "no_such_section")


def table_extras(markdown: str) -> list[str]:
    """The extra names of the first column of the generated table."""
    return re.findall(r"^\| `([a-z_]+)` \|", markdown, re.M)


def test_connection_page_documents_exactly_the_extras_the_client_reads() -> None:
    page = (DOCS / "connection.md").read_text()
    assert docs_hooks.EXTRAS_MARKER in page, "connection.md lost its generated extras table"
    extras_section = docs_hooks.expand(page).split("\n## Extras\n", 1)[1].split("\n## ", 1)[0]
    names = table_extras(extras_section)
    assert len(names) == len(set(names))
    assert set(names) == EXTRA_NAMES


def documented_extras(path: Path) -> set[tuple[str, str]]:
    """Extras the page names: ``extra 'x'``/``extra `x```, the keys of connection JSON, URI queries."""
    text = path.read_text()
    # Error messages quoted in text blocks may name a wrong key on purpose (the unknown-extra error).
    prose = re.sub(r"^```text\n.*?^```", "", text, flags=re.M | re.S)
    found = {(m, "named") for m in re.findall(r"\bextras? [`']([a-z_]+)[`']", prose)}
    for match in re.finditer(r"AIRFLOW_CONN_[A-Z_]+='(\{.*?\})'", text, re.S):
        conn = json.loads(match[1])
        assert conn["conn_type"] == CONN_TYPE, conn
        found |= {(key, "json") for key in conn.get("extra", {})}
    for uri in URI.findall(text):
        found |= {(key, "uri") for key, _ in parse_qsl(urlsplit(uri).query) if key != "__extra__"}
    return found


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_every_extra_the_docs_name_exists(path: Path) -> None:
    for name, where in documented_extras(path):
        assert name in EXTRA_NAMES, (
            f"{rel(path)} names extra {name!r} ({where}), which the client does not read"
        )


def connection_examples() -> list[str]:
    """The AIRFLOW_CONN_ARR_DEFAULT values of the getting-started page's shell blocks."""
    values = []
    for _, body in blocks(DOCS / "getting-started.md", "sh"):
        for line in body.splitlines():
            if line.startswith("export AIRFLOW_CONN_ARR_DEFAULT="):
                values.append(shlex.split(line.removeprefix("export AIRFLOW_CONN_ARR_DEFAULT="))[0])
    return values


def test_getting_started_shows_the_connection_as_json_and_as_uri() -> None:
    values = connection_examples()
    assert any(v.startswith("{") for v in values) and any(
        v.startswith("azure-remote-rendering://") for v in values
    )


@pytest.mark.parametrize("value", connection_examples())
def test_connection_examples_reach_the_emulator(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSON and URI forms of getting-started.md, port changed to a fresh emulator's, work."""
    from airflow_provider_arr.emulator import EmulatorConfig, EmulatorServer
    from airflow_provider_arr.hooks.arr import ArrHook

    account = "00000000-0000-0000-0000-000000000001"
    server = EmulatorServer(
        EmulatorConfig(account_id=account, account_key="emulator-account-key-not-a-secret")
    )
    server.start()
    try:
        port = str(urlsplit(server.url).port)
        monkeypatch.setenv("AIRFLOW_CONN_ARR_DEFAULT", value.replace("8765", port))
        hook = ArrHook()
        assert hook.config.endpoint == server.url
        assert hook.config.sts_endpoint == server.url
        assert hook.list_sessions() == []
    finally:
        server.stop()


def test_changelog_top_version_is_the_package_version() -> None:
    versions = re.findall(r"^## \[?(\d+\.\d+\.\d+[^\]\s]*)\]?", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert versions, "CHANGELOG.md has no '## <version>' heading"
    assert versions[0] == airflow_provider_arr.__version__


def test_readme_links_into_the_site_hold() -> None:
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"\]\(((?:docs/|CHANGELOG)[^)#]*)(?:#[^)]*)?\)", readme)
    assert any(t.startswith("docs/") for t in targets)
    for target in targets:
        assert (REPO / target).exists(), f"README links to {target}, which does not exist"


@pytest.mark.skipif(
    os.environ.get("ARR_DOCS_BUILT") == "1", reason="make test built the site with `make docs` already"
)
def test_site_builds_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict``: a broken link, reference or include fails it."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "connection" / "index.html").is_file()
