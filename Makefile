# mlwarden developer commands. Every target creates .venv itself on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned here (not in pyproject) so pip takes the CPU build from local disk.
TORCH := torch==2.13.0
DEMO_OUT ?= reports/demo

.PHONY: setup setup-dev demo test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.setup: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[onnx]'
	touch $@

$(VENV)/.setup-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(VENV)/.setup $@

setup: $(VENV)/.setup

setup-dev: $(VENV)/.setup-dev

demo: setup
	$(BIN)/mlwarden assess --model zoo:digits-cnn --data builtin:digits --max-samples 200 --out $(DEMO_OUT)

test: setup-dev
	$(BIN)/python -m pytest

bench: setup-dev
	$(BIN)/python benchmarks/run_all.py

lint: setup-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) reports .pytest_cache .mypy_cache .ruff_cache
