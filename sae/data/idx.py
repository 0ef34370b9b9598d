"""IDX bytes (big-endian header, then raw uint8 payload) and atomic writes of them to disk."""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch

from sae.data.files import IMAGE_MAGIC, LABEL_MAGIC


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes | bytearray | memoryview) -> None:
    """Write a temp file in the same folder, fsync, rename: readers see old or new, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; data files should be as readable as any other
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def idx_images_bytes(images: np.ndarray | torch.Tensor) -> bytes:
    """IDX3 bytes (big-endian header, then raw pixels) for uint8 images (N, rows, cols)."""
    array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 3:
        raise ValueError(
            f"images must be uint8 of shape (N, rows, cols), got {array.dtype} {array.shape}"
        )
    n, rows, cols = array.shape
    return struct.pack(">IIII", IMAGE_MAGIC, n, rows, cols) + np.ascontiguousarray(array).tobytes()


def idx_labels_bytes(labels: np.ndarray | torch.Tensor) -> bytes:
    """IDX1 bytes for integer labels of shape (N,), each in 0..255."""
    array = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if not np.issubdtype(array.dtype, np.integer) or array.ndim != 1:
        raise ValueError(f"labels must be integers of shape (N,), got {array.dtype} {array.shape}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError("labels must lie in 0..255 to fit IDX uint8")
    return struct.pack(">II", LABEL_MAGIC, len(array)) + array.astype(np.uint8).tobytes()


def write_idx_images(path: str | Path, images: np.ndarray | torch.Tensor) -> None:
    """Atomically write uint8 images (N, rows, cols) as an IDX3 file."""
    atomic_write(Path(path), idx_images_bytes(images))


def write_idx_labels(path: str | Path, labels: np.ndarray | torch.Tensor) -> None:
    """Atomically write integer labels (N,) as an IDX1 file."""
    atomic_write(Path(path), idx_labels_bytes(labels))
