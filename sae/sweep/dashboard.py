"""optuna-dashboard showing the sweep's front: its Best Trials are ``front.front_of`` (never a
degenerate trial) and a degenerate trial is drawn infeasible, as the console, MLflow and the
report show them.

optuna-dashboard alone lists every COMPLETE non-dominated trial as a Best Trial and reads
constraints only from Optuna's older ``constraints`` attribute, not the ``constraints:<key>``
``Trial.set_constraint`` writes: a dead model, the sparsest point there is, sat among its Best
Trials. ``app(storage)`` is the dashboard's WSGI app with the sweep's front in its place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sae import internals
from sae.sweep.front import best_trials, degenerate_reason, feasible

DEGENERATE = 1.0
"""The constraint value the dashboard is shown for a degenerate trial that its own constraints
do not call infeasible (a trial of an older study has none): positive, so infeasible."""


def shown_constraints(trial: FrozenTrial) -> list[float]:
    """The trial's constraint values as the dashboard reads them (infeasible: any > 0): Optuna's
    own (``trial.constraints``), and ``DEGENERATE`` after them for a COMPLETE degenerate trial
    they do not already call infeasible."""
    values = list(trial.constraints.values())
    if trial.state == TrialState.COMPLETE and feasible(trial) and degenerate_reason(trial):
        values.append(DEGENERATE)
    return values


def study_front(storage: optuna.storages.BaseStorage) -> Callable[[str], list[FrozenTrial]]:
    """The front of a study of ``storage``, by the study's name (``front.best_trials``)."""

    def best(name: str) -> list[FrozenTrial]:
        return best_trials(optuna.load_study(study_name=name, storage=storage))

    return best


def app(storage: str | optuna.storages.BaseStorage) -> Callable[..., Any]:
    """optuna-dashboard's WSGI app on ``storage`` (a storage, or its URL or journal file), with
    the sweep's front as each study's Best Trials and degenerate trials infeasible."""
    import optuna_dashboard

    from sae.sweep.study import make_storage

    # front_of asks Optuna for the front of a scratch study, which it announces at INFO: one log
    # line a request otherwise
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if isinstance(storage, str):
        storage = make_storage(storage)
    return internals.dashboard_front(
        optuna_dashboard.wsgi(storage), study_front(storage), shown_constraints
    )
