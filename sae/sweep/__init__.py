"""The Optuna sweep over beta, lr and batch size; each trial is one tracked training run.

Each trial is nested under one MLflow parent run per study. The study lives in an Optuna storage
(a journal file by default), so rerunning the same command resumes it, several worker processes
can share it, and with a database URL so can several machines.

config (SweepConfig), space, study (storage, sampler, pruner, objective names), recovery
(finished and interrupted trials), objective, notes (each trial's link to its MLflow run, the
study's note in optuna-dashboard), workers, front (degenerate trials kept off it, best trials),
confirm (front trials trained with more seeds, compared with the baseline), summary, registry (the
chosen model in MLflow's model registry), run (run_sweep), importances (for the report).
"""

from sae.sweep.config import SweepConfig, read_space_file
from sae.sweep.confirm import CONFIRM_SEEDS, FrontComparison
from sae.sweep.front import best_trials, degenerate_reasons
from sae.sweep.importances import MIN_IMPORTANCE_TRIALS, param_importances
from sae.sweep.recovery import (
    MAX_RETRIES,
    counts_as_finished,
    finished_count,
    recover_interrupted,
)
from sae.sweep.run import run_sweep
from sae.sweep.space import build_space
from sae.sweep.study import make_storage, open_study
from sae.sweep.summary import SweepResult

__all__ = [
    "CONFIRM_SEEDS",
    "FrontComparison",
    "MAX_RETRIES",
    "MIN_IMPORTANCE_TRIALS",
    "SweepConfig",
    "SweepResult",
    "best_trials",
    "build_space",
    "counts_as_finished",
    "degenerate_reasons",
    "finished_count",
    "make_storage",
    "open_study",
    "param_importances",
    "read_space_file",
    "recover_interrupted",
    "run_sweep",
]
