# Both entry points create (or reuse) one virtual environment at .venv in the repo root,
# so .venv/bin/cloudml is the CLI afterwards.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.cloudml-installed
DEMO_NAME ?= mnist-cnn

.PHONY: install demo demo-aws demo-gcp demo-azure demo-clean check test test-fast bench test-assets

$(STAMP): pyproject.toml package.json package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# Azurite (Azure Blob Storage emulator) for the offline Azure ML emulator and its tests.
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

install: $(STAMP)

## Train the seed CNN, deploy it on the local provider, print a prediction.
demo: $(STAMP)
	$(BIN)/python examples/train_cnn.py --out build/models/cnn.h5
	$(BIN)/cloudml deploy build/models/cnn.h5 --name $(DEMO_NAME)
	$(BIN)/cloudml predict $(DEMO_NAME) --file build/models/cnn.sample.json

## The same model on "SageMaker", offline: the AWS emulator, deploy, predict, delete.
demo-aws: $(STAMP)
	$(BIN)/python examples/train_cnn.py --out build/models/cnn.h5
	CLOUDML=$(BIN)/cloudml localstack/demo.sh build/models/cnn.h5 build/models/cnn.sample.json

## The same on "Vertex AI" and on "Azure ML", against their offline emulators.
demo-gcp demo-azure: demo-%: $(STAMP)
	$(BIN)/python examples/train_cnn.py --out build/models/cnn.h5
	CLOUDML=$(BIN)/cloudml examples/cloud_demo.sh $* build/models/cnn.h5 build/models/cnn.sample.json

demo-clean: $(STAMP)
	$(BIN)/cloudml delete $(DEMO_NAME)

## What the runtime-image tests build from (linux/amd64 wheels in build/wheelhouse and, for the
## TensorFlow image, build/wheelhouse-tf; Debian .debs
## in build/debs), fetched here so the tests run offline; a no-op once fetched.
test-assets: $(STAMP)
	$(BIN)/python tools/runtime_assets.py

## Every test, slow ones included (what CI runs).
test: check test-assets
	$(BIN)/python -m pytest

## Only the fast tests (after the same static checks).
test-fast: check
	$(BIN)/python -m pytest -m "not slow"

## Static checks: the import graph (no cycle, layers respected), ruff, mypy.
check: $(STAMP)
	$(BIN)/python tools/check_imports.py
	$(BIN)/ruff check cloudml tests benchmarks tools
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/serve.py
