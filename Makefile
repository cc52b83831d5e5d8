# The dev loop in one place; CI runs `make test` (see .ci/run).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install test test-fast lint bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## test: the whole suite, slow tests included (what CI runs)
test: install
	$(BIN)/pytest -q

## test-fast: skip the tests marked slow
test-fast: install
	$(BIN)/pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check src tests benchmarks

## bench: ingest benchmarks against the floors and the peer (see BENCHMARKS.md)
bench: install
	$(BIN)/python benchmarks/bench_ingest.py --help
