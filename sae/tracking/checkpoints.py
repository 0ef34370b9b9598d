"""A run's checkpoint, kept in the run's own artifacts: written after every epoch, read back by
whichever process resumes the run, removed when the run's work is over.

Why the run's artifacts, rather than Optuna's artifact store or a folder beside the study's
storage: every worker of a study, on this machine or another, already reaches the tracking store
and its artifacts (its trials' metrics and models go there), so a checkpoint needs no new place
to configure, share or clean up, and it stays with the run it resumes, which the resumed trial
continues. The file is one ``torch.save`` of tensors and plain values, read back with
``torch.load(weights_only=True)``: no code runs on loading it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from mlflow.tracking import MlflowClient

from sae import internals
from sae.errors import reason

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = f"{CHECKPOINT_DIR}/state.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: damaged, cut short, or not a checkpoint at all."""


def save_checkpoint(client: MlflowClient, run_id: str, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` as run ``run_id``'s checkpoint, in place of the one before."""
    with tempfile.TemporaryDirectory(prefix="sae-checkpoint-") as folder:
        path = Path(folder) / Path(CHECKPOINT_FILE).name
        torch.save(checkpoint, path)
        client.log_artifact(run_id, str(path), CHECKPOINT_DIR)


def load_checkpoint(client: MlflowClient, run_id: str) -> dict[str, Any] | None:
    """Run ``run_id``'s checkpoint, or None when it has none; CheckpointError, in one line, when
    the file cannot be read as one."""
    listed = client.list_artifacts(run_id, CHECKPOINT_DIR)
    if not any(entry.path == CHECKPOINT_FILE for entry in listed):
        return None
    with tempfile.TemporaryDirectory(prefix="sae-checkpoint-") as folder:
        path = client.download_artifacts(run_id, CHECKPOINT_FILE, folder)
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a cut or foreign file: pickle, zip and torch errors alike
            first = reason(err).split(". ")[0]  # torch's own advice follows
            raise CheckpointError(f"it cannot be read: {first}") from None
    if not isinstance(loaded, dict):
        raise CheckpointError("it is not a checkpoint")
    return loaded


def remove_checkpoint(client: MlflowClient, run_id: str) -> None:
    """Delete run ``run_id``'s checkpoint; nothing when it has none."""
    internals.delete_run_artifacts(client, run_id, CHECKPOINT_DIR)
