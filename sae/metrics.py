"""Metric names (the one place they are spelled) and the whole-test-set evaluation.

Sparsity is measured per *unit*; in a convolutional layer a unit is a channel (one feature map),
as is usual for convolutional features. A unit is active on an image when any position of its
feature map is > 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from sae.config import TrainConfig
from sae.model import CODE_LAYER, LAYER_NAMES, LAYER_SHAPES
from sae.penalties import penalty

# Training, every ``log_every`` optimiser steps (step = global optimiser step); values are
# means over the steps since the previous report.
TRAIN_LOSS = "train/loss"
TRAIN_MSE = "train/mse"
TRAIN_PENALTY = "train/penalty"
TRAIN_STEP_METRICS = (TRAIN_LOSS, TRAIN_MSE, TRAIN_PENALTY)

# Training, per epoch (step = epoch, from 1): means over the epoch's batches, taken while training.
# EPOCH_LOSS is exactly the seed README's "training loss".
EPOCH_LOSS = "train_epoch/loss"
EPOCH_MSE = "train_epoch/mse"
EPOCH_PENALTY = "train_epoch/penalty"

# Evaluation over the whole test set, per epoch (step = epoch).
TEST_MSE = "test/mse"
"""Mean squared error over every pixel of the test set (the correct test loss)."""
TEST_PENALTY = "test/penalty"
"""The configured penalty (beta included) on the test set, batches weighted by size."""
TEST_LOSS = "test/loss"
"""TEST_MSE + TEST_PENALTY, the training objective evaluated on the test set."""
TEST_EXPLAINED_VARIANCE = "test/explained_variance"
"""1 - TEST_MSE / variance of the test pixels."""
README_TEST_LOSS = "readme/test_loss"
"""The seed README's "testing loss", NOT a mean MSE: its accumulator is overwritten each batch,
so it equals 2 * MSE(last shuffled test batch) / number of test batches."""

# Speed, per epoch.
PERF_IMAGES_PER_S = "perf/images_per_s"
"""Training images per second over the epoch's training steps (evaluation excluded)."""
PERF_EPOCH_SECONDS = "perf/epoch_seconds"
"""Wall time of the epoch's training steps (evaluation excluded)."""

# Per-layer sparsity on the test set, per epoch.
ACTIVE_FRAC = "active_frac"
"""Fraction of the layer's units active on an image, averaged over images."""
MEAN_ACT = "mean_act"
"""Mean activation over every element of the layer."""
DEAD_FRAC = "dead_frac"
"""Fraction of the layer's units never active on any test image."""
HOYER = "hoyer"
"""Our own metric, not the seed's: Hoyer sparsity (sqrt(n) - L1/L2) / (sqrt(n) - 1) of an image's
vector of per-unit mean |activation|, averaged over images; 1 = one unit on, 0 = all equal; an
image with no active unit counts as 1. Not defined for a one-unit layer (dec3), so not logged."""


def sparsity_key(layer: str, stat: str) -> str:
    return f"sparsity/{layer}/{stat}"


CODE_ACTIVE_FRAC = sparsity_key("enc3", ACTIVE_FRAC)
"""Active fraction of the 64-unit code: CODE_L0 / 64, the sweep's sparsity objective."""
CODE_L0 = sparsity_key("enc3", "l0")
"""The code's L0, as sparse-autoencoder papers report it: the mean number of code units active
on an image (= CODE_ACTIVE_FRAC x 64)."""
CODE_DENSE_FRAC = sparsity_key("enc3", "dense_frac")
"""Fraction of the code units active on more than half of the test images (dense features)."""
CODE_INFORMATIVE_FRAC = sparsity_key("enc3", "informative_frac")
"""Fraction of the code units whose activation varies over the test set (max - min above
INFORMATIVE_RANGE): a unit that is constant, on or off, carries no information about the image."""
CODE_DEAD_FRAC = sparsity_key("enc3", DEAD_FRAC)
INFORMATIVE_RANGE = 1e-6

