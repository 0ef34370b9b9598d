"""A study's summary: the trials table, the best trials, the confirmation runs and the
comparisons with the baseline, Optuna's plots, on the parent run."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from sae import metrics as M
from sae import stats, tracking
from sae.baseline import tracked_reference_runs
from sae.names import (
    ATTR_ACTIVE,
    ATTR_DEGENERATE,
    ATTR_FAIL_REASON,
    ATTR_L0,
    ATTR_PROBE,
    ATTR_RETRY_OF,
    ATTR_RUN_ID,
    ATTR_TEST_MSE,
    TAG_FRONT,
)
from sae.redact import redact
from sae.sweep.config import SweepConfig
from sae.sweep.confirm import FrontComparison, compare_front, confirmations_frame
from sae.sweep.front import best_trials, degenerate_reasons, judged
from sae.sweep.recovery import finished_count
from sae.sweep.space import PARAMS
from sae.tracking import views

DEGENERATE = "degenerate"
"""The trials frame's column of why a COMPLETE trial is degenerate ("" when it is not)."""
FRONT = "front"
"""The trials frame's column of whether the trial is on the study's front (``front.front_of``),
also each trial run's tag TAG_FRONT."""


@dataclass
class SweepResult:
    study: optuna.Study
    parent_run_id: str
    trials: pd.DataFrame
    """One row per trial: number, state, params, test MSE, active fraction, L0, probe accuracy,
    degenerate (the reason), run id, front (whether it is on the study's front)."""
    best: pd.DataFrame
    """The study's front (``front.front_of``): the Pareto-optimal trials (pareto, pareto-probe)
    or the best feasible trial (constrained), never a degenerate one; sorted by test MSE. The
    console, the registry, the parent run's table, the trial runs' TAG_FRONT and the study's
    front view in the MLflow UI show these trials."""
    baseline_runs: pd.DataFrame | None
    """The tracked baseline runs that trained with the script's beta, one row per run, metric
    columns by key; None when there are none."""
    confirmations: pd.DataFrame
    """confirm.csv: one row per run of a confirmed trial (``confirm.CONFIRM_COLUMNS``)."""
    comparisons: list[FrontComparison]
    """Each front trial against the baseline runs, confirmed ones first."""
    tracking_uri: str
    """Where the runs are, for display: credentials redacted."""
    storage: str
    """The Optuna storage, for display: credentials redacted."""
    seconds: float
    experiment_id: str = ""
    """The MLflow experiment of the parent run and the trials."""
    registered: str | None = None
    """``models:/<name>@<alias>`` of the study's chosen model in the registry, else None."""


def trials_frame(study: optuna.Study, degenerate: dict[int, str] | None = None) -> pd.DataFrame:
    """One row per trial; ``degenerate`` (``front.degenerate_reasons``) gives the degenerate
    column of the COMPLETE trials that carry no reason of their own (an older study's)."""
    degenerate = degenerate or {}
    trials = study.get_trials(deepcopy=False)
    # beta, lr and batch size always (an l1 study's table as before families), K when searched
    searched = {name for t in trials for name in t.params}
    params = [name for name in PARAMS if name in searched or name != "topk"]
    rows = []
    for t in trials:
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                **{name: t.params.get(name) for name in params},
                M.TEST_MSE: t.user_attrs.get(ATTR_TEST_MSE),
                M.CODE_ACTIVE_FRAC: t.user_attrs.get(ATTR_ACTIVE),
                M.CODE_L0: t.user_attrs.get(ATTR_L0),
                M.PROBE_ACCURACY: t.user_attrs.get(ATTR_PROBE),
                DEGENERATE: t.user_attrs.get(ATTR_DEGENERATE, degenerate.get(t.number, "")),
                "retry_of": t.user_attrs.get(ATTR_RETRY_OF),
                "reason": t.user_attrs.get(ATTR_FAIL_REASON, ""),
                "seconds": t.duration.total_seconds() if t.duration else None,
                "mlflow_run_id": t.user_attrs.get(ATTR_RUN_ID),
            }
        )
    frame = pd.DataFrame(rows)
    for key in NUMERIC:
        if key in frame:
            frame[key] = pd.to_numeric(frame[key])
    return frame


NUMERIC = (M.TEST_MSE, M.CODE_ACTIVE_FRAC, M.CODE_L0, M.PROBE_ACCURACY)
WHOLE = ("number", "batch_size", "retry_of")
"""Columns of whole numbers, which missing values (a failed trial's) turn to floats."""
TRIALS_TABLE = "trials.json"
"""The trials frame as MLflow's table artifact on the parent run (``MlflowClient.log_table``)."""


