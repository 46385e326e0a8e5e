# The two commands of the README: `make run` and `make test`. Both build their own virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: run test lint typecheck pytest bench bench-inbound bench-outbound bench-quick bench-memory chaos clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

run: $(BIN)/.installed
	@./scripts/ensure-redis-server.sh
	$(BIN)/threadline serve --port $(PORT)

test: $(BIN)/.installed
	@./scripts/ensure-redis-server.sh
	@./scripts/ensure-chromium.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# Benchmarks (scripts that print figures; see bench/README.md). Each is bounded in time.
$(BIN)/.bench: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[test,bench]'
	@touch $@

bench: bench-inbound bench-outbound

bench-inbound: $(BIN)/.bench
	@./scripts/ensure-redis-server.sh
	$(BIN)/python -m bench.inbound

bench-outbound: $(BIN)/.bench
	@./scripts/ensure-redis-server.sh
	$(BIN)/python -m bench.outbound

bench-memory: $(BIN)/.bench
	@./scripts/ensure-redis-server.sh
	$(BIN)/python -m bench.memory

bench-quick: $(BIN)/.bench
	@./scripts/ensure-redis-server.sh
	$(BIN)/python -m bench.inbound --duration 4
	$(BIN)/python -m bench.outbound --quick

# Faults under load (actor kills, a Redis crash, provider 5xx); exits 1 if anything is lost or doubled.
chaos: $(BIN)/.installed
	$(BIN)/python bench/chaos.py --short

clean:
	rm -rf $(VENV) .threadline .pytest_cache .mypy_cache .ruff_cache
