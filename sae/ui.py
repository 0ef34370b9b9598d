"""Browse the tracked runs: the MLflow UI on the stores named in ``mlflow.yaml`` and, on request,
optuna-dashboard on the sweep's Optuna storage.

Both run as child processes in their own process groups, bound to 127.0.0.1 by default, each on
its usual port or a free one when that is taken. Each answers only requests addressed to a name of
this machine (``sae.hosts``) and ends with the command that started it, even one killed with
SIGKILL (``sae.tether``). The stores reach them through their environment, never their command
lines (which any local user can read), and every address printed is redacted.
``serve`` waits until both answer, prints their addresses and stops both on Ctrl-C (or SIGTERM),
or when either of them dies.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Experiment, Run

from sae import hosts, tether, tracking
from sae.metrics import TEST_MSE
from sae.names import TAG_STUDY
from sae.redact import redact
from sae.tracking import Settings, views

MLFLOW_PORT = views.DEFAULT_UI_PORT
"""The port links in other stores assume (optuna-dashboard's trial notes)."""
STUDY_LINKS = 5
"""How many studies' views ``experiment_links`` prints per experiment, the most recent."""
DASHBOARD_PORT = 8080
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0
STORAGE_ENV = "SAE_OPTUNA_STORAGE"
"""The environment variable that hands the dashboard its storage URL."""
REMOTE_FLAG = "--allow-remote-without-login"
JOBS_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
# A traceback's last line: "package.module.SomeError: message"
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exit): (?P<message>.+)$")


class UIError(ValueError):
    """A store is missing or a server could not start; one line for the user."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1), which only this machine
    can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name
        return False


def check_host(host: str, allow_remote: bool) -> None:
    """The UI has no login, so binding beyond loopback needs the user's explicit consent."""
    if not is_loopback(host) and not allow_remote:
        raise UIError(
            f"the UI has no login: anyone who can reach {host} could read and delete the runs; "
            f"bind 127.0.0.1 (and use an SSH tunnel), or add {REMOTE_FLAG} to go on"
        )


def free_port(host: str, preferred: int) -> int:
    """``preferred`` when nothing listens on it, else a port the OS picks (0 picks at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host.strip("[]"), port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise UIError(f"no free port on {host}")


def sqlite_path(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` tracking URI, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def check_tracking_store(settings: Settings) -> None:
    """A missing local store is a one-line error naming the command that creates one; a tracking
    server needs no second UI."""
    uri = settings.tracking_uri
    if uri.startswith(("http://", "https://")):
        raise UIError(
            f"{redact(uri)} is a tracking server, which serves its own UI: open it in a browser"
        )
    path = sqlite_path(uri)
    if uri.startswith("file:"):
        path = Path(uri.removeprefix("file://"))
    elif "://" not in uri:
        path = Path(uri)
    if path is not None and not path.exists():
        raise UIError(
            f"no MLflow store at {path}; create one with `make sweep` "
            "(or `python experiments/train.py`)"
        )


def check_optuna_storage(storage: str) -> None:
    if "://" not in storage and not Path(storage).exists():
        raise UIError(f"no Optuna storage at {storage}; create one with `make sweep`")


def mlflow_command(host: str, port: int, workers: int = 1) -> list[str]:
    """``mlflow ui`` without its stores: those come from ``mlflow_env``. One worker (MLflow's
    default is 4) serves one person's browser and starts in half the time."""
    return [
        *(sys.executable, "-m", "mlflow", "ui"),
        *("--host", host, "--port", str(port), "--workers", str(workers)),
    ]


def mlflow_env(settings: Settings) -> dict[str, str]:
    """The store and artifact root the runs were logged with, through the environment-variable
    forms of ``--backend-store-uri`` and ``--default-artifact-root``.

    Runs keep the artifact location they were logged with; the artifact root only decides where
    a run created from the UI's server would put its files. MLflow's job executors (half a dozen
    processes for GenAI jobs) stay off unless the user's environment turns them on.
    """
    return {
        "MLFLOW_BACKEND_STORE_URI": settings.tracking_uri,
        "MLFLOW_DEFAULT_ARTIFACT_ROOT": settings.artifact_location,
        JOBS_ENV: os.environ.get(JOBS_ENV, "false"),
    }


