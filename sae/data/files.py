"""The four expected MNIST files (names, sizes, digests), the data root, and the data error."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
ROWS = COLS = 28
IMAGE_HEADER = 16  # magic, count, rows, cols: four big-endian uint32
LABEL_HEADER = 8  # magic, count

DEFAULT_ROOT = "data"
ROOT_ENV_VAR = "SAE_DATA_ROOT"

CHUNK = 1 << 20  # bytes per read when hashing or decompressing


class DataError(Exception):
    """A user-facing data problem; the message is one line saying what, where, and how to fix it."""

    def __init__(self, message: str) -> None:
        # Callers pass messages that may embed tool output; the CLI promises exactly one line.
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True)
class FileSpec:
    """One expected file: its name under `MNIST/raw/`, its size in bytes and its SHA-256."""

    name: str
    size: int
    sha256: str

    @property
    def is_images(self) -> bool:
        """True for an image file (IDX3), False for a label file (IDX1)."""
        return self.name.endswith("idx3-ubyte")

    @property
    def count(self) -> int:
        """Number of items the file must hold, implied by its size."""
        if self.is_images:
            return (self.size - IMAGE_HEADER) // (ROWS * COLS)
        return self.size - LABEL_HEADER


MNIST_FILES: tuple[FileSpec, ...] = (
    FileSpec(
        TRAIN_IMAGES, 47_040_016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    ),
    FileSpec(
        TRAIN_LABELS, 60_008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
    ),
    FileSpec(
        TEST_IMAGES, 7_840_016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
    ),
    FileSpec(
        TEST_LABELS, 10_008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    ),
)


def default_root() -> Path:
    """The data root: `$SAE_DATA_ROOT` when set, else `./data`."""
    return Path(os.environ.get(ROOT_ENV_VAR) or DEFAULT_ROOT)


def raw_dir_of(root: str | Path) -> Path:
    """Where the four IDX files live under a data root (torchvision's layout)."""
    return Path(root) / "MNIST" / "raw"


def dataset_digest(files: tuple[FileSpec, ...] = MNIST_FILES) -> str:
    """Short id of the exact data: first 16 hex of SHA-256 over the four digests, in order."""
    return hashlib.sha256("".join(f.sha256 for f in files).encode("ascii")).hexdigest()[:16]
