"""Sparsity penalties on the autoencoder's activations, weighted by ``beta``.

``l1`` is the seed's: ``beta * sum over penalised layers of mean(|a|)``, each layer averaged over
its own elements. ``kl`` pulls each unit's mean activation towards a target density ``rho``:
ReLU activations are unbounded, so each one is first squashed into [0, 1) with
``s(a) = 1 - exp(-a)`` (0 stays 0, small activations stay about the same, large ones approach 1);
a unit's density ``rho_hat`` is the mean of ``s(a)`` over the batch (and, for a convolutional
channel, over its positions), clamped to [1e-6, 1 - 1e-6]; the layer's penalty is the mean over
its units of ``rho*log(rho/rho_hat) + (1-rho)*log((1-rho)/(1-rho_hat))``, and the penalty is
``beta`` times the sum over penalised layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sae.config import PenaltyLayers, TrainConfig
from sae.model import CODE_LAYER, LAYER_NAMES

PENALISED_LAYERS: dict[str, tuple[int, ...]] = {
    "all": tuple(range(len(LAYER_NAMES))),
    "encoder": (0, 1, 2),
    "code": (2,),
}

CODE_INDEX = LAYER_NAMES.index(CODE_LAYER)

_EPS = 1e-6


def _indices(layers: PenaltyLayers | tuple[int, ...]) -> tuple[int, ...]:
    return PENALISED_LAYERS[layers] if isinstance(layers, str) else layers


def l1_penalty(
    acts: Sequence[torch.Tensor], layers: PenaltyLayers | tuple[int, ...] = "all"
) -> torch.Tensor:
    """Sum over the penalised layers of mean |activation| (unweighted).

    The activations are post-ReLU or post-sigmoid, never negative, so |a| = a exactly, value and
    gradient alike; skipping the abs (and its sign in the backward pass) saves a tenth of a step.
    """
    return sum(acts[i].mean() for i in _indices(layers))


def unit_density(act: torch.Tensor) -> torch.Tensor:
    """Each unit's (channel's) mean squashed activation, (B, C, H, W) -> (C,), in (0, 1)."""
    squashed = -torch.expm1(-act.clamp_min(0))
    return squashed.mean(dim=(0, 2, 3)).clamp(_EPS, 1 - _EPS)


def kl_penalty(
    acts: Sequence[torch.Tensor], rho: float, layers: PenaltyLayers | tuple[int, ...] = "all"
) -> torch.Tensor:
    """Sum over the penalised layers of the mean over units of KL(rho || rho_hat) (unweighted)."""
    total = acts[0].new_zeros(())
    for i in _indices(layers):
        rho_hat = unit_density(acts[i])
        kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
        total = total + kl.mean()
    return total


def penalty(acts: Sequence[torch.Tensor], cfg: TrainConfig, *, code: bool = True) -> torch.Tensor:
    """The configured penalty, ``beta`` included; ``code=False`` leaves the code out of it (a
    TopK code, whose sparsity is its K: ``ModelConfig.topk``)."""
    layers = PENALISED_LAYERS[cfg.penalty_layers]
    if not code:
        layers = tuple(i for i in layers if i != CODE_INDEX)
    if not layers:
        return acts[0].new_zeros(())
    if cfg.penalty == "l1":
        return cfg.beta * l1_penalty(acts, layers)
    return cfg.beta * kl_penalty(acts, cfg.rho, layers)
