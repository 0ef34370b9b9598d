"""Ctrl-C and SIGTERM during a run: noted by the signal handler, raised at the next safe point.

Not about MLflow: training steps and a sweep's trials check in here between units of work.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class RunKilled(KeyboardInterrupt):
    """Raised in the main thread when the process received SIGTERM during a tracked run.

    A KeyboardInterrupt, so that everything that handles Ctrl-C (Optuna failing the trial in
    flight, our runs ending KILLED) handles SIGTERM the same way."""


_pending: list[int] = []
"""The signal received inside ``interrupts_deferred`` and not raised yet."""
_depth = 0
"""How many ``interrupts_deferred`` blocks are open in the main thread."""
_escalate = True
"""The outermost block's ``escalate``."""
_previous: dict[int, Any] = {}
"""The handlers the outermost block replaced, restored when the last block ends."""


def _interruption(signum: int) -> KeyboardInterrupt:
    return (
        RunKilled(f"received signal {signum}") if signum == signal.SIGTERM else KeyboardInterrupt()
    )


@contextlib.contextmanager
def interrupts_deferred(escalate: bool = True) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT (in the main thread) only note the interruption, and
    ``check_interrupted()`` raises it at the next safe point (every training step of a tracked
    run, between trials): RunKilled for SIGTERM, KeyboardInterrupt for Ctrl-C.

    An exception raised straight from a signal handler lands wherever the main thread happens to
    be, including a garbage-collection callback, where Python drops it and the run goes on as if
    nothing happened (seen: a SIGTERM lost that way left a sweep training). With ``escalate``, a
    second signal raises at once, for a user who does not want to wait; a worker process, which
    its parent stops (and kills if it must), leaves it off.
    """
    global _depth, _escalate
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # One set of handlers for the outermost block: blocks may end in any order (a population's
    # members each hold one and end when they end), so no block restores another's handlers.
    if _depth == 0:
        _escalate = escalate
        _previous.update(
            {sig: signal.signal(sig, _note) for sig in (signal.SIGTERM, signal.SIGINT)}
        )
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            for sig, handler in _previous.items():
                signal.signal(sig, handler)
            _previous.clear()
            _pending.clear()


def _note(signum: int, _frame: Any) -> None:
    """The handler inside ``interrupts_deferred``: note the first signal, raise at a second."""
    if not _pending:
        _pending.append(signum)
    elif _escalate:
        raise _interruption(signum)


def check_interrupted() -> None:
    """Raise the interruption noted by ``interrupts_deferred``, if any."""
    if _pending:
        raise _interruption(_pending[0])