TEST_FVU = "test/fvu"
"""Fraction of variance unexplained: TEST_MSE / the test pixels' variance around the per-pixel
mean image (what the best constant reconstruction leaves). 0 is perfect, 1 is no better than
the mean image."""
DEGENERATE = "degenerate"
"""1 when the run is degenerate at this evaluation (``degenerate_reason``), else 0."""
FVU_DEGENERATE = 0.95
"""A reconstruction that explains less than 5% of what the mean image leaves (TEST_FVU above
this) carries almost no information about its input. (Tests: the tiny test images are uniform
noise, so every tiny run is degenerate by this rule; a test that needs non-degenerate runs
in-process sets this to math.inf with monkeypatch.)"""

PROBE_ACCURACY = "probe/accuracy"
"""Test accuracy of a linear probe (multinomial logistic regression) that predicts the digit from
the 64-unit code, trained on the training split's codes; logged once, at the last epoch."""
PROBE_SECONDS = "probe/seconds"
"""Wall time of the probe: encoding both splits and fitting it."""


def layer_metric_keys() -> list[str]:
    keys = []
    for layer in LAYER_NAMES:
        stats = [ACTIVE_FRAC, MEAN_ACT, DEAD_FRAC]
        if LAYER_SHAPES[layer][0] > 1:
            stats.append(HOYER)
        keys += [sparsity_key(layer, s) for s in stats]
    return keys


EVAL_METRICS = (
    TEST_MSE,
    TEST_PENALTY,
    TEST_LOSS,
    TEST_EXPLAINED_VARIANCE,
    TEST_FVU,
    README_TEST_LOSS,
    *layer_metric_keys(),
    CODE_L0,
    CODE_DENSE_FRAC,
    CODE_INFORMATIVE_FRAC,
    DEGENERATE,
)
FINAL_METRICS = (PROBE_ACCURACY, PROBE_SECONDS)
"""Logged once, with the last epoch's metrics (when the splits carry labels)."""
EPOCH_METRICS = (EPOCH_LOSS, EPOCH_MSE, EPOCH_PENALTY, PERF_IMAGES_PER_S, PERF_EPOCH_SECONDS)


def degenerate_reason(values: dict[str, float]) -> str | None:
    """Why an evaluation (EVAL_METRICS) shows a collapsed model, or None when it does not.

    Degenerate: a layer with no unit active on any test image (nothing passes it, so the
    reconstruction cannot depend on the input), a code none of whose units varies over the test
    set, or a reconstruction no better than the mean image (TEST_FVU above FVU_DEGENERATE).
    Keys missing from ``values`` are not judged.
    """
    for layer in LAYER_NAMES:
        if values.get(sparsity_key(layer, DEAD_FRAC), 0.0) >= 1.0:
            return f"layer {layer} is dead: no unit active on any test image"
    if values.get(CODE_INFORMATIVE_FRAC, 1.0) <= 0.0:
        return "the code is constant: no code unit varies over the test set"
    fvu = values.get(TEST_FVU, 0.0)
    if not fvu <= FVU_DEGENERATE:  # NaN included
        return (
            f"the reconstruction explains {max(0.0, 1 - fvu):.1%} of the test variance "
            f"around the mean image (under {1 - FVU_DEGENERATE:.0%})"
        )
    return None


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [0, 1], as torchvision's ToTensor gives."""
    return images.unsqueeze(1).float().div_(255).contiguous(memory_format=torch.channels_last)


Forward = Callable[[torch.Tensor], tuple[torch.Tensor, tuple[torch.Tensor, ...]]]
"""K models at once: images (K, B, 1, 28, 28), model k's batch at k -> the reconstructions
(K, B, 1, 28, 28) and the six activations (K, B, C, H, W), each model's ``forward`` stacked."""


def as_forward(model: torch.nn.Module) -> Forward:
    """One model as a Forward over K = 1."""

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        recon, acts = model(x[0])
        return recon[None], tuple(act[None] for act in acts)

    return forward


