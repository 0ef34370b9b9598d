"""Which requests a server started here answers: only those addressed to it by a name of this
machine, so that a web page that rebinds its own domain name to 127.0.0.1 (DNS rebinding) gets
403, and a state-changing request only from a page of its own origin.

The names: ``127.0.0.1``, ``localhost`` and ``[::1]`` with the server's port, the host it was
bound to, and for a wildcard bind (0.0.0.0, ::) also this machine's name and the private address
ranges (MLflow's own defaults). The same list configures MLflow's security middleware (through
``MLFLOW_SERVER_ALLOWED_HOSTS``) and ``HostGuard``, a WSGI middleware in front of
optuna-dashboard, which has none.
"""

from __future__ import annotations

import fnmatch
import socket
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARDS = ("0.0.0.0", "::", "[::]", "")
PRIVATE_RANGES = (
    "10.*",
    "192.168.*",
    *(f"172.{i}.*" for i in range(16, 32)),
    "[[]fc*",
    "[[]fd*",
)
"""fnmatch patterns of private addresses (RFC 1918, RFC 4193), as MLflow allows them."""
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REFUSED_HOST = b"403 Forbidden: this server answers only its own host names (DNS rebinding?)\n"
REFUSED_ORIGIN = b"403 Forbidden: a change requested by a page of another origin\n"


def _bracketed(host: str) -> str:
    """An IPv6 address as it stands in a Host header: ``[::1]``."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_hosts(host: str, port: int) -> list[str]:
    """The Host header values (``name:port``; fnmatch patterns) a server bound to ``host:port``
    answers."""
    names = [*LOOPBACK_NAMES, _bracketed(host.lower())]
    if host in WILDCARDS:
        names = [*LOOPBACK_NAMES, socket.gethostname().lower(), *PRIVATE_RANGES]
    hosts = [f"{name}:{port}" for name in dict.fromkeys(n for n in names if n not in WILDCARDS)]
    if port == 80:  # a browser leaves the default port out
        hosts += [h.removesuffix(":80") for h in hosts]
    return hosts


def host_allowed(header: str, allowed: Iterable[str]) -> bool:
    """Whether a Host header (``name:port``) is one of ``allowed``, names case-insensitive."""
    header = header.strip().lower()
    if not header:
        return False
    return any(
        fnmatch.fnmatchcase(header, pattern) if "*" in pattern else header == pattern
        for pattern in allowed
    )


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """Whether an Origin header (``http://name:port``) names one of the ``allowed`` hosts."""
    parts = urlsplit(origin.strip())
    return parts.scheme in ("http", "https") and host_allowed(parts.netloc, allowed)


class HostGuard:
    """WSGI middleware: 403 for a request whose Host is not allowed, and for a state-changing
    one (POST, PUT, PATCH, DELETE) that a browser sent from a page of another origin (its
    Origin header; a client that sends none, such as curl, is no browser page)."""

    def __init__(self, app: Callable[..., Any], allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = [a.lower() for a in allowed]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        refused = None
        if not host_allowed(environ.get("HTTP_HOST", ""), self.allowed):
            refused = REFUSED_HOST
        elif environ.get("REQUEST_METHOD", "").upper() in STATE_CHANGING:
            origin = environ.get("HTTP_ORIGIN")
            if origin is not None and not origin_allowed(origin, self.allowed):
                refused = REFUSED_ORIGIN
        if refused is None:
            return self.app(environ, start_response)
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(refused)))]
        start_response("403 Forbidden", headers)
        return [refused]


class _Quiet(WSGIRequestHandler):
    """No line per request in the server's log: its last line should say why it stopped."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(app: Callable[..., Any], host: str, port: int) -> None:
    """Serve the WSGI ``app`` behind ``HostGuard`` on ``host:port`` until the process ends
    (wsgiref, one request at a time, as optuna-dashboard's own ``run_server`` does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("Server", (WSGIServer,), {"address_family": family})
    guarded = HostGuard(app, allowed_hosts(host, port))
    make_server(host.strip("[]"), port, guarded, server_class, _Quiet).serve_forever()
