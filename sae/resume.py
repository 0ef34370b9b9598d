"""What a member of the training engine resumes from: its state after an epoch, checked against
the training it is to continue before the engine (``sae.train.fit_members``) puts it back.

A state holds everything the next epoch reads: the weights, the optimiser's state
(``sae.steppers.OptimizerState``), the data order's generators, the steps taken, the epoch
records so far and the running window of the periodic report; with it, the epochs that follow
are the ones an uninterrupted run trains, bit for bit on a CPU. It is tensors and plain values
only, read back with ``torch.load(weights_only=True)``, and says nothing of where it was made: no
path, URI, settings file or command line, only digests of the config and the data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

import torch

from sae.config import Config
from sae.model import SparseAutoencoder
from sae.order import ScriptOrder, SeededOrder, make_order
from sae.splits import Splits

State = dict[str, Any]

STATE_FORMAT = 1
"""The version of the state's layout; a state of another is refused."""

NOT_IN_FINGERPRINT = ("device", "threads", "log_every")
"""Training fields that leave the weights alone: a run may resume on another machine, with other
threads or another logging cadence."""


def fingerprint(cfg: Config) -> str:
    """A digest of the settings that decide a run's weights: the model and every training field
    but ``NOT_IN_FINGERPRINT`` (the data is the splits' digest)."""
    train = dataclasses.asdict(cfg.train)
    for name in NOT_IN_FINGERPRINT:
        del train[name]
    decided = {"model": dataclasses.asdict(cfg.model), "train": train}
    return hashlib.sha256(json.dumps(decided, sort_keys=True, default=str).encode()).hexdigest()


def member_state(
    cfg: Config,
    splits: Splits,
    model: SparseAutoencoder,
    optimizer: dict[str, Any],
    order: SeededOrder | ScriptOrder,
    window: torch.Tensor,
    step: int,
    history: list[dict[str, float]],
) -> State:
    """The state of a member at the end of epoch ``len(history)``, its tensors copied to the
    CPU."""
    return {
        "format": STATE_FORMAT,
        "config": fingerprint(cfg),
        "data": splits.digest,
        "epoch": len(history),
        "step": step,
        "history": [dict(record) for record in history],
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer,
        "order": order.state(),
        "window": window.detach().cpu().clone(),
    }


def problem(state: Any, cfg: Config, splits: Splits) -> str | None:
    """Why ``state`` cannot resume the training of ``cfg`` on ``splits``, in a few words; None
    when it can."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        return f"not a training state of format {STATE_FORMAT}"
    if state.get("config") != fingerprint(cfg):
        return "made for another configuration"
    if state.get("data") != splits.digest:
        return "made on other data"
    epoch, step, history = state.get("epoch"), state.get("step"), state.get("history")
    if not isinstance(epoch, int) or not 1 <= epoch <= cfg.train.epochs:
        return f"its epoch {epoch!r} is not one of the {cfg.train.epochs} epochs"
    steps = epoch * math.ceil(splits.train.shape[0] / cfg.train.batch_size)
    if step != steps or not isinstance(history, list) or len(history) != epoch:
        return f"its steps or records are not those of {epoch} epochs"
    if not all(isinstance(r, dict) for r in history):
        return "its records are not records"
    with torch.device("meta"):  # the shapes only: draws nothing from any generator
        shapes = _shapes(dict(SparseAutoencoder(cfg.model).named_parameters()))
    optimizer = state.get("optimizer")
    if _shapes(state.get("model")) != shapes:
        return "its weights do not fit the model"
    if not isinstance(optimizer, dict) or optimizer.get("step") != step:
        return "its optimiser state is not that of its steps"
    if any(_shapes(optimizer.get(key)) != shapes for key in ("exp_avg", "exp_avg_sq")):
        return "its optimiser state does not fit the model"
    if not isinstance(optimizer.get("scaler"), dict):
        return "its loss scaler's state is missing"
    expected = make_order(cfg.train.data_order, cfg.train.seed).state()
    if _shapes(dict(enumerate(state.get("order") or []))) != _shapes(dict(enumerate(expected))):
        return "its data order is not one of this run"
    window = state.get("window")
    if not isinstance(window, torch.Tensor) or window.shape != (3,):
        return "its running window is missing"
    return None


def _shapes(tensors: Any) -> dict[Any, tuple[tuple[int, ...], torch.dtype]] | None:
    if not isinstance(tensors, dict) or not all(
        isinstance(t, torch.Tensor) for t in tensors.values()
    ):
        return None
    return {k: (tuple(t.shape), t.dtype) for k, t in tensors.items()}


def start(states: list[State | None]) -> tuple[int, int]:
    """The epoch and step that members with these states (None: a fresh start) go on from
    together; ValueError unless it is one for all."""
    starts = {(s["epoch"], s["step"]) if s else (0, 0) for s in states}
    if len(starts) > 1:
        raise ValueError("the members of one population go on from one epoch")
    return next(iter(starts))


def restore(
    state: State,
    cfg: Config,
    splits: Splits,
    model: SparseAutoencoder,
    order: SeededOrder | ScriptOrder,
    window: torch.Tensor,
) -> list[dict[str, float]]:
    """Put ``state``'s weights, data order and running window back into a member built afresh
    (the optimiser's state goes to its stepper, once made); the epoch records so far. A state
    ``problem`` refuses raises ValueError: the caller checks first."""
    why = problem(state, cfg, splits)
    if why is not None:
        raise ValueError(f"cannot resume from this state: {why}")
    model.load_state_dict(state["model"])
    order.restore(state["order"])
    window.copy_(state["window"])
    return [dict(record) for record in state["history"]]
