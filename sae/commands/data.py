"""Fetch or verify MNIST: `python -m sae.data fetch|verify`."""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import simple_parsing

from sae import data
from sae.cli import ArgumentParser, SecretOnCommandLine, UsageError
from sae.data import (
    MNIST_FILES,
    DataError,
    dataset_digest,
    default_root,
    load_manifest,
    load_split,
    prepare_with_source,
    raw_dir_of,
)
from sae.errors import first_line


def _seconds(text: str) -> float:
    """argparse type of --timeout: finite seconds > 0 (to a socket, 0 means non-blocking)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return value


@dataclass(frozen=True)
class FilesOptions:
    """Which files, and where."""

    root: str | None = None
    """data root; unset means $SAE_DATA_ROOT, else ./data"""
    manifest: str | None = None
    """JSON manifest of other IDX files to use instead of MNIST's digests"""


@dataclass(frozen=True)
class FetchOptions:
    """How the files are fetched."""

    timeout: float = simple_parsing.field(default=10.0, type=_seconds)
    """socket timeout in seconds for torchvision's download"""


def _parser() -> ArgumentParser:
    # Usage errors are raised (exit_on_error=False): main returns its exit status.
    parser = ArgumentParser(
        prog="python -m sae.data", description=data.__doc__.splitlines()[0], exit_on_error=False
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{fetch,verify}")
    fetch = commands.add_parser(
        "fetch", help="get the four files (present, torchvision, mirror)", exit_on_error=False
    )
    verify = commands.add_parser(
        "verify", help="check the four files and load both splits", exit_on_error=False
    )
    for sub in (fetch, verify):
        sub.add_dataclass("files", FilesOptions())
    fetch.add_dataclass("fetch", FetchOptions())
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m sae.data`; returns the exit code."""

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        args = _parser().parse_args(argv)
        manifest, root = args.files.manifest, args.files.root
        files = load_manifest(Path(manifest)) if manifest else MNIST_FILES
        root = Path(root) if root is not None else default_root()
        if args.command == "fetch":
            start = time.perf_counter()
            raw_dir, source = prepare_with_source(
                root, files, log=say, download_timeout=args.fetch.timeout
            )
            say(
                f"MNIST ready in {raw_dir} (from: {source}; {time.perf_counter() - start:.1f} s; "
                f"dataset digest {dataset_digest(files)})"
            )
        else:
            raw_dir = raw_dir_of(root)
            n_train = len(load_split(raw_dir, True, files)[1])  # verifies both files of the split
            n_test = len(load_split(raw_dir, False, files)[1])
            for spec in files:
                say(f"ok  {raw_dir / spec.name}  ({spec.size} bytes, sha256 {spec.sha256})")
            say(
                f"verified {n_train} train and {n_test} test images in {raw_dir} "
                f"(dataset digest {dataset_digest(files)})"
            )
    except UsageError as e:
        print(f"error: {e} (see --help)", file=sys.stderr)
        return 2
    except (DataError, SecretOnCommandLine) as e:
        print(f"error: {first_line(str(e))}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {type(e).__name__}: {first_line(' '.join(str(e).split()))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
