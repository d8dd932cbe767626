# Everything a fresh machine needs: `make demo` runs the tour, `make test` the whole suite.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo chat server test test-local lint pgbouncer postgres chromium bench bench-quick bench-scale eval-memory clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamp files: reinstall only when pyproject.toml changes.
$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The local model: llama-cpp-python compiles once (~6 min on 2 cores); pip caches the wheel afterwards.
# pip is quiet while it compiles, so a line every 30 s says it is still working (plain lines: CI logs too).
$(VENV)/.local-installed: pyproject.toml | $(BIN)/python
	@echo "installing the local model (compiling llama-cpp-python the first time takes ~6 minutes)..."
	@$(BIN)/pip install --quiet -e '.[local]' & pid=$$!; start=$$(date +%s); next=30; \
	while kill -0 $$pid 2>/dev/null; do \
	  sleep 1; elapsed=$$(( $$(date +%s) - start )); \
	  if [ $$elapsed -ge $$next ]; then echo "  still compiling llama-cpp-python ($$elapsed s)..."; next=$$((next + 30)); fi; \
	done; wait $$pid
	touch $@

demo: $(VENV)/.local-installed
	$(BIN)/convomem demo

chat: $(VENV)/.local-installed
	$(BIN)/convomem chat

# LangGraph Server (langgraph-cli is in the dev extra) on PORT, or CONVOMEM_SERVER_PORT, or 2024; a busy
# port is an error (langgraph dev itself would move to another port with only a warning).
PORT ?=
server: $(VENV)/.dev-installed $(VENV)/.local-installed
	$(BIN)/python -m graphs.serve $(if $(PORT),--port $(PORT))

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# PgBouncer (Debian's package) for the transaction-pooling test; installed when missing and we may.
pgbouncer:
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || \
	  { echo "installing pgbouncer for the PgBouncer test..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; }

# Debian's standalone Postgres for the parity tests (they run every scenario on it and on the embedded one).
postgres:
	@test -x /usr/lib/postgresql/15/bin/initdb || \
	  { echo "installing Debian's Postgres for the parity tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null; }

# Debian's Chromium for the web console's browser tests (Playwright drives it; it downloads no browser).
chromium:
	@command -v chromium >/dev/null || \
	  { echo "installing Chromium for the console's browser tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: lint pgbouncer postgres chromium
	$(BIN)/python -m pytest

test-local: $(VENV)/.dev-installed $(VENV)/.local-installed
	$(BIN)/python -m pytest -m local_llm

# Benchmarks side by side with the bare LangGraph recipe (bench/): report and plots in bench/results/.
# `bench` also times the local model when the `local` extra is installed (make demo installs it).
$(VENV)/.bench-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench

bench-quick: $(VENV)/.bench-installed
	$(BIN)/python -m bench --quick

# Scale-out (not in `bench`/`bench-quick` nor CI): convomem in 1, 2 and 4 processes on one Postgres, directly
# and through PgBouncer in transaction mode, with the CPU each side uses (~5 min): bench/results/scale_out.md.
bench-scale: $(VENV)/.bench-installed pgbouncer
	$(BIN)/python -m bench.scale_out

# Memory quality on the real local model (bench/memory_eval): counts per option, bench/results/memory_eval.md.
# EVAL_ARGS passes options, e.g. EVAL_ARGS='--option default --cases tour --runs 10'.
eval-memory: $(VENV)/.local-installed $(VENV)/.dev-installed
	$(BIN)/python -m bench.memory_eval $(EVAL_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .langgraph_api
