"""Which trials make the sweep's answer: degenerate trials judged, the front (or best feasible
trial) without them, and the front trials the confirmation runs are spread along. ``front_of``
is the one definition of the front; every view of the study shows what it gives."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from sae import metrics as M
from sae.names import ATTR_ACTIVE, ATTR_DEGENERATE, ATTR_RUN_ID

if TYPE_CHECKING:  # optuna-dashboard's process judges trials without MLflow
    from mlflow.tracking import MlflowClient

DEAD_CODE = "the code is dead: no code unit active on any test image"


def degenerate_reason(trial: FrozenTrial, mlflow: MlflowClient | None = None) -> str:
    """Why the COMPLETE ``trial`` is degenerate, "" when it is not.

    A trial carries its reason as ATTR_DEGENERATE. A trial of an older study (resumed) does not,
    and Optuna counts a trial without constraints as feasible: such a trial is judged from its
    run's last metrics (``metrics.degenerate_reason``) when ``mlflow`` can read them, and from its
    active fraction alone (0 is a dead code) otherwise.
    """
    if ATTR_DEGENERATE in trial.user_attrs:
        return trial.user_attrs[ATTR_DEGENERATE]
    values = {M.CODE_ACTIVE_FRAC: trial.user_attrs.get(ATTR_ACTIVE, math.nan)}
    run_id = trial.user_attrs.get(ATTR_RUN_ID)
    if mlflow is not None and run_id:
        with contextlib.suppress(Exception):  # a run that cannot be read: judged without it
            values = mlflow.get_run(run_id).data.metrics
    reason = M.degenerate_reason(values)
    if reason is None and values.get(M.CODE_ACTIVE_FRAC) == 0:
        reason = DEAD_CODE
    return reason or ""


def degenerate_reasons(study: optuna.Study, mlflow: MlflowClient | None = None) -> dict[int, str]:
    """Why each COMPLETE trial is degenerate (``degenerate_reason``), "" for those that are not."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return {t.number: degenerate_reason(t, mlflow) for t in complete}


def best_trials(study: optuna.Study, degenerate: dict[int, str] | None = None) -> list[FrozenTrial]:
    """The study's front (``front_of``): the Pareto front (several objectives) or the best
    feasible trial (one), sorted by test MSE, ``degenerate`` by default ``degenerate_reasons``
    without reading runs."""
    return front_of(study.get_trials(deepcopy=False), study.directions, degenerate)


def front_of(
    trials: Sequence[FrozenTrial],
    directions: Sequence[StudyDirection],
    degenerate: Mapping[int, str] | None = None,
) -> list[FrozenTrial]:
    """The front of a study with these ``trials`` and ``directions``: the one definition that
    the console, the MLflow tags and views, the report, the registry and optuna-dashboard show.

    The Pareto front (several objectives) or the best trial (one), sorted by test MSE, among the
    COMPLETE trials that are feasible (every constraint <= 0) and not degenerate (``degenerate``,
    by number: the reasons ``degenerate_reasons`` gives; by default ``degenerate_reason`` of each
    trial without reading runs). Never a degenerate trial.

    Optuna's own front leaves out the trials whose constraints say infeasible, but a trial of an
    older study has no constraints; so the front is Optuna's over the trials that remain (a
    degenerate trial must not hide the trials it dominates either).
    """
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if degenerate is None:
        degenerate = {t.number: degenerate_reason(t) for t in complete}
    fit = [t for t in complete if not degenerate.get(t.number) and feasible(t)]
    if not fit:
        return []
    if len(directions) == 1:
        best = max if directions[0] == StudyDirection.MAXIMIZE else min
        return [best(fit, key=lambda t: t.value)]
    scratch = optuna.create_study(directions=directions)  # in memory, for Optuna's front
    scratch.add_trials(fit)  # renumbered there 0, 1, ... in this order
    front = [fit[t.number] for t in scratch.best_trials]
    return sorted(front, key=lambda t: t.values[0])


def feasible(trial: FrozenTrial) -> bool:
    """Whether every constraint of the trial holds (Optuna's rule: each value <= 0)."""
    return all(v <= 0 for v in trial.constraints.values())


def judged(study: optuna.Study, degenerate: Mapping[int, str]) -> optuna.Study:
    """An in-memory copy of the study's COMPLETE trials in which each degenerate one (by
    ``degenerate``) is infeasible by its constraint ATTR_DEGENERATE, also a trial of an older
    study that has none: Optuna's Pareto-front plot then draws it apart, off the front."""
    copy = optuna.create_study(study_name=study.study_name, directions=study.directions)
    trials = study.get_trials(deepcopy=True, states=(TrialState.COMPLETE,))
    for t in trials:
        if degenerate.get(t.number) and ATTR_DEGENERATE not in t.constraints:
            t.set_constraint(ATTR_DEGENERATE, 1.0)
    copy.add_trials(trials)
    return copy


def spread_along(front: list[FrozenTrial], k: int) -> list[FrozenTrial]:
    """``k`` trials of the front at evenly spaced places in its order by test MSE: the lowest
    test MSE first, the sparsest last; the whole front when it has ``k`` trials or fewer."""
    ordered = sorted(front, key=lambda t: t.values[0])
    if k <= 0 or len(ordered) <= k:
        return ordered if k > 0 else []
    places = np.linspace(0, len(ordered) - 1, k).round().astype(int)
    return [ordered[i] for i in dict.fromkeys(places.tolist())]
