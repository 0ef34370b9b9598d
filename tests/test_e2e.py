"""experiments/train.py as a user runs it: a subprocess, tiny data, a temporary SQLite store."""

import json
import subprocess
import sys
from pathlib import Path

from helpers import tiny_data
from mlflow.tracking import MlflowClient

from sae import metrics as M
from sae import names, tracking
from sae.config import Config

TRAIN = Path(__file__).resolve().parents[1] / "experiments" / "train.py"


def test_train_script__tracks_a_run_that_the_client_reads_back(tmp_path):
    data = tiny_data(tmp_path / "data")
    (tmp_path / "mlflow.yaml").write_text(
        "tracking_uri: sqlite:///store.db\nartifact_location: artifacts\n"
        "experiments:\n  train: e2e\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            str(TRAIN),
            "--root",
            data.root,
            "--manifest",
            data.manifest,
            "--epochs",
            "2",
            "--batch-size",
            "50",
            "--test-batch-size",
            "60",
            "--config-file",
            "mlflow.yaml",
            "--run-name",
            "e2e-run",
            "--no-log-model",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in __import__("os").environ.items() if k != "MLFLOW_TRACKING_URI"},
    )
    assert result.returncode == 0, result.stderr
    assert "epoch 2/2" in result.stderr and "MLflow run" in result.stdout

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/store.db")
    experiment = client.get_experiment_by_name("e2e")
    assert experiment.artifact_location == (tmp_path / "artifacts" / "e2e").as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "e2e-run"
    assert run.data.params["train.epochs"] == "2"
    # params are the dozen fields that define a run; the whole config is config.json
    assert set(run.data.params) == set(tracking.config_params(Config()))
    saved = json.loads(
        Path(client.download_artifacts(run.info.run_id, "config.json", str(tmp_path))).read_text()
    )
    assert saved["data"]["manifest"] == data.manifest
    assert 0 < run.data.metrics[M.TEST_MSE] < 1
    assert run.data.tags[names.TAG_KIND] == "train"
    assert "train.py --root" in run.data.tags[names.TAG_COMMAND]
    assert len(client.get_metric_history(run.info.run_id, M.TEST_MSE)) == 2
    assert (tmp_path / "artifacts" / "e2e").is_dir()
