"""The sweep as a whole: open or resume the study and its parent run, run the workers, confirm
front trials with more seeds, log the summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import optuna
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.distributions import BaseDistribution

from sae import locks, population, signals, tracking
from sae.config import Config
from sae.errors import one_line
from sae.names import (
    REASON_INTERRUPTED,
    STUDY_IDENTITY,
    STUDY_PARENT_RUN,
    TAG_DESCRIPTION,
    TAG_FAMILY,
    TAG_KIND,
    TAG_STUDY,
)
from sae.redact import redact
from sae.splits import Splits, load_splits, resolve_device
from sae.sweep.config import SweepConfig
from sae.sweep.confirm import (
    CONFIRM_SEEDS,
    plan_confirmations,
    record_confirmations,
    train_confirmation,
)
from sae.sweep.identity import study_identity
from sae.sweep.notes import note_study
from sae.sweep.progress import SweepProgress
from sae.sweep.recovery import finished_count, recover_interrupted
from sae.sweep.registry import register_chosen
from sae.sweep.space import build_space, describe_space, family_base
from sae.sweep.study import check_study, make_storage, open_study, study_exists
from sae.sweep.summary import SweepResult, log_summary, summarize
from sae.sweep.workers import (
    Context,
    Pool,
    WorkerPlan,
    available_memory,
    plan_workers,
    run_worker,
    usable_cores,
)
from sae.tracking import views


def run_sweep(base: Config, cfg: SweepConfig, log: Callable[[str], None] = print) -> SweepResult:
    """Open or resume the study, run its workers (as many as ``workers.plan_workers`` says, in
    one line), which then share the confirmation runs, and log the summary to the parent run.

    Any number of commands may start on the same study at once: the study and its one parent
    run are created under a lock on the storage. A trial's failure ends that trial only; the
    sweep succeeds when the study reaches ``trials`` finished trials, even if a worker was lost
    on the way. Ctrl-C or SIGTERM fails every trial in flight as interrupted (retried on resume)
    and ends the parent run KILLED.
    """
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = tracking.load_settings(base.tracking.config_file, base.tracking.tracking_uri)
    # The experiment resolved, so that the workers' trials, the parent run and the study's
    # identity name the same one.
    experiment = base.tracking.experiment or settings.experiment("sweep")
    resolved = dataclasses.replace(base.tracking, experiment=experiment)
    base = family_base(dataclasses.replace(base, tracking=resolved), cfg)
    space = build_space(cfg)
    if cfg.objective == "pareto-probe" and not base.train.probe:
        raise ValueError("--objective pareto-probe maximises the probe's accuracy: drop --no-probe")
    if (cfg.population or 1) > 1 and base.train.amp:
        raise ValueError("a population trains in float32: drop --amp, or --population 1")
    identity = study_identity(base, cfg)  # refuses a data size the data cannot honour
    storage_url = cfg.storage or settings.optuna_storage
    shown = redact(storage_url)
    storage = make_storage(storage_url)
    # Checked before anything is written: an existing study's space, objective and identity
    # (the settings of its trials, its experiment), the data.
    adopted = False
    if study_exists(storage, cfg.study_name):
        existing = check_study(storage, cfg, space, identity)
        _check_experiment(settings, existing, experiment)
        adopted = STUDY_IDENTITY not in existing.user_attrs
    splits = load_splits(base.data, resolve_device(base.train.device), log)
    asked = cfg.population
    cfg = _population(cfg, base, splits, log)
    mlflow = tracking.client(settings)

    study, parent, experiment_id = _open_parent(
        storage, storage_url, cfg, space, base, identity, settings, mlflow, adopted, log
    )
    # The parent ends FINISHED, KILLED (Ctrl-C, SIGTERM) or FAILED, its summary logged first.
    with tracking.run_lifecycle(mlflow, parent):
        retries = recover_interrupted(study, storage, mlflow)
        if retries:
            log(f"retrying the parameters of interrupted trials {retries}")
        plan = _plan_workers(base, cfg, asked, study, splits)
        log(plan.line)
        deadline = time.time() + cfg.timeout if cfg.timeout else None
        ctx = Context(
            base, cfg, settings, storage_url, parent, threads=plan.threads, deadline=deadline
        )
        every_thread = torch.get_num_threads()  # run_worker takes this process's share
        try:
            with signals.interrupts_deferred(), contextlib.ExitStack() as stack:
                pool = None
                if plan.workers > 1:
                    pool = stack.enter_context(Pool(ctx, plan.workers, study, storage, mlflow))
                with SweepProgress(study, cfg.trials, base.train.epochs, plan.workers):
                    if pool is not None:
                        pool.wait_trials()
                    # The parent finishes what lost workers left (the only worker with one).
                    run_worker(ctx, splits=splits)
                torch.set_num_threads(every_thread)  # the workers are done
                _confirm(base, cfg, study, settings, experiment, splits, storage_url, log, pool)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as signals.RunKilled
            recover_interrupted(study, storage, mlflow, reason=REASON_INTERRUPTED, ours=True)
            raise
        finally:
            seconds = time.perf_counter() - started
            result = summarize(study, parent, settings, shown, seconds, experiment, experiment_id)
            log_summary(mlflow, result, cfg)
        result.registered = _register(mlflow, result, experiment, storage_url, log)
    return result


def _open_parent(
    storage: optuna.storages.BaseStorage,
    storage_url: str,
    cfg: SweepConfig,
    space: dict[str, BaseDistribution],
    base: Config,
    identity: dict[str, Any],
    settings: tracking.Settings,
    mlflow: MlflowClient,
    adopted: bool,
    log: Callable[[str], None],
) -> tuple[optuna.Study, str, str]:
    """Under the storage's lock, so that commands starting together share one: the study opened
    (or created, with ``identity``) and its one parent run created, or set RUNNING again on a
    resume; the study's note and landing view. Returns the study, the parent run's id and its
    experiment's id."""
    with locks.store_lock(storage_url, f"sae: study {cfg.study_name}"):
        study = open_study(storage, cfg, space, base.train.epochs, identity=identity)
        parent = study.user_attrs.get(STUDY_PARENT_RUN)
        if parent is None:
            parent = tracking.open_parent_run(
                settings,
                base.tracking.experiment,
                run_name=f"study-{cfg.study_name}",
                tags={TAG_STUDY: cfg.study_name, TAG_KIND: "sweep", TAG_FAMILY: cfg.family},
                description=_describe(cfg, space, base),
            )
            study.set_user_attr(STUDY_PARENT_RUN, parent)
            log(f"new study {cfg.study_name!r} in {redact(storage_url)}")
        else:
            tracking.set_run_status(mlflow, parent, "RUNNING")
            log(f"resuming study {cfg.study_name!r} ({finished_count(study)} trials finished)")
            if adopted:
                log(f"study {cfg.study_name!r} had no recorded settings: recorded this command's")
        run = mlflow.get_run(parent)
        experiment_id = run.info.experiment_id
        # The parent's description (as it was written) is the study's note in optuna-dashboard;
        # the study's landing view lists its trials in the MLflow UI.
        note_study(study, run.data.tags.get(TAG_DESCRIPTION, ""))
        views.save_study_view(mlflow, experiment_id, cfg.study_name)
    return study, parent, experiment_id


