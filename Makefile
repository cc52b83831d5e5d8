# The dev loop in one place; CI runs `make lint` then `make test` (see .ci/run).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install test test-postgres test-fast lint bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## test: the whole suite on SQLite, slow tests included, then the PostgreSQL pass (what CI runs)
test: install
	$(BIN)/pytest -q
	$(MAKE) test-postgres

## test-postgres: the backend-neutral tests again, each with a PostgreSQL database of its own
## (GRISTMILL_TEST_POSTGRES, default the local server). Tests marked slow (kill -9 runs,
## long jobs) run in the SQLite pass only, for CI time: without them this pass alone
## took 12 min on 2 busy cores. The slow PostgreSQL tests (several ingests on one
## catalog) make a database of their own, so the SQLite pass runs them.
test-postgres: install
	GRISTMILL_TEST_DATABASE=postgresql $(BIN)/pytest -q -m "not slow"

## test-fast: skip the tests marked slow, in parallel (one pytest worker per core)
test-fast: install
	$(BIN)/pytest -q -m "not slow" -n auto

## lint: ruff (style, bugs, complexity) over everything, then mypy (strict) over src;
## settings in pyproject.toml. CI runs it before the tests.
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

## bench: ingest benchmarks against the floors and the peer (see BENCHMARKS.md)
bench: install
	$(BIN)/python benchmarks/bench_ingest.py --help
