"""Where a benchmark's figures come from (``source``: the date and the command as typed) and
the JSON file that holds them (``write_json``)."""

from __future__ import annotations

import datetime
import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sae.data.idx import atomic_write
from sae.paths import owned
from sae.redact import redact


def source(argv: Sequence[str], program: str | None = None) -> dict[str, str]:
    """Where a benchmark's figures come from, beside its machine: the date and time (UTC, ISO
    8601) and the command as typed, ``program`` (default: ``argv[0]``'s name) then
    ``argv[1:]``, with any credential masked (the command line refuses them already)."""
    program = program or Path(argv[0]).name
    words = [*shlex.split(program), *argv[1:]]
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(redact(word) for word in words),
    }


def write_json(
    results: dict[str, Any],
    info: dict[str, str],
    path: Path,
    origin: dict[str, str] | None = None,
) -> None:
    """Write the figures (``results``), the machine (``info``) and where they came from
    (``origin``: ``source``'s date and command) to ``path`` whole (a temporary file renamed),
    never through a symbolic link at ``path``: refused in one line (``sae.paths.owned``)."""
    path = owned(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {"machine": info, "results": results, **(origin or {})}
    atomic_write(path, json.dumps(saved, indent=2, sort_keys=True).encode("utf-8"))