def security_env(allowed_hosts: list[str]) -> dict[str, str]:
    """MLflow's security middleware on, answering only ``allowed_hosts`` and no other origin
    than the localhost ones it always allows, whatever the user's environment says."""
    return {
        "MLFLOW_SERVER_ALLOWED_HOSTS": ",".join(allowed_hosts),
        "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": "",
        "MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE": "false",
    }


_DASHBOARD = (
    "import os, sys\n"
    "from sae import hosts\n"
    "from sae.sweep import dashboard\n"
    f"storage = os.environ.pop({STORAGE_ENV!r})\n"
    "hosts.serve(dashboard.app(storage), sys.argv[1], int(sys.argv[2]))\n"
)


def dashboard_command(host: str, port: int) -> list[str]:
    """optuna-dashboard's app showing the sweep's front (``sae.sweep.dashboard.app``, over its
    public ``wsgi``) in this interpreter (the package has no ``-m`` entry), served behind
    ``hosts.HostGuard`` (optuna-dashboard's own ``run_server`` answers any Host); the storage
    comes from ``dashboard_env``."""
    return [sys.executable, "-c", _DASHBOARD, host, str(port)]


def dashboard_env(storage: str) -> dict[str, str]:
    """The sweep's storage (a journal file or a database URL) for the dashboard's environment."""
    return {STORAGE_ENV: storage}


@dataclass
class Server:
    name: str
    command: list[str]
    url: str
    ready_path: str
    log: Path
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start it under ``sae.tether``'s guard, which stops its process group when this
        process ends, however it ends."""
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                tether.command(self.command),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,  # its own process group: its workers stop with it
            )

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def last_line(self) -> str:
        """Why it failed, from its log: the last exception's message, else the last line."""
        lines = [line.strip() for line in self.log.read_text(errors="replace").splitlines()]
        errors = [m["message"] for line in lines if (m := _EXCEPTION.match(line))]
        lines = errors or [line for line in lines if line]
        return redact(lines[-1]) if lines else "no output"

    def terminate(self) -> None:
        """SIGTERM to its whole process group."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> None:
        """Until no process of its group runs; SIGKILL for the group after ``deadline``."""
        if self.process is None:
            return
        pgid = self.process.pid
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(max(deadline - time.monotonic(), 0))
        while tether.live_in_group(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if tether.live_in_group(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        self.process.wait()


def stop_all(servers: list[Server], timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop every server's process group: SIGTERM to all at once, SIGKILL what outlives
    ``timeout``."""
    for server in servers:
        server.terminate()
    deadline = time.monotonic() + timeout
    for server in servers:
        server.wait_stopped(deadline)


def wait_until_ready(servers: list[Server], timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(servers)
    while waiting:
        for server in list(waiting):
            if server.exited():
                raise UIError(f"{server.name} did not start: {server.last_line()}")
            if server.answers():
                waiting.remove(server)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(s.name for s in waiting)
            raise UIError(f"{names} did not answer within {timeout:.0f} s (log: {waiting[0].log})")
        if waiting:
            time.sleep(0.25)


@contextlib.contextmanager
def _stop_signals_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the block as Ctrl-C does (a service manager stops the UI with it)."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """A second Ctrl-C or SIGTERM must not cut the servers' shutdown short and leave them
    running."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_until_stopped(
    servers: list[Server], announce: Callable[[], None], log: Callable[[str], None] = print
) -> None:
    """Start the servers, wait until they answer, ``announce`` them, and keep them until Ctrl-C
    or SIGTERM (one line, "stopping") or until one of them dies; then stop them all."""
    with _stop_signals_as_interrupt():
        try:
            for server in servers:
                server.start()
            wait_until_ready(servers)
            announce()
            while True:
                for server in servers:
                    if server.exited():
                        raise UIError(f"{server.name} stopped: {server.last_line()}")
                time.sleep(0.5)
        except KeyboardInterrupt:
            log("stopping")
        finally:
            with _shielded():
                stop_all(servers)


