"""Reading a study back for the report: Optuna's parameter importances for each objective."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from sae import metrics as M
from sae.errors import reason
from sae.sweep.study import make_storage

MIN_IMPORTANCE_TRIALS = 2


def param_importances(storage_url: str, study_name: str) -> pd.DataFrame | None:
    """Optuna's parameter importances for each objective of the study, by its default evaluator
    (PED-ANOVA, deterministic): columns param, objective (the metric key), importance (sums to 1
    per objective), sorted. None when fewer than MIN_IMPORTANCE_TRIALS trials are complete.

    Reads only: raises ValueError, in one line, when the storage or the study does not exist or
    the evaluator cannot rank the parameters.
    """
    if "://" not in storage_url and not Path(storage_url).is_file():
        raise ValueError(f"no Optuna storage at {storage_url}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=make_storage(storage_url))
    except KeyError:
        raise ValueError(f"no study {study_name!r} in {storage_url}") from None
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return None
    objectives = (M.TEST_MSE, M.CODE_ACTIVE_FRAC)[: len(study.directions)]
    rows = []
    for index, objective in enumerate(objectives):
        target = (lambda t, i=index: t.values[i]) if len(objectives) > 1 else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ranked = optuna.importance.get_param_importances(study, target=target)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            raise ValueError(
                f"Optuna cannot rank the parameters of {study_name!r}: {reason(err)}"
            ) from None
        rows += [
            {"param": name, "objective": objective, "importance": float(value)}
            for name, value in ranked.items()
        ]
    frame = pd.DataFrame(rows, columns=["param", "objective", "importance"])
    return frame.sort_values(
        ["objective", "importance", "param"], ascending=[True, False, True]
    ).reset_index(drop=True)
