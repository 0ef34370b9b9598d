"""Two sweep workers sharing a study in PostgreSQL and logging to an MLflow tracking server whose
backend store is PostgreSQL too: the set-up for workers on several machines, on loopback.

Needs the PostgreSQL server on 127.0.0.1:5432 (trust auth). Skipped, with the reason, where it
is missing; under CI=true it must be there, and the test fails if it is not.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import optuna
import pytest
from helpers import tiny_data
from mlflow.tracking import MlflowClient

from sae import sweep, tracking

PG = "postgresql://postgres@127.0.0.1:5432"
SWEEP = Path(__file__).resolve().parents[1] / "experiments" / "sweep.py"


def _admin():
    import psycopg

    return psycopg.connect(
        host="127.0.0.1",
        port=5432,
        user="postgres",
        dbname="test",
        connect_timeout=3,
        autocommit=True,
    )


@pytest.fixture
def databases():
    """Two fresh databases, one for Optuna and one for MLflow, dropped afterwards."""
    try:
        admin = _admin()
    except Exception as err:  # psycopg.OperationalError, or the driver missing
        reason = f"PostgreSQL on 127.0.0.1:5432 is not reachable ({' '.join(str(err).split())})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI=true requires it")
        pytest.skip(reason)
    suffix = uuid.uuid4().hex[:10]
    names = {"optuna": f"sae_test_optuna_{suffix}", "mlflow": f"sae_test_mlflow_{suffix}"}
    with admin.cursor() as cur:
        for name in names.values():
            cur.execute(f"CREATE DATABASE {name}")
    try:
        yield names
    finally:
        with admin.cursor() as cur:
            for name in names.values():
                cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(databases, tmp_path):
    port = _free_port()
    log = open(tmp_path / "mlflow-server.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"{PG}/{databases['mlflow']}",
            "--artifacts-destination",
            (tmp_path / "served-artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                output = (tmp_path / "mlflow-server.log").read_text()[-2000:]
                pytest.fail(f"mlflow server did not start: {output}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_sweep__two_workers_on_postgresql_and_a_tracking_server(tmp_path, databases, mlflow_server):
    data = tiny_data(tmp_path / "data")
    (tmp_path / "mlflow.yaml").write_text("experiments:\n  sweep: pg-sweep\n")
    storage_url = f"{PG}/{databases['optuna']}"
    result = subprocess.run(
        [
            sys.executable,
            str(SWEEP),
            "--trials",
            "4",
            "--workers",
            "2",
            "--storage",
            storage_url,
            "--tracking-uri",
            mlflow_server,
            "--config-file",
            "mlflow.yaml",
            "--root",
            data.root,
            "--manifest",
            data.manifest,
            "--epochs",
            "1",
            "--batch-sizes",
            "50",
            "--test-batch-size",
            "60",
            "--no-log-model",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=400,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert result.returncode == 0, result.stderr[-3000:]

    study = optuna.load_study(study_name="sae-sweep", storage=sweep.make_storage(storage_url))
    trials = study.get_trials()
    finished = [t for t in trials if sweep.counts_as_finished(t)]
    assert 4 <= len(finished) <= 5  # a worker may start one as the other finishes the fourth
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert {t.user_attrs[sweep.ATTR_WORKER] for t in trials}.__len__() == 2

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("pg-sweep")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # served, not local
    runs = client.search_runs([experiment.experiment_id])
    parent_id = study.user_attrs[sweep.STUDY_PARENT_RUN]
    children = {
        r.info.run_id: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id
    }
    assert len(runs) == len(trials) + 1  # no lost and no duplicate runs
    for trial in trials:
        run = children[trial.user_attrs[sweep.ATTR_RUN_ID]]
        assert run.data.tags[tracking.TAG_TRIAL_NUMBER] == str(trial.number)
        assert run.info.status == "FINISHED"
    assert client.get_run(parent_id).info.status == "FINISHED"
    images = client.list_artifacts(next(iter(children)), "images")
    assert images  # artifacts went through the server
