"""Claims with their uncertainty (``--confirm K``): K front trials trained again with two more
seeds each, as child runs of their trial's run, and every front trial compared with the tracked
baseline runs as n, mean ± sd and a Welch verdict (``sae.stats``)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd

from sae import metrics as M
from sae import stats, tracking
from sae.config import Config
from sae.errors import one_line
from sae.names import (
    ATTR_CONFIRM,
    ATTR_RUN_ID,
    KIND_CONFIRM,
    TAG_CONFIRM_TRIAL,
    TAG_CONFIRM_TRIAL_RUN,
    TAG_DEGENERATE_REASON,
    TAG_DESCRIPTION,
    TAG_KIND,
    TAG_STUDY,
    TAG_TRIAL_NUMBER,
    TAG_WORKER,
    param_column,
    tag_column,
)
from sae.runner import train_run
from sae.splits import Splits
from sae.sweep.config import SweepConfig
from sae.sweep.front import best_trials, degenerate_reasons, spread_along
from sae.sweep.recovery import worker_id
from sae.sweep.space import with_params
from sae.train import alive_seeds

CONFIRM_SEEDS = 2
"""Seeds each confirmed trial is trained with besides its own: n = 3 with the trial's run."""
CONFIRM_COLUMNS = (
    "trial",
    "seed",
    "source",
    "run_id",
    "status",
    M.TEST_MSE,
    M.CODE_ACTIVE_FRAC,
    M.CODE_L0,
    M.PROBE_ACCURACY,
    "degenerate",
)
"""confirm.csv: one row per run of a confirmed trial; source is ``trial`` (its own run, the base
seed) or ``confirm``."""
COMPARED = (
    (M.TEST_MSE, "test MSE", True),
    (M.CODE_L0, "code L0", True),
    (M.PROBE_ACCURACY, "probe accuracy", False),
)
"""(metric, label, lower is better) of each comparison with the baseline."""
DONE = ("FINISHED", "FAILED")
"""A confirmation run in one of these states is not trained again: FAILED is the outcome of the
trial's parameters with that seed, as a trial's own failure is. KILLED (interrupted) and a
RUNNING run left by a process that died are trained again."""


def run_name(trial: int, seed: int) -> str:
    return f"trial-{trial:03d}-seed{seed}"


@dataclass(frozen=True)
class Confirmation:
    """One confirmation run to train: a front trial's parameters with one more seed. Small and
    picklable: it crosses into a worker process through a queue."""

    trial: int
    params: dict[str, Any]
    trial_run: str
    """The trial's MLflow run: the confirmation run's parent."""
    seed: int
    index: int
    total: int
    """This is run ``index`` of ``total`` to train."""

    @property
    def head(self) -> str:
        return f"confirm {self.index}/{self.total}: trial {self.trial} seed {self.seed}"


def run_confirmations(
    base: Config,
    cfg: SweepConfig,
    study: optuna.Study,
    settings: tracking.Settings,
    experiment: str,
    splits: Splits,
    log: Callable[[str], None],
) -> None:
    """The confirmation runs in this process, one after another: ``plan_confirmations``, each
    one trained (``train_confirmation``), then ``record_confirmations``. A sweep with several
    workers shares them among its worker processes instead (``sweep.workers``)."""
    for job in plan_confirmations(base, cfg, study, settings, experiment, splits, log):
        train_confirmation(base, cfg, job, experiment, splits, log)
    record_confirmations(settings, experiment, study)


def plan_confirmations(
    base: Config,
    cfg: SweepConfig,
    study: optuna.Study,
    settings: tracking.Settings,
    experiment: str,
    splits: Splits,
    log: Callable[[str], None],
) -> list[Confirmation]:
    """The confirmation runs still to train: the ``cfg.confirm`` front trials that
    ``spread_along`` picks, each with the first CONFIRM_SEEDS seeds after the base seed that are
    alive at initialisation, but a (trial, seed) with a run in DONE, so a second command trains
    nothing. A RUNNING run is one a process that died left (the caller holds the storage's lock
    and no worker of its own trains yet): it is set KILLED and trained again. One line says
    what is to train."""
    mlflow = tracking.client(settings)
    chosen = spread_along(best_trials(study, degenerate_reasons(study, mlflow)), cfg.confirm)
    if not chosen:
        return []
    seeds, skipped = alive_seeds(
        CONFIRM_SEEDS, base.model, splits.train, start=base.train.seed + 1, skip=[base.train.seed]
    )
    if skipped:
        passed = ", ".join(f"{seed} ({why})" for seed, why in sorted(skipped.items()))
        log(f"confirmation seeds {_listed(seeds)}; passed over, dead at initialisation: {passed}")
    found = confirmations_frame(settings, experiment, study.study_name)
    runs = found[found["source"] == "confirm"]
    for run_id in runs.loc[runs["status"] == "RUNNING", "run_id"]:  # its process died: redone
        tracking.set_run_status(mlflow, run_id, "KILLED")
    ended = runs[runs["status"].isin(DONE)]
    done = {(int(t), int(s)) for t, s in zip(ended["trial"], ended["seed"], strict=True)}
    todo = [(t, s) for t in chosen for s in seeds if (t.number, s) not in done]
    numbers = _listed(t.number for t in chosen)
    log(
        f"confirming front trials {numbers} with seeds {_listed(seeds)}: "
        f"{len(todo)} runs to train, {len(chosen) * len(seeds) - len(todo)} done before"
    )
    return [
        Confirmation(t.number, dict(t.params), t.user_attrs[ATTR_RUN_ID], s, i, len(todo))
        for i, (t, s) in enumerate(todo, 1)
    ]


