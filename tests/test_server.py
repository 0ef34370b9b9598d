"""`experiments/server.py`: the tracking server for workers on several machines, sign-in required.

On loopback: a server with MLflow's basic-auth app on a temporary SQLite store refuses requests
without credentials (401), with a wrong password (401) and with a foreign Host header (403); a
sweep worker signed in through MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD logs its trial;
and no password is ever on a process's command line, in the output, or in a run's params or tags.
"""

from __future__ import annotations

import base64
import runpy
import secrets
import stat
import sys
import urllib.error
import urllib.request

import optuna
import pytest
from helpers import tiny_data
from helpers_proc import ArgvWatch
from helpers_server import (
    SERVER,
    SWEEP,
    add_user,
    assert_no_secret_in_runs,
    start_server,
)

from sae import names, server, sweep


def test_server_command__stores_and_auth_in_the_environment_none_on_the_command_line(tmp_path):
    cfg = server.TrackingServerConfig(
        backend_store_uri="postgresql+psycopg://sae@db:5432/sae_mlflow",
        artifacts_destination="file:///srv/artifacts",
        auth_db=f"sqlite:///{tmp_path}/users.db",
        host="0.0.0.0",
        port=5123,
        allowed_hosts="mlflow.lab:5123",
        workers=2,
    )
    command = server.server_command(cfg)
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert command[command.index("--allowed-hosts") + 1] == "mlflow.lab:5123"
    assert not any("postgresql" in arg or "sqlite" in arg or "/srv" in arg for arg in command)

    config = server.write_auth_config(cfg, tmp_path)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    assert f"database_uri = sqlite:///{tmp_path}/users.db" in text
    assert "default_permission = READ" in text and "password" not in text
    env = server.server_env(cfg, config)
    assert env["MLFLOW_BACKEND_STORE_URI"] == cfg.backend_store_uri
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "file:///srv/artifacts"
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(config)
    assert len(env[server.SECRET_KEY_ENV]) == 64

    with pytest.raises(ValueError, match="--host 0.0.0.0 opens the server to the network"):
        server.TrackingServerConfig(backend_store_uri="sqlite:///x.db", host="0.0.0.0")
    with pytest.raises(ValueError, match="first start creates the admin user 'admin'"):
        server.check_admin_password(cfg, {})
    server.check_admin_password(cfg, {server.ADMIN_PASSWORD_ENV: "x" * 12})


def test_server_command__a_password_on_its_command_line_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr(
        sys,
        "argv",
        [str(SERVER), "--backend-store-uri", "postgresql://sae:hunter2hunter2@db/sae_mlflow"],
    )
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(SERVER), run_name="__main__")
    assert exit_.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: --backend-store-uri postgresql://sae:***@db/sae_mlflow holds a password or "
        "token, which any local user can read on the command line: drop it from the URL and put "
        "it in ~/.pgpass (or PGPASSFILE, or PGPASSWORD), or the whole URL in "
        "MLFLOW_BACKEND_STORE_URI"
    ]


def _status(url: str, auth: tuple[str, str] | None = None, host: str | None = None) -> int:
    request = urllib.request.Request(url + server.PROTECTED_PATH)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    if host:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_tracking_server__refuses_strangers_and_logs_a_signed_in_worker(
    tmp_path, monkeypatch, capfd
):
    from mlflow.tracking import MlflowClient

    admin_password = secrets.token_urlsafe(18)
    worker_password = secrets.token_urlsafe(18)
    passwords = [admin_password, worker_password]
    with ArgvWatch(passwords) as watch:
        # an environment asking MLflow to drop its Host check must not open the server
        command, url = start_server(
            tmp_path,
            f"sqlite:///{tmp_path}/mlflow.db",
            admin_password,
            MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE="true",
        )
        try:
            port = url.rsplit(":", 1)[1]
            assert _status(url) == 401  # no credentials
            assert _status(url, ("admin", "not-the-password")) == 401
            assert _status(url, ("admin", admin_password)) == 200
            assert _status(url, ("admin", admin_password), host=f"evil.example:{port}") == 403
            add_user(url, admin_password, "sweep", worker_password, monkeypatch)

            # A worker signed in through its environment, run in-process through the sweep's
            # own main (the PostgreSQL test runs two as separate processes).
            storage = tmp_path / "optuna.journal"
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "sweep")
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", worker_password)
            data = tiny_data(tmp_path / "data")
            (tmp_path / "mlflow.yaml").write_text("experiments:\n  sweep: auth-sweep\n")
            monkeypatch.chdir(tmp_path)
            monkeypatch.setattr(
                sys,
                "argv",
                [
                    *(str(SWEEP), "--tracking-uri", url, "--config-file", "mlflow.yaml"),
                    *("--root", data.root, "--manifest", data.manifest, "--epochs", "1"),
                    *("--batch-sizes", "50", "--test-batch-size", "60", "--no-log-model"),
                    *("--trials", "1", "--storage", str(storage)),
                ],
            )
            with pytest.raises(SystemExit) as exit_:
                runpy.run_path(str(SWEEP), run_name="__main__")
            out, err = capfd.readouterr()
            assert exit_.value.code == 0, err[-3000:]

            # What the worker logged, read back as that user.
            study = optuna.load_study(
                study_name="sae-sweep", storage=sweep.make_storage(str(storage))
            )
            (trial,) = study.get_trials()
            client = MlflowClient(tracking_uri=url)
            run = client.get_run(trial.user_attrs[names.ATTR_RUN_ID])
            assert run.info.status == "FINISHED"
            assert run.data.tags[names.TAG_TRIAL_NUMBER] == "0"
            experiment = client.get_experiment_by_name("auth-sweep")
            assert experiment.artifact_location.startswith("mlflow-artifacts:")
            assert len(client.search_runs([experiment.experiment_id])) == 2  # parent and trial
            assert_no_secret_in_runs(client, experiment.experiment_id, passwords)
        finally:
            stopped = command.stop()
            command.close()
    assert stopped == 0
    assert watch.scans > 10 and watch.found == {}
    for text in (out, err, *command.lines):
        assert not any(p in text for p in passwords)
    assert command.lines[-1] == "stopping"
