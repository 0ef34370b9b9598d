"""The PostgreSQL server on 127.0.0.1:5432 for tests: scratch databases and roles, made from the
server's maintenance database (``postgres``) and dropped afterwards.

Where nothing listens on the port (connection refused) the test skips, saying so; under CI=true
it fails instead. Any other error (authentication, a missing maintenance database, a timeout)
fails the test: it means a server is there but not usable as the tests expect.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

HOST = "127.0.0.1"
PORT = 5432
SUPERUSER = "postgres"
MAINTENANCE_DB = "postgres"


def require_server() -> None:
    """Skip (locally) or fail (CI=true) when no server listens; return when one does."""
    try:
        with socket.create_connection((HOST, PORT), timeout=3):
            return
    except ConnectionRefusedError:
        reason = f"no PostgreSQL server on {HOST}:{PORT} (connection refused)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI=true requires it")
        pytest.skip(reason)
    except OSError as err:
        pytest.fail(f"PostgreSQL on {HOST}:{PORT} cannot be reached: {err}")


def admin_connection():
    """An autocommit connection to the maintenance database as the superuser."""
    import psycopg

    require_server()
    try:
        return psycopg.connect(
            host=HOST,
            port=PORT,
            user=SUPERUSER,
            dbname=MAINTENANCE_DB,
            connect_timeout=5,
            autocommit=True,
        )
    except psycopg.Error as err:
        pytest.fail(f"PostgreSQL on {HOST}:{PORT} refused the test: {' '.join(str(err).split())}")


def url(database: str, user: str = SUPERUSER, password: str | None = None) -> str:
    """A SQLAlchemy URL with the psycopg (3) driver named, as the README writes them."""
    secret = f":{password}" if password else ""
    return f"postgresql+psycopg://{user}{secret}@{HOST}:{PORT}/{database}"


@contextlib.contextmanager
def scratch_role(password: str) -> Iterator[str]:
    """A login role with ``password``, sent to the server only as a SCRAM verifier computed by
    libpq (as ``createuser --pwprompt`` does), so no server log can show it."""
    from psycopg import sql

    name = f"sae_test_{uuid.uuid4().hex[:10]}"
    with admin_connection() as admin:
        verifier = admin.pgconn.encrypt_password(
            password.encode(), name.encode(), b"scram-sha-256"
        ).decode()
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(verifier)
            )
        )
    try:
        yield name
    finally:
        with admin_connection() as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@contextlib.contextmanager
def scratch_databases(*kinds: str, owner: str = SUPERUSER) -> Iterator[dict[str, str]]:
    """One fresh database per kind (``{"optuna": name, ...}``), owned by ``owner``."""
    from psycopg import sql

    suffix = uuid.uuid4().hex[:10]
    names = {kind: f"sae_test_{kind}_{suffix}" for kind in kinds}
    with admin_connection() as admin:
        for name in names.values():
            admin.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
    try:
        yield names
    finally:
        with admin_connection() as admin:
            for name in names.values():
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def write_passfile(path: Path, user: str, password: str) -> Path:
    """A libpq password file (``~/.pgpass`` format) for this server, readable by its owner only
    (libpq ignores a file others can read)."""
    path.touch(mode=0o600)
    path.write_text(f"{HOST}:{PORT}:*:{user}:{password}\n")
    return path
