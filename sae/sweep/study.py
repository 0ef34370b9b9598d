"""Where the study lives and how it searches: storage, sampler, pruner, and opening the study."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import ExperimentalWarning

from sae import faults, journal, locks
from sae.errors import reason
from sae.names import (
    SAMPLER_UNRECORDED,
    STUDY_FAMILY,
    STUDY_IDENTITY,
    STUDY_OBJECTIVE,
    STUDY_SAMPLERS,
    STUDY_SPACE,
    param,
)
from sae.redact import redact
from sae.sweep.config import SweepConfig
from sae.sweep.identity import differences, identity_json
from sae.sweep.recovery import retry_interrupted
from sae.sweep.space import space_json


class _JournalStorage(faults.Retried, optuna.storages.JournalStorage):
    """Optuna's journal storage, every call tried again while a passing fault lasts (the file's
    disk full, say: ``journal.WholeRecordsLock`` leaves no partial record to retry onto)."""

    fault_source = "the Optuna journal"


class _RDBStorage(faults.Retried, optuna.storages.RDBStorage):
    """Optuna's database storage, every call tried again while a passing fault lasts (a locked
    SQLite file, a lost connection: a failed call's transaction is rolled back)."""

    fault_source = "the Optuna storage"


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """A journal file for a path, an RDB storage with heartbeats for a database URL.

    Raises ValueError, in one line, when the storage cannot be used: a folder where the journal
    should be, a damaged journal (checked before anything is written), an unreachable database.
    Several processes may create the same new storage at once. Every call to the storage is
    tried again while a passing fault lasts (``sae.faults``).
    """
    if "://" not in url:
        path = Path(url)
        if path.is_dir():
            raise ValueError(f"Optuna storage {path} is a folder: name a journal file in it")
        if not path.parent.is_dir():
            raise ValueError(f"storage folder {path.parent} does not exist")
        if path.exists():
            journal.check(path)
        return _JournalStorage(journal.backend(path))
    try:
        # Heartbeats let Optuna fail the trials of a worker that died, on any machine, and retry
        # them. The lock keeps two first starts from creating the tables at once.
        with (
            locks.store_lock(url, "sae: create the Optuna storage"),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            opened = faults.retried(_RDBStorage, _RDBStorage.fault_source, faults.OPEN_RETRY_S)
            return opened(
                url,
                heartbeat_interval=10,
                grace_period=30,
                heartbeat_stale_trial_callback=retry_interrupted,
            )
    except Exception as err:  # sqlalchemy raises many kinds; all mean "cannot use this URL"
        # A database that never answered this command (a wrong host or port, or down for longer
        # than OPEN_RETRY_S) is one line like any other; nothing was written to it.
        why = faults.describe(err) if faults.is_passing_fault(err) else reason(err, whole=True)
        raise ValueError(f"cannot open Optuna storage {redact(url)}: {why}") from None


def make_sampler(
    cfg: SweepConfig, worker: int = 0, history: int = 0
) -> optuna.samplers.BaseSampler:
    """The configured sampler, seeded from (sampler_seed, worker, trials already in the study).

    A fixed seed alone would make a resumed sweep, or a second worker, replay the first
    random draws of the first session; mixing in the worker and the history keeps every session
    deterministic without repeating one.
    """
    seed = int(np.random.SeedSequence([cfg.sampler_seed, worker, history]).generate_state(1)[0])
    # Each trial sets its constraints (Trial.set_constraint: degenerate, and the active fraction
    # when constrained), which the samplers read; Optuna 5 deprecated constraints_func for it.
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "gp":
        # Log expected hypervolume improvement with two objectives, q-batch over the trials still
        # running (other workers'); the first 10 trials are random (its n_startup_trials).
        return optuna.samplers.GPSampler(seed=seed)
    if cfg.sampler == "nsga2":
        # A generation per population: the K trials asked together are one generation's.
        k = cfg.population or 1
        return optuna.samplers.NSGAIISampler(seed=seed, **({"population_size": k} if k > 1 else {}))
    # TPE's constant liar (on by default since Optuna 5) scores the trials still running as the
    # worst, so K trials asked together, or by several workers, do not crowd one spot.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(cfg: SweepConfig, epochs: int) -> optuna.pruners.BasePruner:
    """Optuna's pruner for the constrained objective; none for the Pareto objectives, which
    Optuna cannot prune (their pruner is ``sweep.pareto``, called by the trial itself)."""
    if cfg.pruner_used not in ("median", "hyperband"):
        return optuna.pruners.NopPruner()
    if cfg.pruner_used == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def study_exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return name in optuna.get_all_study_names(storage)


def open_study(
    storage: optuna.storages.BaseStorage,
    cfg: SweepConfig,
    space: dict[str, BaseDistribution],
    epochs: int,
    worker: int = 0,
    identity: dict[str, Any] | None = None,
) -> optuna.Study:
    """Create the study, or load it when it exists with the same search space, objective and
    ``identity`` (``sweep.identity.study_identity``; a study that predates it records it now).
    ValueError, in one line naming what differs, before anything is written otherwise."""
    existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    if cfg.study_name in existing:
        study = optuna.load_study(
            study_name=cfg.study_name,
            storage=storage,
            sampler=make_sampler(cfg, worker, existing[cfg.study_name]),
            pruner=make_pruner(cfg, epochs),
        )
        check_same(study, cfg, space, identity)
        if study.metric_names is None:  # a study from before the names were set
            name_objectives(study, cfg)
        if identity is not None and STUDY_IDENTITY not in study.user_attrs:
            study.set_user_attr(STUDY_IDENTITY, identity_json(identity))
        record_sampler(study, cfg.sampler, had_trials=existing[cfg.study_name] > 0)
        return study
    study = optuna.create_study(
        study_name=cfg.study_name,
        storage=storage,
        sampler=make_sampler(cfg, worker),
        pruner=make_pruner(cfg, epochs),
        directions=cfg.directions,
        load_if_exists=True,  # another worker may create it between our look and here
    )
    study.set_user_attr(STUDY_SPACE, space_json(space))
    study.set_user_attr(STUDY_OBJECTIVE, cfg.objective)
    study.set_user_attr(STUDY_FAMILY, cfg.family)
    record_sampler(study, cfg.sampler, had_trials=False)
    if identity is not None:
        study.set_user_attr(STUDY_IDENTITY, identity_json(identity))
    name_objectives(study, cfg)
    return study


def record_sampler(study: optuna.Study, sampler: str, had_trials: bool) -> None:
    """Add ``sampler`` to the samplers the study records (``STUDY_SAMPLERS``); a study that
    holds trials from before the record gets ``SAMPLER_UNRECORDED`` too, since its earlier
    sessions' samplers are not known."""
    default = [SAMPLER_UNRECORDED] if had_trials else []
    samplers = list(study.user_attrs.get(STUDY_SAMPLERS, default))
    if sampler not in samplers or STUDY_SAMPLERS not in study.user_attrs:
        study.set_user_attr(STUDY_SAMPLERS, sorted({*samplers, sampler}))


def study_samplers(study: optuna.Study | optuna.study.StudySummary) -> tuple[str, ...]:
    """The samplers the study's trials came from, as recorded (``record_sampler``)."""
    return tuple(study.user_attrs.get(STUDY_SAMPLERS, (SAMPLER_UNRECORDED,)))


def check_study(
    storage: optuna.storages.BaseStorage,
    cfg: SweepConfig,
    space: dict[str, BaseDistribution],
    identity: dict[str, Any],
) -> optuna.Study:
    """The existing study ``cfg.study_name``, loaded without writing anything, once it is known
    to be the same experiment as this command's (``check_same``)."""
    study = optuna.load_study(study_name=cfg.study_name, storage=storage)
    check_same(study, cfg, space, identity)
    return study


def check_same(
    study: optuna.Study,
    cfg: SweepConfig,
    space: dict[str, BaseDistribution],
    identity: dict[str, Any] | None,
) -> None:
    """ValueError, in one line, when the study was created with another objective, space or
    identity than this command's (the trial count, workers, population, timeout, sampler and
    confirmations may change)."""
    attrs = study.user_attrs
    family = study_family(study)
    if family != cfg.family:
        raise ValueError(
            f"study {cfg.study_name!r} exists with family {family!r}, not {cfg.family!r}: pass "
            f"--family {family}, or --study-name NEW"
        )
    if attrs.get(STUDY_OBJECTIVE, cfg.objective) != cfg.objective:
        raise ValueError(
            f"study {cfg.study_name!r} exists with objective {attrs[STUDY_OBJECTIVE]!r}, "
            f"not {cfg.objective!r}; pass --study-name NEW for a new study"
        )
    if attrs.get(STUDY_SPACE, space_json(space)) != space_json(space):
        raise ValueError(
            f"study {cfg.study_name!r} exists with a different search space "
            f"({attrs[STUDY_SPACE]}); pass the same ranges or --study-name NEW"
        )
    if identity is None or STUDY_IDENTITY not in attrs:
        return
    changed = differences(attrs[STUDY_IDENTITY], identity)
    if changed:
        raise ValueError(
            f"study {cfg.study_name!r} {changed}: pass the same settings or --study-name NEW"
        )


def study_family(study: optuna.Study | optuna.study.StudySummary) -> str:
    """The family of the study's trials (``STUDY_FAMILY``); a study that predates families is l1,
    or kl when its recorded settings train the KL penalty."""
    attrs = study.user_attrs
    if STUDY_FAMILY in attrs:
        return attrs[STUDY_FAMILY]
    recorded = json.loads(attrs.get(STUDY_IDENTITY, "{}"))
    return "kl" if recorded.get(param("train", "penalty")) == "kl" else "l1"


def name_objectives(study: optuna.Study, cfg: SweepConfig) -> None:
    """Name the study's objective values (``cfg.objective_names``), as optuna-dashboard and
    Optuna's plots show them instead of "Objective 0"."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # experimental since Optuna 3.2
        study.set_metric_names(cfg.objective_names)
