"""Checks that a file is the expected one (size, then IDX header, then SHA-256); verified reads."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import BinaryIO

from sae.data.files import (
    CHUNK,
    COLS,
    IMAGE_HEADER,
    IMAGE_MAGIC,
    LABEL_HEADER,
    LABEL_MAGIC,
    ROWS,
    DataError,
    FileSpec,
)

REPAIR = "delete the file and re-run `python -m sae.data fetch`"


def _check_size(where: object, spec: FileSpec, size: int, repair: str) -> None:
    if size != spec.size:
        hint = "truncated or incomplete" if size < spec.size else "too long"
        raise DataError(
            f"{where}: expected {spec.size} bytes, found {size} bytes ({hint}); {repair}"
        )


def _check_header(where: object, spec: FileSpec, header: bytes, repair: str) -> None:
    if spec.is_images:
        magic, count, rows, cols = struct.unpack(">IIII", header[:IMAGE_HEADER])
        if (magic, count, rows, cols) != (IMAGE_MAGIC, spec.count, ROWS, COLS):
            raise DataError(
                f"{where}: expected IDX image header (magic {IMAGE_MAGIC}, count {spec.count}, "
                f"{ROWS}x{COLS}), found magic {magic}, count {count}, {rows}x{cols}; {repair}"
            )
    else:
        magic, count = struct.unpack(">II", header[:LABEL_HEADER])
        if (magic, count) != (LABEL_MAGIC, spec.count):
            raise DataError(
                f"{where}: expected IDX label header (magic {LABEL_MAGIC}, count {spec.count}), "
                f"found magic {magic}, count {count}; {repair}"
            )


def _check_digest(where: object, spec: FileSpec, found: str, repair: str) -> None:
    if found != spec.sha256:
        raise DataError(f"{where}: expected sha256 {spec.sha256}, found {found}; {repair}")


def check_bytes(where: object, spec: FileSpec, data: bytes | bytearray, repair: str) -> None:
    """Size, then header (the clearer message for a wrong file), then the digest."""
    _check_size(where, spec, len(data), repair)
    _check_header(where, spec, bytes(data[:IMAGE_HEADER]), repair)
    _check_digest(where, spec, hashlib.sha256(data).hexdigest(), repair)


def missing_error(path: Path, spec: FileSpec) -> DataError:
    """The error for an expected file that is not there: what it should be, how to get it."""
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
            _check_header(path, spec, f.read(IMAGE_HEADER), REPAIR)
            f.seek(0)
            digest = _sha256_of(f)
    except FileNotFoundError as e:
        raise missing_error(path, spec) from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); {REPAIR}") from e
    _check_digest(path, spec, digest, REPAIR)


def read_verified(path: Path, spec: FileSpec) -> bytearray:
    """Read a file once and verify exactly the bytes that will be parsed (no check-then-reread)."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            _check_size(path, spec, size, REPAIR)
            data = bytearray(size)  # writable, so torch.from_numpy can share it without a copy
            if f.readinto(data) != size:
                raise DataError(f"{path}: file changed while reading; re-run")
    except FileNotFoundError as e:
        raise missing_error(path, spec) from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e}); {REPAIR}") from e
    check_bytes(path, spec, data, REPAIR)
    return data


def _sha256_of(f: BinaryIO) -> str:
    """Hex SHA-256 of the rest of an open file, read in chunks (the images file is 47 MB)."""
    digest = hashlib.sha256()
    while chunk := f.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a whole file."""
    with path.open("rb") as f:
        return _sha256_of(f)