def evaluate(
    model: torch.nn.Module,
    images: torch.Tensor,
    cfg: TrainConfig,
    order: torch.Tensor | torch.Generator,
) -> dict[str, float]:
    """Every evaluation figure (EVAL_METRICS) of one model: ``evaluate_many`` with K = 1."""
    was_training = model.training
    model.eval()
    code = getattr(model, "topk", None) is None
    try:
        return evaluate_many(as_forward(model), images, [cfg], [order], code)[0]
    finally:
        model.train(was_training)


@torch.inference_mode()
def evaluate_many(
    forward: Forward,
    images: torch.Tensor,
    cfgs: Sequence[TrainConfig],
    orders: Sequence[torch.Tensor | torch.Generator],
    code: bool = True,
) -> list[dict[str, float]]:
    """Every evaluation figure (EVAL_METRICS) of K models over the whole split ``images``
    (uint8, (N, 28, 28), on the device), in one pass: one dict per model, in order.

    Model k is scored with its own ``cfgs[k]`` (its penalty, the code left out if not ``code``)
    in its own ``orders[k]`` (a permutation of the N images, or a generator to draw one), as the
    seed's test loader shuffles (the README's last-batch figure); the batch size is common.
    """
    k = len(cfgs)
    n, b = images.shape[0], cfgs[0].test_batch_size
    if any(cfg.test_batch_size != b for cfg in cfgs):
        raise ValueError("models evaluated together need the same test_batch_size")
    device = images.device
    perms = torch.stack(
        [
            (torch.randperm(n, generator=o) if isinstance(o, torch.Generator) else o).to(device)
            for o in orders
        ]
    )  # (K, N)
    zero = torch.zeros(k, dtype=torch.float64, device=device)
    sq_err, pen = zero.clone(), zero.clone()
    active = {layer: zero.clone() for layer in LAYER_NAMES}
    act_sum = {layer: zero.clone() for layer in LAYER_NAMES}
    hoyer = {layer: zero.clone() for layer in LAYER_NAMES}
    ever = {layer: None for layer in LAYER_NAMES}
    code = _CodeStats(k, LAYER_SHAPES[CODE_LAYER][0], device)
    last_mse = zero
    for start in range(0, n, b):
        index = perms[:, start : start + b]  # (K, B)
        x = to_float(images[index].flatten(0, 1)).unflatten(0, index.shape)  # (K, B, 1, 28, 28)
        recon, acts = forward(x)
        batch_sq = (recon - x).square().sum(dim=(1, 2, 3, 4), dtype=torch.float64)  # (K,)
        sq_err += batch_sq
        last_mse = batch_sq / x[0].numel()
        pens = [penalty([a[i] for a in acts], cfg, code=code) for i, cfg in enumerate(cfgs)]
        pen += torch.stack(pens).double() * x.shape[1]
        for layer, act in zip(LAYER_NAMES, acts, strict=True):
            unit_on = act.amax(dim=(3, 4)) > 0  # (K, B, C)
            active[layer] += unit_on.double().mean(dim=2).sum(dim=1)
            act_sum[layer] += act.sum(dim=(1, 2, 3, 4), dtype=torch.float64)
            seen = unit_on.any(dim=1)  # (K, C)
            ever[layer] = seen if ever[layer] is None else ever[layer] | seen
            if act.shape[2] > 1:
                hoyer[layer] += _hoyer(act.abs().mean(dim=(3, 4))).sum(dim=1, dtype=torch.float64)
            if layer == CODE_LAYER:
                code.add(act.flatten(2))

    # Every per-model figure as a (K,) float64 tensor, read back in one transfer.
    stats = {
        TEST_MSE: sq_err / (n * 28 * 28),
        TEST_PENALTY: pen / n,
        README_TEST_LOSS: 2 * last_mse / math.ceil(n / b),
    }
    for layer in LAYER_NAMES:
        units, height, width = LAYER_SHAPES[layer]
        stats[sparsity_key(layer, ACTIVE_FRAC)] = active[layer] / n
        stats[sparsity_key(layer, MEAN_ACT)] = act_sum[layer] / (n * units * height * width)
        stats[sparsity_key(layer, DEAD_FRAC)] = 1 - ever[layer].double().mean(dim=1)
        if units > 1:
            stats[sparsity_key(layer, HOYER)] = hoyer[layer] / n
    stats.update(code.result(n))
    rows = torch.stack(list(stats.values()), dim=1).tolist()  # K rows

    variance, pixel_variance = _pixel_variances(images, b)
    outs = []
    for row in rows:
        out = dict(zip(stats, row, strict=True))
        mse = out[TEST_MSE]
        out[TEST_LOSS] = mse + out[TEST_PENALTY]
        out[TEST_EXPLAINED_VARIANCE] = 1 - mse / variance if variance > 0 else float("nan")
        out[TEST_FVU] = mse / pixel_variance if pixel_variance > 0 else float("nan")
        out[DEGENERATE] = float(degenerate_reason(out) is not None)
        outs.append(out)
    return outs


