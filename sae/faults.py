"""Passing faults of the stores and the machine (a lock held, a full disk, a lost connection):
told apart from a trial's own failures, retried with backoff for a bounded time, and, when they
persist, one console line naming the log file that holds the traceback.

``is_passing_fault`` is the one classifier, walking an exception's whole chain; ``retried`` and
``Retried`` are the one retry, applied where the store calls are made (the MLflow client,
the Optuna storage), never at each call site. A fault that outlasts its retries inside a trial
ends the trial as interrupted (``FaultPersisted``): it is trained again on resume, and never
counts as an outcome of its parameters.

The log is a new file in the system's temporary folder (``sae-fault-<time>-<pid>-<random>.log``),
not beside the store: the store's disk may be the one that is full. Its name is on every line.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import functools
import logging
import os
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import tenacity
from tqdm import tqdm

from sae.errors import one_line
from sae.redact import redact

RETRY_S = 120.0
"""How long a failing store call is tried again: longer than a lock another process holds for
a while (a backup, a long write), short enough that a lasting fault stops the sweep soon."""
FIRST_WAIT_S = 0.5
"""The first wait between two tries; each next one doubles, up to ``MAX_WAIT_S``."""
MAX_WAIT_S = 10.0
OPEN_RETRY_S = 10.0
"""How long a store that has not answered yet is tried when a command opens it: a database that
restarts comes back within it, a wrong host or port (a user's mistake) is said soon."""

_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.ENOLCK}
_SQLITE_MESSAGES = (
    "database is locked",
    "database table is locked",
    "disk i/o error",
    "database or disk is full",
    "locking protocol",
)
_PG_SQLSTATES = ("08", "53", "57P", "40001", "40P01", "55P03")
"""PostgreSQL's error classes of a passing fault: connection lost (08), out of disk, memory or
connections (53), shutting down (57P), serialization failure, deadlock, lock not available."""

T = TypeVar("T")


class FaultPersisted(KeyboardInterrupt):
    """A passing fault outlasted its retries during a trial: the trial ends as interrupted (as on
    Ctrl-C, whose handling everything shares: the run KILLED, the trial FAIL and retried on
    resume) and the sweep stops. Raised ``from`` the fault."""


def chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and every exception behind it: its causes, contexts and a driver's original
    error (SQLAlchemy's ``orig``), each once. A context its raiser suppressed (``raise ...
    from None``: this error, not that one, is what happened) is not behind it."""
    seen: set[int] = set()
    todo = collections.deque([err])  # breadth first: the deepest come last
    while todo:
        e = todo.popleft()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        context = None if e.__suppress_context__ else e.__context__
        todo += [e.__cause__, context, getattr(e, "orig", None)]


def is_passing_fault(err: BaseException) -> bool:
    """True when ``err``, or any exception behind it, is a fault of a store or the machine that
    may pass: a database locked or gone, a full disk or quota, an I/O error, a lost connection,
    Optuna's journal storage not reading back the record it just wrote."""
    return any(_passing(e) for e in chain(err))


def root_fault(err: BaseException) -> BaseException:
    """The deepest passing fault behind ``err`` (what a user can act on), else ``err``."""
    found = [e for e in chain(err) if _passing(e)]
    return found[-1] if found else err


def describe(err: BaseException) -> str:
    """The fault behind ``err`` as one line."""
    fault = root_fault(err)
    if _journal_assertion(fault):
        return "the Optuna journal did not read back the record just written (a write cut short)"
    return one_line(fault)


def _passing(e: BaseException) -> bool:
    if isinstance(e, FaultPersisted):
        return True
    if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
        return True
    if isinstance(e, ConnectionError | TimeoutError):
        return True
    if isinstance(e, sqlite3.OperationalError):
        return str(e).lower().startswith(_SQLITE_MESSAGES)
    if _journal_assertion(e):
        return True
    module = type(e).__module__.split(".")[0]
    if module == "sqlalchemy":
        exc = sys.modules["sqlalchemy.exc"]
        if isinstance(e, exc.DBAPIError) and e.connection_invalidated:
            return True
        return isinstance(e, exc.DisconnectionError | exc.TimeoutError)
    if module == "psycopg":
        psycopg = sys.modules["psycopg"]
        state = getattr(e, "sqlstate", None)
        return isinstance(e, psycopg.OperationalError) and (
            state is None or state.startswith(_PG_SQLSTATES)
        )
    if module == "requests":
        exceptions = sys.modules["requests.exceptions"]
        return isinstance(e, exceptions.ConnectionError | exceptions.Timeout)
    if module == "mlflow":
        # a tracking server's "try again later"; a local store's says why in its cause
        local = e.__cause__ is not None or e.__context__ is not None
        return getattr(e, "error_code", "") == "TEMPORARILY_UNAVAILABLE" and not local
    return False


def _journal_assertion(e: BaseException) -> bool:
    """Optuna's journal storage asserts ("Should not reach.") when the record it just appended
    does not read back: the append was cut short (a full disk) or glued to a cut one."""
    if not isinstance(e, AssertionError) or e.__traceback__ is None:
        return False
    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and "optuna/storages/" in frames[-1].filename.replace("\\", "/")


