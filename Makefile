# Two commands on a fresh clone: `make sweep` (the main job) and `make test`.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: sweep baseline demo test lint data docs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# The main job: a 30-trial Optuna sweep, resumed if it was interrupted.
sweep: $(VENV)/.installed
	$(PY) experiments/sweep.py --trials 30

# Replicate the published 10-epoch baseline (docs/baseline.md).
baseline: $(VENV)/.installed
	$(PY) experiments/baseline.py --seeds 5

# A first picture in five minutes: a short baseline, sweep and report on a subset, in demo/,
# then the MLflow UI and optuna-dashboard on them until Ctrl-C.
demo: $(VENV)/.installed
	$(PY) experiments/demo.py

data: $(VENV)/.installed
	$(PY) -m sae.data fetch

# The tests run in one process per core (pytest-xdist), each with one torch thread: two
# processes each asking for every core slow each other down many times over.
test: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(PY) -m pytest --numprocesses auto --dist load

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The documentation site (mkdocs.yml, docs/) into site/. --strict fails on any warning: a broken
# link or anchor, a page left out of the nav (no -q: it hides the warnings --strict counts).
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site
