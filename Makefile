# Reproducible MNIST pipeline. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
UV_VERSION := 0.13.8
BIN := $(abspath $(VENV))/bin
# .venv holds the core (pipeline, predictor, dev tools: locks/core.lock); each extra is added
# to it from locks/EXTRA.lock by the first target that needs it (the stamps say which are in)
STAMP := $(VENV)/.installed-core
TEAM_EXTRA := $(VENV)/.installed-team
SWEEP_EXTRA := $(VENV)/.installed-sweep
BROWSER_EXTRA := $(VENV)/.installed-browser
MONITOR_EXTRA := $(VENV)/.installed-monitor
# MLServer pins older fastapi/starlette/protobuf than the pipeline: serving has its own venv
SERVE_VENV ?= .venv-serve
SERVE_BIN := $(abspath $(SERVE_VENV))/bin
SERVE_STAMP := $(SERVE_VENV)/.installed-from-lock
ALIAS ?= champion
SERVE_PORT ?= 8080
MLFLOW_SERVE_PORT ?= 5002
TRITON_MODEL ?= models/model.onnx
# dvc plots show fills this page (.dvc/config): Vega inlined from plots/'s npm lock, no CDN
PLOTS_PAGE := plots/page.html
# make demo: the draw-a-digit page, onnxruntime-web from demo/'s npm lock (no CDN); npm ci
# writes the hidden lockfile, which stands for the whole installed node_modules
DEMO_SITE := demo/site
DEMO_PAGE := $(DEMO_SITE)/index.html
DEMO_NODE_MODULES := demo/node_modules/.package-lock.json
DEMO_PORT ?= 8000
BROWSER := /usr/bin/chromium
PG_BIN := /usr/lib/postgresql/15/bin
# Stages run `python -m stages.<name>` through DVC: the venv's python must come first.
export PATH := $(BIN):$(PATH)
export PYTHONHASHSEED := 0

.DEFAULT_GOAL := help
.PHONY: help setup setup-team setup-sweep setup-browser setup-monitor serve-setup browser postgres lock repro compare \
	reset test test-system test-slow test-all lint bench sweep sweep-queue champion promote rollback unpin history \
	serve serve-reload serve-mlflow triton-repo \
	demo monitor report team-up team-down team-status ui clean

# dvc exp show in 120 columns: the headline test figures and the params that differ
COMPARE = python -m tracking.experiments

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP) $(PLOTS_PAGE) ## create .venv (pipeline, predictor, dev tools: locks/core.lock) and the offline plots page

$(STAMP): locks/core.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@# sync: exactly the core, so an extra installed before is dropped and its stamp too;
	@# compiled now, so no first import (TensorFlow's: seconds) pays for it later
	$(BIN)/uv pip sync --compile-bytecode --python $(BIN)/python locks/core.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-team $(VENV)/.installed-sweep $(VENV)/.installed-browser \
		$(VENV)/.installed-monitor
	@touch $@

setup-team: $(TEAM_EXTRA) ## add the team extra to .venv (psycopg, boto3, dvc-s3, SeaweedFS, MLflow's auth app)
setup-sweep: $(SWEEP_EXTRA) ## add the sweep extra to .venv (Ray Tune)
setup-browser: $(BROWSER_EXTRA) ## add the browser extra to .venv (Playwright, which drives Debian's chromium)
setup-monitor: $(MONITOR_EXTRA) ## add the monitor extra to .venv (Evidently, for the drift report)

# each extra's lock is the core plus that extra, cut from one resolution: versions agree
$(VENV)/.installed-%: locks/%.lock $(STAMP)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r $<
	@touch $@

serve-setup: $(SERVE_STAMP) ## create .venv-serve (MLServer, tritonclient) from locks/serve.lock

$(SERVE_STAMP): locks/serve.lock pyproject.toml | $(STAMP)
	@test -x $(SERVE_BIN)/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(BIN)/uv pip sync --compile-bytecode --python $(SERVE_BIN)/python locks/serve.lock
	$(BIN)/uv pip install --python $(SERVE_BIN)/python --no-deps -e .
	@touch $@

$(PLOTS_PAGE): plots/package.json plots/package-lock.json plots/build_page.py | $(STAMP)
	npm ci --prefix plots --no-audit --no-fund --loglevel=error
	$(BIN)/python plots/build_page.py

