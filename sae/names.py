"""Names of the params, tags and attributes the suite writes, in one place beside the metric names
(``sae.metrics``): whatever writes one and whatever reads it back use the constant from here.
"""

from __future__ import annotations

# MLflow params: config fields as ``section.field`` (``Config.flat``); a run logs the dozen that
# define it (``sae.tracking.params.RUN_PARAMS``), its config.json the rest.


def param(section: str, name: str) -> str:
    """The param key of a config field: ``param("train", "beta") == "train.beta"``."""
    return f"{section}.{name}"


def param_column(section: str, name: str) -> str:
    """The column of that param in ``mlflow.search_runs``-style frames: ``params.train.beta``."""
    return f"params.{param(section, name)}"


def tag_column(tag: str) -> str:
    """The column of a tag in ``mlflow.search_runs``-style frames: ``tags.<tag>``."""
    return f"tags.{tag}"


# Tags every run carries.
TAG_GIT_COMMIT = "git_commit"
TAG_TORCH = "torch_version"
TAG_MLFLOW = "mlflow_version"
TAG_DEVICE = "device"
TAG_HOST = "host"
TAG_COMMAND = "command"
TAG_DATA_DIGEST = "data_digest"
TAG_KIND = "kind"
"""What the run is: ``train``, ``baseline``, ``trial``, ``sweep``, ``bench``, ``report``."""
TAG_MODEL_URI = "model_uri"
"""Where the logged model is: ``mlflow.pytorch.load_model(run.data.tags["model_uri"])``."""
TAG_ERROR = "error"
"""Why a FAILED run failed: the exception's one-line message."""

# MLflow's own tags.
TAG_DESCRIPTION = "mlflow.note.content"
"""The run description the MLflow UI shows."""
TAG_RUN_NAME = "mlflow.runName"
TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_DATASET_CONTEXT = "mlflow.data.context"
"""On a run's dataset input: what the data was used for (``train``, ``test``)."""
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
"""Labels an experiment for the MLflow UI (3.x) as model training rather than GenAI."""
EXPERIMENT_KIND = "custom_model_development"

# Sweeps: a parent run per study, a nested child run per trial.
TAG_STUDY = "optuna.study"
TAG_TRIAL_NUMBER = "optuna.trial_number"
TAG_TRIAL_STATE = "optuna.trial_state"
"""COMPLETE, PRUNED or FAIL, set when the trial ends."""
TAG_REASON = "optuna.reason"
"""Why a trial was pruned or failed, on its MLflow run."""
TAG_FAMILY = "sae.family"
"""The sparse code a study searches (l1, kl, topk: ``SweepConfig.family``), on its parent run,
its trials' runs and its registered model version."""

# Degenerate runs (``sae.metrics.degenerate_reason``), on every trained run.
TAG_DEGENERATE = "degenerate"
"""``true`` or ``false``: whether the run ended degenerate (a collapsed or dead model)."""
TAG_DEGENERATE_REASON = "degenerate_reason"
"""Why the run is degenerate, in one line; set only on degenerate runs."""
TAG_FRONT = "front"
"""``true`` or ``false`` on a sweep trial's run: whether the trial is on its study's front
(``sweep.front.front_of``: the Pareto front or the best feasible trial, never a degenerate one),
as the study's last summary found it."""

# Confirmation runs: a front trial trained again with another seed (``sweep.py --confirm K``),
# a child run of the trial's run, kind ``confirm``, with TAG_STUDY too.
TAG_CONFIRM_TRIAL = "confirm.trial_number"
"""The trial number whose parameters the confirmation run trains with another seed."""
TAG_CONFIRM_TRIAL_RUN = "confirm.trial_run_id"
"""The MLflow run id of that trial (also the confirmation run's parent run)."""
TAG_WORKER = "confirm.worker"
"""host:pid of the worker process that trained a confirmation run (the workers share them)."""
KIND_CONFIRM = "confirm"

# Baseline runs.
TAG_BASELINE = "baseline"
TAG_BETA_SOURCE = "beta_source"

# Report runs.
TAG_REPORT = "report"
"""Set on a report's own run (kind ``report``): the report's name."""

