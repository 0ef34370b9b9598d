"""Plausible synthetic runs in an MLflow store, for the report's benchmark and its tests.

    import synthetic_store                # with analysis/ on sys.path
    synthetic_store.synthetic_store(settings, n_runs=1000, epochs=3)

``log_completed_run`` records one run that happened elsewhere in one ``log_batch``;
``synthetic_store`` logs 10 baseline runs and a study of trials with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param

from sae import baseline as B
from sae import metrics as M
from sae import names, tracking
from sae.report import FINAL_METRICS

_BATCH = 1000
"""MLflow's most metrics and params in one ``log_batch``."""


def log_completed_run(
    settings: tracking.Settings,
    experiment: str,
    *,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    history: dict[int, dict[str, float]],
    status: str = "FINISHED",
    parent_run_id: str | None = None,
) -> str:
    """Record a run that happened elsewhere (synthetic runs for tests and benchmarks): its
    params and its metrics by step in one ``log_batch``, then its final status."""
    experiment_id = tracking.ensure_experiment(settings, experiment)
    client = tracking.client(settings)
    if parent_run_id:
        tags = {**tags, names.TAG_PARENT_RUN: parent_run_id}
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), now, step)
        for step, values in sorted(history.items())
        for key, value in values.items()
    ]
    entries = [Param(k, tracking.param_value(v)) for k, v in params.items()]
    client.log_batch(run_id, metrics=metrics[: _BATCH - len(entries)], params=entries)
    for start in range(_BATCH - len(entries), len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
    client.set_terminated(run_id, status=status)
    return run_id


def synthetic_store(
    settings: tracking.Settings,
    n_runs: int,
    epochs: int = 3,
    seed: int = 0,
    study: str = "synthetic",
    progress: Callable[[int], None] | None = None,
) -> None:
    """Log ``n_runs`` plausible runs, one ``log_batch`` each: 10 baseline runs (2 betas x 5
    seeds), then a study parent and the rest as its trials with every per-epoch metric."""
    rng = np.random.default_rng(seed)
    n_base = min(10, n_runs)
    for i in range(n_base):
        source = "script" if i < n_base / 2 else "readme"
        beta = B.BETAS[source]
        _synthetic_run(
            settings,
            settings.experiment("baseline"),
            rng,
            epochs,
            name=B.run_name(beta, i % 5 + 1),
            params={"beta": beta, "lr": 1e-3, "batch_size": 100, "seed": i % 5 + 1},
            tags={
                names.TAG_KIND: "baseline",
                names.TAG_BASELINE: "true",
                names.TAG_BETA_SOURCE: source,
            },
        )
    if n_runs <= n_base:
        return
    parent = log_completed_run(
        settings,
        settings.experiment("sweep"),
        run_name=f"study-{study}",
        params={},
        tags={names.TAG_KIND: "sweep", names.TAG_STUDY: study},
        history={},
    )
    for number in range(n_runs - n_base):
        state = "FAIL" if number % 50 == 49 else "COMPLETE"
        _synthetic_run(
            settings,
            settings.experiment("sweep"),
            rng,
            epochs,
            name=f"trial-{number:03d}",
            params={
                "beta": float(10 ** rng.uniform(-6, -1)),
                "lr": float(10 ** rng.uniform(-4, -2)),
                "batch_size": int(rng.choice([32, 64, 100, 128, 256])),
                "seed": 1,
            },
            tags={
                names.TAG_KIND: "sweep",
                names.TAG_STUDY: study,
                names.TAG_TRIAL_NUMBER: str(number),
                names.TAG_TRIAL_STATE: state,
            },
            status="FAILED" if state == "FAIL" else "FINISHED",
            parent_run_id=parent,
        )
        if progress:
            progress(n_base + number + 1)


def _synthetic_run(
    settings: tracking.Settings,
    experiment: str,
    rng: np.random.Generator,
    epochs: int,
    *,
    name: str,
    params: dict[str, float],
    tags: dict[str, str],
    status: str = "FINISHED",
    parent_run_id: str | None = None,
) -> str:
    active = np.clip(np.log10(params["beta"]) / -6, 0.02, 1.0)  # more penalty, fewer units on
    mse_end = 0.004 + 0.03 * (1 - active) ** 3 * rng.uniform(0.8, 1.2)
    history = {}
    for epoch in range(1, epochs + 1):
        decay = 1 + 2.0 / epoch
        mse = mse_end * decay
        values = {key: float(rng.uniform(0, 1)) for key in FINAL_METRICS}
        values |= {
            M.EPOCH_MSE: mse * 1.02,
            M.EPOCH_LOSS: mse * 1.02 + params["beta"] * 2,
            M.TEST_MSE: mse,
            M.README_TEST_LOSS: mse / 8.5,
            M.CODE_ACTIVE_FRAC: float(np.clip(active * rng.uniform(0.8, 1.1), 0, 1)),
            B.OUTPUT_ACTIVE: 0.9,
        }
        history[epoch] = values
    return log_completed_run(
        settings,
        experiment,
        run_name=name,
        params={names.param("train", k): v for k, v in {**params, "epochs": epochs}.items()},
        tags=tags,
        history=history,
        status=status,
        parent_run_id=parent_run_id,
    )
