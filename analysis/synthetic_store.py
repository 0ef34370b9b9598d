"""Plausible synthetic runs in an MLflow store, for the report's benchmark and its tests.

    import synthetic_store                # with analysis/ on sys.path
    synthetic_store.synthetic_store(settings, n_runs=1000, epochs=3)

``log_completed_run`` records one run that happened elsewhere in one ``log_batch``;
``synthetic_store`` logs 10 baseline runs and a study of trials with it: every tenth trial
(1, 11, ...) degenerate (a dead code), and the first trial confirmed by two more seeds.
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
CHANCE = 0.1135
"""The probe accuracy of a constant code: the share of the most common test digit."""


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
    confirm_seeds: tuple[int, ...] = (2, 3),
) -> None:
    """Log ``n_runs`` plausible runs, one ``log_batch`` each: 10 baseline runs (2 betas x 5
    seeds, in the script's data order), then a study parent and the rest as its trials with
    every per-epoch metric; trial 0 also gets a confirmation run for each of ``confirm_seeds``
    (not counted in ``n_runs``)."""
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
            params={
                "beta": beta,
                "lr": 1e-3,
                "batch_size": 100,
                "seed": i % 5 + 1,
                "data_order": "script",
            },
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
        params = {
            "beta": float(10 ** rng.uniform(-6, -1)),
            "lr": float(10 ** rng.uniform(-4, -2)),
            "batch_size": int(rng.choice([32, 64, 100, 128, 256])),
            "seed": 1,
        }
        trial_run = _synthetic_run(
            settings,
            settings.experiment("sweep"),
            rng,
            epochs,
            name=f"trial-{number:03d}",
            params=params,
            tags={
                names.TAG_KIND: "sweep",
                names.TAG_STUDY: study,
                names.TAG_TRIAL_NUMBER: str(number),
                names.TAG_TRIAL_STATE: state,
            },
            status="FAILED" if state == "FAIL" else "FINISHED",
            parent_run_id=parent,
            degenerate=number % 10 == 1,
        )
        for seed in confirm_seeds if number == 0 else ():
            _synthetic_run(
                settings,
                settings.experiment("sweep"),
                rng,
                epochs,
                name=f"trial-{number:03d}-seed{seed}",
                params={**params, "seed": seed},
                tags={
                    names.TAG_KIND: names.KIND_CONFIRM,
                    names.TAG_STUDY: study,
                    names.TAG_CONFIRM_TRIAL: str(number),
                    names.TAG_CONFIRM_TRIAL_RUN: trial_run,
                },
                parent_run_id=trial_run,
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
    degenerate: bool = False,
) -> str:
    """One run's per-epoch metrics: plausible values, or a dead code when ``degenerate``."""
    active = np.clip(np.log10(params["beta"]) / -6, 0.02, 1.0)  # more penalty, fewer units on
    mse_end = 0.004 + 0.03 * (1 - active) ** 3 * rng.uniform(0.8, 1.2)
    history = {}
    for epoch in range(1, epochs + 1):
        decay = 1 + 2.0 / epoch
        mse = (0.067 if degenerate else mse_end) * decay
        values = {key: float(rng.uniform(0, 0.9)) for key in FINAL_METRICS}
        code_active = 0.0 if degenerate else float(np.clip(active * rng.uniform(0.8, 1.1), 0, 1))
        values |= {
            M.EPOCH_MSE: mse * 1.02,
            M.EPOCH_LOSS: mse * 1.02 + params["beta"] * 2,
            M.TEST_MSE: mse,
            M.TEST_FVU: mse / 0.067,
            M.README_TEST_LOSS: mse / 8.5,
            M.CODE_ACTIVE_FRAC: code_active,
            M.CODE_L0: code_active * 64,
            M.CODE_DEAD_FRAC: 1.0 if degenerate else values[M.CODE_DEAD_FRAC] / 2,
            M.CODE_INFORMATIVE_FRAC: 0.0 if degenerate else 1 - values[M.CODE_DEAD_FRAC] / 2,
            B.OUTPUT_ACTIVE: 0.9,
        }
        values[M.DEGENERATE] = float(M.degenerate_reason(values) is not None)
        if epoch < epochs:
            for key in M.FINAL_METRICS:
                del values[key]
        else:
            values[M.PROBE_ACCURACY] = CHANCE if degenerate else 0.7 + 0.25 * code_active
        history[epoch] = values
    reason = M.degenerate_reason(history[epochs])
    tags = {**tags, names.TAG_DEGENERATE: "true" if reason else "false"}
    if reason:
        tags[names.TAG_DEGENERATE_REASON] = reason
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
