"""The Optuna sweep over beta, lr and batch size: every Optuna call of the project lives here.

Each trial is one tracked training run, nested under one MLflow parent run per study. The study
lives in an Optuna storage (a journal file by default), so rerunning the same command resumes it,
several worker processes can share it, and with a database URL so can several machines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
import pandas as pd
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    distribution_to_json,
)
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from sae import journal, locks, tracking
from sae import metrics as M
from sae.config import Config, TrainConfig, check_types, read_yaml_mapping
from sae.names import (  # noqa: F401  (re-exported: older call sites use these here)
    ATTR_ACTIVE,
    ATTR_CONSTRAINT,
    ATTR_FAIL_REASON,
    ATTR_FAILED,
    ATTR_NON_FINITE,
    ATTR_RETRY_OF,
    ATTR_RUN_ID,
    ATTR_WORKER,
    REASON_INTERRUPTED,
    REASON_WORKER_DIED,
    STUDY_OBJECTIVE,
    STUDY_PARENT_RUN,
    STUDY_SPACE,
    TAG_REASON,
)
from sae.redact import redact
from sae.runner import train_run
from sae.train import Callback, NonFiniteLossError, Splits, load_splits, resolve_device

Objective = Literal["pareto", "constrained"]
SamplerName = Literal["tpe", "random", "nsga2"]
PrunerName = Literal["median", "hyperband", "none"]


MAX_RETRIES = 2
"""How many times the parameters of an interrupted trial are tried again."""


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass(frozen=True)
class SweepConfig:
    """What the sweep searches, for what, and where the study lives."""

    trials: int = _help("finished trials in total; a resumed sweep runs only the rest", default=30)
    objective: Objective = _help(
        "pareto: minimise test MSE and code active fraction together (a Pareto front); "
        "constrained: minimise test MSE subject to active fraction <= max-active-frac, "
        "with pruning",
        default="pareto",
    )
    max_active_frac: float = _help(
        "constrained objective: the largest allowed fraction of active code units", default=0.25
    )
    sampler: SamplerName = _help("Optuna sampler", default="tpe")
    pruner: PrunerName = _help(
        "pruner from per-epoch test MSE (constrained objective only)", default="median"
    )
    sampler_seed: int = _help("seed of the sampler (worker k uses seed + k)", default=0)
    timeout: float | None = _help(
        "stop starting new trials after this many seconds; unset means no limit", default=None
    )
    study_name: str = _help(
        "Optuna study name; the same name resumes the study", default="sae-sweep"
    )
    storage: str | None = _help(
        "Optuna storage: a journal file path or a database URL (postgresql+psycopg://...); "
        "unset means optuna_storage in mlflow.yaml",
        default=None,
    )
    workers: int = _help("worker processes on this machine sharing the study", default=1)
    space: str | None = _help(
        "YAML file of the search space (beta: [low, high], lr: [low, high], batch_size: [...])",
        default=None,
    )
    beta_range: tuple[float, float] = _help("beta, log-uniform: LOW HIGH", default=(1e-6, 1e-1))
    lr_range: tuple[float, float] = _help("lr, log-uniform: LOW HIGH", default=(1e-4, 1e-2))
    batch_sizes: tuple[int, ...] = _help(
        "batch_size, categorical: the choices", default=(32, 64, 100, 128, 256)
    )

    def __post_init__(self) -> None:
        check_types(self)
        if self.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {self.trials}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if not 0 < self.max_active_frac <= 1:
            raise ValueError(f"max_active_frac must be in (0, 1], got {self.max_active_frac}")
        if self.timeout is not None and not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ValueError(f"--timeout must be a finite number > 0, got {self.timeout}")
        for name, choices in (("sampler", SamplerName), ("pruner", PrunerName)):
            if getattr(self, name) not in choices.__args__:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of "
                    f"{', '.join(choices.__args__)}"
                )
        if self.objective not in Objective.__args__:
            raise ValueError(f"unknown objective {self.objective!r}; choose pareto or constrained")
        if not self.study_name:
            raise ValueError("--study-name must not be empty")


def read_space_file(path: str) -> dict[str, Any]:
    """The overrides a space file makes, as SweepConfig fields (beta_range, lr_range, ...)."""
    raw = read_yaml_mapping(path, "search space", "parameters")
    keys = {"beta": "beta_range", "lr": "lr_range", "batch_size": "batch_sizes"}
    unknown = set(raw) - set(keys)
    if unknown:
        raise ValueError(
            f"search space {path}: unknown parameter {sorted(unknown)[0]!r}; "
            "searchable are beta, lr, batch_size"
        )
    out = {}
    for name, values in raw.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"search space {path}: {name} must be a non-empty list")
        if name == "batch_size":
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise ValueError(
                    f"search space {path}: batch_size must hold whole numbers, got {values}"
                )
            out[keys[name]] = tuple(values)
            continue
        if len(values) != 2:
            raise ValueError(f"search space {path}: {name} needs [low, high], got {values}")
        numbers = tuple(_finite(v) for v in values)
        if None in numbers:
            raise ValueError(f"search space {path}: {name} must hold finite numbers, got {values}")
        out[keys[name]] = numbers
    return out


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (YAML may give a string or a bool)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def build_space(cfg: SweepConfig) -> dict[str, BaseDistribution]:
    """The search space: parameter names are TrainConfig field names. Raises on a bad range."""
    space: dict[str, BaseDistribution] = {}
    for name, bounds in (("beta", cfg.beta_range), ("lr", cfg.lr_range)):
        if len(bounds) != 2:
            raise ValueError(f"{name} range needs LOW HIGH, got {list(bounds)}")
        low, high = bounds
        if not (0 < low < high and math.isfinite(low) and math.isfinite(high)):
            raise ValueError(
                f"{name} range [{low:g}, {high:g}] is empty or inverted (0 < low < high)"
            )
        space[name] = FloatDistribution(low, high, log=True)
    if not cfg.batch_sizes or any(
        isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in cfg.batch_sizes
    ):
        raise ValueError(f"batch sizes must be positive integers, got {list(cfg.batch_sizes)}")
    space["batch_size"] = CategoricalDistribution(sorted(set(cfg.batch_sizes)))
    assert set(space) <= {f.name for f in dataclasses.fields(TrainConfig)}
    return space


def _space_json(space: dict[str, BaseDistribution]) -> str:
    return json.dumps(
        {k: json.loads(distribution_to_json(v)) for k, v in space.items()}, sort_keys=True
    )


# Storage, sampler, pruner, study.


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """A journal file for a path, an RDB storage with heartbeats for a database URL.

    Raises ValueError, in one line, when the storage cannot be used: a folder where the journal
    should be, a damaged journal (checked before anything is written), an unreachable database.
    Several processes may create the same new storage at once.
    """
    if "://" not in url:
        path = Path(url)
        if path.is_dir():
            raise ValueError(f"Optuna storage {path} is a folder: name a journal file in it")
        if not path.parent.is_dir():
            raise ValueError(f"storage folder {path.parent} does not exist")
        if path.exists():
            journal.check(path)
        backend = optuna.storages.journal.JournalFileBackend(str(path))
        return optuna.storages.JournalStorage(backend)
    try:
        # Heartbeats let Optuna fail the trials of a worker that died, on any machine. The lock
        # keeps two first starts from creating the tables at once.
        with (
            locks.store_lock(url, "sae: create the Optuna storage"),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            return optuna.storages.RDBStorage(url, heartbeat_interval=10, grace_period=30)
    except Exception as err:  # sqlalchemy raises many kinds; all mean "cannot use this URL"
        reason = redact(" ".join(str(err).split())[:200])
        raise ValueError(f"cannot open Optuna storage {redact(url)}: {reason}") from None


def make_sampler(
    cfg: SweepConfig, worker: int = 0, history: int = 0
) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded from (sampler_seed, worker, trials already in the study).

    A fixed seed alone would make a resumed sweep, or a second worker, replay the first
    random draws of the first session; mixing in the worker and the history keeps every session
    deterministic without repeating one.
    """
    import numpy as np

    seed = int(np.random.SeedSequence([cfg.sampler_seed, worker, history]).generate_state(1)[0])
    # The constrained objective sets its constraint on each trial (Trial.set_constraint), which
    # both samplers read; Optuna 5 deprecated the constraints_func argument for it.
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(cfg: SweepConfig, epochs: int) -> optuna.pruners.BasePruner:
    if cfg.objective == "pareto" or cfg.pruner == "none":
        return optuna.pruners.NopPruner()
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def open_study(
    storage: optuna.storages.BaseStorage,
    cfg: SweepConfig,
    space: dict[str, BaseDistribution],
    epochs: int,
    worker: int = 0,
) -> optuna.Study:
    """Create the study, or load it when it exists with the same search space and objective."""
    directions = ["minimize", "minimize"] if cfg.objective == "pareto" else ["minimize"]
    existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    if cfg.study_name in existing:
        study = optuna.load_study(
            study_name=cfg.study_name,
            storage=storage,
            sampler=make_sampler(cfg, worker, existing[cfg.study_name]),
            pruner=make_pruner(cfg, epochs),
        )
        attrs = study.user_attrs
        if attrs.get(STUDY_OBJECTIVE, cfg.objective) != cfg.objective:
            raise ValueError(
                f"study {cfg.study_name!r} exists with objective {attrs[STUDY_OBJECTIVE]!r}, "
                f"not {cfg.objective!r}; pass --study-name NEW for a new study"
            )
        if attrs.get(STUDY_SPACE, _space_json(space)) != _space_json(space):
            raise ValueError(
                f"study {cfg.study_name!r} exists with a different search space "
                f"({attrs[STUDY_SPACE]}); pass the same ranges or --study-name NEW"
            )
        return study
    study = optuna.create_study(
        study_name=cfg.study_name,
        storage=storage,
        sampler=make_sampler(cfg, worker),
        pruner=make_pruner(cfg, epochs),
        directions=directions,
        load_if_exists=True,  # another worker may create it between our look and here
    )
    study.set_user_attr(STUDY_SPACE, _space_json(space))
    study.set_user_attr(STUDY_OBJECTIVE, cfg.objective)
    return study


