"""The sweep as a whole: open or resume the study and its parent run, run the workers, log the
summary.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import optuna
from optuna.distributions import BaseDistribution
from tqdm import tqdm

from sae import locks, signals, tracking
from sae.config import Config
from sae.names import REASON_INTERRUPTED, STUDY_PARENT_RUN, TAG_KIND, TAG_STUDY
from sae.redact import redact
from sae.sweep.config import SweepConfig
from sae.sweep.recovery import finished_count, recover_interrupted
from sae.sweep.space import build_space, describe_space
from sae.sweep.study import make_storage, open_study, study_exists
from sae.sweep.summary import SweepResult, log_summary, summarize
from sae.sweep.workers import Context, run_processes, run_worker
from sae.train import load_splits, resolve_device


def run_sweep(base: Config, cfg: SweepConfig, log: Callable[[str], None] = print) -> SweepResult:
    """Open or resume the study, run its workers, and log the summary to the parent run.

    Any number of commands may start on the same study at once: the study and its one parent
    run are created under a lock on the storage. A trial's failure ends that trial only; the
    sweep succeeds when the study reaches ``trials`` finished trials, even if a worker was lost
    on the way. Ctrl-C or SIGTERM fails every trial in flight as interrupted (retried on resume)
    and ends the parent run KILLED.
    """
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = tracking.load_settings(base.tracking.config_file, base.tracking.tracking_uri)
    space = build_space(cfg)
    storage_url = cfg.storage or settings.optuna_storage
    shown = redact(storage_url)
    storage = make_storage(storage_url)
    # Checked before anything is written: an existing study's space and objective, the data.
    if study_exists(storage, cfg.study_name):
        open_study(storage, cfg, space, base.train.epochs)
    splits = load_splits(base.data, resolve_device(base.train.device), log)
    mlflow = tracking.client(settings)

    experiment = base.tracking.experiment or settings.experiment("sweep")
    with locks.store_lock(storage_url, f"sae: study {cfg.study_name}"):
        study = open_study(storage, cfg, space, base.train.epochs)
        parent = study.user_attrs.get(STUDY_PARENT_RUN)
        if parent is None:
            parent = tracking.open_parent_run(
                settings,
                experiment,
                run_name=f"study-{cfg.study_name}",
                tags={TAG_STUDY: cfg.study_name, TAG_KIND: "sweep"},
                description=_describe(cfg, space, base),
            )
            study.set_user_attr(STUDY_PARENT_RUN, parent)
            log(f"new study {cfg.study_name!r} in {shown}")
        else:
            tracking.set_run_status(mlflow, parent, "RUNNING")
            log(f"resuming study {cfg.study_name!r} ({finished_count(study)} trials finished)")
    # The parent ends FINISHED, KILLED (Ctrl-C, SIGTERM) or FAILED, its summary logged first.
    with tracking.run_lifecycle(mlflow, parent):
        retries = recover_interrupted(study, storage, mlflow)
        if retries:
            log(f"retrying the parameters of interrupted trials {retries}")
        cores = os.cpu_count() or 1
        threads = max(1, cores // cfg.workers) if cfg.workers > 1 else base.train.threads
        deadline = time.time() + cfg.timeout if cfg.timeout else None
        ctx = Context(base, cfg, settings, storage_url, parent, threads=threads, deadline=deadline)
        try:
            with (
                signals.interrupts_deferred(),
                tqdm(total=cfg.trials, desc="trials", unit="trial") as bar,
            ):

                def progress(done: int) -> None:
                    bar.update(max(0, min(done, cfg.trials) - bar.n))

                if cfg.workers > 1:
                    run_processes(ctx, cfg.workers, study, storage, mlflow, progress)
                # The parent finishes what lost workers left (and is the only worker with one).
                run_worker(ctx, progress, splits)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as signals.RunKilled
            recover_interrupted(study, storage, mlflow, reason=REASON_INTERRUPTED, ours=True)
            raise
        finally:
            result = summarize(study, parent, settings, shown, time.perf_counter() - started)
            log_summary(mlflow, result, cfg)
    return result


def _describe(cfg: SweepConfig, space: dict[str, BaseDistribution], base: Config) -> str:
    """The parent run's description in the MLflow UI: the goal, the space, the search."""
    goal = (
        "minimise test MSE and code active fraction (Pareto front)"
        if cfg.objective == "pareto"
        else f"minimise test MSE with code active fraction <= {cfg.max_active_frac:g}"
    )
    return (
        f"Optuna study {cfg.study_name!r}: {goal}; {describe_space(space)}; {cfg.sampler} "
        f"sampler; {base.train.epochs} epochs per trial. Each trial is a nested run."
    )
