"""The search space: Optuna distributions named as TrainConfig fields, and sampling a trial."""

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
    distribution_to_json,
)

from sae.config import TrainConfig
from sae.sweep.config import SweepConfig


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


def space_json(space: dict[str, BaseDistribution]) -> str:
    """The space as stable JSON: what a study records, to refuse a resume with other ranges."""
    return json.dumps(
        {k: json.loads(distribution_to_json(v)) for k, v in space.items()}, sort_keys=True
    )


def describe_space(space: dict[str, BaseDistribution]) -> str:
    """``beta in [1e-06, 0.1] (log), ..., batch_size in [32, 64]``, for a run description."""
    return ", ".join(
        f"{k} in [{d.low:g}, {d.high:g}] (log)"
        if isinstance(d, FloatDistribution)
        else f"{k} in {list(d.choices)}"
        for k, d in space.items()
    )


def suggest(trial: optuna.Trial, space: dict[str, BaseDistribution]) -> dict[str, Any]:
    """The trial's parameters, sampled from the space (or as enqueued, for a retried trial)."""
    return {name: _suggest(trial, name, dist) for name, dist in space.items()}


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_categorical(name, dist.choices)
