"""`sae.hosts`: the Host and Origin headers a server started here answers (DNS rebinding and
cross-site requests refused), checked on the WSGI middleware in front of optuna-dashboard."""

from __future__ import annotations

import socket

import pytest

from sae import hosts

PORT = 8080


def _call(guard: hosts.HostGuard, method: str = "GET", **headers: str) -> tuple[str, bool]:
    """(status, whether the app behind was reached) of one request through ``guard``."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": "/api/studies/0"}
    environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    statuses = []
    reached = guard(environ, lambda status, _headers: statuses.append(status))
    return statuses[0], reached == [b"app"]


def _app(_environ, start_response):
    start_response("200 OK", [])
    return [b"app"]


@pytest.fixture
def guard() -> hosts.HostGuard:
    return hosts.HostGuard(_app, hosts.allowed_hosts("127.0.0.1", PORT))


@pytest.mark.parametrize("method", ["GET", "DELETE", "POST"])
@pytest.mark.parametrize(
    "host", ["evil.example:8080", "127.0.0.1.evil.example:8080", "127.0.0.1:9999", "", "[::2]:8080"]
)
def test_host_guard__refuses_a_foreign_host_whatever_the_method(guard, host, method):
    """Fix: optuna-dashboard answered any Host, so a page that rebinds its own name to
    127.0.0.1 could delete a study (``DELETE /api/studies/0`` with ``Host: evil.example``)."""
    assert _call(guard, method, host=host) == ("403 Forbidden", False)


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080", "[::1]:8080"]
)
def test_host_guard__serves_the_loopback_names_on_its_port(guard, host):
    assert _call(guard, "GET", host=host) == ("200 OK", True)
    assert _call(guard, "DELETE", host=host, origin=f"http://{host.lower()}") == ("200 OK", True)


def test_host_guard__refuses_a_change_from_a_page_of_another_origin(guard):
    """A cross-site form or fetch carries the right Host but another Origin: no change from it
    (a read is left to the browser's same-origin policy); a client without Origin is no page."""
    host = f"127.0.0.1:{PORT}"
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{PORT + 1}", "file://"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert _call(guard, method, host=host, origin=origin) == ("403 Forbidden", False)
    assert _call(guard, "GET", host=host, origin="http://evil.example") == ("200 OK", True)
    assert _call(guard, "POST", host=host) == ("200 OK", True)


def test_allowed_hosts__loopback_names_the_bound_host_and_private_addresses_for_a_wildcard():
    loopback = ["127.0.0.1:5000", "localhost:5000", "[::1]:5000"]
    assert hosts.allowed_hosts("127.0.0.1", 5000) == loopback
    assert hosts.allowed_hosts("::1", 5000) == loopback
    assert hosts.allowed_hosts("10.0.0.5", 5000) == [*loopback, "10.0.0.5:5000"]
    wildcard = hosts.allowed_hosts("0.0.0.0", 5000)
    assert wildcard[:4] == [*loopback, f"{socket.gethostname().lower()}:5000"]
    for header, answered in [
        ("192.168.1.20:5000", True),
        ("10.1.2.3:5000", True),
        ("[fd00::5]:5000", True),
        ("192.168.1.20:5001", False),
        ("evil.example:5000", False),
        ("8.8.8.8:5000", False),
    ]:
        assert hosts.host_allowed(header, wildcard) is answered, header
    assert "localhost" in hosts.allowed_hosts("127.0.0.1", 80)  # no port: the default one
