"""Sweeps on tiny data for tests: configs, the CLI command, and reading both stores back."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from helpers import build_config
from mlflow.tracking import MlflowClient

from sae import names, sweep
from sae.config import Config
from sae.sweep import SweepConfig

SWEEP = Path(__file__).resolve().parents[1] / "experiments" / "sweep.py"


def sweep_base(tmp_path: Path, **train) -> Config:
    """A 2-epoch tracked config on tiny data in ``tmp_path``, its stores in ``tmp_path``."""
    cfg = build_config(tmp_path, track=True, **{"epochs": 2, **train})
    cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, log_model=False))
    (tmp_path / "mlflow.yaml").write_text(
        "tracking_uri: sqlite:///mlflow.db\nartifact_location: mlartifacts\n"
        "optuna_storage: optuna.journal\n"
    )
    return cfg


def sweep_config(**kwargs) -> SweepConfig:
    return SweepConfig(**{"trials": 3, "batch_sizes": (50, 100), **kwargs})


def client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")


def children(mlflow: MlflowClient, parent_id: str) -> list:
    parent = mlflow.get_run(parent_id)
    return mlflow.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )


def load_study(tmp_path: Path, name: str = "sae-sweep") -> optuna.Study:
    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    return optuna.load_study(study_name=name, storage=storage)


def sweep_command(base: Config, *argv: str) -> list[str]:
    """The sweep CLI on ``base``'s tiny data, run with cwd = the folder of its mlflow.yaml."""
    return [
        sys.executable,
        str(SWEEP),
        *("--root", base.data.root, "--manifest", base.data.manifest),
        *("--config-file", "mlflow.yaml", "--test-batch-size", "60", "--no-log-model"),
        *argv,
    ]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the user's tracking URI, one thread per process."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def run_cli(
    base: Config, cwd: Path, *argv: str, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        sweep_command(base, *argv),
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(what: str, ready: Callable[[], object], timeout: float = 120) -> object:
    """Poll ``ready`` until it returns something truthy; fail the test naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = ready()
        except (KeyError, ValueError, OSError):  # the study or store is not there yet
            found = None
        if found:
            return found
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def running_with_run(tmp_path: Path, count: int = 1) -> list:
    """The RUNNING trials that have an MLflow run, once there are ``count`` of them."""
    if not (tmp_path / "optuna.journal").exists():
        return []
    running = load_study(tmp_path).get_trials(states=(optuna.trial.TrialState.RUNNING,))
    running = [t for t in running if names.ATTR_RUN_ID in t.user_attrs]
    return running if len(running) >= count else []


def console_lines(text: str) -> list[str]:
    """The lines a user sees, without tqdm's progress-bar redraws."""
    lines = text.replace("\r", "\n").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("trials:")]