def train_confirmation(
    base: Config,
    cfg: SweepConfig,
    job: Confirmation,
    experiment: str,
    splits: Splits,
    log: Callable[[str], None],
) -> None:
    """Train one confirmation run, one line. A run that fails is one line (the rest go on);
    Ctrl-C or SIGTERM ends it KILLED (trained again next time) and is raised."""
    started = time.perf_counter()
    try:
        final = _train(base, cfg, job, experiment, splits)
    except Exception as err:
        log(f"{job.head} FAIL: {one_line(err)}")
        return
    log(f"{job.head}: {_figures(final)}, {time.perf_counter() - started:.0f} s")


def record_confirmations(settings: tracking.Settings, experiment: str, study: optuna.Study) -> None:
    """The FINISHED confirmation runs of each trial in the study's user attribute ATTR_CONFIRM,
    ``{"trial number": [run ids]}`` (a finished trial's own attributes cannot change)."""
    found = confirmations_frame(settings, experiment, study.study_name)
    finished = found[(found["source"] == "confirm") & (found["status"] == "FINISHED")]
    ids = {str(int(t)): list(g["run_id"]) for t, g in finished.groupby("trial")}
    study.set_user_attr(ATTR_CONFIRM, json.dumps(ids, sort_keys=True))


def _train(
    base: Config,
    cfg: SweepConfig,
    job: Confirmation,
    experiment: str,
    splits: Splits,
) -> dict[str, float]:
    """One confirmation run: the trial's parameters with its seed, a child of the trial's run,
    tagged with the worker that trains it."""
    run_cfg = dataclasses.replace(
        with_params(base, job.params, seed=job.seed),
        tracking=dataclasses.replace(base.tracking, experiment=experiment),
    )
    tried = ", ".join(f"{name} {value:.3g}" for name, value in job.params.items())
    outcome = train_run(
        run_cfg,
        kind=KIND_CONFIRM,
        run_name=run_name(job.trial, job.seed),
        tags={
            TAG_STUDY: cfg.study_name,
            TAG_CONFIRM_TRIAL: str(job.trial),
            TAG_CONFIRM_TRIAL_RUN: job.trial_run,
            TAG_WORKER: worker_id(),
            TAG_DESCRIPTION: f"Trial {job.trial} of study `{cfg.study_name}` ({tried}) "
            f"trained again with seed {job.seed}, to measure its spread over seeds.",
        },
        parent_run_id=job.trial_run,
        splits=splits,
    )
    return outcome.result.final


def _figures(final: dict[str, float]) -> str:
    text = f"test MSE {final.get(M.TEST_MSE, float('nan')):.4g}"
    if M.CODE_L0 in final:
        text += f", code L0 {final[M.CODE_L0]:.3g}"
    if M.PROBE_ACCURACY in final:
        text += f", probe accuracy {final[M.PROBE_ACCURACY]:.3f}"
    reason = M.degenerate_reason(final)
    return text + (f" (degenerate: {reason})" if reason else "")


def _listed(numbers) -> str:  # noqa: ANN001
    return ", ".join(str(n) for n in numbers)


