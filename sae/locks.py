"""Locks that make "create it if it is not there yet" safe when several commands start at once.

A file store (an Optuna journal, a SQLite database) is locked with ``flock`` on the file itself,
so no lock file is left beside it; a PostgreSQL database with a session advisory lock, so the
lock holds across machines. Both are released when the holder exits, however it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from sae.errors import reason


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created empty if missing) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def postgres_conninfo(url: str) -> str | None:
    """The libpq form of a ``postgresql[+driver]://`` URL, or None for any other URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        return None
    return f"postgresql://{rest}"


@contextlib.contextmanager
def database_lock(url: str, name: str) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock named ``name`` in the database of ``url`` for the block.

    Other kinds of URL get no lock: SQLite files are locked with ``file_lock`` by their callers.
    The password, if any, comes from the URL or libpq's own PGPASSWORD / PGPASSFILE. Raises
    ValueError with the driver's reason, in one line, when the database cannot be reached.
    """
    conninfo = postgres_conninfo(url)
    if conninfo is None:
        yield
        return
    import psycopg

    key = zlib.crc32(name.encode())  # a stable 32-bit key: every process computes the same
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
    except psycopg.Error as err:
        raise ValueError(reason(err, whole=True)) from None
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


@contextlib.contextmanager
def store_lock(url: str, name: str) -> Iterator[None]:
    """The lock that fits the store at ``url``: a file path or ``sqlite:///`` file is flocked,
    a PostgreSQL database advisory-locked under ``name``, anything else left unlocked."""
    if "://" not in url:
        with file_lock(url):
            yield
    elif url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?")[0]
        if path and path != ":memory:":
            with file_lock(path if url.startswith("sqlite:////") else Path(path).resolve()):
                yield
        else:
            yield
    else:
        with database_lock(url, name):
            yield