browser: ## install Debian's chromium for the browser tests (as root, with apt-get)
	@test -x $(BROWSER) || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@test -x $(BROWSER) || { echo "browser: $(BROWSER) missing: install Debian's chromium" >&2; exit 1; }

postgres: ## install Debian's postgresql-15 for team mode and its tests (as root, with apt-get)
	@test -x $(PG_BIN)/initdb || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null; }
	@test -x $(PG_BIN)/initdb || { echo "postgres: $(PG_BIN)/initdb missing: install postgresql-15" >&2; exit 1; }

lock: ## re-resolve locks/ from pyproject.toml and serving/requirements.in (UPGRADE=--upgrade moves pins)
	@test -x $(BIN)/uv || $(MAKE) setup
	UV=$(BIN)/uv bash locks/compile.sh

repro: setup ## run the pipeline: dvc repro (fetch, preprocess, feedback, train, export, evaluate, quantize)
	@# DVC's closing "Use `dvc push`" hint is dropped while there is no remote to push to;
	@# unbuffered, so DVC's lines and the stages' stay in the order they were written; the
	@# filter ignores Ctrl-C, so it still shows the stage's "interrupted" line written after it
	set -o pipefail; if dvc remote default >/dev/null 2>&1; then dvc repro; \
	else PYTHONUNBUFFERED=1 dvc repro 2>&1 | (trap '' INT; exec sed -u '/^Use `dvc push` to send your updates/d'); fi

reset: setup ## back to the commit after an experiment in the workspace: params, dvc.lock, reports and outputs as HEAD has them (nothing retrained)
	@# --staged too: with core.autostage DVC stages the dvc.lock it wrote, which a plain
	@# `git checkout -- .` would bring back; the outputs come from DVC's cache
	git restore --source=HEAD --staged --worktree -- params.yaml dvc.lock reports
	dvc checkout --force --quiet || { echo "reset: HEAD's outputs are not in the DVC cache: dvc pull (or make repro)" >&2; exit 1; }
	@dvc status --quiet && echo "reset: the workspace is HEAD's: params, dvc.lock, reports and outputs"

compare: setup ## the experiments side by side in 120 columns: test figures and the params that differ (RUN=1: and each one's MLflow run)
	$(COMPARE) $(if $(RUN),--runs)

# pytest-xdist, a test module per worker at a time (module fixtures are built once) in the
# order collected: the end-to-end dvc repro, the longest, starts first (docs/development.md)
TEST_WORKERS ?= 2
SYSTEM_NEEDS := setup serve-setup browser postgres $(TEAM_EXTRA) $(SWEEP_EXTRA) $(BROWSER_EXTRA) \
	$(MONITOR_EXTRA) $(DEMO_PAGE)

test: setup ## the fast suite: unit, integration, a tiny end-to-end dvc repro (no root, no servers, no network)
	pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# the system and slow tiers on two workers too: most of their time is spent waiting for
# servers to start (an MLflow server: 40-70 s), and each module starts its own on free ports
test-system: $(SYSTEM_NEEDS) ## tests on real servers: browser, PostgreSQL, MLflow server, MLServer, the page (as root: apt-get)
	pytest -n $(TEST_WORKERS) --dist loadscope -m 'system and not slow and not realdata'

test-slow: $(SYSTEM_NEEDS) ## the slow tier and real MNIST from PyPI: whole pipelines, experiments, sweeps (as root)
	pytest -n $(TEST_WORKERS) --dist loadscope -m 'slow or realdata'

test-all: test test-system test-slow ## every tier: the fast suite, the system tier, slow tests and real MNIST from PyPI (as root)

lint: setup ## format check and lint (ruff format --check, ruff check, the CI workflow against its schema); `ruff format .` fixes the first
	ruff format --check .
	ruff check .
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

bench: setup serve-setup browser postgres $(TEAM_EXTRA) $(BROWSER_EXTRA) $(SWEEP_EXTRA) $(DEMO_NODE_MODULES) ## measure speed, memory and accuracy; writes reports/bench.json and BENCHMARKS.md
	python -m bench

# a grid of DVC experiments: every combination of the comma-separated values
SWEEP ?= -S 'train.dropout=0.2,0.3' -S 'train.hidden_units=[256],[512]'
SWEEP_WORKERS ?= 2

