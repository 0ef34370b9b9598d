"""Where a run's artifacts are: what writes one and what reads it back use these names."""

from __future__ import annotations

import re

IMAGES_DIR = "images"
"""Per epoch, 16 fixed test images (top) over their reconstructions: ``reconstruction_file``."""
HISTOGRAMS_FILE = "plots/activation_histograms.png"
CURVES_FILE = "plots/learning_curves.png"
DENSITY_FILE = "plots/feature_density.png"
"""The feature-density histogram: log10 of each code unit's firing rate on the test set."""
CONFIG_FILE = "config.json"
MODEL_NAME = "model"


def reconstruction_file(epoch: int) -> str:
    """The artifact path of epoch ``epoch``'s reconstruction grid: ``images/epoch_001.png``."""
    return f"{IMAGES_DIR}/epoch_{epoch:03d}.png"


_RECONSTRUCTION = re.compile(rf"^{IMAGES_DIR}/epoch_(\d+)\.png$")


def reconstruction_epoch(path: str) -> int | None:
    """The epoch of a ``reconstruction_file`` path; None for any other path."""
    match = _RECONSTRUCTION.match(path)
    return int(match.group(1)) if match else None
