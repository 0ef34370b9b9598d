"""The package-index mirror's pickle: unpickled with numpy arrays only, rebuilt into IDX bytes."""

from __future__ import annotations

import io
import pickle

import numpy as np

from sae.data.files import (
    COLS,
    ROWS,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DataError,
)
from sae.data.idx import idx_images_bytes, idx_labels_bytes

# Everything numpy needs to rebuild arrays, under the names both numpy 1 and 2 pickles use, and
# nothing else: an admitted global is the only way a pickle can call code. Named as strings and
# resolved by pickle itself, so no private numpy module is imported here (numpy 2 keeps
# `numpy.core.multiarray._reconstruct` and `.scalar` importable, without warning, for old pickles).
_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        *(
            (module, name)
            for module in ("numpy.core.multiarray", "numpy._core.multiarray")
            for name in ("_reconstruct", "scalar")
        ),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataError(
                f"refusing to unpickle global {module}.{name}: only numpy array reconstruction "
                "is allowed, so this pickle is not the expected MNIST mirror"
            )
        return super().find_class(module, name)


def restricted_loads(data: bytes) -> object:
    """Unpickle `data` (Python-2 era, latin1) admitting only the globals numpy arrays need."""
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"mirror pickle is unreadable ({type(e).__name__}: {e})") from e


def _mirror_split(obj: tuple, i: int) -> tuple[np.ndarray, np.ndarray]:
    pair = obj[i]
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise DataError(f"mirror pickle split {i}: expected an (images, labels) pair")
    images, labels = pair
    if not (
        isinstance(images, np.ndarray)
        and images.dtype == np.float32
        and images.ndim == 2
        and images.shape[1] == ROWS * COLS
    ):
        found = f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}"
        raise DataError(
            f"mirror pickle split {i}: expected float32 images of shape (N, {ROWS * COLS}), "
            f"found {found}"
        )
    if not (
        isinstance(labels, np.ndarray)
        and np.issubdtype(labels.dtype, np.integer)
        and labels.shape == (len(images),)
    ):
        found = f"{getattr(labels, 'dtype', type(labels).__name__)} {getattr(labels, 'shape', '')}"
        raise DataError(
            f"mirror pickle split {i}: expected integer labels of shape ({len(images)},), "
            f"found {found}"
        )
    return images, labels


def _unit_floats_to_uint8(images: np.ndarray) -> np.ndarray:
    """float32 `byte / 256` -> the original bytes, shaped (N, 28, 28)."""
    scaled = np.rint(images * np.float32(256))  # exact: 256 is a power of two
    if scaled.size and (scaled.min() < 0 or scaled.max() > 255):
        raise DataError(
            f"mirror images: expected values byte/256 in [0, 255/256], "
            f"found range [{images.min()}, {images.max()}]"
        )
    return scaled.astype(np.uint8).reshape(-1, ROWS, COLS)


def idx_from_mirror_pickle(data: bytes) -> dict[str, bytes]:
    """Rebuild the four IDX files from the (uncompressed) `mnist.pkl` bytes of the mirror.

    The pickle is a 3-tuple of (images float32 (N, 784) = byte/256, labels int (N,)); splits 0 and
    1 concatenated are the training set, split 2 is the test set. The result is not yet verified.
    """
    obj = restricted_loads(data)
    if not (isinstance(obj, tuple) and len(obj) == 3):
        found = (
            f"{type(obj).__name__} of length {len(obj)}"
            if isinstance(obj, tuple)
            else type(obj).__name__
        )
        raise DataError(
            f"mirror pickle: expected a 3-tuple of (images, labels) splits, found {found}"
        )
    (x0, y0), (x1, y1), (x2, y2) = (_mirror_split(obj, i) for i in range(3))
    return {
        TRAIN_IMAGES: idx_images_bytes(_unit_floats_to_uint8(np.concatenate([x0, x1]))),
        TRAIN_LABELS: idx_labels_bytes(np.concatenate([y0, y1])),
        TEST_IMAGES: idx_images_bytes(_unit_floats_to_uint8(x2)),
        TEST_LABELS: idx_labels_bytes(y2),
    }
