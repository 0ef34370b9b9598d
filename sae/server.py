"""The MLflow tracking server that sweep workers on several machines log to: sign-in required
(MLflow's basic-auth app), only the named Host headers answered, no store URI or password on any
command line.

Store URIs and the auth configuration reach ``mlflow server`` through its environment; the admin
password comes from the environment (``MLFLOW_AUTH_ADMIN_PASSWORD``, read by MLflow itself) and a
PostgreSQL password from libpq's own sources (``~/.pgpass``, ``PGPASSFILE`` or ``PGPASSWORD``).
"""

from __future__ import annotations

import configparser
import os
import secrets
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sae import hosts
from sae.redact import redact
from sae.tracking import sqlite_file
from sae.ui import JOBS_ENV, Server, connect_host, is_loopback, run_until_stopped, security_env

Permission = Literal["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"]
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
AUTH_CACHE_S = 60
# A request MLflow's basic-auth app refuses without credentials: the self-check after start.
PROTECTED_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"


@dataclass(frozen=True)
class TrackingServerConfig:
    """The tracking server for workers on several machines."""

    backend_store_uri: str | None = None
    """where runs go, e.g. postgresql+psycopg://sae@DBHOST:5432/sae_mlflow, without a password
    (libpq reads it from ~/.pgpass (or PGPASSFILE, or PGPASSWORD)); unset means
    MLFLOW_BACKEND_STORE_URI"""
    artifacts_destination: str = "./mlartifacts"
    """where the server keeps the artifacts it receives (a folder or URI)"""
    auth_db: str = "sqlite:///mlflow-auth.db"
    """the database of users and permissions; the first start creates it with the admin user"""
    admin_username: str = "admin"
    """the admin user created on the first start, with the password in
    $MLFLOW_AUTH_ADMIN_PASSWORD"""
    default_permission: Permission = "READ"
    """what a signed-in user may do with experiments others created"""
    host: str = "127.0.0.1"
    """address to bind; 0.0.0.0 for every interface"""
    port: int = 5000
    """port to listen on"""
    allowed_hosts: str | None = None
    """comma-separated Host headers the server answers (the names workers use, with the port:
    mlflow.lab:5000,10.0.0.5:5000); required for a --host other than loopback; unset means
    127.0.0.1, localhost and [::1] on --port"""
    workers: int = 4
    """server worker processes"""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be a port number, 0-65535, got {self.port}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.default_permission not in Permission.__args__:
            raise ValueError(
                f"unknown permission {self.default_permission!r}; choose one of "
                f"{', '.join(Permission.__args__)}"
            )
        if not is_loopback(self.host) and not self.allowed_hosts:
            raise ValueError(
                f"--host {self.host} opens the server to the network: name the addresses workers "
                "use with --allowed-hosts (e.g. mlflow.lab:5000), so it answers no other Host"
            )


def auth_database(cfg: TrackingServerConfig) -> str:
    """The users' database URI, a relative SQLite file made absolute."""
    path = sqlite_file(cfg.auth_db)
    return cfg.auth_db if path is None else f"sqlite:///{path}"


def write_auth_config(cfg: TrackingServerConfig, folder: Path) -> Path:
    """MLflow's basic-auth configuration, without the admin password (MLflow reads that from
    ``MLFLOW_AUTH_ADMIN_PASSWORD``), in a file only this user can read."""
    parser = configparser.ConfigParser()
    parser["mlflow"] = {
        "default_permission": cfg.default_permission,
        "database_uri": auth_database(cfg),
        "admin_username": cfg.admin_username,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        # Checking a password costs a deliberately slow hash, and a worker makes many requests:
        # a checked one is trusted for a minute (so a changed password or a deleted user takes
        # up to a minute to be refused).
        "auth_cache_ttl_seconds": str(AUTH_CACHE_S),
    }
    config = folder / "basic_auth.ini"
    config.touch(mode=0o600)
    with config.open("w") as out:
        parser.write(out)
    return config


