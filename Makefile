# Amends — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
# The development tools (local stack, demo, bench) run from the checkout, not installed.
DEVTOOLS := $(BIN)/python -m devtools

.DEFAULT_GOAL := install

.PHONY: help install tools up down status demo test test-unit test-integration lint fmt bench bench-quick schemas compose-up compose-down clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install Amends (the `amends` command) and the dev tools' dependencies

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(UV) pip install --quiet --python $(BIN)/python -r requirements.txt
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

up: install tools ## start the local stack (Kafka, FerretDB, Prometheus) and the three services
	$(DEVTOOLS) stack up --services

down: install ## stop everything the local stack started (data is kept)
	$(DEVTOOLS) stack down

status: install ## show what the local stack runs
	$(DEVTOOLS) stack status

demo: install tools ## bring everything up, play a short scenario, print what happened
	$(DEVTOOLS) demo

tools: ## the system tools the tests and the stack need (Prometheus and Chromium from Debian's packages, axe-core by npm)
	@scripts/system-tools

test: install tools ## the whole test suite (starts the local stack if nothing else is given)
	@if command -v go >/dev/null; then cd deploy/ferretdb && go test .; \
	else echo "no go command: the FerretDB launcher's test is skipped"; fi
	$(BIN)/pytest

test-unit: install ## the fast tests: pure code and fakes
	$(BIN)/pytest -m "unit or component"

test-integration: install ## tests against real Kafka and MongoDB
	$(BIN)/pytest -m "integration or e2e"

lint: install ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/mypy amends devtools schemas services tests

fmt: install ## fix what ruff can fix
	$(BIN)/ruff check --fix .

bench: install ## measure throughput and latency on the local stack (a table and a JSON file)
	$(DEVTOOLS) bench

bench-quick: install ## a smoke run of the benchmark (small counts, a couple of minutes)
	$(DEVTOOLS) bench --quick

schemas: install ## regenerate the JSON Schemas and the AsyncAPI documents
	$(BIN)/python -m schemas.generate

COMPOSE := docker compose -f deploy/docker-compose.yml

compose-up: ## with Docker: build the image and run everything (Kafka, MongoDB, services, Prometheus, Grafana, Mailpit)
	$(COMPOSE) up --build --detach
	$(COMPOSE) ps

compose-down: ## with Docker: stop and remove the containers (add ARGS=-v to drop the data too)
	$(COMPOSE) down $(ARGS)

clean: ## remove the virtual environment and caches (not the stack's data)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
