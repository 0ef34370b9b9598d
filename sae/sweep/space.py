"""The search space of a family: Optuna distributions named as config fields, sampling a trial,
and the config a trial's parameters make."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

from sae.config import CODE_UNITS, Config, ModelConfig, TrainConfig
from sae.sweep.config import SweepConfig

SECTIONS = {"topk": "model"}
"""The config section of each searched parameter that is not a TrainConfig field."""

PARAMS = ("beta", "topk", "lr", "batch_size")
"""Every parameter some family searches, in the order tables show them."""


def section(name: str) -> str:
    """The config section of the searched parameter ``name``: ``train`` or ``model``."""
    return SECTIONS.get(name, "train")


def build_space(cfg: SweepConfig) -> dict[str, BaseDistribution]:
    """The family's search space: l1 and kl search beta, topk its K (``topk``); all search lr and
    batch size. Parameter names are config field names (``section``). Raises on a bad range."""
    space: dict[str, BaseDistribution] = {}
    if cfg.family == "topk":
        low, high = cfg.k_range
        if not 1 <= low < high <= CODE_UNITS:
            raise ValueError(
                f"topk range [{low}, {high}] is empty, inverted or outside [1, {CODE_UNITS}]"
            )
        space["topk"] = IntDistribution(low, high, log=True)
    floats = [] if cfg.family == "topk" else [("beta", cfg.beta_range)]
    floats.append(("lr", cfg.lr_range))
    for name, bounds in floats:
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
    fields = {
        "train": {f.name for f in dataclasses.fields(TrainConfig)},
        "model": {f.name for f in dataclasses.fields(ModelConfig)},
    }
    assert all(name in fields[section(name)] for name in space)
    return space


def with_params(base: Config, params: dict[str, Any], **train: Any) -> Config:
    """``base`` with a trial's parameters (and ``train``'s fields) put in their sections."""
    by_section: dict[str, dict[str, Any]] = {"train": dict(train), "model": {}}
    for name, value in params.items():
        by_section[section(name)][name] = value
    return dataclasses.replace(
        base,
        train=dataclasses.replace(base.train, **by_section["train"]),
        model=dataclasses.replace(base.model, **by_section["model"]),
    )


def family_base(base: Config, cfg: SweepConfig) -> Config:
    """The config every trial of ``cfg.family`` starts from: kl trains the KL penalty, topk a
    TopK code (its K searched). ValueError, in one line, for a setting of another family."""
    if cfg.family == "kl":
        return dataclasses.replace(base, train=dataclasses.replace(base.train, penalty="kl"))
    if base.train.penalty == "kl":
        raise ValueError(
            f"--family {cfg.family} trains the L1 penalty: for --penalty kl pass --family kl"
        )
    if base.model.topk is not None:
        raise ValueError("--topk is searched by --family topk (--k-range LOW HIGH), not fixed")
    return base


def space_json(space: dict[str, BaseDistribution]) -> str:
    """The space as stable JSON: what a study records, to refuse a resume with other ranges."""
    return json.dumps(
        {k: json.loads(distribution_to_json(v)) for k, v in space.items()}, sort_keys=True
    )


def describe_space(space: dict[str, BaseDistribution]) -> str:
    """``beta in [1e-06, 0.1] (log), ..., batch_size in [32, 64]``, for a run description."""
    return ", ".join(
        f"{k} in [{d.low:g}, {d.high:g}]{' (log)' if d.log else ''}"
        if isinstance(d, FloatDistribution | IntDistribution)
        else f"{k} in {list(d.choices)}"
        for k, d in space.items()
    )


def suggest(trial: optuna.Trial, space: dict[str, BaseDistribution]) -> dict[str, Any]:
    """The trial's parameters, sampled from the space (or as enqueued, for a retried trial)."""
    return {name: _suggest(trial, name, dist) for name, dist in space.items()}


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_categorical(name, dist.choices)
