"""A population of models trained in one pass: K members of the same architecture, each with its
own seed, learning rate, penalty weight and data order, stepped together.

The loop is ``sae.train.fit_members``, the one that also trains a single run; with more than one
member it steps them together (``sae.steppers.StackedStep``: stacked parameters, ``vmap``, Adam
over the stacked tensors), and at the end of each epoch evaluates them on the whole test split
in one pass, each in its own test order, each record the one a run alone makes. This module
holds what a population adds: the fields its members must share (``check_population``), its
entry point, and the population size that trains fastest on a device (``fastest_size``).

Isolation: a member whose loss diverges, whose network is dead at initialisation, or whose
callback raises (a pruned trial) leaves the population with its own error; the others go on
unchanged. Ctrl-C (KeyboardInterrupt) still stops the whole population.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from sae import metrics as M
from sae.config import Config
from sae.splits import Splits
from sae.train import Member, Outcome, fit_members

__all__ = [
    "SHARED_FIELDS",
    "Member",
    "Outcome",
    "check_population",
    "fastest_size",
    "fit_population",
]

SHARED_FIELDS = (
    "epochs",
    "batch_size",
    "test_batch_size",
    "log_every",
    "adam_beta1",
    "adam_beta2",
    "adam_eps",
    "probe",
)
"""Training fields every member must share: they set the population's common loop."""


def check_population(members: Sequence[Member]) -> None:
    """One line when the members cannot share a loop."""
    if not members:
        raise ValueError("a population needs at least one member")
    first = members[0].cfg
    for member in members[1:]:
        for name in SHARED_FIELDS:
            if getattr(member.cfg.train, name) != getattr(first.train, name):
                raise ValueError(f"every member of a population needs the same {name}")
        if member.cfg.model != first.model:
            raise ValueError("every member of a population needs the same model")
    if any(m.cfg.train.amp for m in members):
        raise ValueError("a population trains in float32: drop --amp")


def fit_population(members: Sequence[Member], splits: Splits) -> list[Outcome]:
    """Train every member for the shared number of epochs in one pass; one Outcome each, in
    order. Each member's callbacks see what ``sae.train.fit`` would show them."""
    check_population(members)
    return fit_members(members, splits)


SIZES = (1, 2, 4, 8, 16, 32)
"""The population sizes ``fastest_size`` tries."""


def fastest_size(
    cfg: Config, splits: Splits, sizes: Sequence[int] = SIZES, steps: int = 30
) -> tuple[int, dict[int, float]]:
    """The population size that trains the most images per second on ``splits``' device, and
    the rate of each size tried (members of ``cfg`` with seeds ``cfg.train.seed`` on, ``steps``
    steps of its batch size, no probe). Each size runs twice, the first to warm the kernels up;
    sizes stop growing at the first that is no faster than the best so far or runs out of
    memory."""
    n = steps * cfg.train.batch_size
    small = Splits(train=splits.train[:n], test=splits.test[:1000], digest=splits.digest)
    tc = dataclasses.replace(cfg.train, epochs=1, probe=False, log_every=steps)
    rates: dict[int, float] = {}
    for size in sizes:
        members = [
            Member(dataclasses.replace(cfg, train=dataclasses.replace(tc, seed=tc.seed + k)))
            for k in range(size)
        ]
        try:
            for _ in range(2):
                outcomes = fit_population(members, small)
        except torch.OutOfMemoryError:
            break
        trained = [o.result.history[0] for o in outcomes if o.result.history]
        rates[size] = len(trained) * trained[0][M.PERF_IMAGES_PER_S] if trained else 0.0
        if rates[size] < max(rates.values()):
            break
    return max(rates, key=rates.get), rates