def connect_host(host: str) -> str:
    """The address to reach a server bound to ``host`` from this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host.strip("[]") == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def experiment_links(settings: Settings, url: str) -> list[str]:
    """One line per experiment in the store (checked to exist first): name, run count and its
    landing page (``landing_url``), then a line per study with a saved view, the most recent
    ``STUDY_LINKS`` of them."""
    client = tracking.client(settings)
    lines = []
    for experiment in client.search_experiments(order_by=["name"]):
        runs = client.search_runs(
            [experiment.experiment_id], max_results=1000, order_by=["attributes.start_time DESC"]
        )
        if experiment.name == "Default" and not runs:
            continue
        count = f"{len(runs)}{'+' if len(runs) == 1000 else ''} runs"
        lines.append(f"  {experiment.name:<16} {count:>10}  {landing_url(url, experiment, runs)}")
        lines += study_links(url, experiment, runs)
    return lines


def landing_url(url: str, experiment: Experiment, runs: list[Run]) -> str:
    """The experiment's saved landing view; in a store older than those, its trained runs sorted
    by test MSE through the URL; its plain runs page when no run was trained (benchmarks)."""
    experiment_id = experiment.experiment_id
    if views.SHARED_VIEW_TAG + views.EXPERIMENT_VIEW in experiment.tags:
        return views.view_url(url, experiment_id, views.EXPERIMENT_VIEW)
    if any(TEST_MSE in run.data.metrics for run in runs):
        return views.sorted_url(url, experiment_id)
    return views.runs_page(url, experiment_id)


def study_links(url: str, experiment: Experiment, runs: list[Run]) -> list[str]:
    """A line per study of ``runs`` (newest first) whose view is saved: at most STUDY_LINKS, then
    a line counting the others (the UI's Views menu lists them all)."""
    studies = dict.fromkeys(r.data.tags[TAG_STUDY] for r in runs if TAG_STUDY in r.data.tags)
    keys = {s: views.study_view_key(s) for s in studies}
    saved = [s for s in studies if views.SHARED_VIEW_TAG + keys[s] in experiment.tags]
    lines = [  # the links in the experiments' column
        f"    study {study:<19}  {views.view_url(url, experiment.experiment_id, keys[study])}"
        for study in saved[:STUDY_LINKS]
    ]
    if (older := len(saved) - STUDY_LINKS) > 0:
        noun = "study" if older == 1 else "studies"
        lines.append(f"    {older} older {noun}: in the UI's Views menu")
    return lines


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = MLFLOW_PORT,
    dashboard: bool = False,
    dashboard_port: int = DASHBOARD_PORT,
    allow_remote: bool = False,
    log: Callable[[str], None] = print,
) -> None:
    """Start the servers, print where they are, and keep them until interrupted."""
    check_host(host, allow_remote)
    check_tracking_store(settings)
    if dashboard:
        check_optuna_storage(settings.optuna_storage)
    logs = Path(tempfile.mkdtemp(prefix="sae-ui-"))  # private (0700): the logs may name stores
    address = connect_host(host)
    mlflow_port = free_port(host, port)
    servers = [
        Server(
            "MLflow UI",
            mlflow_command(host, mlflow_port),
            f"http://{address}:{mlflow_port}",
            "/health",
            logs / "mlflow.log",
            env={**mlflow_env(settings), **security_env(hosts.allowed_hosts(host, mlflow_port))},
        )
    ]
    if dashboard:
        board_port = free_port(host, dashboard_port)
        servers.append(
            Server(
                "Optuna dashboard",
                dashboard_command(host, board_port),
                f"http://{address}:{board_port}",
                "/api/meta",
                logs / "optuna-dashboard.log",
                env=dashboard_env(settings.optuna_storage),
            )
        )

    def announce() -> None:
        mlflow_url = servers[0].url
        if not is_loopback(host):
            log(f"warning: no login: anyone who can reach {host} can read and delete the runs")
        log(f"MLflow UI: {mlflow_url}  (store {redact(settings.tracking_uri)})")
        for line in experiment_links(settings, mlflow_url):
            log(line)
        if dashboard:
            storage = redact(settings.optuna_storage)
            log(f"Optuna dashboard: {servers[1].url}  (storage {storage})")
            if mlflow_port != MLFLOW_PORT:
                log(
                    f"note: the dashboard's trial links point at {views.DEFAULT_UI_URL}, the "
                    f"default port, not this UI: free port {MLFLOW_PORT} (`lsof -i :{MLFLOW_PORT}` "
                    "names what holds it) and start this again without --port to follow them"
                )
        log(f"server logs in {logs}; Ctrl-C stops {'both' if dashboard else 'it'}")

    run_until_stopped(servers, announce, log)
