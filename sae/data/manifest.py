"""JSON manifests: the size and SHA-256 of other IDX files to use instead of MNIST's."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sae.data.files import (
    COLS,
    FILE_NAMES,
    IMAGE_HEADER,
    LABEL_HEADER,
    ROWS,
    DataError,
    FileSpec,
)
from sae.data.idx import atomic_write

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


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
        header, item = (IMAGE_HEADER, ROWS * COLS) if spec.is_images else (LABEL_HEADER, 1)
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
    atomic_write(Path(path), (json.dumps(obj, indent=2) + "\n").encode("utf-8"))
