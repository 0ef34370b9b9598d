"""How a command ends on an error: one line on stderr, credentials masked; exit 2 for a usage
error (argparse's), 1 for a refused value or a failed run, 130 and 143 for Ctrl-C and SIGTERM."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

from sae.redact import redact


def one_line(message: str) -> str:
    """The first line of ``message``, credentials masked: the message may come from a library
    that quotes a URL as it was given."""
    lines = redact(str(message)).strip().splitlines()
    return lines[0] if lines else ""


def fail(message: str, code: int = 1) -> NoReturn:
    """End a command with ``error: <message>`` on stderr."""
    sys.stderr.write(f"error: {one_line(message)}\n")
    raise SystemExit(code)


class _NeverRaised(Exception):
    pass


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """Call an entry point's ``main``; a user mistake or a failed run ends in one line."""
    from sae.data import DataError
    from sae.train import NonFiniteLossError

    try:
        from mlflow.exceptions import MlflowException

        from sae.tracking import RunKilled
    except ModuleNotFoundError:  # an untracked command on a machine without MLflow
        MlflowException = RunKilled = _NeverRaised

    try:
        code = main() or 0
    except (ValueError, DataError, NonFiniteLossError, MlflowException) as err:
        fail(one_line(str(err)) or type(err).__name__)
    except RunKilled:  # SIGTERM; a KeyboardInterrupt too, so it comes first
        fail("terminated; the run was marked KILLED", 143)
    except KeyboardInterrupt:
        fail("interrupted; the run was marked KILLED", 130)
    raise SystemExit(code)
