"""Tiny MNIST-shaped data for tests: IDX files written like the real ones, and their manifest.

Other test modules reuse these (`from helpers_data import make_tiny_mnist`) to get a verified data
root in milliseconds, without the network or the mirror.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
from pathlib import Path

import numpy as np

from sae import data
from sae.data import FileSpec


def tiny_arrays(
    n_train: int = 20, n_test: int = 10, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The arrays `make_tiny_mnist` writes: {"train"|"test": (uint8 (N, 28, 28), int64 (N,))}.

    Uniform noise: no run reconstructs it better than the mean image, so every run trained on it
    is degenerate by `sae.metrics.degenerate_reason` (FVU >= 1); see metrics.FVU_DEGENERATE.
    """
    rng = np.random.default_rng(seed)
    return {
        split: (
            rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, size=n, dtype=np.int64),
        )
        for split, n in (("train", n_train), ("test", n_test))
    }


def spec_of(path: Path) -> FileSpec:
    """The FileSpec that describes `path` as it is now."""
    payload = path.read_bytes()
    return FileSpec(path.name, len(payload), hashlib.sha256(payload).hexdigest())


def make_tiny_mnist(
    root: Path, n_train: int = 20, n_test: int = 10, seed: int = 0
) -> tuple[FileSpec, ...]:
    """Write four tiny IDX files to `root/MNIST/raw/`; return their manifest (canonical order)."""
    raw = data.raw_dir_of(root)
    raw.mkdir(parents=True, exist_ok=True)
    arrays = tiny_arrays(n_train, n_test, seed)
    data.write_idx_images(raw / data.TRAIN_IMAGES, arrays["train"][0])
    data.write_idx_labels(raw / data.TRAIN_LABELS, arrays["train"][1])
    data.write_idx_images(raw / data.TEST_IMAGES, arrays["test"][0])
    data.write_idx_labels(raw / data.TEST_LABELS, arrays["test"][1])
    return tuple(spec_of(raw / name) for name in data.FILE_NAMES)


def write_manifest(path: Path, files: tuple[FileSpec, ...]) -> Path:
    """Write `files` as a JSON manifest that `sae.data.load_manifest` reads; returns `path`."""
    data.write_manifest(path, files)
    return path


class _Py2StylePickler(pickle._Pickler):
    """Pickles numpy arrays the way the mirror's Python-2 file does.

    Protocol 2, `numpy.core.multiarray._reconstruct`, and array payloads as py2 `str` (BINSTRING,
    read back with encoding="latin1"). Python 3's own protocol 2 would instead route bytes through
    `_codecs.encode`, a global the restricted unpickler rightly refuses.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        if getattr(obj, "__name__", None) == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def py2_style_pickle(obj: object) -> bytes:
    """Pickle `obj` (tuples of numpy arrays) in the same style as the mirror's `mnist.pkl`."""
    buffer = io.BytesIO()
    _Py2StylePickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def tiny_mirror_pickle(
    sizes: tuple[int, int, int] = (6, 4, 5), seed: int = 1
) -> tuple[bytes, dict[str, np.ndarray]]:
    """A tiny `mnist.pkl` built like the real one, and the uint8 arrays it encodes.

    Three (images float32 (N, 784) = byte/256, labels int64 (N,)) splits; returns the pickle bytes
    and {"train_images", "train_labels", "test_images", "test_labels"} as the IDX files hold them.
    """
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) for n in sizes]
    labels = [rng.integers(0, 10, size=n, dtype=np.int64) for n in sizes]
    splits = tuple(
        ((x.reshape(len(x), 784).astype(np.float32) / np.float32(256)), y)
        for x, y in zip(images, labels, strict=True)
    )
    expected = {
        "train_images": np.concatenate(images[:2]),
        "train_labels": np.concatenate(labels[:2]),
        "test_images": images[2],
        "test_labels": labels[2],
    }
    return py2_style_pickle(splits), expected