sweep: setup $(SWEEP_EXTRA) ## run a grid (SWEEP="-S key=a,b ...") on Ray (RAY_ADDRESS, else local): each trial a pushed DVC experiment and an MLflow run
	@status=0; python -m sweep $(SWEEP) --workers $(SWEEP_WORKERS) || status=$$?; \
		$(COMPARE); exit $$status

sweep-queue: setup ## the same grid on this machine alone: dvc exp run --queue, dvc queue start -j 2, show them
	dvc queue remove --failed --success -q  # earlier sweeps' finished tasks
	dvc exp run --queue $(SWEEP)
	dvc queue start -j $(SWEEP_WORKERS)
	@while dvc queue status | grep -qE 'Queued|Running'; do sleep 10; done
	dvc queue status
	$(COMPARE)
	@! dvc queue status | grep -q Failed || { echo "sweep: some experiments failed: dvc queue logs NAME" >&2; exit 1; }

champion: setup ## download the model deployment uses (registry alias @champion) to champion/model.onnx
	python -m tracking download champion champion

promote: setup ## move @champion to VERSION=N, pinned there, with REASON="why" (recorded: make history)
	@test -n "$(VERSION)" || { echo 'promote: say which version: make promote VERSION=N REASON="why"' >&2; exit 1; }
	python -m tracking promote "$(VERSION)" --reason "$(REASON)"

rollback: setup ## move @champion back to the version it named before its last move, pinned, with REASON="why"
	python -m tracking rollback --reason "$(REASON)"

unpin: setup ## hand @champion back to the champion rule of the next exports, with REASON="why"
	python -m tracking unpin --reason "$(REASON)"

history: setup ## every move of @champion: when, from, to, by whom (the rule or a person) and why
	python -m tracking history

serve: setup serve-setup ## serve @champion (ALIAS=...) with MLServer over the Open Inference Protocol on 127.0.0.1:8080
	python -m serving --alias $(ALIAS) --port $(SERVE_PORT) --mlserver $(SERVE_BIN)/mlserver

serve-reload: setup ## switch the running make serve (SERVE_PORT=...) to the version @champion (ALIAS=...) names now, without a restart
	python -m serving reload --alias $(ALIAS) --port $(SERVE_PORT)

serve-mlflow: setup ## serve @champion (ALIAS=...) with mlflow models serve on 127.0.0.1:5002 (/invocations)
	python -m serving --server mlflow --alias $(ALIAS) --port $(MLFLOW_SERVE_PORT)

triton-repo: setup ## write model_repository/ for Triton (config.pbtxt + 1/model.onnx) from models/model.onnx (TRITON_MODEL=...)
	python -m serving.triton $(TRITON_MODEL) model_repository

$(DEMO_NODE_MODULES): demo/package.json demo/package-lock.json
	npm ci --prefix demo --no-audit --no-fund --loglevel=error

$(DEMO_PAGE): $(DEMO_NODE_MODULES) demo/build.py $(wildcard demo/page/*) | $(STAMP)
	$(BIN)/python -m demo.build --out $(DEMO_SITE)

demo: setup $(DEMO_PAGE) ## serve the draw-a-digit page (the ONNX model run in the browser) on 127.0.0.1:8000 (DEMO_PORT=...)
	python -m demo --site $(DEMO_SITE) --port $(DEMO_PORT)

report: setup ## the review page of a change: reports/review/index.md against the merge base with main (docs/review.md)
	python -m report $(REPORT_ARGS)

monitor: setup $(MONITOR_EXTRA) ## drift report of the served model's request log (monitor.* in params.yaml): reports/monitoring/, an MLflow run; exit 1 on drift
	python -m monitor $(MONITOR_ARGS)

team-up: setup postgres $(TEAM_EXTRA) ## start the team stack (PostgreSQL, S3 store, mlflow server with logins and roles) and print its URI
	@python -m team up
	@echo 'team: each member logs in with their own name: .venv/bin/python -m team member add NAME --role member' >&2

team-down: ## stop the team stack; its data stays in .team/
	@python -m team down

team-status: ## say which team services run
	@python -m team status

ui: setup ## open the MLflow UI on the project's tracking store (http://127.0.0.1:5000; MLFLOW_UI_PORT=5100 make ui for another port)
	python -m tracking

clean: ## remove pipeline outputs (data, models, the page's built site; reports/ back to git's); keeps .venv and the MLflow store
	rm -rf data/raw/mnist.npz data/prepared models $(DEMO_SITE)
	git checkout -- reports
