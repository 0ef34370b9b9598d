"""One training run end to end: data, device, tracking and console progress around ``fit()``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sae.config import Config
from sae.redact import redact
from sae.splits import Splits, load_splits, resolve_device
from sae.train import Callback, FitResult, fit


@dataclass
class RunOutcome:
    result: FitResult
    run_id: str | None
    """The MLflow run, or None when tracking was off."""
    tracking_uri: str | None = None
    """Where the run is, for display: credentials redacted."""


@dataclass(frozen=True)
class Resume:
    """Where a run that keeps checkpoints (a sweep trial) starts: the MLflow run it continues and
    the training state it goes on from (``sae.resume``), either None for a fresh start."""

    run_id: str | None = None
    state: dict[str, Any] | None = None


def default_run_name(cfg: Config, kind: str = "train") -> str:
    t = cfg.train
    return f"{kind}-beta{t.beta:g}-lr{t.lr:g}-bs{t.batch_size}-seed{t.seed}"


def train_run(
    cfg: Config,
    *,
    kind: str = "train",
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    callbacks: Sequence[Callback] = (),
    splits: Splits | None = None,
    log: Callable[[str], None] | None = None,
    on_run_start: Callable[[str], None] | None = None,
    finish_on: tuple[type[BaseException], ...] = (),
    resume: Resume | None = None,
) -> RunOutcome:
    """Train once as ``cfg`` says, logging to MLflow unless ``cfg.tracking.track`` is off.

    ``splits`` may be passed to reuse data already on the device (the baseline's seeds do).
    ``on_run_start`` gets the MLflow run id as soon as the run exists; ``finish_on`` lists
    exceptions that end the run FINISHED (early stops), see ``tracking.tracked_run``. A run
    given ``resume`` keeps checkpoints (a callback's ``on_checkpoint``): it continues
    ``resume.run_id`` when set, from ``resume.state`` when set.
    """
    state = resume.state if resume else None
    if splits is None:
        splits = load_splits(cfg.data, resolve_device(cfg.train.device), log)
    if not cfg.tracking.track:
        return RunOutcome(result=fit(cfg, splits, callbacks, state), run_id=None)

    from sae import tracking

    settings = tracking.load_settings(cfg.tracking.config_file, cfg.tracking.tracking_uri)
    with tracking.tracked_run(
        cfg,
        settings,
        kind=kind,
        run_name=cfg.tracking.run_name or run_name or default_run_name(cfg, kind),
        tags=tags,
        parent_run_id=parent_run_id,
        finish_on=finish_on,
        run_id=resume.run_id if resume else None,
        resumable=resume is not None,
    ) as tracker:
        if on_run_start:
            on_run_start(tracker.run_id)
        result = fit(cfg, splits, [tracker, *callbacks], state)
    shown = redact(settings.tracking_uri)
    return RunOutcome(result=result, run_id=tracker.run_id, tracking_uri=shown)
