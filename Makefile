PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench examples system-deps engine hub-image clean
# The container engine the tests drive (Podman's Docker-compatible service; scripts/container-engine.sh).
ENGINE_SOCK ?= /run/aidhub/podman.sock

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade uv
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

examples: $(STAMP)
	$(BIN)/python examples/build.py

run: examples
	scripts/run.sh

system-deps:
	scripts/system-deps.sh

engine: $(STAMP)
	AIDHUB_ENGINE_SOCK=$(ENGINE_SOCK) scripts/container-engine.sh
	scripts/base-image.sh

test: system-deps engine examples
	DOCKER_HOST=unix://$(ENGINE_SOCK) $(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: system-deps engine examples
	DOCKER_HOST=unix://$(ENGINE_SOCK) $(BIN)/python -m benchmarks

# The hub's own image (root Dockerfile), built offline from a wheelhouse that scripts/hub-image.sh fills.
# Where no registry answers: make hub-image HUB_BASE_IMAGE=aidhub/base:py3.11 (after make engine).
HUB_BASE_IMAGE ?= python:3.11-slim
HUB_IMAGE ?= aidhub/hub:latest
hub-image: $(STAMP)
	BASE_IMAGE=$(HUB_BASE_IMAGE) scripts/hub-image.sh $(HUB_IMAGE)

clean:
	rm -rf $(VENV) .cache
