"""Sweeps on tiny data for tests: configs, the CLI command, and reading both stores back."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
from helpers import N_TEST, N_TRAIN, build_config
from helpers_data import spec_of, write_manifest
from mlflow.tracking import MlflowClient

from sae import data, names, sweep
from sae.config import Config, DataConfig
from sae.sweep import SweepConfig
from sae.tracking import ensure_store

SWEEP = Path(__file__).resolve().parents[1] / "experiments" / "sweep.py"


def learnable_data(root: Path, n_train: int = N_TRAIN, n_test: int = N_TEST) -> DataConfig:
    """Tiny verified MNIST-shaped data a model learns in 2 epochs at batch size 10: each image is
    a bright bar whose place is its label. (The tiny noise of ``helpers.tiny_data`` cannot be
    learnt, so every run on it is degenerate and a sweep on it has no front.) Measured at lr 1e-2,
    batch 10, 3 epochs: beta 1e-3 explains 98% of the variance around the mean image; beta 0.03
    and above leaves a layer dead."""
    rng = np.random.default_rng(0)
    raw = data.raw_dir_of(root)
    raw.mkdir(parents=True, exist_ok=True)
    for n, images, labels in (
        (n_train, data.TRAIN_IMAGES, data.TRAIN_LABELS),
        (n_test, data.TEST_IMAGES, data.TEST_LABELS),
    ):
        digits = rng.integers(0, 10, size=n)
        x = np.zeros((n, 28, 28), dtype=np.uint8)
        for i, digit in enumerate(digits):
            row, col = 2 + (digit // 5) * 12, 2 + (digit % 5) * 5
            x[i, row : row + 10, col : col + 5] = 255
        data.write_idx_images(raw / images, x)
        data.write_idx_labels(raw / labels, digits.astype(np.int64))
    files = tuple(spec_of(raw / name) for name in data.FILE_NAMES)
    return DataConfig(root=str(root), manifest=str(write_manifest(root / "manifest.json", files)))


_STORES: list[tempfile.TemporaryDirectory] = []


def empty_store(path: Path) -> None:
    """Copy an empty MLflow store to ``path``: built once per session, since building one takes
    seconds (MLflow runs its schema migrations) and a copy milliseconds."""
    if not _STORES:
        _STORES.append(tempfile.TemporaryDirectory(prefix="sae-empty-store-"))
        ensure_store(f"sqlite:///{Path(_STORES[0].name) / 'mlflow.db'}")
    shutil.copyfile(Path(_STORES[0].name) / "mlflow.db", path)


def sweep_base(
    tmp_path: Path, *, learnable: bool = True, new_store: bool = False, **train
) -> Config:
    """A 2-epoch tracked config on tiny data in ``tmp_path`` (``learnable_data``, else the noise
    of ``helpers.tiny_data``), its stores in ``tmp_path``: an empty MLflow store copied there
    (``empty_store``), or, with ``new_store``, none until a run creates it."""
    if not new_store and not (tmp_path / "mlflow.db").exists():
        empty_store(tmp_path / "mlflow.db")
    cfg = build_config(tmp_path, track=True, **{"epochs": 2, **train})
    cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(cfg.tracking, log_model=False))
    if learnable:
        cfg = dataclasses.replace(cfg, data=learnable_data(tmp_path / "data"))
    (tmp_path / "mlflow.yaml").write_text(
        "tracking_uri: sqlite:///mlflow.db\nartifact_location: mlartifacts\n"
        "optuna_storage: optuna.journal\n"
    )
    return cfg


LR_RANGE = (3e-3, 2e-2)


def sweep_config(**kwargs) -> SweepConfig:
    """Small batches and high rates, so that trials on ``learnable_data`` learn; no confirmation
    runs unless asked for; one worker (in this process, so a test's patches apply) unless asked
    for more."""
    defaults = {"trials": 3, "batch_sizes": (10, 20), "lr_range": LR_RANGE, "confirm": 0}
    defaults["workers"] = 1
    return SweepConfig(**{**defaults, **kwargs})


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
        # sweep_config's rates, no confirmation runs and one worker; argv may say otherwise: the
        # last wins
        *("--lr-range", *(str(lr) for lr in LR_RANGE), "--confirm", "0", "--workers", "1"),
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


def log_baseline_runs(tmp_path: Path, rows: list[dict[str, float]]) -> None:
    """FINISHED baseline runs of the script's beta in ``tmp_path``'s store, one per row of final
    metrics (by key), as ``experiments/baseline.py`` leaves them, without training."""
    from sae import metrics as M

    mlflow = client(tmp_path)
    found = mlflow.get_experiment_by_name("sae-baseline")
    experiment = found.experiment_id if found else mlflow.create_experiment("sae-baseline")
    for seed, row in enumerate(rows, 1):
        run = mlflow.create_run(
            experiment,
            run_name=f"baseline-beta0.0001-seed{seed}",
            tags={names.TAG_BASELINE: "true", names.TAG_BETA_SOURCE: "script"},
        )
        run_id = run.info.run_id
        mlflow.log_param(run_id, names.param("train", "beta"), "0.0001")
        mlflow.log_param(run_id, names.param("train", "seed"), str(seed))
        values = {M.sparsity_key("dec3", M.ACTIVE_FRAC): 0.5, M.DEGENERATE: 0.0, **row}
        for key, value in values.items():
            mlflow.log_metric(run_id, key, value, step=10)
        mlflow.set_terminated(run_id, "FINISHED")


def assert_interrupted(tmp_path: Path, trials: list) -> None:
    """Each trial is FAIL "interrupted" in Optuna and FAIL "interrupted" on its KILLED run."""
    mlflow = client(tmp_path)
    for trial in trials:
        assert trial.state == optuna.trial.TrialState.FAIL
        assert trial.user_attrs[names.ATTR_FAIL_REASON] == names.REASON_INTERRUPTED
        run = mlflow.get_run(trial.user_attrs[names.ATTR_RUN_ID])
        assert run.info.status == "KILLED"
        assert run.data.tags[names.TAG_TRIAL_STATE] == "FAIL"
        assert run.data.tags[names.TAG_REASON] == names.REASON_INTERRUPTED


DEAD_CODE = "layer enc3 is dead: no unit active on any test image"
FRONT_POINTS = (  # test MSE, active fraction, probe accuracy, degenerate reason (None: none)
    (0.020, 0.30, 0.90, ""),
    (0.030, 0.20, 0.80, ""),
    (0.066, 0.00, 0.11, DEAD_CODE),  # the sparsest point, no better than the mean image
    (0.070, 0.10, 0.10, ""),  # dominated by trial 2 alone
    (0.068, 0.00, 0.11, None),  # an older study's: dead by its active fraction, no constraint
    (0.035, 0.25, 0.95, ""),  # dominated by trial 1 unless the probe is an objective
)
"""A study whose degenerate trials would be on its front if their constraint were ignored;
with the constrained objective trial 0 is also over the active-fraction limit."""


def degenerate_front_stores(folder: Path, objective: str = "pareto") -> tuple:
    """Both stores of a finished sweep of study ``s`` with the trials of FRONT_POINTS, as the
    sweep records them (each trial's user attributes and constraints, its FINISHED run tagged
    with its study, number, state and degenerate flag, under a parent run): (settings, study,
    parent run id, experiment id)."""
    from sae import metrics as M
    from sae import tracking

    empty_store(folder / "mlflow.db")
    (folder / "mlflow.yaml").write_text(
        "tracking_uri: sqlite:///mlflow.db\nartifact_location: mlartifacts\n"
        "optuna_storage: optuna.journal\n"
    )
    settings = tracking.load_settings(folder / "mlflow.yaml")
    mlflow = tracking.client(settings)
    experiment_id = tracking.ensure_experiment(settings, "sae-sweep")
    study_tags = {names.TAG_STUDY: "s"}
    parent = mlflow.create_run(experiment_id, run_name="study-s", tags=study_tags).info.run_id
    cfg = sweep_config(objective=objective, study_name="s")
    storage = sweep.make_storage(str(folder / "optuna.journal"))
    study = optuna.create_study(study_name="s", storage=storage, directions=cfg.directions)
    for number, (mse, active, probe, reason) in enumerate(FRONT_POINTS):
        tags = {
            **study_tags,
            names.TAG_TRIAL_NUMBER: str(number),
            names.TAG_TRIAL_STATE: "COMPLETE",
            names.TAG_PARENT_RUN: parent,
            names.TAG_DEGENERATE: "true" if reason != "" else "false",
        }
        if reason != "":
            tags[names.TAG_DEGENERATE_REASON] = reason or DEAD_CODE
        run_id = mlflow.create_run(experiment_id, run_name=f"trial-{number:03d}", tags=tags)
        run_id = run_id.info.run_id
        for key, value in {
            M.TEST_MSE: mse,
            M.CODE_ACTIVE_FRAC: active,
            M.PROBE_ACCURACY: probe,
        }.items():
            mlflow.log_metric(run_id, key, value, step=2)
        mlflow.set_terminated(run_id, "FINISHED")
        attrs = {names.ATTR_ACTIVE: active, names.ATTR_TEST_MSE: mse, names.ATTR_RUN_ID: run_id}
        attrs[names.ATTR_PROBE] = probe
        constraints = {}
        if reason is not None:
            attrs[names.ATTR_DEGENERATE] = reason
            constraints[names.ATTR_DEGENERATE] = 1.0 if reason else -1.0
            if objective == "constrained":
                constraints[names.ATTR_ACTIVE] = 0.1 if number == 0 else -0.1
        study.add_trial(
            optuna.trial.create_trial(
                values=[mse, active, probe][: len(cfg.directions)],
                params={"lr": 1e-2, "beta": 1e-3, "batch_size": 10},
                distributions=dict(sweep.build_space(cfg)),
                user_attrs=attrs,
                constraints=constraints or None,
            )
        )
    mlflow.set_terminated(parent, "FINISHED")
    return settings, study, parent, experiment_id


def dashboard_study(application, study_id: int) -> dict:
    """optuna-dashboard's study page data, as its browser page fetches it: the WSGI app called
    in this process."""
    import json
    from wsgiref.util import setup_testing_defaults

    environ = {"PATH_INFO": f"/api/studies/{study_id}", "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(application(environ, lambda s, headers, exc=None: status.append(s)))
    assert status == ["200 OK"], body
    return json.loads(body)


SLOW_TRIAL = ("--trials", "1", "--batch-sizes", "50", "--epochs", "400")
"""``sweep_command`` flags of one trial long enough to be caught running, then stopped."""


def resuming_slow_trial(base: Config, monkeypatch: pytest.MonkeyPatch) -> Config:
    """``base`` as ``sweep_command(base, *SLOW_TRIAL)`` trains it (400 epochs, the command's test
    batch of 60), the settings an in-process resume of that study must pass (its identity). The
    resumed trials' training is cut to 2 epochs here, for speed: what the tests check is which
    parameters they train and how they end. Cut when the trial is planned, so the retry finds
    the interrupted run logged with other settings and starts over in a new run, as it does with
    a refused checkpoint (``sweep.resume``)."""
    from sae.sweep import objective

    real = objective.plan_trial

    def two_epochs(*args, **kwargs):
        plan = real(*args, **kwargs)
        train = dataclasses.replace(plan.cfg.train, epochs=2)
        return dataclasses.replace(plan, cfg=dataclasses.replace(plan.cfg, train=train))

    monkeypatch.setattr(objective, "plan_trial", two_epochs)
    train = dataclasses.replace(base.train, epochs=400, test_batch_size=60)
    return dataclasses.replace(base, train=train)
