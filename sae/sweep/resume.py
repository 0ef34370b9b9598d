"""No epoch trained twice: an interrupted trial's retry goes on from the last epoch it completed.

After each epoch the trial's state (``sae.resume``) is kept as its MLflow run's checkpoint
(``tracking.checkpoints``: every worker of the study, on any machine, reaches that store), under
a header naming the study (its name and a digest of its recorded identity) and the trial's
parameters. The retry of an interrupted trial continues its line's run (``recovery.line_run``)
from that checkpoint; a checkpoint that is damaged or made for something else is refused in one
line, and the trial starts over from epoch 1 in a new run. The checkpoint is removed when the
trial ends (COMPLETE, PRUNED, or FAIL by itself) and kept when it was interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from typing import Any

import optuna
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sae import faults, resume, tracking
from sae.config import Config
from sae.errors import reason
from sae.names import STUDY_IDENTITY
from sae.runner import Resume
from sae.splits import Splits
from sae.sweep.recovery import line_run
from sae.train import Callback

CHECKPOINT_FORMAT = 1
"""The version of a trial checkpoint's header; one of another is refused."""


def checkpoint_header(trial: optuna.Trial) -> dict[str, Any]:
    """What a checkpoint of ``trial`` belongs to: the format, the study's name and a digest of
    its recorded identity (``sweep.identity``), and the trial's parameters."""
    identity = str(trial.study.user_attrs.get(STUDY_IDENTITY, ""))
    return {
        "format": CHECKPOINT_FORMAT,
        "study": trial.study.study_name,
        "identity": hashlib.sha256(identity.encode()).hexdigest(),
        "params": dict(trial.params),
    }


class Checkpointer(Callback):
    """Keeps the trial's state after each epoch as its run's checkpoint, in place of the last."""

    def __init__(self, mlflow: MlflowClient, header: dict[str, Any]) -> None:
        self.mlflow, self.header = mlflow, header
        self.run_id: str | None = None
        """The trial's run, once it exists."""

    def on_checkpoint(self, epoch: int, state: resume.State) -> None:
        tracking.save_checkpoint(self.mlflow, self.run_id, {**self.header, "state": state})


def refusal(
    saved: dict[str, Any], header: dict[str, Any], cfg: Config, splits: Splits
) -> str | None:
    """Why the checkpoint ``saved`` cannot resume the trial of ``header`` (training ``cfg`` on
    ``splits``), in a few words; None when it can."""
    if saved.get("format") != header["format"]:
        return f"its format is {saved.get('format')!r}, not {header['format']}"
    if saved.get("study") != header["study"] or saved.get("identity") != header["identity"]:
        return "it was made for another study, or other study settings"
    if saved.get("params") != header["params"]:
        return "it was made for other parameters"
    return resume.problem(saved.get("state"), cfg, splits)


def resume_from(
    mlflow: MlflowClient,
    trial: optuna.Trial,
    cfg: Config,
    splits: Splits,
    log: Callable[[str], None],
) -> Resume:
    """Where ``trial`` (planned to train ``cfg``) starts: in a new run, unless it retries an
    interrupted trial, whose run it continues, from that run's checkpoint when it has one (with
    none, from epoch 1). A checkpoint refused (``refusal``, or a run logged with other settings)
    is one line through ``log`` and removed, and the trial starts over from epoch 1 in a new
    run: the old run keeps the metrics of what was refused, and the new one logs no step
    twice."""
    run_id = line_run(trial.study, trial)
    if run_id is None:
        return Resume()
    try:
        start, why = _continued(mlflow, run_id, trial, cfg, splits)
    except MlflowException as err:  # the run is gone from this store
        if faults.is_passing_fault(err):
            raise
        start, why = Resume(), reason(err)
    if why is None:
        return start
    log(
        f"trial {trial.number}: the checkpoint of run {run_id} is refused ({why}); "
        "the trial starts over from epoch 1 in a new run"
    )
    remove_checkpoint(mlflow, run_id)
    return Resume()


def _continued(
    mlflow: MlflowClient, run_id: str, trial: optuna.Trial, cfg: Config, splits: Splits
) -> tuple[Resume, str | None]:
    """How ``trial`` continues run ``run_id``, and why it cannot when it cannot."""
    run = mlflow.get_run(run_id)
    if any(run.data.params.get(k, v) != v for k, v in tracking.config_params(cfg).items()):
        return Resume(), "its run was logged with other settings"
    try:
        saved = tracking.load_checkpoint(mlflow, run_id)
    except tracking.CheckpointError as err:
        return Resume(), str(err)
    if saved is None:  # interrupted in its first epoch: that run, from the start
        return Resume(run_id), None
    why = refusal(saved, checkpoint_header(trial), cfg, splits)
    return (Resume(run_id, saved["state"]), None) if why is None else (Resume(), why)


def keeps_checkpoint(err: BaseException | None) -> bool:
    """Whether a trial that ended with ``err`` keeps its checkpoint: when it was interrupted
    (Ctrl-C, SIGTERM, a passing fault of the stores or the machine), and so is retried."""
    return isinstance(err, KeyboardInterrupt) or (err is not None and faults.is_passing_fault(err))


def remove_checkpoint(mlflow: MlflowClient, run_id: str | None) -> None:
    """Remove run ``run_id``'s checkpoint; a store that fails here leaves it, unread (a later
    trial of the study continues only its own line's run)."""
    if run_id:
        with contextlib.suppress(Exception):
            tracking.remove_checkpoint(mlflow, run_id)
