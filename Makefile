# Two commands on a fresh clone: `make baseline` (the main job, for now) and `make test`.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: baseline test lint data

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# The main job until the Optuna sweep lands: replicate the published 10-epoch baseline.
baseline: $(VENV)/.installed
	$(PY) experiments/baseline.py --seeds 5

data: $(VENV)/.installed
	$(PY) -m sae.data fetch

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
