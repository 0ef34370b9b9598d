"""Reading runs back for the report: runs and curves as frames, images and other artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from sae.internals import metric_histories
from sae.names import TAG_PARENT_RUN, TAG_RUN_NAME, tag_column
from sae.tracking.artifacts import IMAGES_DIR, reconstruction_epoch
from sae.tracking.settings import Settings
from sae.tracking.store import client

RUN_COLUMNS = (
    "run_id",
    "run_name",
    "experiment",
    "status",
    "start_time",
    "end_time",
    "parent_run_id",
)
"""The first columns of ``runs_frame``; metric, ``params.*`` and ``tags.*`` columns follow."""
CURVE_COLUMNS = ("run_id", "metric", "epoch", "value")
_RUNS_PER_PAGE = 10_000


def runs_frame(
    settings: Settings, experiment_names: list[str] | tuple[str, ...], filter_string: str = ""
) -> pd.DataFrame:
    """One row per run of the named experiments matching ``filter_string``, from one search.

    Columns: RUN_COLUMNS (times as UTC timestamps), then one column per metric named by its key
    (its final value, that of the last step), then ``params.<name>`` and ``tags.<name>``, each
    group sorted. Rows are sorted by start time then run id. Experiments that do not exist are
    left out; none at all gives an empty frame with RUN_COLUMNS.
    """
    mlflow_client = client(settings)
    names = {}
    for name in dict.fromkeys(experiment_names):
        found = mlflow_client.get_experiment_by_name(name)
        if found is not None:
            names[found.experiment_id] = name
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in RUN_COLUMNS})
    if not names:
        return empty
    raw = _search_frame(_search_runs(mlflow_client, sorted(names), filter_string))
    if raw.empty:
        return empty
    metrics = {c: c.removeprefix("metrics.") for c in raw.columns if c.startswith("metrics.")}
    frame = raw.rename(columns=metrics)
    frame["experiment"] = frame["experiment_id"].map(names)
    frame["run_name"] = frame.get(tag_column(TAG_RUN_NAME))
    frame["parent_run_id"] = frame.get(tag_column(TAG_PARENT_RUN))
    rest = sorted(metrics.values()) + sorted(c for c in raw.columns if c.startswith("params."))
    rest += sorted(c for c in raw.columns if c.startswith("tags."))
    frame = frame[list(RUN_COLUMNS) + rest].sort_values(["start_time", "run_id"])
    return frame.reset_index(drop=True)


def experiment_names(settings: Settings) -> list[str]:
    """The names of every experiment in the store, sorted (deleted ones left out)."""
    mlflow_client = client(settings)
    found, token = [], None
    while True:
        page = mlflow_client.search_experiments(page_token=token)
        found += [experiment.name for experiment in page]
        token = page.token
        if not token:
            return sorted(found)


def _search_runs(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list:
    """Every run matching the filter, page after page."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string, max_results=_RUNS_PER_PAGE, page_token=token
        )
        runs += page
        token = page.token
        if not token:
            return runs


def _search_frame(runs: list) -> pd.DataFrame:
    """The runs as ``mlflow.search_runs(output_format="pandas")`` lays them out: info columns,
    then ``metrics.*`` (NaN where missing), ``params.*`` and ``tags.*`` (None where missing)."""
    if not runs:
        return pd.DataFrame()
    data: dict[str, list] = {
        "run_id": [r.info.run_id for r in runs],
        "experiment_id": [r.info.experiment_id for r in runs],
        "status": [r.info.status for r in runs],
        "artifact_uri": [r.info.artifact_uri for r in runs],
        "start_time": [pd.to_datetime(r.info.start_time, unit="ms", utc=True) for r in runs],
        "end_time": [pd.to_datetime(r.info.end_time, unit="ms", utc=True) for r in runs],
    }
    for prefix, missing in (("metrics", np.nan), ("params", None), ("tags", None)):
        values = [getattr(r.data, prefix) for r in runs]
        for key in sorted({k for v in values for k in v}):
            data[f"{prefix}.{key}"] = [v.get(key, missing) for v in values]
    return pd.DataFrame(data)


def curves_frame(
    settings: Settings,
    run_ids: list[str] | tuple[str, ...],
    metric_keys: list[str] | tuple[str, ...],
) -> pd.DataFrame:
    """The per-epoch values of ``metric_keys`` for ``run_ids``: one row per (run, epoch, metric),
    columns CURVE_COLUMNS, sorted. Per-epoch metrics are logged with step = epoch.

    Read through ``sae.internals.metric_histories``: one query per metric for many runs on a SQL
    store, one per (run, metric) elsewhere.
    """
    mlflow_client = client(settings)
    run_ids = sorted(set(run_ids))
    rows = [
        (run_id, key, step, value, timestamp)
        for key in metric_keys
        for run_id, step, value, timestamp in metric_histories(mlflow_client, run_ids, key)
    ]
    frame = pd.DataFrame(rows, columns=[*CURVE_COLUMNS, "timestamp"])
    frame["epoch"] = frame["epoch"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    # a value logged twice at one step (a resumed run) counts once: the later one
    frame = frame.sort_values([*CURVE_COLUMNS[:3], "timestamp", "value"])
    frame = frame.drop_duplicates(list(CURVE_COLUMNS[:3]), keep="last")
    return frame[list(CURVE_COLUMNS)].reset_index(drop=True)


def latest_image(settings: Settings, run_id: str) -> str | None:
    """The artifact path of the run's last reconstruction grid (highest epoch), else None."""
    found = [
        (epoch, info.path)
        for info in client(settings).list_artifacts(run_id, IMAGES_DIR)
        if (epoch := reconstruction_epoch(info.path)) is not None
    ]
    return max(found)[1] if found else None


def download_artifact(settings: Settings, run_id: str, path: str, dst: str | Path) -> Path:
    """Copy one artifact of the run into the folder ``dst``; returns the local path."""
    Path(dst).mkdir(parents=True, exist_ok=True)
    return Path(client(settings).download_artifacts(run_id, path, str(dst)))
