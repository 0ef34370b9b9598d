"""The data a run trains on: the two splits of MNIST (or a manifest's files), verified on first
use and loaded onto the training device as uint8 tensors, and the sizes a config asks of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from sae import data as sae_data
from sae.config import DataConfig


@dataclass(frozen=True)
class Splits:
    """The images of both splits, uint8 (N, 28, 28), on the training device."""

    train: torch.Tensor
    test: torch.Tensor
    digest: str
    """Identifies the exact data files (``sae.data.dataset_digest``)."""
    train_labels: torch.Tensor | None = None
    """The digits of ``train``, int64 (N,), on the same device; None without labels (no probe)."""
    test_labels: torch.Tensor | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` is cuda when present, else cpu; asking for cuda without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but no CUDA device is available; use --device cpu")
    return torch.device(name)


def data_files(cfg: DataConfig) -> tuple[sae_data.FileSpec, ...]:
    """The four files ``cfg`` reads: its manifest's, else canonical MNIST."""
    return sae_data.load_manifest(cfg.manifest) if cfg.manifest else sae_data.MNIST_FILES


def split_sizes(cfg: DataConfig) -> tuple[int, int]:
    """The training and test images a run on ``cfg`` uses: its sizes, else whole splits.

    Raises ValueError when a size asks for more images than its split holds (the counts that
    loading verifies), so no run is logged with a size it does not train on.
    """
    counts = {spec.name: spec.count for spec in data_files(cfg)}  # the four, always
    sizes = []
    for name, size, what, split in (
        ("train_size", cfg.train_size, "training", counts[sae_data.TRAIN_IMAGES]),
        ("test_size", cfg.test_size, "test", counts[sae_data.TEST_IMAGES]),
    ):
        if size is not None and size > split:
            raise ValueError(
                f"{name} {size} is more than the {split:,} {what} images of the data: pass at "
                f"most {split}, or leave it unset for all of them"
            )
        sizes.append(split if size is None else size)
    return sizes[0], sizes[1]


def load_splits(
    cfg: DataConfig, device: torch.device, log: Callable[[str], None] | None = None
) -> Splits:
    """Prepare (fetch and verify on first use) and load both splits onto ``device``; a size the
    data cannot honour is refused first (``split_sizes``)."""
    split_sizes(cfg)
    files = data_files(cfg)
    raw = sae_data.prepare(Path(cfg.root), files, log=log or (lambda _msg: None))
    train, train_labels = sae_data.load_split(raw, train=True, files=files)
    test, test_labels = sae_data.load_split(raw, train=False, files=files)
    return Splits(
        train=train[: cfg.train_size].to(device),
        test=test[: cfg.test_size].to(device),
        digest=sae_data.dataset_digest(files),
        train_labels=train_labels[: cfg.train_size].to(device),
        test_labels=test_labels[: cfg.test_size].to(device),
    )
