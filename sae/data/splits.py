"""Loading a verified split (train or test) as tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sae.data import files as F
from sae.data.files import MNIST_FILES, DataError, FileSpec
from sae.data.verify import REPAIR, read_verified


def _spec(files: tuple[FileSpec, ...], name: str) -> FileSpec:
    for spec in files:
        if spec.name == name:
            return spec
    raise DataError(f"the file list has no entry for {name}; expected the four MNIST file names")


def load_split(
    raw_dir: str | Path, train: bool, files: tuple[FileSpec, ...] = MNIST_FILES
) -> tuple[torch.Tensor, torch.Tensor]:
    """Verify and load one split: images uint8 (N, 28, 28) and labels int64 (N,)."""
    raw_dir = Path(raw_dir)
    images_spec = _spec(files, F.TRAIN_IMAGES if train else F.TEST_IMAGES)
    labels_spec = _spec(files, F.TRAIN_LABELS if train else F.TEST_LABELS)
    images_path, labels_path = raw_dir / images_spec.name, raw_dir / labels_spec.name
    image_bytes = read_verified(images_path, images_spec)
    label_bytes = read_verified(labels_path, labels_spec)
    if images_spec.count != labels_spec.count:
        raise DataError(
            f"{labels_path}: expected {images_spec.count} labels to match {images_path.name}, "
            f"found {labels_spec.count}; {REPAIR}"
        )
    n = images_spec.count
    # (N, 28, 28) uint8, sharing the buffer that was just verified
    images = np.frombuffer(image_bytes, dtype=np.uint8, offset=F.IMAGE_HEADER)
    images = images.reshape(n, F.ROWS, F.COLS)
    labels = np.frombuffer(label_bytes, dtype=np.uint8, offset=F.LABEL_HEADER).astype(np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)