# Optuna trial user attributes.
ATTR_RUN_ID = "mlflow_run_id"
ATTR_WORKER = "worker"
"""host:pid of the process running the trial, to tell when it died."""
ATTR_FAIL_REASON = "fail_reason"
ATTR_NON_FINITE = "non_finite_loss"
"""Set on a trial whose loss diverged (NaN, infinite or absurd): a finished outcome, not retried."""
ATTR_FAILED = "failed_itself"
"""Set on a trial that raised in its own training, evaluation or logging: an outcome of its
parameters like a diverged loss, counted as finished and not retried. Trials that were
interrupted or whose worker died carry no such mark: they are retried."""
ATTR_RETRY_OF = "retry_of"
"""The number of the interrupted trial whose parameters this trial runs again."""
ATTR_CONSTRAINT = "constraint"
ATTR_DEGENERATE = "degenerate"
"""The reason a COMPLETE trial is degenerate (``sae.metrics.degenerate_reason``), else ``""``;
degenerate trials are infeasible (their constraint of that name is 1), so never on the front."""
ATTR_L0 = "code_l0"
ATTR_PROBE = "probe_accuracy"
ATTR_CONFIRM = "confirm_run_ids"
"""A STUDY user attribute (a finished trial takes no new attribute): JSON object mapping each
confirmed trial's number to the run ids of its confirmation runs, set by ``--confirm``."""
ATTR_TEST_MSE = "test_mse"
ATTR_ACTIVE = "code_active_frac"
ATTR_EPOCH_POINTS = "epoch_points"
"""The trial's objective point after each epoch, ``{"1": [test MSE, active fraction, 1 if
degenerate else 0], ...}``: what the Pareto pruner compares at a rung (``sweep.pareto``)."""
ATTR_EPOCH_ENDS = "epoch_ends"
"""When each epoch of the trial ended and how long it took, ``{"1": [unix time, seconds],
...}``, written with ATTR_EPOCH_POINTS: what the sweep's console shows and its time left is
estimated from (``sweep.progress``)."""
ATTR_PRUNED_AT = "pruned_at_epoch"
"""The epoch (the rung) at which a PRUNED trial was stopped; also its run's TAG_PRUNED_AT."""
TAG_PRUNED_AT = "optuna.pruned_at_epoch"

# Optuna study user attributes.
STUDY_PARENT_RUN = "mlflow_parent_run_id"
STUDY_SPACE = "search_space"
STUDY_OBJECTIVE = "objective"
STUDY_FAMILY = "family"
"""The study's family (``SweepConfig.family``); a study without it predates families: l1, or kl
when its trials train the KL penalty."""
STUDY_SAMPLERS = "samplers"
"""The samplers the study's sessions used, sorted (a resume may change it: ``--sampler``);
``unrecorded`` among them when trials predate the record. The report compares families only
between studies of the same samplers."""
SAMPLER_UNRECORDED = "unrecorded"
STUDY_IDENTITY = "identity"
"""JSON object of the settings every trial shares besides the searched parameters (the data,
epochs, penalty, experiment, pruner, ...: ``sweep.identity``), compared on every resume."""

# Why a trial failed, when it was not its own doing (it is retried).
REASON_INTERRUPTED = "interrupted"
REASON_WORKER_DIED = "worker process died"
REASON_FAULT = "interrupted by a fault of the stores or the machine"
"""The start of the reason of a trial stopped by a passing fault that outlasted its retries
(``sae.faults``): the fault follows, after a colon."""
REASON_ORPHANED = "interrupted: found running with no live worker by the journal repair"

# Links between the stores and the registered model (issue 13): the sweep's own section.
ATTR_RUN_URL = "mlflow_run_url"
"""A trial's MLflow run page (``views.run_url`` at the UI's default address), beside
ATTR_RUN_ID; its optuna-dashboard note links the same page."""
TAG_REGISTERED_MODEL = "registered_model"
"""On a sweep's parent run: the model version registered for the study,
``models:/<name>/<version>``."""
TAG_REGISTERED_ALIAS = "registered_model_alias"
"""On a sweep's parent run: ``models:/<name>@<alias>``, the study's alias, which follows the
study's chosen model when a resume chooses another."""
