# graphtap: every target does its own setup. A stamp per dependency set keeps
# repeated runs quick: nothing is reinstalled until pyproject.toml changes.

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
ENV     ?= dev
RUNTIME := $(VENV)/.runtime-installed
STACKS  := $(VENV)/.stacks-installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CHECKPOINT_DISABLE := 1
export DISABLE_VERSION_CHECK := 1

.PHONY: help demo test lint bench synth security snapshot outputs bootstrap doctor deploy-app clean

help:
	@echo "make demo                 the whole local path: keys, simulated tenant, processor, summary"
	@echo "make test                 lint, unit and end-to-end tests, stack synth and security checks"
	@echo "make lint                 ruff and mypy"
	@echo "make bench                throughput and quality figures, written to .bench/results.json"
	@echo "make synth                synthesize every environment's stack into cdktf.out/"
	@echo "make security             checkov on every synthesized stack"
	@echo "make snapshot             refresh the golden stack snapshots"
	@echo "make outputs ENV=dev      save a deployed stack's outputs for bootstrap"
	@echo "make bootstrap ENV=dev    register and reconcile the Graph subscriptions"
	@echo "make doctor ENV=dev       check the deployment before touching Graph"
	@echo "make deploy-app ENV=dev   package runtime/ and zip-deploy it"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(RUNTIME): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q -e '.[azure,dev]'
	@touch $@

$(STACKS): pyproject.toml | $(RUNTIME)
	$(BIN)/pip install -q -e '.[azure,dev,stacks]'
	@touch $@

demo: $(RUNTIME)
	$(BIN)/graphtap demo

test: $(RUNTIME) $(STACKS) lint
	$(BIN)/python -m pytest

lint: $(RUNTIME)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(RUNTIME) $(STACKS)
	$(BIN)/python scripts/bench.py

clean:
	rm -rf $(VENV) cdktf.out .demo .bench .artifacts
