"""The sweep's chosen model in MLflow's model registry: one registered model per sweep experiment,
one version per study under the study's alias, so ``mlflow.pytorch.load_model("models:/<name>@
<alias>")`` gives back what the study recommends."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pandas as pd
from mlflow.entities.model_registry import RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sae import metrics as M
from sae import tracking
from sae.names import (
    TAG_FAMILY,
    TAG_MODEL_URI,
    TAG_REGISTERED_ALIAS,
    TAG_REGISTERED_MODEL,
    TAG_STUDY,
    TAG_TRIAL_NUMBER,
)
from sae.sweep.study import study_family
from sae.sweep.summary import DEGENERATE, SweepResult
from sae.tracking import views

VALID_ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
"""What MLflow accepts as an alias (ASCII here, whatever the store); ``study-`` before it keeps
clear of the reserved ``latest`` and ``v<number>``."""


def model_name(experiment: str, family: str = "l1") -> str:
    """The registered model of a sweep experiment's family: the experiment's name
    (``sae-sweep``; ``sae-sweep-topk`` for the topk family, ``-kl`` for kl), with the two
    characters a model name cannot hold ('/' and ':') made '-'. Per experiment and family, not
    per study: the studies of one family answer the same question on the same data, so their
    answers are versions of one model; another family is another model (a TopK code is another
    network), and two experiments (two projects sharing a tracking server) keep apart."""
    name = experiment if family == "l1" else f"{experiment}-{family}"
    return re.sub(r"[/:]", "-", name)


def study_alias(study: str) -> str:
    """The alias of a study's version: ``study-<name>`` when the name is a valid alias already,
    else ``views.study_view_key`` (``study-`` and a digest: an alias keeps to [A-Za-z0-9_-])."""
    alias = f"study-{study}"
    return alias if VALID_ALIAS.match(alias) else views.study_view_key(study)


def alias_uri(name: str, alias: str) -> str:
    return f"models:/{name}@{alias}"


def register_chosen(
    mlflow: MlflowClient, result: SweepResult, experiment: str, log: Callable[[str], None]
) -> str | None:
    """Register the model of the trial the summary puts first (``result.best``: the front point
    with the lowest test MSE, or the best feasible trial) as the study's version, and tag the
    parent run with it. A resume that chose the same run adds nothing; one that chose another
    adds a version and moves the study's alias to it. Returns ``models:/<name>@<alias>``, or None
    (after one line through ``log`` saying why) when there is no model to register."""
    if result.best.empty:
        log(
            "no model registered: the study has no trial on its front yet (every trial failed, "
            "was pruned or is degenerate)"
        )
        return None
    chosen = result.best.iloc[0]
    run_id = chosen["mlflow_run_id"]
    source = mlflow.get_run(run_id).data.tags.get(TAG_MODEL_URI) if run_id else None
    if not source:
        log(f"no model registered: trial {chosen['number']}'s run logged no model (--no-log-model)")
        return None
    study = result.study.study_name
    family = study_family(result.study)
    name, alias = model_name(experiment, family), study_alias(study)
    registered = _registered_model(mlflow, name, experiment)
    current = None
    if alias in registered.aliases:
        current = mlflow.get_model_version(name, registered.aliases[alias])
    if current is None or current.run_id != run_id:
        model_id = source.removeprefix("models:/")
        # The logged model's own location, not its models:/ URI: MLflow's SQL registry looks
        # that URI up with a default client, on the process's tracking URI (its own TODO says
        # so), not this client's store. The URI goes in a tag, as on the run.
        current = mlflow.create_model_version(
            name,
            source=mlflow.get_logged_model(model_id).artifact_location,
            run_id=run_id,
            model_id=model_id,
            description=describe_version(study, chosen, len(result.study.directions) == 1),
            tags={
                TAG_STUDY: study,
                TAG_FAMILY: family,
                TAG_TRIAL_NUMBER: str(chosen["number"]),
                TAG_MODEL_URI: source,
            },
        )
        mlflow.set_registered_model_alias(name, alias, current.version)
    tracking.set_tags(
        mlflow,
        result.parent_run_id,
        {
            TAG_REGISTERED_MODEL: f"models:/{name}/{current.version}",
            TAG_REGISTERED_ALIAS: alias_uri(name, alias),
        },
    )
    return alias_uri(name, alias)


def describe_version(study: str, chosen: pd.Series, constrained: bool = False) -> str:
    """A version's description: its study and trial, the trial's parameters and figures, and
    why this trial (of a ``constrained`` study: the only objective is test MSE)."""
    figures = ", ".join(
        f"{label} {_figure(chosen.get(key))}"
        for label, key in (
            ("test MSE", M.TEST_MSE),
            ("code L0", M.CODE_L0),
            ("code active fraction", M.CODE_ACTIVE_FRAC),
            ("probe accuracy", M.PROBE_ACCURACY),
        )
    )
    degenerate = "true" if chosen.get(DEGENERATE) else "false"
    why = (
        "The feasible trial with the lowest test MSE (active fraction within the limit, not "
        "degenerate)."
        if constrained
        else "The point of the Pareto front with the lowest test MSE; degenerate trials are "
        "never on the front."
    )
    searched = (
        f"K {int(chosen['topk'])}" if pd.notna(chosen.get("topk")) else f"beta {chosen['beta']:.3g}"
    )
    return (
        f"Optuna study `{study}`, trial {chosen['number']}: {searched}, "
        f"lr {chosen['lr']:.3g}, batch size {int(chosen['batch_size'])}. {figures}, "
        f"degenerate {degenerate}. {why}"
    )


def _figure(value: Any) -> str:
    return "not measured" if value is None or pd.isna(value) else f"{value:.4g}"


def _registered_model(mlflow: MlflowClient, name: str, experiment: str) -> RegisteredModel:
    """The registered model ``name``, created when missing."""
    try:
        return mlflow.get_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    try:
        return mlflow.create_registered_model(
            name,
            description=f"The models the sweeps of experiment `{experiment}` chose: one version "
            "per Optuna study, under the alias `study-<study name>`.",
        )
    except MlflowException as err:  # another sweep of the experiment made it meanwhile
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return mlflow.get_registered_model(name)
