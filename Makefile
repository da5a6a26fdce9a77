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
	$(BIN)/pip install --quiet -e '.[onnx,program,sign]'
	touch $@

$(VENV)/.setup-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(VENV)/.setup $@

setup: $(VENV)/.setup

setup-dev: $(VENV)/.setup-dev

# The programme demo: train and sign the digits CNN, register its threat model, run the full
# assessment profile against it (recorded in the inventory), and write the programme report.
# One torch thread: on 2 busy cores, two spinning OpenMP threads slow the attacks several-fold.
DEMO_DB = sqlite:///$(abspath $(DEMO_OUT))/programme.db
# each run's reports in their own folder: a recorded report is never overwritten
DEMO_RUN_DIR := $(DEMO_OUT)/assessments/$(shell date -u +%Y%m%dT%H%M%SZ)
DEMO_RUN = OMP_NUM_THREADS=1 $(BIN)/mlwarden
demo: setup
	mkdir -p $(DEMO_OUT)
	cp examples/digits.threat-model.yaml $(DEMO_OUT)/digits.threat-model.yaml
	test -f $(DEMO_OUT)/digits-cnn.pt2 || $(DEMO_RUN) zoo train digits-cnn --out $(DEMO_OUT)/digits-cnn.pt2
	test -f $(DEMO_OUT)/keys/private.pem || $(DEMO_RUN) keygen --out $(DEMO_OUT)/keys
	$(DEMO_RUN) sign $(DEMO_OUT)/digits-cnn.pt2 --key $(DEMO_OUT)/keys/private.pem
	$(DEMO_RUN) program add-system $(DEMO_OUT)/digits.threat-model.yaml --replace --db $(DEMO_DB)
	$(DEMO_RUN) assess --model $(DEMO_OUT)/digits-cnn.pt2 --data builtin:digits --profile full \
		--max-samples 100 --fail-under robust_accuracy@0.05=0.6 \
		--require-signature $(DEMO_OUT)/keys/public.pem \
		--system digits --db $(DEMO_DB) --out $(DEMO_RUN_DIR) || test $$? -eq 3
	$(DEMO_RUN) program report --db $(DEMO_DB) --out $(DEMO_OUT)/program
	@echo "Programme report: $(abspath $(DEMO_OUT))/program/index.html"

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