_local = threading.local()
_warned: set[tuple[str, str]] = set()
"""The faults this process has said on the console, by store: each is one line, however many
calls it fails (every one is in the log)."""
_gave_up: set[str] = set()
"""The stores whose last retry gave up: tried once per call until one succeeds, so that a sweep
stopping on a lasting fault does not wait the whole ``RETRY_S`` again for every call."""


def retried(fn: Callable[..., T], what: str, seconds: float | None = None) -> Callable[..., T]:
    """``fn``, tried again with exponential backoff for ``seconds`` (default ``RETRY_S``) while
    it raises a passing fault of ``what`` (a store, named for the console line). A call made from
    inside another retried call is tried once: its caller retries. The first retry of a fault is
    one warning line naming the log; a fault that persists is raised as it was."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        if getattr(_local, "inside", False):
            return fn(*args, **kwargs)
        _local.inside = True
        try:
            result = _retrying(what, RETRY_S if seconds is None else seconds)(fn, *args, **kwargs)
        except BaseException as err:
            if is_passing_fault(err):
                _gave_up.add(what)
            raise
        finally:
            _local.inside = False
        _gave_up.discard(what)
        return result

    return call


def _retrying(what: str, seconds: float) -> tenacity.Retrying:
    once = what in _gave_up
    stop = tenacity.stop_after_attempt(1) if once else tenacity.stop_after_delay(seconds)

    def warn(state: tenacity.RetryCallState) -> None:
        err = state.outcome.exception()
        if state.attempt_number > 1:
            return
        words = log_fault(err, f"{what}, tried again")
        if (what, describe(err)) not in _warned:  # one line for each fault, not each call
            _warned.add((what, describe(err)))
            line = f"warning: {what}: {describe(err)}; trying again for up to {seconds:g} s"
            tqdm.write(f"{line} {words}", file=sys.stderr)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_passing_fault),
        stop=stop,
        wait=tenacity.wait_exponential(multiplier=FIRST_WAIT_S, max=MAX_WAIT_S),
        before_sleep=warn,
        reraise=True,
    )


class Retried:
    """A mixin: every public method of the object is ``retried`` (the MLflow client, the Optuna
    storages). ``fault_source`` names the store on the console."""

    fault_source = "the store"

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name.startswith("_") or not callable(attr) or not hasattr(attr, "__self__"):
            return attr
        return retried(attr, type(self).fault_source)


_LOG: list[Path] = []


def log_path() -> Path:
    """This process's fault log, created on first use as a new file of its own (``mkstemp``:
    a name no one can guess beforehand and plant a link at, readable by this user alone)."""
    if not _LOG:
        prefix = f"sae-fault-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-"
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".log")
        os.close(fd)
        _LOG.append(Path(name))
    return _LOG[0]


def log_fault(err: BaseException, context: str = "") -> str:
    """Append ``err``'s traceback (credentials masked) to the fault log; returns the words that
    name it, "(details in PATH)", or why it could not be written (the disk may be full)."""
    text = "".join(traceback.format_exception(err))
    try:
        path = log_path()
    except OSError as failed:
        where = tempfile.gettempdir()
        return f"(its traceback could not be written in {where}: {failed.strerror or failed})"
    try:
        with path.open("a", encoding="utf-8") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {context}\n{redact(text)}\n")
    except OSError as failed:
        return f"(its traceback could not be written to {path}: {failed.strerror or failed})"
    return f"(details in {path})"


def fault_line(err: BaseException) -> str:
    """The one console line of a fault that stopped a command, its traceback logged."""
    return (
        f"{describe(err)}: a fault of the stores or the machine (a lock, a full disk, a lost "
        f"connection) that outlasted its retries; nothing counted against a trial: rerun the "
        f"same command once it has cleared {log_fault(err, 'the command stopped')}"
    )


class DivertTracebacks(logging.Filter):
    """A logging filter that moves a library's log records of a passing fault (MLflow logs the
    whole SQLAlchemy traceback of every failed store call) into the fault log, off the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        if err is not None and is_passing_fault(err):
            log_fault(err, f"logged by {record.name}: {message[:200]}")
            return False
        if err is None and _names_passing_fault(message):  # a sidecar's line (system metrics)
            _log_line(f"logged by {record.name}: {message}")
            return False
        return True


def _names_passing_fault(message: str) -> bool:
    """Whether a library's log line quotes a passing fault (it has no exception to walk)."""
    text = message.lower()
    disk = [os.strerror(code).lower() for code in _DISK_ERRNOS]
    return any(words in text for words in (*_SQLITE_MESSAGES, *disk))


def _log_line(line: str) -> None:
    with contextlib.suppress(OSError), log_path().open("a", encoding="utf-8") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {redact(line)}\n")


def divert_tracebacks(*loggers: str) -> None:
    """Install ``DivertTracebacks`` on the named loggers, once."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DivertTracebacks) for f in logger.filters):
            logger.addFilter(DivertTracebacks())
