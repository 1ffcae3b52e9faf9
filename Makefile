# The README's two commands are `make run` and `make test`; everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Stigg's published client schema, for the contract tests only (proprietary licence: loaded
# at test time, never copied into the repo). --no-deps: it pins tenacity<9 while the
# service's gql needs tenacity>=9.1.2; the tests use its sgqlc schema module alone.
STIGG_PUBLISHED_SCHEMA := stigg-api-client==6.25.0

.PHONY: run test lint install clean sfdx

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev,postgres,redis]'
	$(BIN)/python -m pip install --quiet --no-deps '$(STIGG_PUBLISHED_SCHEMA)'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) lint
	$(BIN)/python -m pytest

run: $(STAMP)
	$(BIN)/stigg-flow-actions serve

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache

# Regenerate the External Service registration in sfdx/ from the code (commit the result).
sfdx: $(STAMP)
	$(BIN)/python -m app.sfdx_registration

# Benchmarks (bench/README.md): not part of `make test`; about 14 minutes (bulk at Stigg's limits
# alone: .venv/bin/python bench/bulk.py); BENCH_ARGS=--profile
# adds a py-spy profile of the hot path.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
