# MediKIT scheduling server. `make run` and `make test` are all a new machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
PG_URL ?= postgres://postgres@127.0.0.1:5432/medikit
# Test processes (pytest-xdist): one per core. TEST_JOBS=0 runs in this process (debugging).
TEST_JOBS ?= auto

.PHONY: install run serve test test-full test-sqlite test-postgres bench bench-load fuzz lint format migrate clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

migrate: install
	DEBUG=1 $(BIN)/python manage.py migrate --noinput

run: install
	DEBUG=1 $(BIN)/python manage.py migrate --noinput
	DEBUG=1 $(BIN)/python manage.py seed_demo
	@DEBUG=1 HOST=$(HOST) PORT=$(PORT) $(BIN)/python scripts/print_quickstart.py
	DEBUG=1 $(BIN)/python manage.py runserver $(HOST):$(PORT)

# Production-style serving on PostgreSQL (see docs/deployment.md).
serve: install
	DATABASE_URL=$${DATABASE_URL:-$(PG_URL)} bash scripts/serve.sh

test: install
	$(BIN)/python -m pytest -n $(TEST_JOBS) $(PYTEST_ARGS)

# Release check: the property tests with many more examples, and a long fuzz campaign.
test-full: install
	MEDIKIT_PROPERTY_EXAMPLES=300 $(BIN)/python -m pytest -n $(TEST_JOBS) $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/bench_engine.py
	@if [ -f bench/bench_api.py ]; then $(BIN)/python bench/bench_api.py; fi
	@if [ -f bench/bench_booking.py ]; then $(BIN)/python bench/bench_booking.py; fi

# A release's fuzz campaign (tests/test_fuzz.py): FUZZ_REQUESTS requests against a live
# server on PostgreSQL; CI runs 10,000 with the suite.
FUZZ_REQUESTS ?= 100000
fuzz: install
	DATABASE_URL=$${DATABASE_URL:-$(PG_URL)} MEDIKIT_FUZZ_REQUESTS=$(FUZZ_REQUESTS) \
		$(BIN)/python -m pytest tests/test_fuzz.py -p no:cacheprovider -s --create-db $(PYTEST_ARGS)

bench-load: install
	DATABASE_URL=$${DATABASE_URL:-$(PG_URL)} $(BIN)/python bench/load.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=1 $(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-* staticfiles .pytest_cache .mypy_cache .ruff_cache
