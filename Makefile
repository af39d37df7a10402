# Release gatekeeper: `make help` lists the targets.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help install install-dev demo demo-kubernetes test test-unit test-e2e lint bench

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python  ## install the gatekeeper into .venv
	$(BIN)/pip install -q -e .

install-dev: $(BIN)/python  ## install the gatekeeper with test tools into .venv
	$(BIN)/pip install -q -e '.[dev,kubernetes,argo,api,postgres]'

demo: install  ## install, then run one good and one bad release on this machine
	$(BIN)/gatekeeper demo

EXECUTOR ?= local

demo-kubernetes: install-dev  ## build the test bed if needed, then a good and a bad release through its Gateway (EXECUTOR=argo: as Argo Workflows)
	scripts/testbed-build etcd kubernetes kwok traefik prometheus $(if $(filter argo,$(EXECUTOR)),argo)
	$(BIN)/python scripts/demo_kubernetes.py --executor $(EXECUTOR)

test: install-dev  ## install what the tests need (Prometheus, PostgreSQL, test bed); lint; run every test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	scripts/test-deps
	scripts/with-postgres scripts/run-tests

test-unit: install-dev  ## unit tests only
	$(BIN)/pytest tests/unit

test-e2e: install-dev  ## the Kubernetes and Argo test bed tests only
	scripts/test-deps
	$(BIN)/pytest tests/e2e

lint: install-dev  ## ruff (lint and format), mypy and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install-dev  ## benchmarks (on demand, not in CI)
	scripts/test-deps
	$(BIN)/python bench/gate_eval.py
	$(BIN)/python bench/detection.py
	$(BIN)/python bench/abort_delay.py
	$(BIN)/python bench/cli_start.py
