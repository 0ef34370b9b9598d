"""The workers part: whole sweep trials with 1 worker process x 2 torch threads and with 2 worker
processes x 1 thread, each sweep in a fresh process on the same trials: what ``--workers auto``
chooses between on a 2-core machine (``sae.sweep.workers.plan_workers``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sae.bench.loops import peak_rss_mb
from sae.bench.population import sweep_trial_params

SHAPES = (("1x2", 1, 2), ("2x1", 2, 1))
"""(name, worker processes, torch threads each) of the two sweeps, in the order they run."""


def workers_figures(
    folder: Path,
    data_root: str,
    trials: int,
    epochs: int,
    train_size: int | None,
    log: Callable[[str], None],
) -> dict[str, float]:
    """The sweep command with each of SHAPES, ``trials`` trials of ``epochs`` epochs on
    ``train_size`` training images (None: all), no pruning and no confirmation runs, each on its
    own study in ``folder`` (which holds the benchmark's mlflow.yaml) with the same trials
    enqueued (``sweep_trial_params``: worker k's sampler would draw others). Keys
    ``workers_{trials_per_minute,sweep_seconds,peak_rss_mb}_{1x2,2x1}`` and
    ``workers_speedup_2x1``: 2x1's trials per minute over 1x2's, measured from the first trial's
    start to the last trial's end (whole trials, not the processes' start-up)."""
    out: dict[str, float] = {}
    params = sweep_trial_params(trials)
    for name, workers, threads in SHAPES:
        study_name = f"bench-workers-{name}-{time.time_ns()}"
        journal = folder / f"{study_name}.journal"
        _enqueue(journal, study_name, params, epochs)
        command = [
            *(sys.executable, "-m", "sae", "sweep", "--root", data_root, "--device", "cpu"),
            *("--config-file", "mlflow.yaml", "--storage", str(journal)),
            *("--study-name", study_name, "--trials", str(trials), "--epochs", str(epochs)),
            *("--workers", str(workers), "--threads", str(threads)),
            *("--pruner", "none", "--confirm", "0", "--no-log-model"),
        ]
        if train_size is not None:
            command += ["--train-size", str(train_size)]
        rss, seconds = peak_rss_mb(command, folder)
        minutes = trial_minutes(journal, study_name)
        out[f"workers_trials_per_minute_{name}"] = trials / minutes
        out[f"workers_sweep_seconds_{name}"] = seconds
        out[f"workers_peak_rss_mb_{name}"] = rss
        log(
            f"workers, {workers} worker(s) x {threads} thread(s): {trials} trials in "
            f"{minutes:.1f} min of trials ({seconds:.0f} s the command), "
            f"{trials / minutes:.2f} trials/minute"
        )
    ratio = out["workers_trials_per_minute_2x1"] / out["workers_trials_per_minute_1x2"]
    out["workers_speedup_2x1"] = ratio
    log(f"workers: 2 workers x 1 thread train {ratio:.2f}x the trials per minute of 1 x 2")
    return out


def _enqueue(journal: Path, study_name: str, params: list[dict[str, Any]], epochs: int) -> None:
    """The study created as the sweep creates it, with ``params`` enqueued in order."""
    import optuna

    from sae.sweep import SweepConfig, build_space, make_storage, open_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = SweepConfig(study_name=study_name)
    study = open_study(make_storage(str(journal)), cfg, build_space(cfg), epochs)
    for trial in params:
        study.enqueue_trial(trial)


def optuna_study(journal: Path | str, study_name: str) -> Any:
    """The study ``study_name`` in the journal file ``journal``."""
    import optuna

    from sae.sweep import make_storage

    return optuna.load_study(study_name=study_name, storage=make_storage(str(journal)))


def trial_minutes(journal: Path, study_name: str) -> float:
    """Minutes from the first trial's start to the last trial's end in the study."""
    trials = optuna_study(journal, study_name).get_trials(deepcopy=False)
    start = min(t.datetime_start for t in trials if t.datetime_start)
    end = max(t.datetime_complete for t in trials if t.datetime_complete)
    return (end - start).total_seconds() / 60
