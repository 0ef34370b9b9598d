"""The command line of the data package: `python -m sae.data fetch|verify`."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from sae import data
from sae.data import (
    DEFAULT_ROOT,
    MNIST_FILES,
    ROOT_ENV_VAR,
    DataError,
    dataset_digest,
    default_root,
    load_manifest,
    load_split,
    prepare_with_source,
    raw_dir_of,
)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line and exit 1 like every other error here, not argparse's usage block and exit 2.
        raise _UsageError(f"{self.prog}: {message} (see --help)")


def _seconds(text: str) -> float:
    """argparse type of --timeout: finite seconds > 0 (to a socket, 0 means non-blocking)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m sae.data", description=data.__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{fetch,verify}")
    fetch = commands.add_parser("fetch", help="get the four files (present, torchvision, mirror)")
    verify = commands.add_parser("verify", help="check the four files and load both splits")
    for sub in (fetch, verify):
        sub.add_argument(
            "--root",
            type=Path,
            default=None,
            help=f"data root (default: ${ROOT_ENV_VAR} or ./{DEFAULT_ROOT})",
        )
        sub.add_argument(
            "--manifest",
            type=Path,
            default=None,
            help="JSON manifest of other IDX files to use instead of MNIST's digests",
        )
    fetch.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        help="socket timeout in seconds for torchvision's download (default: 10)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m sae.data`; returns the exit code."""

    def say(message: str) -> None:
        print(message, flush=True)  # noqa: T201

    try:
        args = _parser().parse_args(argv)
        files = load_manifest(args.manifest) if args.manifest else MNIST_FILES
        root = args.root if args.root is not None else default_root()
        if args.command == "fetch":
            start = time.perf_counter()
            raw_dir, source = prepare_with_source(
                root, files, log=say, download_timeout=args.timeout
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
    except (_UsageError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)  # noqa: T201
        return 1
    except OSError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)  # noqa: T201
        return 130
    return 0
