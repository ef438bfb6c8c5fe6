# Kubilitics Serverless: the commands the README and CI use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test test-unit lint format bench evals testbed-up testbed-down sam-build clean iam-check lambda-test soak fuzz

setup: $(STAMP)

# The venv is rebuilt when the pins change.
$(STAMP): requirements-dev.txt layers/deps/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

## run: set up, then serve the whole API on 127.0.0.1:8080 (AI routes also on :8081)
run: setup
	$(BIN)/kubilitics serve

## test: the whole suite (unit, integration on the test cluster, end-to-end on the local server)
# Tests on the simulated cluster get two reruns: its kubelet stand-in and exec are timing-sensitive
# on a loaded 2-core machine. A test that fails three times fails the run; -rR names the rerun ones,
# --durations=20 the 20 slowest tests.
test: setup testbed-up
	$(BIN)/pytest -q tests/unit
	$(BIN)/pytest -q -rR --durations=20 --reruns 2 --reruns-delay 3 tests/integration tests/e2e tests/testbed tests/faults

test-unit: setup
	$(BIN)/pytest -q tests/unit

## iam-check: run the integration tests recording each function's AWS calls; per function: calls vs
## what its role in template.yaml allows (denied ones fail), and grants no call used (tests/iam_check.py)
iam-check: setup testbed-up
	$(BIN)/python -m tests.iam_check

## lambda-test: `sam build`, then every function on the Lambda runtime (the Runtime Interface Emulator
## and awslambdaric, no Docker) with each events/ file; packaging limits; Init Duration per function
lambda-test: setup testbed-up
	$(BIN)/python -m tests.lambda_runtime

## soak: 50 clients mixing reads, writes, watches, logs, exec, investigations and chat against the
## local server for SOAK_SECONDS (10 minutes; CI runs 60 s): p50/p99 per route, no 5xx, RSS flat
## after warm-up, rate limits exact, no watch event lost (tests/soak.py)
SOAK_SECONDS ?= 600
soak: setup testbed-up
	$(BIN)/python -m tests.soak --seconds $(SOAK_SECONDS)

## fuzz: Schemathesis against the local server on the test cluster, every check, writes only in a
## scratch namespace; FUZZ_EXAMPLES per operation (100: over 5,000 requests; CI runs 5) (tests/fuzz.py)
FUZZ_EXAMPLES ?= 100
fuzz: setup testbed-up
	$(BIN)/python -m tests.fuzz --examples $(FUZZ_EXAMPLES)

## lint: ruff, mypy, and the SAM template (sam validate --lint, cfn-lint)
lint: setup
	$(BIN)/ruff check shared functions tests bench
	$(BIN)/ruff format --check shared functions tests bench
	$(BIN)/mypy
	bash scripts/sam/validate.sh

format: setup
	$(BIN)/ruff format shared functions tests bench
	$(BIN)/ruff check --fix shared functions tests bench

## bench: benchmarks print their figures (cold start per function, ...)
bench: setup
	$(BIN)/python -m bench

## evals: apply every diagnosis scenario (resources, namespaces, nodes, cluster) to the test cluster; accuracy per scope and category
evals: setup testbed-up
	$(BIN)/python -m tests.evals.run --api

testbed-up:
	bash scripts/testbed/up.sh

testbed-down:
	bash scripts/testbed/down.sh

sam-build:
	bash scripts/sam/build.sh

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