def table_of(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials frame for ``log_table``: whole numbers as such (``10``, not ``10.0``); a
    missing value, as every NaN, is written null."""
    table = trials.copy()
    for key in WHOLE:
        if key in table:
            table[key] = pd.to_numeric(table[key]).astype("Int64")
    return table


def degenerate_trials(result: SweepResult) -> pd.DataFrame:
    """The COMPLETE trials judged degenerate, kept off the front: number and reason."""
    trials = result.trials
    if trials.empty:
        return trials
    complete = trials[trials["state"].eq("COMPLETE") & trials[DEGENERATE].fillna("").ne("")]
    return complete[["number", DEGENERATE]]


def summarize(
    study: optuna.Study,
    parent: str,
    settings: tracking.Settings,
    storage: str,
    seconds: float,
    experiment: str,
    experiment_id: str = "",
) -> SweepResult:
    """The study's summary; its trials' and confirmation runs are read from ``experiment``."""
    degenerate = degenerate_reasons(study, tracking.client(settings))
    trials = trials_frame(study, degenerate)
    best_numbers = [t.number for t in best_trials(study, degenerate)]
    if len(trials):
        trials[FRONT] = trials["number"].isin(best_numbers)
    best = trials[trials[FRONT]] if len(trials) else trials
    best = best.sort_values(M.TEST_MSE) if len(best) else best
    confirmations = confirmations_frame(settings, experiment, study.study_name)
    baseline_runs = tracked_reference_runs(settings)
    return SweepResult(
        study=study,
        parent_run_id=parent,
        trials=trials,
        best=best,
        baseline_runs=baseline_runs,
        confirmations=confirmations,
        comparisons=compare_front(best, confirmations, baseline_runs),
        tracking_uri=redact(settings.tracking_uri),
        storage=storage,
        seconds=seconds,
        experiment_id=experiment_id,
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
    metrics["trials/degenerate"] = float(len(degenerate_trials(result)))
    if len(result.best):  # the lowest test MSE of the front
        top = result.best.iloc[0]
        for name, key in BEST_METRICS.items():
            if pd.notna(top.get(key)):
                metrics[name] = float(top[key])
    metrics["sweep/seconds"] = result.seconds
    front = "best_trial.csv" if cfg.objective == "constrained" else "pareto_front.csv"
    tables = {"trials.csv": trials, front: result.best}
    if len(result.confirmations):
        tables["confirm.csv"] = result.confirmations
    figures = plots(study, cfg.objective_names, _reasons(result))
    tracking.log_summary(mlflow, result.parent_run_id, metrics, tables, figures)
    tag_front(mlflow, result)
    # The same table as MLflow's own table artifact, which its UI lays out as a table.
    mlflow.log_table(result.parent_run_id, table_of(trials), artifact_file=TRIALS_TABLE)
    import matplotlib.pyplot as plt

    for figure in figures.values():
        plt.close(figure)


def tag_front(mlflow: MlflowClient, result: SweepResult) -> None:
    """Each trial run's TAG_FRONT, ``true`` for the trials of ``result.best``, ``false`` for the
    others (a trial that a later one pushed off the front too), and the study's front view in
    the MLflow UI, which lists the runs tagged ``true``."""
    trials = result.trials
    if trials.empty:
        return
    # an interrupted trial and the retry that continued its run share it (sweep.resume)
    held = trials[trials["mlflow_run_id"].notna()]
    for run_id, on in held.groupby("mlflow_run_id", sort=False)[FRONT].any().items():
        tracking.set_tags(mlflow, run_id, {TAG_FRONT: "true" if on else "false"})
    if result.experiment_id:
        views.save_front_view(mlflow, result.experiment_id, result.study.study_name)


BEST_METRICS = {
    "best/test_mse": M.TEST_MSE,
    "best/code_active_frac": M.CODE_ACTIVE_FRAC,
    "best/code_l0": M.CODE_L0,
    "best/probe_accuracy": M.PROBE_ACCURACY,
}
"""The parent run's figures of the front trial with the lowest test MSE."""


def _reasons(result: SweepResult) -> dict[int, str]:
    """Why each degenerate COMPLETE trial is degenerate, by number."""
    found = degenerate_trials(result)
    return {} if found.empty else dict(zip(found["number"], found[DEGENERATE], strict=True))


def plots(
    study: optuna.Study, objective_names: list[str], degenerate: dict[int, str] | None = None
) -> dict[str, Any]:
    """Optuna's plots as matplotlib figures; a plot that the study cannot support yet is left out
    (for example importances before two trials have completed). Optuna draws the trials that
    its constraints call infeasible apart on the Pareto front plot, off the front: the
    degenerate ones (``degenerate``, by number) too, also those of an older study
    (``front.judged``)."""
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
            judged(study, degenerate or {}), target_names=objective_names
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
        caveat = stats.importance_caveat(len(complete))
        if path == "plots/param_importances.png" and caveat:
            ax.set_title(f"{ax.get_title()} ({caveat})")
        figures[path] = fig
    return figures
