# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv test test-quick lint docs demo bench emulator dist deploy-test screenshots clean constraints compat

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e . --group dev
	touch $(STAMP)

# Lint first (ruff, formatting, mypy) and build the docs (strict), so that CI (`make test`) keeps
# the tree and the site clean. 4 workers (pytest-xdist): most tests wait on the emulator's rate
# limit, not on the 2 cores; one worker per test file, one for the whole real deployment
# (tests/conftest.py: pytest_xdist_make_scheduler). PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 4
XDIST := -n $(PYTEST_WORKERS)

test: lint docs
	ARR_DOCS_BUILT=1 $(BIN)/python -m pytest -q -p no:cacheprovider -rfEs --durations=15 $(XDIST) tests

test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(XDIST) -m "not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site (mkdocs.yml, docs/) into site/; --strict: a warning (broken link or
# reference, missing snippet) fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

emulator: $(STAMP)
	$(BIN)/arr-emulator

# The sdist and the wheel, into dist/ (with the pinned build tools of .venv, no download).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .

# The wheel on Airflow 3.0-3.3 x Python 3.10-3.13 (pyenv), one clean venv per cell under .compat/;
# writes docs/compatibility.md. One cell: make compat ARGS="--airflow 3.3.2 --python 3.11".
compat: $(STAMP)
	$(BIN)/python scripts/compat.py $(ARGS)

# The real-deployment tests alone: compose file, wheel install, the compose topology as processes
# (CeleryExecutor on Redis + PostgreSQL, 2 schedulers/triggerers/workers, kill -9 scenarios), UI.
# Writes benchmarks/DEPLOYMENT.md.
deploy-test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -rs tests/deployment

# Refresh the README's screenshots (docs/img/) from the UI test's real deployment.
screenshots: $(STAMP)
	ARR_UI_SCREENSHOTS=docs/img $(BIN)/python -m pytest -q -p no:cacheprovider -rs tests/deployment/test_ui.py

# Regenerate the pin file from the current venv (run after changing dependencies).
constraints:
	$(BIN)/python -m pip freeze --exclude-editable --all | grep -v '^airflow-provider-arr' > constraints.txt

clean:
	rm -rf $(VENV) .demo .compat build dist site *.egg-info
