"""Which trials make the sweep's answer: degenerate trials judged, the front (or best feasible
trial) without them, and the front trials the confirmation runs are spread along."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from sae import metrics as M
from sae.names import ATTR_ACTIVE, ATTR_DEGENERATE, ATTR_RUN_ID

DEAD_CODE = "the code is dead: no code unit active on any test image"


def degenerate_reasons(study: optuna.Study, mlflow: MlflowClient | None = None) -> dict[int, str]:
    """Why each COMPLETE trial is degenerate, "" for those that are not.

    A trial carries its reason as ATTR_DEGENERATE. A trial of an older study (resumed) does not,
    and Optuna counts a trial without constraints as feasible: such a trial is judged from its
    run's last metrics (``metrics.degenerate_reason``) when ``mlflow`` can read them, and from its
    active fraction alone (0 is a dead code) otherwise.
    """
    reasons = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if ATTR_DEGENERATE in t.user_attrs:
            reasons[t.number] = t.user_attrs[ATTR_DEGENERATE]
            continue
        values = {M.CODE_ACTIVE_FRAC: t.user_attrs.get(ATTR_ACTIVE, math.nan)}
        run_id = t.user_attrs.get(ATTR_RUN_ID)
        if mlflow is not None and run_id:
            with contextlib.suppress(Exception):  # a run that cannot be read: judged without it
                values = mlflow.get_run(run_id).data.metrics
        reason = M.degenerate_reason(values)
        if reason is None and values.get(M.CODE_ACTIVE_FRAC) == 0:
            reason = DEAD_CODE
        reasons[t.number] = reason or ""
    return reasons


def best_trials(study: optuna.Study, degenerate: dict[int, str] | None = None) -> list[FrozenTrial]:
    """The Pareto front (several objectives) or the best feasible trial (one), sorted by test
    MSE, among the COMPLETE trials that are feasible and not degenerate (``degenerate``, by
    default ``degenerate_reasons`` without reading runs). Never a degenerate trial.

    Optuna's own front leaves out the trials whose constraints say infeasible, but a trial of an
    older study has no constraints; so the front is Optuna's over the trials that remain (a
    degenerate trial must not hide the trials it dominates either).
    """
    if degenerate is None:
        degenerate = degenerate_reasons(study)
    fit = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not degenerate.get(t.number) and all(v <= 0 for v in t.constraints.values())
    ]
    if not fit:
        return []
    if len(study.directions) == 1:
        best = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        return [best(fit, key=lambda t: t.value)]
    scratch = optuna.create_study(directions=study.directions)  # in memory, for Optuna's front
    scratch.add_trials(fit)  # renumbered there 0, 1, ... in this order
    front = [fit[t.number] for t in scratch.best_trials]
    return sorted(front, key=lambda t: t.values[0])


def spread_along(front: list[FrozenTrial], k: int) -> list[FrozenTrial]:
    """``k`` trials of the front at evenly spaced places in its order by test MSE: the lowest
    test MSE first, the sparsest last; the whole front when it has ``k`` trials or fewer."""
    ordered = sorted(front, key=lambda t: t.values[0])
    if k <= 0 or len(ordered) <= k:
        return ordered if k > 0 else []
    places = np.linspace(0, len(ordered) - 1, k).round().astype(int)
    return [ordered[i] for i in dict.fromkeys(places.tolist())]
