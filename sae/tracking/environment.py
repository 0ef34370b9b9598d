"""The tags every run carries: code version, library versions, machine and command line."""

from __future__ import annotations

import functools
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import mlflow
import torch

from sae.names import TAG_COMMAND, TAG_GIT_COMMIT, TAG_HOST, TAG_MLFLOW, TAG_TORCH
from sae.redact import redact


def environment_tags() -> dict[str, str]:
    return {
        TAG_GIT_COMMIT: _git_commit(),
        TAG_TORCH: torch.__version__,
        TAG_MLFLOW: mlflow.__version__,
        TAG_HOST: platform.node(),
        TAG_COMMAND: redact(shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])),
    }


@functools.cache
def _git_commit() -> str:
    """The commit of the code this process runs: read once, when the process first asks (a
    commit made while a long sweep runs is not the code it loaded), with ``+dirty`` when tracked
    files differed from it then."""
    try:
        head = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def _git(*args: str) -> str:
    out = subprocess.run(
        ["git", *args],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    )
    return out.stdout.strip()
