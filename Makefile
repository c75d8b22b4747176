# graphtap: every target does its own setup. A stamp per dependency set keeps
# repeated runs quick: nothing is reinstalled until pyproject.toml changes.

# The interpreter the virtual environments are built from (see scripts/find-python), looked
# up once per run; `make clean` before switching, since an existing .venv is kept.
ifndef PYTHON
PYTHON  := $(shell scripts/find-python)
endif
VENV    := .venv
BIN     := $(VENV)/bin
ENV     ?= dev
RUNTIME := $(VENV)/.runtime-installed
STACKS  := $(VENV)/.stacks-installed
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/.checkov-installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CHECKPOINT_DISABLE := 1
export DISABLE_VERSION_CHECK := 1

.PHONY: help demo test lint bench synth security snapshot outputs bootstrap doctor deploy-app clean browser

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

test: $(RUNTIME) $(STACKS) $(CHECKOV) browser lint
	$(BIN)/python -m pytest

lint: $(RUNTIME)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(RUNTIME) $(STACKS)
	$(BIN)/python scripts/bench.py

# Stacks: checkov pins its own dependency tree, so it lives in its own virtualenv.
$(CHECKOV):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q 'checkov==3.3.30'
	@touch $@

synth: $(STACKS)
	rm -rf cdktf.out
	$(BIN)/python -m stacks

security: synth $(CHECKOV)
	$(CHECKOV_VENV)/bin/checkov -d cdktf.out --config-file .checkov.yaml

snapshot: $(STACKS)
	GRAPHTAP_UPDATE_SNAPSHOTS=1 $(BIN)/python -m pytest -q tests/stacks/test_stacks_snapshots.py

outputs: $(STACKS)
	$(BIN)/python scripts/outputs.py $(ENV)

# Graph subscriptions: preflight the deployment, then reconcile (uses your Azure login locally).
bootstrap: $(RUNTIME)
	$(BIN)/graphtap bootstrap --env $(ENV)

doctor: $(RUNTIME)
	$(BIN)/graphtap doctor --env $(ENV)

# The status page's browser test renders in Debian's chromium: installed when apt can (CI runs
# as root); without it that one test skips and says why.
browser:
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || \
		apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium) || \
		echo "chromium could not be installed: the status-page browser test will skip"

deploy-app: $(RUNTIME)
	$(BIN)/python scripts/deploy_app.py $(ENV)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) cdktf.out .demo .bench .artifacts