def check_admin_password(cfg: TrackingServerConfig, env: dict[str, str]) -> None:
    """The first start creates the admin user and needs its password; later starts do not."""
    path = sqlite_file(cfg.auth_db)
    if path is not None and not path.exists() and not env.get(ADMIN_PASSWORD_ENV):
        raise ValueError(
            f"the first start creates the admin user {cfg.admin_username!r}: put its password "
            f"(12 characters or more) in {ADMIN_PASSWORD_ENV} "
            f"(read -rs {ADMIN_PASSWORD_ENV}; export {ADMIN_PASSWORD_ENV})"
        )


def allowed_hosts(cfg: TrackingServerConfig) -> list[str]:
    """The Host headers the server answers: ``--allowed-hosts``, else this machine's loopback
    names on its port."""
    if cfg.allowed_hosts:
        return [h.strip() for h in cfg.allowed_hosts.split(",") if h.strip()]
    return hosts.allowed_hosts(cfg.host, cfg.port)


def server_command(cfg: TrackingServerConfig) -> list[str]:
    """``mlflow server`` with the basic-auth app; nothing secret on it."""
    return [
        *(sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"),
        *("--host", cfg.host, "--port", str(cfg.port), "--workers", str(cfg.workers)),
        *("--allowed-hosts", ",".join(allowed_hosts(cfg))),
    ]


def server_env(cfg: TrackingServerConfig, auth_config: Path) -> dict[str, str]:
    """The stores and the auth configuration, through the environment-variable forms of
    ``--backend-store-uri`` and ``--artifacts-destination`` and ``MLFLOW_AUTH_CONFIG_PATH``."""
    assert cfg.backend_store_uri
    # The basic-auth app signs its sign-up form (CSRF) with this key; one made per start unless
    # the user set one (several servers behind one address must share it).
    key = os.environ.get(SECRET_KEY_ENV) or secrets.token_hex(32)
    return {
        **security_env(allowed_hosts(cfg)),  # the user's environment cannot turn it off
        SECRET_KEY_ENV: key,
        "MLFLOW_BACKEND_STORE_URI": cfg.backend_store_uri,
        "MLFLOW_ARTIFACTS_DESTINATION": cfg.artifacts_destination,
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config),
        JOBS_ENV: os.environ.get(JOBS_ENV, "false"),  # GenAI job executors: a sweep needs none
    }


def refuses_anonymous(url: str, host_header: str | None = None) -> bool:
    """Whether the server answers a request without credentials with 401."""
    request = urllib.request.Request(url + PROTECTED_PATH)
    if host_header:
        request.add_header("Host", host_header)
    try:
        with urllib.request.urlopen(request, timeout=5):
            return False
    except urllib.error.HTTPError as err:
        return err.code == 401
    except (urllib.error.URLError, OSError):
        return False


def serve(cfg: TrackingServerConfig, log: Callable[[str], None] = print) -> None:
    """Start the server, check that it refuses anonymous requests, print where it is, and keep it
    until Ctrl-C or SIGTERM."""
    if not cfg.backend_store_uri:
        raise ValueError(
            "no backend store: pass --backend-store-uri or set MLFLOW_BACKEND_STORE_URI"
        )
    folder = Path(tempfile.mkdtemp(prefix="sae-server-"))  # 0700: the config and the log
    check_admin_password(cfg, dict(os.environ))
    env = server_env(cfg, write_auth_config(cfg, folder))
    url = f"http://{connect_host(cfg.host)}:{cfg.port}"
    server = Server(
        "MLflow tracking server", server_command(cfg), url, "/health", folder / "mlflow.log", env
    )
    allowed = [h for h in (cfg.allowed_hosts or "").split(",") if h and "*" not in h]

    def announce() -> None:
        if not refuses_anonymous(url, allowed[0] if allowed else None):
            raise ValueError(f"{url} answered a request without credentials; stopped it")
        log(f"MLflow tracking server, sign-in required: {url}  (listening on {cfg.host})")
        log(f"  store {redact(cfg.backend_store_uri or '')}, artifacts {cfg.artifacts_destination}")
        if cfg.allowed_hosts:
            log(f"  answers Host {cfg.allowed_hosts} only")
        users = redact(auth_database(cfg))
        log(f"  users in {users}; the admin {cfg.admin_username!r} adds accounts at {url}/signup")
        log(f"server log in {folder}; Ctrl-C stops it")

    run_until_stopped([server], announce, log)
