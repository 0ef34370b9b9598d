"""A study's summary: the trials table, the best trials, Optuna's plots, on the parent run."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from sae import metrics as M
from sae import tracking
from sae.baseline import tracked_reference
from sae.names import (
    ATTR_ACTIVE,
    ATTR_CONSTRAINT,
    ATTR_FAIL_REASON,
    ATTR_RETRY_OF,
    ATTR_RUN_ID,
    ATTR_TEST_MSE,
)
from sae.redact import redact
from sae.sweep.config import SweepConfig
from sae.sweep.recovery import finished_count


@dataclass
class SweepResult:
    study: optuna.Study
    parent_run_id: str
    trials: pd.DataFrame
    """One row per trial: number, state, params, test MSE, active fraction, run id."""
    best: pd.DataFrame
    """The Pareto-optimal trials (pareto) or the best feasible trial (constrained)."""
    baseline: dict[str, float] | None
    tracking_uri: str
    """Where the runs are, for display: credentials redacted."""
    storage: str
    """The Optuna storage, for display: credentials redacted."""
    seconds: float


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                **{name: t.params.get(name) for name in ("beta", "lr", "batch_size")},
                M.TEST_MSE: t.user_attrs.get(ATTR_TEST_MSE),
                M.CODE_ACTIVE_FRAC: t.user_attrs.get(ATTR_ACTIVE),
                "retry_of": t.user_attrs.get(ATTR_RETRY_OF),
                "reason": t.user_attrs.get(ATTR_FAIL_REASON, ""),
                "seconds": t.duration.total_seconds() if t.duration else None,
                "mlflow_run_id": t.user_attrs.get(ATTR_RUN_ID),
            }
        )
    return pd.DataFrame(rows)


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front (two objectives) or the best feasible trial (constrained)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.values[0])
    feasible = [t for t in complete if t.user_attrs.get(ATTR_CONSTRAINT, math.inf) <= 0]
    return [min(feasible, key=lambda t: t.value)] if feasible else []


def summarize(
    study: optuna.Study, parent: str, settings: tracking.Settings, storage: str, seconds: float
) -> SweepResult:
    trials = trials_frame(study)
    best_numbers = [t.number for t in best_trials(study)]
    best = trials[trials["number"].isin(best_numbers)] if len(trials) else trials
    best = best.sort_values(M.TEST_MSE) if len(best) else best
    return SweepResult(
        study=study,
        parent_run_id=parent,
        trials=trials,
        best=best,
        baseline=tracked_reference(settings),
        tracking_uri=redact(settings.tracking_uri),
        storage=storage,
        seconds=seconds,
    )


def log_summary(mlflow: MlflowClient, result: SweepResult, cfg: SweepConfig) -> None:
    """Tables, Optuna's plots and summary metrics on the parent run (in ``mlflow``)."""
    study, trials = result.study, result.trials
    states = trials["state"].value_counts() if len(trials) else pd.Series(dtype=int)
    metrics = {
        f"trials/{s.lower()}": float(states.get(s, 0))
        for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
    }
    metrics["trials/finished"] = float(finished_count(study))
    if len(result.best):
        top = result.best.iloc[0]
        metrics["best/test_mse"] = float(top[M.TEST_MSE])
        metrics["best/code_active_frac"] = float(top[M.CODE_ACTIVE_FRAC])
    metrics["sweep/seconds"] = result.seconds
    tracking.log_summary(
        mlflow,
        result.parent_run_id,
        metrics,
        {
            "trials.csv": trials,
            ("pareto_front.csv" if cfg.objective == "pareto" else "best_trial.csv"): result.best,
        },
        figures := plots(study),
    )
    import matplotlib.pyplot as plt

    for figure in figures.values():
        plt.close(figure)


def plots(study: optuna.Study) -> dict[str, Any]:
    """Optuna's plots as matplotlib figures; a plot that the study cannot support yet is left out
    (for example importances before two trials have completed)."""
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pareto = len(study.directions) > 1
    target = (lambda t: t.values[0]) if pareto else None
    name = "test MSE"
    makers: dict[str, Callable[[], Any]] = {
        "plots/optimization_history.png": lambda: ovm.plot_optimization_history(
            study, target=target, target_name=name
        ),
        "plots/param_importances.png": lambda: ovm.plot_param_importances(
            study, target=target, target_name=name
        ),
        "plots/parallel_coordinate.png": lambda: ovm.plot_parallel_coordinate(
            study, target=target, target_name=name
        ),
    }
    if pareto:
        makers["plots/pareto_front.png"] = lambda: ovm.plot_pareto_front(
            study, target_names=["test MSE", "code active fraction"]
        )
    figures = {}
    for path, make in makers.items():
        if len(complete) < 2:
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make()
        except (ValueError, RuntimeError):
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(10, 6)
        figures[path] = fig
    return figures
