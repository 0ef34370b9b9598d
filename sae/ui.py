"""Browse the tracked runs: the MLflow UI on the stores named in ``mlflow.yaml`` and, on request,
optuna-dashboard on the sweep's Optuna storage.

Both run as child processes in their own process groups, bound to 127.0.0.1 by default, each on
its usual port or a free one when that is taken. ``serve`` waits until both answer, prints their
addresses and stops both on Ctrl-C (or SIGTERM), or when either of them dies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sae.tracking import Settings

MLFLOW_PORT = 5000
DASHBOARD_PORT = 8080
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0


class UIError(ValueError):
    """A store is missing or a server could not start; one line for the user."""


def free_port(host: str, preferred: int) -> int:
    """``preferred`` when nothing listens on it, else a port the OS picks (0 picks at once)."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
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
        raise UIError(f"{uri} is a tracking server, which serves its own UI: open it in a browser")
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


def mlflow_command(settings: Settings, host: str, port: int, workers: int = 1) -> list[str]:
    """``mlflow ui`` on the same store and artifact root the runs were logged with.

    Runs keep the artifact location they were logged with; ``--default-artifact-root`` only
    decides where a run created from the UI's server would put its files. One worker (MLflow's
    default is 4) serves one person's browser and starts in half the time.
    """
    return [
        *(sys.executable, "-m", "mlflow", "ui"),
        *("--backend-store-uri", settings.tracking_uri),
        *("--default-artifact-root", settings.artifact_location),
        *("--host", host, "--port", str(port), "--workers", str(workers)),
    ]


_DASHBOARD = (
    "import sys, optuna_dashboard\n"
    "optuna_dashboard.run_server(sys.argv[1], host=sys.argv[2], port=int(sys.argv[3]))\n"
)


def dashboard_command(storage: str, host: str, port: int) -> list[str]:
    """optuna-dashboard's server on the sweep's storage (a journal file or a database URL),
    through its public ``run_server`` and this interpreter (the package has no ``-m`` entry)."""
    return [sys.executable, "-c", _DASHBOARD, storage, host, str(port)]


@dataclass
class Server:
    name: str
    command: list[str]
    url: str
    ready_path: str
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
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
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line]
        return lines[-1].strip() if lines else "no output"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


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


def experiment_links(settings: Settings, url: str) -> list[str]:
    """One line per experiment in the store: its name, run count and page."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    lines = []
    for experiment in client.search_experiments(order_by=["name"]):
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        if experiment.name == "Default" and not runs:
            continue
        count = f"{len(runs)}{'+' if len(runs) == 1000 else ''} runs"
        page = experiment_url(url, experiment.experiment_id)
        lines.append(f"  {experiment.name:<16} {count:>10}  {page}")
    return lines


def experiment_url(url: str, experiment_id: str) -> str:
    """An experiment's runs page. MLflow 3's UI opens on its GenAI view unless told otherwise; the
    query switches it to the model-training view (which it then remembers in the browser)."""
    return f"{url}/#/experiments/{experiment_id}?workflowType=machine_learning"


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = MLFLOW_PORT,
    dashboard: bool = False,
    dashboard_port: int = DASHBOARD_PORT,
    log: Callable[[str], None] = print,
) -> None:
    """Start the servers, print where they are, and keep them until interrupted."""
    check_tracking_store(settings)
    if dashboard:
        check_optuna_storage(settings.optuna_storage)
    logs = Path(tempfile.mkdtemp(prefix="sae-ui-"))
    mlflow_port = free_port(host, port)
    servers = [
        Server(
            "MLflow UI",
            mlflow_command(settings, host, mlflow_port),
            f"http://{host}:{mlflow_port}",
            "/health",
            logs / "mlflow.log",
        )
    ]
    if dashboard:
        board_port = free_port(host, dashboard_port)
        servers.append(
            Server(
                "Optuna dashboard",
                dashboard_command(settings.optuna_storage, host, board_port),
                f"http://{host}:{board_port}",
                "/api/meta",
                logs / "optuna-dashboard.log",
            )
        )
    with _sigterm_as_interrupt():
        try:
            for server in servers:
                server.start()
            wait_until_ready(servers)
            mlflow_url = servers[0].url
            log(f"MLflow UI: {mlflow_url}  (store {settings.tracking_uri})")
            for line in experiment_links(settings, mlflow_url):
                log(line)
            if dashboard:
                log(f"Optuna dashboard: {servers[1].url}  (storage {settings.optuna_storage})")
            log(f"server logs in {logs}; Ctrl-C stops {'both' if dashboard else 'it'}")
            while True:
                for server in servers:
                    if server.exited():
                        raise UIError(f"{server.name} stopped: {server.last_line()}")
                time.sleep(0.5)
        except KeyboardInterrupt:
            log("stopping")
        finally:
            for server in servers:
                server.stop()