def _pixel_variances(images: torch.Tensor, batch: int) -> tuple[float, float]:
    """The variance of every pixel of uint8 ``images`` (N, 28, 28) around their mean, and around
    each pixel's own mean (what the best constant reconstruction, the mean image, leaves)."""
    px_sum = torch.zeros(28 * 28, dtype=torch.float64, device=images.device)
    px_sq = px_sum.clone()
    for start in range(0, images.shape[0], batch):
        flat = to_float(images[start : start + batch]).flatten(1).double()  # (B, 784)
        px_sum += flat.sum(dim=0)
        px_sq += flat.square().sum(dim=0)
    n = images.shape[0]
    pixels = n * 28 * 28
    mean_px = px_sum.sum().item() / pixels
    variance = px_sq.sum().item() / pixels - mean_px**2
    pixel_variance = ((px_sq - px_sum.square() / n).sum() / pixels).item()
    return variance, pixel_variance


class _CodeStats:
    """Per model and code unit, over the images seen: on how many it fired, its smallest and
    largest value."""

    def __init__(self, models: int, units: int, device: torch.device) -> None:
        self.fired = torch.zeros(models, units, dtype=torch.float64, device=device)
        self.low = torch.full((models, units), math.inf, device=device)
        self.high = torch.full((models, units), -math.inf, device=device)

    def add(self, code: torch.Tensor) -> None:
        """``code``: (K, B, units) activations of a batch."""
        self.fired += (code > 0).sum(dim=1, dtype=torch.float64)
        self.low = torch.minimum(self.low, code.amin(dim=1).float())
        self.high = torch.maximum(self.high, code.amax(dim=1).float())

    def result(self, n: int) -> dict[str, torch.Tensor]:
        """The code's figures over ``n`` images, (K,) float64 each."""
        rate = self.fired / n
        informative = (self.high - self.low) > INFORMATIVE_RANGE
        return {
            CODE_L0: rate.sum(dim=1),
            CODE_DENSE_FRAC: (rate > 0.5).double().mean(dim=1),
            CODE_INFORMATIVE_FRAC: informative.double().mean(dim=1),
        }


@torch.inference_mode()
def code_firing_rates(
    model: torch.nn.Module, images: torch.Tensor, batch: int = 2000
) -> torch.Tensor:
    """(units,) float64 on the CPU: the fraction of ``images`` on which each code unit fires."""
    fired = None
    for start in range(0, images.shape[0], batch):
        on = (model.encode(to_float(images[start : start + batch])) > 0).sum(dim=0)
        fired = on if fired is None else fired + on
    return fired.double().cpu() / images.shape[0]


def _hoyer(v: torch.Tensor) -> torch.Tensor:
    """Hoyer sparsity of each row (last dimension, n) of a non-negative tensor; all-zero rows
    give 1."""
    root_n = math.sqrt(v.shape[-1])
    l1 = v.sum(dim=-1)
    l2 = v.norm(dim=-1)
    ratio = torch.where(l2 > 0, l1 / l2.clamp_min(1e-30), torch.ones_like(l1))
    return (root_n - ratio) / (root_n - 1)
