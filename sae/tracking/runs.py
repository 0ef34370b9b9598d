"""Runs managed by id rather than by a training loop: a sweep's parent run (it outlives its
worker processes), its summary, and the benchmark and report runs."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from sae.names import TAG_DESCRIPTION, TAG_KIND, TAG_REPORT
from sae.tracking.environment import environment_tags
from sae.tracking.lifecycle import run_lifecycle
from sae.tracking.settings import Settings
from sae.tracking.store import client, ensure_experiment


def open_parent_run(
    settings: Settings, experiment: str, run_name: str, tags: dict[str, str], description: str
) -> str:
    """Create a RUNNING run that children name as their parent; end it with ``run_lifecycle``."""
    experiment_id = ensure_experiment(settings, experiment)
    run = client(settings).create_run(
        experiment_id,
        run_name=run_name,
        tags={**environment_tags(), **tags, TAG_DESCRIPTION: description},
    )
    return run.info.run_id


def set_run_status(client: MlflowClient, run_id: str, status: str) -> None:
    """RUNNING reopens a run; FINISHED, FAILED and KILLED end it."""
    if status == "RUNNING":
        client.update_run(run_id, status="RUNNING")
    else:
        client.set_terminated(run_id, status=status)


def run_status(client: MlflowClient, run_id: str) -> str:
    return client.get_run(run_id).info.status


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float]) -> None:
    """Final figures (step 0) in one call."""
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


def log_summary(
    client: MlflowClient,
    run_id: str,
    metrics: dict[str, float],
    tables: dict[str, Any],
    figures: dict[str, Figure],
) -> None:
    """Metrics, CSV tables (pandas frames by artifact path) and figures (by artifact path)."""
    log_metrics(client, run_id, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        for path, frame in tables.items():
            local = Path(tmp) / path
            local.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(local, index=False)
            folder = str(Path(path).parent)
            client.log_artifact(run_id, str(local), artifact_path=None if folder == "." else folder)
    for path, figure in figures.items():
        client.log_figure(run_id, figure, path)


def log_benchmark(
    settings: Settings, metrics: dict[str, float], tags: dict[str, str], files: list[Path]
) -> str:
    """One FINISHED run in the benchmarks experiment: every figure a metric, the machine as tags."""
    experiment_id = ensure_experiment(settings, settings.experiment("benchmarks"))
    mlflow_client = client(settings)
    run = mlflow_client.create_run(
        experiment_id, run_name="benchmark", tags={**environment_tags(), **tags, TAG_KIND: "bench"}
    )
    with run_lifecycle(mlflow_client, run.info.run_id) as run_id:
        log_metrics(mlflow_client, run_id, metrics)
        for path in files:
            mlflow_client.log_artifact(run_id, str(path))
    return run.info.run_id


def log_report(settings: Settings, name: str, folder: str | Path) -> str:
    """Log a report folder as the artifacts of a FINISHED run (kind ``report``, tag ``report``
    = the name) in the report experiment, to browse beside the runs it describes."""
    experiment_id = ensure_experiment(settings, settings.experiment("report"))
    mlflow_client = client(settings)
    run = mlflow_client.create_run(
        experiment_id,
        run_name=f"report-{name}",
        tags={**environment_tags(), TAG_KIND: "report", TAG_REPORT: name},
    )
    with run_lifecycle(mlflow_client, run.info.run_id) as run_id:
        mlflow_client.log_artifacts(run_id, str(folder))
    return run.info.run_id
