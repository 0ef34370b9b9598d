"""The tags every run carries: code version, library versions, machine and command line."""

from __future__ import annotations

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


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