def confirmations_frame(settings: tracking.Settings, experiment: str, study: str) -> pd.DataFrame:
    """CONFIRM_COLUMNS for every confirmation run of ``study`` in ``experiment`` and the run of
    each trial that has one, sorted by trial, source (the trial's own first) and seed."""
    runs = tracking.runs_frame(settings, [experiment])
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in CONFIRM_COLUMNS})
    kind, in_study = tag_column(TAG_KIND), tag_column(TAG_STUDY)
    if runs.empty or in_study not in runs or kind not in runs:
        return empty
    runs = runs[runs[in_study] == study]
    confirm = runs[runs[kind] == KIND_CONFIRM]
    if confirm.empty:
        return empty
    confirm = confirm.assign(trial=confirm[tag_column(TAG_CONFIRM_TRIAL)], source="confirm")
    number = tag_column(TAG_TRIAL_NUMBER)
    trial_runs = runs[runs["run_id"].isin(set(confirm[tag_column(TAG_CONFIRM_TRIAL_RUN)]))]
    trial_runs = trial_runs.assign(trial=trial_runs.get(number), source="trial")
    both = pd.concat([trial_runs, confirm], ignore_index=True)
    out = pd.DataFrame(
        {
            "trial": pd.to_numeric(both["trial"]).astype("int64"),
            "seed": pd.to_numeric(both[param_column("train", "seed")]).astype("int64"),
            "source": both["source"],
            "run_id": both["run_id"],
            "status": both["status"],
        }
    )
    for key in CONFIRM_COLUMNS[5:-1]:
        out[key] = pd.to_numeric(both[key]) if key in both else float("nan")
    reasons = both.get(tag_column(TAG_DEGENERATE_REASON))
    out["degenerate"] = "" if reasons is None else reasons.fillna("").astype(str)
    out = out.sort_values(["trial", "source", "seed"], ascending=[True, False, True])
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class FrontComparison:
    """A front trial against the baseline runs: one ``stats.Comparison`` per COMPARED metric."""

    trial: int
    seeds: tuple[int, ...]
    """The seeds of its FINISHED runs when it was confirmed; empty when its figures are its one
    run's."""
    comparisons: tuple[tuple[str, stats.Comparison], ...]
    """(label, comparison) in COMPARED order."""

    @property
    def confirmed(self) -> bool:
        return len(self.seeds) > 1

    def lines(self) -> list[str]:
        lower = {label: lower for _, label, lower in COMPARED}
        return [stats.in_words(label, c, lower[label]) for label, c in self.comparisons]


def compare_front(
    front: pd.DataFrame, confirmations: pd.DataFrame, baseline_runs: pd.DataFrame | None
) -> list[FrontComparison]:
    """Each front trial (a row of the trials frame) against ``baseline_runs``: its FINISHED
    confirmation rows with its own run when it was confirmed, else its one run (n=1, never
    called better or worse); confirmed trials first, each group in the front's order."""
    out = []
    finished = confirmations[confirmations["status"] == "FINISHED"]
    for _, row in front.iterrows():
        mine = finished[finished["trial"] == row["number"]]
        if mine.empty:
            mine = pd.DataFrame([{key: row.get(key) for key, _, _ in COMPARED}])
            seeds: tuple[int, ...] = ()
        else:
            seeds = tuple(int(s) for s in mine["seed"])
        comparisons = tuple(
            (label, stats.compare(_values(mine, key), _values(baseline_runs, key)))
            for key, label, _ in COMPARED
        )
        out.append(FrontComparison(int(row["number"]), seeds, comparisons))
    return sorted(out, key=lambda c: not c.confirmed)


def _values(frame: pd.DataFrame | None, key: str) -> list[float]:
    if frame is None or key not in frame:
        return []
    return [float(v) for v in pd.to_numeric(frame[key]) if pd.notna(v)]


def comparison_lines(
    comparisons: list[FrontComparison], baseline_runs: pd.DataFrame | None
) -> list[str]:
    """Each front trial against the tracked baseline runs, n, mean ± sd and Welch's verdict: the
    lines the sweep prints under its front and its results page shows."""
    if baseline_runs is None or baseline_runs.empty:
        return ["no tracked baseline runs to compare with: run `python experiments/baseline.py`"]
    beta = f"beta {baseline_runs['beta'].iloc[0]:g}, " if "beta" in baseline_runs else ""
    lines = [
        f"compared with the tracked baseline ({beta}{len(baseline_runs)} runs that trained; "
        f"{stats.TEST_NAME}):"
    ]
    once = []
    for c in comparisons:
        if not c.confirmed:
            once.append(str(c.trial))
            continue
        lines.append(f"trial {c.trial}, seeds {', '.join(str(s) for s in c.seeds)}:")
        lines += [f"  {line}" for line in c.lines()]
    if once:
        lines.append(
            f"trial{'s' if len(once) > 1 else ''} {', '.join(once)}: one run each (n=1), too few "
            "to call better or worse than the baseline (confirm them with --confirm)"
        )
    return lines
