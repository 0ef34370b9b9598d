"""A sign-in-required tracking server (`experiments/server.py`) and sweep workers signed in to it,
started as the README's several-machine recipe does, for the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import tiny_data
from helpers_proc import Command

from sae import server, ui

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "experiments" / "server.py"
SWEEP = ROOT / "experiments" / "sweep.py"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any MLflow credentials or URIs of the user's, plus ``extra``."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_TRACKING_", "MLFLOW_AUTH_", "MLFLOW_BACKEND_"))
    }
    return {**keep, **extra}


def start_server(
    folder: Path, backend_store_uri: str, admin_password: str, **env: str
) -> tuple[Command, str]:
    """``experiments/server.py`` on a free loopback port, as the README starts it; its URL."""
    port = ui.free_port("127.0.0.1", 0)
    command = Command(
        [
            *(sys.executable, str(SERVER), "--backend-store-uri", backend_store_uri),
            *("--artifacts-destination", (folder / "served-artifacts").as_uri()),
            *("--auth-db", f"sqlite:///{folder}/mlflow-auth.db"),
            *("--port", str(port), "--workers", "1", "--allowed-hosts", f"127.0.0.1:{port}"),
        ],
        cwd=folder,
        env=clean_env(**{server.ADMIN_PASSWORD_ENV: admin_password}, **env),
    )
    try:
        url = command.wait_for(r"sign-in required: (http://\S+)").group(1)
    except BaseException:
        command.close()
        raise
    return command, url


def run_worker(folder: Path, url: str, user: str, password: str, *flags: str, **env: str):
    """``experiments/sweep.py`` as a worker machine runs it: signed in through the environment."""
    data = tiny_data(folder / "data")
    (folder / "mlflow.yaml").write_text("experiments:\n  sweep: auth-sweep\n")
    return subprocess.run(
        [
            *(sys.executable, str(SWEEP), "--tracking-uri", url, "--config-file", "mlflow.yaml"),
            *("--root", data.root, "--manifest", data.manifest, "--epochs", "1"),
            *("--batch-sizes", "50", "--test-batch-size", "60", "--no-log-model", *flags),
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=500,
        env=clean_env(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password, **env),
    )


def add_user(url: str, admin_password: str, user: str, password: str, monkeypatch) -> None:
    """The admin creates the workers' account through MLflow's own client."""
    from mlflow.server import get_app_client

    with monkeypatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", admin_password)
        get_app_client("basic-auth", tracking_uri=url).create_user(user, password)


def assert_no_secret_in_runs(client, experiment_id: str, secret_values: list[str]) -> None:
    for run in client.search_runs([experiment_id]):
        texts = [*run.data.params.values(), *run.data.tags.values(), *run.data.params]
        leaked = [t for t in texts if any(s in t for s in secret_values)]
        assert not leaked, f"run {run.info.run_name} holds a password"
