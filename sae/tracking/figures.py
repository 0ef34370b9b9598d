"""The pictures a run logs: reconstruction grids, activation histograms, learning curves."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from sae import metrics as M
from sae.model import LAYER_NAMES, SparseAutoencoder


@torch.inference_mode()
def reconstruction_grid(model: SparseAutoencoder, images: torch.Tensor) -> np.ndarray:
    """(H, W, 3) uint8: the images in the top row, their reconstructions below."""
    from torchvision.utils import make_grid

    was_training = model.training
    model.eval()
    x = M.to_float(images)
    recon = model(x)[0].clamp(0, 1)
    model.train(was_training)
    grid = make_grid(torch.cat([x, recon]).float().cpu(), nrow=len(images), padding=2, pad_value=1)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@torch.inference_mode()
def activation_histograms(model: SparseAutoencoder, images: torch.Tensor) -> Figure:
    """One panel per layer: the distribution of its activations on the first test images."""
    was_training = model.training
    model.eval()
    _, acts = model(M.to_float(images))
    model.train(was_training)
    fig = Figure(figsize=(12, 6), layout="constrained")
    axes = fig.subplots(2, 3)
    for ax, layer, act in zip(axes.flat, LAYER_NAMES, acts, strict=True):
        values = act.float().flatten().cpu().numpy()
        positive = values[values > 0]
        ax.set_title(f"{layer}: {1 - positive.size / values.size:.0%} of activations are 0")
        shown = positive[np.isfinite(positive)]
        if shown.size and _spread(shown):
            ax.hist(shown, bins=50, color="tab:blue")
            ax.set_yscale("log")
        else:
            why = "no unit ever active" if not positive.size else "values too large to bin"
            if shown.size and not _spread(shown):
                why = f"every active value is {shown[0]:.3g}"
            ax.text(0.5, 0.5, why, ha="center", transform=ax.transAxes)
        ax.set_xlabel("activation (> 0)")
        ax.set_ylabel("count")
    fig.suptitle(f"Activation histograms on {len(images)} test images")
    return fig


def _spread(values: np.ndarray) -> bool:
    """Whether 50 distinct, finite histogram bins fit between the values' extremes."""
    low, high = float(values.min()), float(values.max())
    edges = np.linspace(low, high, 51)
    return high > low and np.isfinite(high - low) and bool(np.all(np.diff(edges) > 0))


def learning_curves(history: list[dict[str, float]]) -> Figure:
    epochs = np.arange(1, len(history) + 1)
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    for key, label in ((M.EPOCH_MSE, "train MSE"), (M.TEST_MSE, "test MSE")):
        left.plot(epochs, [h[key] for h in history], marker="o", label=label)
    left.set_xlabel("epoch")
    left.set_ylabel("MSE (pixel values in [0, 1])")
    left.set_yscale("log")
    left.legend()
    left.set_title("Reconstruction")
    right.plot(epochs, [h[M.CODE_ACTIVE_FRAC] for h in history], marker="o", color="tab:green")
    right.set_xlabel("epoch")
    right.set_ylabel("fraction of the 64 code units active")
    right.set_ylim(0, 1.05)
    right.set_title("Code sparsity (test set)")
    for ax in (left, right):
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def feature_density(rates: np.ndarray, n_images: int) -> Figure:
    """The feature-density histogram, as sparse-autoencoder papers draw it: log10 of each code
    unit's firing rate (the fraction of test images it is active on); dead units, which never
    fire, are counted apart (their log is -inf)."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    alive = rates[rates > 0]
    dead = int((rates <= 0).sum())
    floor = np.log10(1 / n_images)  # one image
    bins = np.linspace(floor, 0, 31)
    if alive.size:
        ax.hist(np.log10(alive), bins=bins, color="tab:blue", label=f"{alive.size} units that fire")
    ax.axvline(np.log10(0.5), color="tab:red", linestyle="--", label="dense: on > half the images")
    ax.set_xlim(floor - 0.3, 0.1)
    ax.set_xlabel(f"log10 firing rate on the {n_images:,} test images")
    ax.set_ylabel("code units")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"Feature density of the {rates.size} code units; {dead} dead (never fire)")
    ax.legend(loc="upper left")
    return fig