# Which trials count, and recovering interrupted ones.


def counts_as_finished(trial: FrozenTrial) -> bool:
    """COMPLETE, PRUNED, or FAIL by itself (a diverged loss, an exception in the trial): outcomes
    of its parameters. An interrupted trial, or one whose worker died, does not count."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and _failed_itself(trial)


def _failed_itself(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(ATTR_NON_FINITE) or trial.user_attrs.get(ATTR_FAILED))


def finished_count(study: optuna.Study) -> int:
    return sum(counts_as_finished(t) for t in study.get_trials(deepcopy=False))


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _is_dead(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's worker: the RDB heartbeat tells, not us
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover_interrupted(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    reason: str = REASON_WORKER_DIED,
    ours: bool = False,
) -> list[int]:
    """Fail the RUNNING trials whose worker process on this machine is gone (with ``reason``;
    with ``ours``, this process's own trials too, when it is being interrupted),
    end the MLflow run of every interrupted trial KILLED with the trial's state and reason, and
    enqueue the parameters of every interrupted trial again (at most MAX_RETRIES times). Returns
    the numbers of the trials given a retry. Trials that failed by themselves are not retried.

    The journal storage has no heartbeat in Optuna 5, hence the check by process id; an RDB
    storage's heartbeat fails the trials of dead workers on any machine, and this then retries
    them the same way.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(ATTR_WORKER, "")
        if _is_dead(worker) or (ours and worker == _worker_id()):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_user_attr(trial_id, ATTR_FAIL_REASON, reason)
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    trials = study.get_trials(deepcopy=False)
    retried_roots: dict[int, int] = {}
    for trial in trials:
        if ATTR_RETRY_OF in trial.user_attrs:
            root = trial.user_attrs[ATTR_RETRY_OF]
            retried_roots[root] = retried_roots.get(root, 0) + 1
    given = []
    for trial in trials:
        if trial.state != TrialState.FAIL or _failed_itself(trial):
            continue
        run_id = trial.user_attrs.get(ATTR_RUN_ID)
        if run_id and tracking.run_status(run_id) == "RUNNING":
            why = trial.user_attrs.get(ATTR_FAIL_REASON, reason)
            tracking.set_tags(
                run_id,
                {tracking.TAG_TRIAL_STATE: "FAIL", tracking.TAG_ERROR: why, TAG_REASON: why},
            )
            tracking.set_run_status(run_id, "KILLED")
        root = trial.user_attrs.get(ATTR_RETRY_OF, trial.number)
        already = any(
            t.user_attrs.get(ATTR_RETRY_OF) == root and t.number > trial.number for t in trials
        )
        if already or retried_roots.get(root, 0) >= MAX_RETRIES or not trial.params:
            continue
        study.enqueue_trial(trial.params, user_attrs={ATTR_RETRY_OF: root}, skip_if_exists=False)
        retried_roots[root] = retried_roots.get(root, 0) + 1
        given.append(trial.number)
    return given


# The objective.


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_categorical(name, dist.choices)


class _Report(Callback):
    """Reports each epoch's test MSE to the trial and prunes when the pruner says so."""

    def __init__(self, trial: optuna.Trial, prune: bool) -> None:
        self.trial, self.prune = trial, prune

    def on_epoch_end(self, epoch, step, metrics, model) -> None:  # noqa: ANN001
        if not self.prune:
            return
        self.trial.report(metrics[M.TEST_MSE], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")


@dataclass
class Context:
    """What every worker needs to run trials; picklable, so it crosses into worker processes
    through a pipe, never on a command line."""

    base: Config
    sweep: SweepConfig
    storage_url: str
    parent_run_id: str
    worker: int = 0
    threads: int | None = None
    deadline: float | None = None
    """time.time() after which no new trial starts (--timeout), shared by every worker."""


def make_objective(
    ctx: Context, splits: Splits, callbacks: Callable[[], list[Callback]] = list
) -> Callable[[optuna.Trial], Any]:
    """The objective: one tracked training run per trial. Whatever goes wrong inside the trial
    ends that trial FAIL with its reason (a user attribute, and tags on its FAILED run) and is
    raised for Optuna to record; the sweep catches it and goes on."""
    space = build_space(ctx.sweep)
    prune = ctx.sweep.objective == "constrained"

    def objective(trial: optuna.Trial) -> Any:
        run_id: list[str] = []

        def started(rid: str) -> None:
            run_id.append(rid)
            trial.set_user_attr(ATTR_RUN_ID, rid)

        state, reason = "FAIL", ""
        try:
            params = {name: _suggest(trial, name, dist) for name, dist in space.items()}
            trial.set_user_attr(ATTR_WORKER, _worker_id())
            cfg = dataclasses.replace(ctx.base, train=dataclasses.replace(ctx.base.train, **params))
            outcome = train_run(
                cfg,
                kind="sweep",
                run_name=f"trial-{trial.number:03d}",
                tags={
                    tracking.TAG_STUDY: ctx.sweep.study_name,
                    tracking.TAG_TRIAL_NUMBER: str(trial.number),
                    tracking.TAG_DESCRIPTION: _describe_trial(trial.number, ctx.sweep, params),
                },
                parent_run_id=ctx.parent_run_id,
                callbacks=[_Report(trial, prune), *callbacks()],
                splits=splits,
                on_run_start=started,
                finish_on=(optuna.TrialPruned,),
            )
            values = _objective_values(ctx.sweep, trial, outcome.result.final)
            state = "COMPLETE"
            return values
        except optuna.TrialPruned as err:
            state, reason = "PRUNED", str(err)
            raise
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (tracking.RunKilled): retried on resume
            reason = REASON_INTERRUPTED
            raise
        except NonFiniteLossError as err:
            reason = str(err)
            trial.set_user_attr(ATTR_NON_FINITE, True)
            raise
        except Exception as err:
            reason = tracking.one_line(err)
            trial.set_user_attr(ATTR_FAILED, True)
            raise
        finally:
            _record_outcome(trial, run_id, state, reason)

    return objective


def _objective_values(sweep: SweepConfig, trial: optuna.Trial, final: dict[str, float]) -> Any:
    """The objective value(s) from the last epoch's evaluation; a non-finite one is an error."""
    mse, active = final[M.TEST_MSE], final[M.CODE_ACTIVE_FRAC]
    if not (math.isfinite(mse) and math.isfinite(active)):
        raise NonFiniteLossError(f"test MSE {mse} or active fraction {active} is not finite")
    trial.set_user_attr(ATTR_ACTIVE, active)
    trial.set_user_attr("test_mse", mse)
    if sweep.objective == "pareto":
        return mse, active
    excess = active - sweep.max_active_frac
    trial.set_user_attr(ATTR_CONSTRAINT, excess)
    trial.set_constraint("code_active_frac", excess)
    return mse


def _record_outcome(trial: optuna.Trial, run_id: list[str], state: str, reason: str) -> None:
    """The trial's reason as a user attribute, its state and reason as tags on its run. A store
    that fails here must not hide the trial's own error, so a failure to write is dropped."""
    with contextlib.suppress(Exception):
        if reason:
            trial.set_user_attr(ATTR_FAIL_REASON, redact(reason)[:500])
    if run_id:
        tags = {tracking.TAG_TRIAL_STATE: state}
        if reason and state != "COMPLETE":
            tags[TAG_REASON] = redact(reason)[:500]
        with contextlib.suppress(Exception):
            tracking.set_tags(run_id[0], tags)


def _announce(log: Callable[[str], None]) -> Callable[[optuna.Study, FrozenTrial], None]:
    """An Optuna callback: one console line for each trial that did not complete."""

    def announce(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state in (TrialState.FAIL, TrialState.PRUNED):
            why = trial.user_attrs.get(ATTR_FAIL_REASON, "no reason recorded")
            log(f"trial {trial.number} {trial.state.name}: {why}")

    return announce


def run_worker(
    ctx: Context,
    progress: Callable[[int], None] | None = None,
    splits: Splits | None = None,
    log: Callable[[str], None] = tqdm.write,
) -> None:
    """Run trials until the study has ``trials`` finished ones (or the deadline passes).

    A trial that fails ends FAIL with its reason and one line through ``log``; the worker goes
    on. Ctrl-C or SIGTERM fails the trial in flight as interrupted and is raised.
    """
    import torch

    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    # Our own line replaces Optuna's warning with a traceback for each failed trial.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = make_storage(ctx.storage_url)
    space = build_space(ctx.sweep)
    study = open_study(storage, ctx.sweep, space, ctx.base.train.epochs, ctx.worker)
    if splits is None:
        splits = load_splits(ctx.base.data, resolve_device(ctx.base.train.device))
    objective = make_objective(ctx, splits)
    while True:
        trials = study.get_trials(deepcopy=False)
        done = sum(counts_as_finished(t) for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if progress:
            progress(done)
        if done + running >= ctx.sweep.trials:
            break
        if ctx.deadline is not None and time.time() > ctx.deadline:
            break
        tracking.check_interrupted()
        study.optimize(
            objective,
            n_trials=1,
            catch=(Exception,),
            callbacks=[_announce(log)],
            gc_after_trial=False,
        )


EXIT_INTERRUPTED = 130


def _worker_process(ctx: Context) -> None:
    """A worker process: trials until done; on Ctrl-C or SIGTERM it fails its trial in flight as
    interrupted and exits quietly, leaving the one line to the parent."""
    try:
        with tracking.interrupts_deferred(escalate=False):
            run_worker(ctx)
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None
    except Exception as err:
        sys.stderr.write(f"error: worker {ctx.worker}: {tracking.one_line(err)}\n")
        raise SystemExit(1) from None


# The sweep as a whole: parent run, workers, summary.


@dataclass
class SweepResult:
    study: optuna.Study
    parent_run_id: str
    trials: pd.DataFrame
    """One row per trial: number, state, params, test MSE, active fraction, run id."""
    best: pd.DataFrame
    """The Pareto-optimal trials (pareto) or the best feasible trial (constrained)."""
    baseline: dict[str, float] | None
    tracking_uri: str
    """Where the runs are, for display: credentials redacted."""
    storage: str
    """The Optuna storage, for display: credentials redacted."""
    seconds: float


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
    if cfg.study_name in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        open_study(storage, cfg, space, base.train.epochs)
    splits = load_splits(base.data, resolve_device(base.train.device), log)
    tracking.connect(settings)

    experiment = base.tracking.experiment or settings.experiment("sweep")
    with locks.store_lock(storage_url, f"sae: study {cfg.study_name}"):
        study = open_study(storage, cfg, space, base.train.epochs)
        parent = study.user_attrs.get(STUDY_PARENT_RUN)
        if parent is None:
            parent = tracking.open_parent_run(
                settings,
                experiment,
                run_name=f"study-{cfg.study_name}",
                tags={tracking.TAG_STUDY: cfg.study_name, tracking.TAG_KIND: "sweep"},
                description=_describe(cfg, space, base),
            )
            study.set_user_attr(STUDY_PARENT_RUN, parent)
            log(f"new study {cfg.study_name!r} in {shown}")
        else:
            tracking.set_run_status(parent, "RUNNING")
            log(f"resuming study {cfg.study_name!r} ({finished_count(study)} trials finished)")
    retries = recover_interrupted(study, storage)
    if retries:
        log(f"retrying the parameters of interrupted trials {retries}")

    cores = os.cpu_count() or 1
    threads = max(1, cores // cfg.workers) if cfg.workers > 1 else base.train.threads
    deadline = time.time() + cfg.timeout if cfg.timeout else None
    ctx = Context(base, cfg, storage_url, parent, threads=threads, deadline=deadline)
    status = "FAILED"
    try:
        with (
            tracking.interrupts_deferred(),
            tqdm(total=cfg.trials, desc="trials", unit="trial") as bar,
        ):

            def progress(done: int) -> None:
                bar.update(max(0, min(done, cfg.trials) - bar.n))

            if cfg.workers > 1:
                _run_processes(ctx, cfg.workers, study, storage, progress)
            # The parent finishes what lost workers left (and is the only worker with one).
            run_worker(ctx, progress, splits)
        status = "FINISHED"
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as tracking.RunKilled
        status = "KILLED"
        recover_interrupted(study, storage, reason=REASON_INTERRUPTED, ours=True)
        raise
    finally:
        result = summarize(study, parent, settings, shown, time.perf_counter() - started)
        try:
            log_summary(result, cfg)
        finally:
            tracking.set_run_status(parent, status)
    return result


WORKER_STOP_S = 30.0
"""How long an interrupted worker gets to fail its trial in flight before it is killed."""


def _run_processes(
    ctx: Context,
    workers: int,
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    progress: Callable[[int], None],
) -> None:
    """Run ``workers`` worker processes until they stop. A worker that dies has its trial failed
    and retried by the others (one warning line); on Ctrl-C or SIGTERM every worker is stopped
    and fails its trial in flight as interrupted."""
    spawn = multiprocessing.get_context("spawn")
    procs = [
        spawn.Process(target=_worker_process, args=(dataclasses.replace(ctx, worker=k),))
        for k in range(workers)
    ]
    for p in procs:
        p.start()
    recovered: set[int] = set()
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            tracking.check_interrupted()
            progress(finished_count(study))
            # a worker that died mid-trial leaves a RUNNING trial; give it to the others, once
            died = {k for k, p in enumerate(procs) if p.exitcode not in (None, 0)} - recovered
            for k in sorted(died):
                tqdm.write(
                    f"warning: worker {k} was lost (exit code {procs[k].exitcode}); "
                    "its trial goes to another worker"
                )
            if died:
                recovered |= died
                recover_interrupted(study, storage)
        progress(finished_count(study))
    except KeyboardInterrupt:
        # Ctrl-C reached the workers too; SIGTERM reached only us, so pass it on.
        for p in procs:
            if p.is_alive():
                p.terminate()
        raise
    finally:
        for p in procs:
            p.join(WORKER_STOP_S)
            if p.is_alive():
                p.kill()
                p.join()


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                **{name: t.params.get(name) for name in ("beta", "lr", "batch_size")},
                M.TEST_MSE: t.user_attrs.get("test_mse"),
                M.CODE_ACTIVE_FRAC: t.user_attrs.get(ATTR_ACTIVE),
                "retry_of": t.user_attrs.get(ATTR_RETRY_OF),
                "reason": t.user_attrs.get(ATTR_FAIL_REASON, ""),
                "seconds": t.duration.total_seconds() if t.duration else None,
                "mlflow_run_id": t.user_attrs.get(ATTR_RUN_ID),
            }
        )
    return pd.DataFrame(rows)


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front (two objectives) or the best feasible trial (constrained)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.values[0])
    feasible = [t for t in complete if t.user_attrs.get(ATTR_CONSTRAINT, math.inf) <= 0]
    return [min(feasible, key=lambda t: t.value)] if feasible else []


def summarize(
    study: optuna.Study, parent: str, settings: tracking.Settings, storage: str, seconds: float
) -> SweepResult:
    trials = trials_frame(study)
    best_numbers = [t.number for t in best_trials(study)]
    best = trials[trials["number"].isin(best_numbers)] if len(trials) else trials
    best = best.sort_values(M.TEST_MSE) if len(best) else best
    return SweepResult(
        study=study,
        parent_run_id=parent,
        trials=trials,
        best=best,
        baseline=tracking.baseline_reference(settings),
        tracking_uri=redact(settings.tracking_uri),
        storage=storage,
        seconds=seconds,
    )


def log_summary(result: SweepResult, cfg: SweepConfig) -> None:
    """Tables, Optuna's plots and summary metrics on the parent run."""
    study, trials = result.study, result.trials
    states = trials["state"].value_counts() if len(trials) else pd.Series(dtype=int)
    metrics = {
        f"trials/{s.lower()}": float(states.get(s, 0))
        for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
    }
    metrics["trials/finished"] = float(finished_count(study))
    if len(result.best):
        top = result.best.iloc[0]
        metrics["best/test_mse"] = float(top[M.TEST_MSE])
        metrics["best/code_active_frac"] = float(top[M.CODE_ACTIVE_FRAC])
    metrics["sweep/seconds"] = result.seconds
    tracking.log_summary(
        result.parent_run_id,
        metrics,
        {
            "trials.csv": trials,
            ("pareto_front.csv" if cfg.objective == "pareto" else "best_trial.csv"): result.best,
        },
        figures := plots(study),
    )
    import matplotlib.pyplot as plt

    for figure in figures.values():
        plt.close(figure)


def plots(study: optuna.Study) -> dict[str, Any]:
    """Optuna's plots as matplotlib figures; a plot that the study cannot support yet is left out
    (for example importances before two trials have completed)."""
    import warnings

    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pareto = len(study.directions) > 1
    target = (lambda t: t.values[0]) if pareto else None
    name = "test MSE"
    makers: dict[str, Callable[[], Any]] = {
        "plots/optimization_history.png": lambda: ovm.plot_optimization_history(
            study, target=target, target_name=name
        ),
        "plots/param_importances.png": lambda: ovm.plot_param_importances(
            study, target=target, target_name=name
        ),
        "plots/parallel_coordinate.png": lambda: ovm.plot_parallel_coordinate(
            study, target=target, target_name=name
        ),
    }
    if pareto:
        makers["plots/pareto_front.png"] = lambda: ovm.plot_pareto_front(
            study, target_names=["test MSE", "code active fraction"]
        )
    figures = {}
    for path, make in makers.items():
        if len(complete) < 2:
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make()
        except (ValueError, RuntimeError):
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.set_size_inches(10, 6)
        figures[path] = fig
    return figures


def _describe_trial(number: int, sweep: SweepConfig, params: dict[str, Any]) -> str:
    """The trial run's description in the MLflow UI: where it belongs and what it tried."""
    tried = ", ".join(f"{name} {value:.3g}" for name, value in params.items())
    return f"Trial {number} of study `{sweep.study_name}`: {tried}."


def _describe(cfg: SweepConfig, space: dict[str, BaseDistribution], base: Config) -> str:
    goal = (
        "minimise test MSE and code active fraction (Pareto front)"
        if cfg.objective == "pareto"
        else f"minimise test MSE with code active fraction <= {cfg.max_active_frac:g}"
    )
    ranges = ", ".join(
        f"{k} in [{d.low:g}, {d.high:g}] (log)"
        if isinstance(d, FloatDistribution)
        else f"{k} in {list(d.choices)}"
        for k, d in space.items()
    )
    return (
        f"Optuna study {cfg.study_name!r}: {goal}; {ranges}; {cfg.sampler} sampler; "
        f"{base.train.epochs} epochs per trial. Each trial is a nested run."
    )


# Reading a study back (the report).

MIN_IMPORTANCE_TRIALS = 2


def param_importances(storage_url: str, study_name: str) -> pd.DataFrame | None:
    """Optuna's parameter importances for each objective of the study, by its default evaluator
    (PED-ANOVA, deterministic): columns param, objective (the metric key), importance (sums to 1
    per objective), sorted. None when fewer than MIN_IMPORTANCE_TRIALS trials are complete.

    Reads only: raises ValueError, in one line, when the storage or the study does not exist or
    the evaluator cannot rank the parameters.
    """
    if "://" not in storage_url and not Path(storage_url).is_file():
        raise ValueError(f"no Optuna storage at {storage_url}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=make_storage(storage_url))
    except KeyError:
        raise ValueError(f"no study {study_name!r} in {storage_url}") from None
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return None
    objectives = (M.TEST_MSE, M.CODE_ACTIVE_FRAC)[: len(study.directions)]
    rows = []
    for index, objective in enumerate(objectives):
        target = (lambda t, i=index: t.values[i]) if len(objectives) > 1 else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ranked = optuna.importance.get_param_importances(study, target=target)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            reason = str(err).strip().splitlines()
            raise ValueError(
                f"Optuna cannot rank the parameters of {study_name!r}: "
                f"{reason[0] if reason else type(err).__name__}"
            ) from None
        rows += [
            {"param": name, "objective": objective, "importance": float(value)}
            for name, value in ranked.items()
        ]
    frame = pd.DataFrame(rows, columns=["param", "objective", "importance"])
    return frame.sort_values(
        ["objective", "importance", "param"], ascending=[True, False, True]
    ).reset_index(drop=True)