def _check_experiment(settings: tracking.Settings, study: optuna.Study, experiment: str) -> None:
    """ValueError when the study's parent run lives in another experiment than ``experiment``:
    its new trials would be logged apart from it. Read from the run, so a study that predates its
    recorded identity is checked too."""
    parent = study.user_attrs.get(STUDY_PARENT_RUN)
    if parent is None:
        return
    mlflow = tracking.client(settings)
    try:
        run = mlflow.get_run(parent)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ValueError(
            f"study {study.study_name!r} has its parent run {parent} in another tracking store "
            f"than {redact(settings.tracking_uri)}: pass the tracking URI it was created with, "
            "or --study-name NEW"
        ) from None
    found = mlflow.get_experiment(run.info.experiment_id).name
    if found != experiment:
        raise ValueError(
            f"study {study.study_name!r} lives in experiment {found!r} (its parent run "
            f"{parent}); this command has tracking.experiment={experiment}: pass --experiment "
            f"{found} or --study-name NEW"
        )


def _population(
    cfg: SweepConfig, base: Config, splits: Splits, log: Callable[[str], None]
) -> SweepConfig:
    """``cfg`` with the population size it runs at: as given, else chosen for the device: 1 on
    a CPU (one model at a time trains fastest there, see docs/performance.md) and with
    --amp; on a GPU the size that trains fastest, measured now (``population.fastest_size``),
    at most the trial count."""
    if cfg.family == "topk":  # a population shares one model, and each trial has its own K
        if (cfg.population or 1) > 1:
            raise ValueError("--family topk searches K, which a population shares: --population 1")
        return dataclasses.replace(cfg, population=1)
    if cfg.population is not None:
        return cfg
    if splits.train.device.type == "cpu" or base.train.amp:
        return dataclasses.replace(cfg, population=1)
    sizes = [k for k in population.SIZES if k <= cfg.trials]
    size, rates = population.fastest_size(base, splits, sizes)
    measured = ", ".join(f"{k}: {rate:,.0f}" for k, rate in rates.items())
    log(f"population {size}, the fastest on this device (training images/s by size: {measured})")
    return dataclasses.replace(cfg, population=size)


