# saeembed: two commands on a fresh machine with Python 3.11.
#   make demo   install into .venv, fetch the default model and data, run the main job
#   make test   install with the dev extras, lint, run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is installed first and pinned, so pip never swaps in a different build (a CUDA build on a
# GPU machine is fine: set TORCH_SPEC to what you want).
TORCH_SPEC ?= torch==2.13.0
# The shared real data (HH-RLHF) sits beside the main checkout; a clone made elsewhere finds it
# through the variable the library reads (a value already in the environment wins).
SAEEMBED_HH_RLHF ?= $(firstword $(wildcard $(abspath ../shared/datasets/hh-rlhf) /work/shared/datasets/hh-rlhf))
ifneq ($(SAEEMBED_HH_RLHF),)
export SAEEMBED_HH_RLHF
endif

.PHONY: install demo test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

lint: install
	$(BIN)/ruff check saeembed tests benchmarks examples recipes
	$(BIN)/ruff format --check saeembed tests benchmarks examples recipes
	$(BIN)/python -m saeembed.templates

format: install
	$(BIN)/ruff format saeembed tests benchmarks examples recipes
	$(BIN)/ruff check --fix saeembed tests benchmarks examples recipes

test: lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/encode.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
