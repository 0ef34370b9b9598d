"""How a command ends on an error: one line on stderr, credentials masked; exit 2 for a usage
error (argparse's), 1 for a refused value, a failed run or a fault of the stores or the machine
that outlasted its retries (its traceback in the log the line names), 130 and 143 for Ctrl-C and
SIGTERM."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

from sae.errors import first_line


def fail(message: str, code: int = 1) -> NoReturn:
    """End a command with ``error: <message>`` on stderr."""
    sys.stderr.write(f"error: {first_line(message)}\n")
    raise SystemExit(code)


class _NeverRaised(Exception):
    pass


def run_main(main: Callable[[], int | None]) -> NoReturn:
    """Call an entry point's ``main``; a user mistake or a failed run ends in one line."""
    from sae.data import DataError
    from sae.faults import fault_line, is_passing_fault
    from sae.signals import RunKilled
    from sae.train import NonFiniteLossError

    try:
        from mlflow.exceptions import MlflowException
    except ModuleNotFoundError:  # an untracked command on a machine without MLflow
        MlflowException = _NeverRaised

    try:
        try:
            code = main() or 0
        except BaseException as err:  # a lock, a full disk, a lost connection that persisted
            if is_passing_fault(err):
                fail(fault_line(err))
            raise
    except (ValueError, DataError, NonFiniteLossError, MlflowException) as err:
        fail(first_line(str(err)) or type(err).__name__)
    except RunKilled:  # SIGTERM; a KeyboardInterrupt too, so it comes first
        fail("terminated; the run was marked KILLED", 143)
    except KeyboardInterrupt:
        fail("interrupted; the run was marked KILLED", 130)
    raise SystemExit(code)
