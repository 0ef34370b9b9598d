"""The Optuna sweep over beta, lr and batch size; each trial is one tracked training run.

Each trial is nested under one MLflow parent run per study. The study lives in an Optuna storage
(a journal file by default), so rerunning the same command resumes it, several worker processes
can share it, and with a database URL so can several machines.

config (SweepConfig), space, study (storage, sampler, pruner, objective names), recovery
(finished and interrupted trials), objective, progress (the console while trials train:
each running trial's epoch, the time left), notes (each trial's link to its MLflow run, the
study's note in optuna-dashboard), workers, front (degenerate trials kept off it, best trials:
the one front every view shows), dashboard (optuna-dashboard's app showing that front),
confirm (front trials trained with more seeds, compared with the baseline), summary, registry (the
chosen model in MLflow's model registry), run (run_sweep), importances (for the report).
"""

import importlib
from typing import Any

_WHERE = {
    "SweepConfig": "config",
    "read_space_file": "config",
    "CONFIRM_SEEDS": "confirm",
    "FrontComparison": "confirm",
    "best_trials": "front",
    "degenerate_reasons": "front",
    "MIN_IMPORTANCE_TRIALS": "importances",
    "param_importances": "importances",
    "MAX_RETRIES": "recovery",
    "counts_as_finished": "recovery",
    "finished_count": "recovery",
    "recover_interrupted": "recovery",
    "run_sweep": "run",
    "build_space": "space",
    "make_storage": "study",
    "open_study": "study",
    "SweepResult": "summary",
}
"""Each public name and its module, imported on first use (PEP 562): ``sae.sweep.space`` then
needs only Optuna, not MLflow and pandas (the GPU check draws trials from the space)."""

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