def _register(
    mlflow: MlflowClient,
    result: SweepResult,
    experiment: str,
    storage_url: str,
    log: Callable[[str], None],
) -> str | None:
    """Register the study's chosen model; a failure is one line, never the sweep's. Under the
    storage's lock, so two commands that finish together add one version, not two."""
    try:
        with locks.store_lock(storage_url, f"sae: register {result.study.study_name}"):
            return register_chosen(mlflow, result, experiment, log)
    except Exception as err:  # the registry's store, server or permissions: the sweep stands
        log(f"no model registered: {one_line(err)}")
        return None


def _confirm(
    base: Config,
    cfg: SweepConfig,
    study: optuna.Study,
    settings: tracking.Settings,
    experiment: str,
    splits: Splits,
    storage_url: str,
    log: Callable[[str], None],
    pool: Pool | None,
) -> None:
    """The confirmation runs, once the study has its trials (not after a --timeout stop), shared
    among the ``pool``'s workers (without one, trained here one after another); what a lost
    worker held is trained here. Under the storage's lock, so two commands that finish together
    do not train the same run twice."""
    if cfg.confirm == 0:
        return
    if finished_count(study) < cfg.trials:
        log(f"no confirmation runs yet: they follow once the study has {cfg.trials} trials")
        return
    with locks.store_lock(storage_url, f"sae: confirm {cfg.study_name}"):
        jobs = plan_confirmations(base, cfg, study, settings, experiment, splits, log)
        if pool is not None and jobs:
            pool.share(jobs)  # each run trained once, by the first worker free
            # what lost workers left, if any: planned again (their runs RUNNING no longer)
            jobs = plan_confirmations(base, cfg, study, settings, experiment, splits, _quiet)
            if jobs:
                log(f"{len(jobs)} confirmation runs left by lost workers: trained here")
        for job in jobs:
            train_confirmation(base, cfg, job, experiment, splits, log)
        record_confirmations(settings, experiment, study)


def _quiet(line: str) -> None:
    """A log that drops its lines."""


def _plan_workers(
    base: Config, cfg: SweepConfig, asked: int | None, study: optuna.Study, splits: Splits
) -> WorkerPlan:
    """``plan_workers`` for this sweep: the trials left or the confirmation runs to come,
    whichever are more, on this machine's usable cores and memory and the data's device, with
    ``asked`` the --population given (None: unset)."""
    runs = max(cfg.trials - finished_count(study), cfg.confirm * CONFIRM_SEEDS)
    return plan_workers(
        cfg.workers,
        base.train.threads,
        runs=runs,
        cores=usable_cores(),
        device=splits.train.device.type,
        population=asked,
        memory=available_memory(),
    )


FAMILY_WORDS = {
    "l1": "the seed's L1 activation penalty",
    "kl": "a KL penalty towards a target unit density",
    "topk": "a TopK code, no penalty on the code",
}


def _describe(cfg: SweepConfig, space: dict[str, BaseDistribution], base: Config) -> str:
    """The parent run's description in the MLflow UI: the goal, the space, the search."""
    goal = {
        "pareto": "minimise test MSE and code active fraction (Pareto front)",
        "pareto-probe": "minimise test MSE and code active fraction and maximise the linear "
        "probe's accuracy (3-objective Pareto front)",
        "constrained": f"minimise test MSE with code active fraction <= {cfg.max_active_frac:g}",
    }[cfg.objective]
    confirm = (
        f" The {cfg.confirm} front trials spread along it are trained again with 2 more seeds "
        "each (nested under their trial's run), and compared with the baseline with n and "
        "a Welch t-test."
        if cfg.confirm
        else ""
    )
    family = FAMILY_WORDS[cfg.family]
    return (
        f"Optuna study {cfg.study_name!r}, family {cfg.family} ({family}): {goal}; "
        f"{describe_space(space)}; {cfg.sampler} "
        f"sampler; {base.train.epochs} epochs per trial. Each trial is a nested run; "
        f"degenerate trials (a collapsed or dead model) are kept off the front.{confirm}"
    )
