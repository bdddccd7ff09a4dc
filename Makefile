# batchplane — every entry point a person or CI uses. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
PROTOS := $(shell find protos -name '*.proto')
GENERATED := src/batchplane/api/descriptors.pb

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(BIN)/uv
	$(BIN)/uv sync --frozen --quiet
	touch $@

$(GENERATED): $(PROTOS) tools/genproto.py $(VENV)/.synced
	$(BIN)/python tools/genproto.py

.PHONY: install
install: $(VENV)/.synced $(GENERATED) ## create .venv from uv.lock and generate code from protos/

.PHONY: protos
protos: $(VENV)/.synced ## regenerate Python code and the descriptor set from protos/
	$(BIN)/python tools/genproto.py

.PHONY: run
run: install ## run the whole stack locally (gateway on 127.0.0.1:8080); Ctrl-C stops it
	$(BIN)/batchplane run

.PHONY: test
test: install ## run the whole test suite (needs PostgreSQL at 127.0.0.1:5432)
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: lint
lint: install ## ruff, ruff format --check and mypy --strict
	$(BIN)/ruff check src tests tools bench
	$(BIN)/ruff format --check src tests tools bench
	$(BIN)/mypy

.PHONY: check
check: lint test ## what CI runs

.PHONY: bench
bench: install ## benchmark the whole pipeline vs its ceilings and Celery (BENCH_SCALE=quick|full; table and JSON in .bench/)
	$(BIN)/python -m bench.pipeline

.PHONY: clean
clean: ## remove the environment, generated code and local state
	rm -rf $(VENV) src/batchplane/api var .pytest_cache .mypy_cache .ruff_cache
