"""Everything that talks to MLflow: settings, runs, their status, and what a run logs.

A run is opened with ``tracked_run()``; the ``Tracker`` it yields is a training callback that
buffers metrics in memory and writes them in one ``log_batch`` per epoch, so tracking stays a small
fraction of an epoch's wall time.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# MLflow's own artifact progress bars would interleave with ours on every logged model.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow
import numpy as np
import pandas as pd
import torch
import yaml
from matplotlib.figure import Figure
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import (
    DatasetInput,
    InputTag,
    LoggedModelOutput,
    LoggedModelStatus,
    Metric,
    Param,
    RunStatus,
    RunTag,
)
from mlflow.tracking import MlflowClient

from sae import metrics as M
from sae.config import Config
from sae.internals import metric_histories
from sae.model import LAYER_NAMES, Reconstructor, SparseAutoencoder
from sae.names import (  # noqa: F401  (re-exported: older call sites use these here)
    EXPERIMENT_KIND,
    TAG_COMMAND,
    TAG_DATA_DIGEST,
    TAG_DATASET_CONTEXT,
    TAG_DESCRIPTION,
    TAG_DEVICE,
    TAG_ERROR,
    TAG_EXPERIMENT_KIND,
    TAG_GIT_COMMIT,
    TAG_HOST,
    TAG_KIND,
    TAG_MLFLOW,
    TAG_MODEL_URI,
    TAG_PARENT_RUN,
    TAG_REPORT,
    TAG_STUDY,
    TAG_TORCH,
    TAG_TRIAL_NUMBER,
    TAG_TRIAL_STATE,
)
from sae.redact import redact, redact_values
from sae.train import Callback, Splits

# Tags every run carries.

# Sweeps: a parent run per study, a nested child run per trial.

# Artifacts.
IMAGES_DIR = "images"
"""Per epoch, 16 fixed test images (top) over their reconstructions: ``reconstruction_file``."""
HISTOGRAMS_FILE = "plots/activation_histograms.png"
CURVES_FILE = "plots/learning_curves.png"
CONFIG_FILE = "config.json"
MODEL_NAME = "model"
N_FIXED_IMAGES = 16
N_HISTOGRAM_IMAGES = 1000

DEFAULT_SETTINGS_FILE = "mlflow.yaml"
_SETTINGS_KEYS = {"tracking_uri", "artifact_location", "experiments", "optuna_storage"}


class SettingsError(ValueError):
    """mlflow.yaml cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Settings:
    """Where runs go: read from mlflow.yaml, overridden by MLFLOW_TRACKING_URI and flags."""

    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlartifacts"
    experiments: dict[str, str] = field(
        default_factory=lambda: {"train": "sae-train", "baseline": "sae-baseline"}
    )
    optuna_storage: str = "optuna.journal"
    """The sweep's Optuna storage: a journal file path (safe for parallel workers on one
    machine) or a database URL such as postgresql+psycopg://... for workers on several machines."""

    def experiment(self, kind: str) -> str:
        return self.experiments.get(kind, f"sae-{kind}")


def load_settings(
    path: str | Path = DEFAULT_SETTINGS_FILE, tracking_uri: str | None = None
) -> Settings:
    """Read ``path``; relative store paths in it are taken relative to the file's folder.

    Precedence for the tracking URI: the ``tracking_uri`` argument (a flag), then the
    MLFLOW_TRACKING_URI environment variable, then the file.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a settings file" if path.is_dir() else "does not exist"
        raise SettingsError(
            f"{path} {what}: run from the project folder (it holds mlflow.yaml) "
            "or pass --config-file FILE"
        )
    try:
        loaded = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SettingsError(f"{path}: not valid YAML ({first})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise SettingsError(f"{path}: expected a mapping of settings at the top level")
    raw: dict[str, Any] = loaded or {}
    unknown = set(raw) - _SETTINGS_KEYS
    if unknown:
        raise SettingsError(f"{path}: unknown key {sorted(unknown)[0]!r}")
    defaults = Settings()
    for key in ("tracking_uri", "artifact_location", "optuna_storage"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key]):
            raise SettingsError(f"{path}: key {key!r} must be a non-empty string")
    experiments = raw.get("experiments", defaults.experiments)
    if not isinstance(experiments, dict) or not all(
        isinstance(v, str) and v for v in experiments.values()
    ):
        raise SettingsError(f"{path}: key 'experiments' must map kinds to experiment names")

    base = path.resolve().parent
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or raw.get("tracking_uri")
    uri = uri or defaults.tracking_uri
    check_tracking_uri(uri)
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(base / uri.removeprefix("sqlite:///"))
    artifacts = raw.get("artifact_location", defaults.artifact_location)
    if "://" not in artifacts:
        artifacts = (base / artifacts).resolve().as_uri()
    storage = raw.get("optuna_storage", defaults.optuna_storage)
    if "://" not in storage:
        storage = str((base / storage).resolve())
    return Settings(
        tracking_uri=uri,
        artifact_location=artifacts,
        experiments=dict(experiments),
        optuna_storage=storage,
    )


TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "file")
"""The tracking URI schemes the suite accepts (a ``+driver`` suffix allowed), besides a folder."""


def check_tracking_uri(uri: str) -> None:
    """Raise SettingsError, in one line, for a URI no MLflow tracking store can live at."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return  # a folder: MLflow's file store
    if scheme.split("+")[0] not in TRACKING_SCHEMES or not rest:
        raise SettingsError(
            f"tracking URI {redact(uri)!r} is not one MLflow can store runs at: use "
            "sqlite:///FILE, postgresql://USER@HOST/DB, http(s)://SERVER or a folder"
        )


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working folder), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?")[0]
    return None if path in ("", ":memory:") else Path(path).resolve()


_READY: set[str] = set()
"""The tracking URIs this process has already created or checked."""


@contextlib.contextmanager
def _quiet_store_logs() -> Iterator[None]:
    """Keep the INFO lines and deprecation warnings of creating a store off a user's console."""
    loggers = [logging.getLogger(n) for n in ("mlflow.store.db.utils", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def ensure_store(uri: str) -> None:
    """Create the store at ``uri`` if it is new, safely when other processes do the same at the
    same moment, and check that it opens. Raises ValueError, in one line, when it does not.

    A new SQLite store is built whole under a private name and then linked into place, which
    fails if another process got there first: no process ever sees a half-built store, and a
    process killed while building leaves only its private file. A PostgreSQL store is created
    under an advisory lock.
    """
    if uri in _READY:
        return
    from sae.locks import database_lock

    path = sqlite_file(uri)
    with _quiet_store_logs():
        try:
            if path is not None and not path.exists():
                _create_sqlite_store(path)
            with database_lock(uri, "sae: create the MLflow store"):
                MlflowClient(uri).search_experiments(max_results=1)
        except (mlflow.exceptions.MlflowException, ValueError) as err:
            reason = _reason(err)
            raise ValueError(f"cannot open the MLflow store {redact(uri)}: {reason}") from None
        except Exception as err:  # sqlalchemy and driver errors of a damaged store
            raise ValueError(
                f"cannot open the MLflow store {redact(uri)}: {_reason(err)}; if an earlier "
                "start was interrupted it may be half-built: move it aside to start a new one"
            ) from None
    _READY.add(uri)


def _create_sqlite_store(path: Path) -> None:
    if not path.parent.is_dir():
        raise ValueError(f"there is no folder {path.parent} to create it in")
    private = path.with_name(f".{path.name}.{uuid.uuid4().hex}.new")
    try:
        MlflowClient(f"sqlite:///{private}").search_experiments(max_results=1)
        with contextlib.suppress(FileExistsError):  # another process linked its store first
            os.link(private, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            private.unlink()


def _reason(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return redact(" ".join(lines[0].split())[:200]) if lines else type(err).__name__


_CLIENTS: dict[str, MlflowClient] = {}


def client(settings: Settings) -> MlflowClient:
    """The one MLflow client bound to ``settings.tracking_uri``: the store is created (or checked)
    on first use, and the client is kept for the URI. No process-wide state is changed."""
    uri = settings.tracking_uri
    if uri not in _CLIENTS:
        ensure_store(uri)
        _CLIENTS[uri] = MlflowClient(uri)
    return _CLIENTS[uri]


@contextlib.contextmanager
def run_lifecycle(
    client: MlflowClient, run_id: str, *, finish_on: tuple[type[BaseException], ...] = ()
) -> Iterator[str]:
    """End run ``run_id`` with the status its block earned, the one place run status is decided.

    FINISHED on success; KILLED on Ctrl-C or SIGTERM (``RunKilled``); FINISHED too for the
    exceptions in ``finish_on`` (an early stop such as a pruned trial); FAILED on any other
    exception, with its one-line message as the ``error`` tag. The exception is re-raised; the
    run is always terminated, never left RUNNING. Yields the run id.
    """
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        yield run_id
        status = RunStatus.to_string(RunStatus.FINISHED)
    except KeyboardInterrupt:  # RunKilled included
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    except finish_on:
        status = RunStatus.to_string(RunStatus.FINISHED)
        raise
    except BaseException as err:
        client.set_tag(run_id, TAG_ERROR, one_line(err))
        raise
    finally:
        client.set_terminated(run_id, status=status)


def ensure_experiment(settings: Settings, name: str) -> str:
    """The id of experiment ``name``, created with the configured artifact location if new, and
    labelled as model training (``TAG_EXPERIMENT_KIND``)."""
    mlflow_client = client(settings)
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        if found.tags.get(TAG_EXPERIMENT_KIND) is None:  # made before the tag, or elsewhere
            mlflow_client.set_experiment_tag(
                found.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND
            )
        return found.experiment_id
    # A tracking server chooses (and serves) artifact locations itself: a local folder named
    # here would only exist on the machine that created the experiment.
    served = settings.tracking_uri.startswith(("http://", "https://"))
    location = None if served else settings.artifact_location.rstrip("/") + "/" + name
    try:
        return mlflow_client.create_experiment(
            name, artifact_location=location, tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND}
        )
    except mlflow.exceptions.MlflowException:
        # another worker created it between our lookup and create
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class RunKilled(KeyboardInterrupt):
    """Raised in the main thread when the process received SIGTERM during a tracked run.

    A KeyboardInterrupt, so that everything that handles Ctrl-C (Optuna failing the trial in
    flight, our runs ending KILLED) handles SIGTERM the same way."""


_pending: list[int] = []
"""The signal received inside ``interrupts_deferred`` and not raised yet."""
_depth = 0


def _interruption(signum: int) -> KeyboardInterrupt:
    return (
        RunKilled(f"received signal {signum}") if signum == signal.SIGTERM else KeyboardInterrupt()
    )


@contextlib.contextmanager
def interrupts_deferred(escalate: bool = True) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT (in the main thread) only note the interruption, and
    ``check_interrupted()`` raises it at the next safe point (every training step of a tracked
    run, between trials): RunKilled for SIGTERM, KeyboardInterrupt for Ctrl-C.

    An exception raised straight from a signal handler lands wherever the main thread happens to
    be, including a garbage-collection callback, where Python drops it and the run goes on as if
    nothing happened (seen: a SIGTERM lost that way left a sweep training). With ``escalate``, a
    second signal raises at once, for a user who does not want to wait; a worker process, which
    its parent stops (and kills if it must), leaves it off.
    """
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, _frame: Any) -> None:
        if not _pending:
            _pending.append(signum)
        elif escalate:
            raise _interruption(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if _depth == 0:
            _pending.clear()


def check_interrupted() -> None:
    """Raise the interruption noted by ``interrupts_deferred``, if any."""
    if _pending:
        raise _interruption(_pending[0])


@contextlib.contextmanager
def tracked_run(
    cfg: Config,
    settings: Settings,
    *,
    kind: str = "train",
    experiment: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    finish_on: tuple[type[BaseException], ...] = (),
) -> Iterator[Tracker]:
    """Open a run, log the config and environment, and always close it with a final status
    (``run_lifecycle``): FINISHED on success or for the exceptions in ``finish_on``, KILLED on
    Ctrl-C or SIGTERM, FAILED with the error as a tag otherwise; the exception is re-raised. The
    experiment is ``experiment``, else the config's, else the one mlflow.yaml names for ``kind``.
    """
    name = experiment or cfg.tracking.experiment or settings.experiment(kind)
    experiment_id = ensure_experiment(settings, name)
    mlflow_client = client(settings)
    run_tags = {**environment_tags(), TAG_KIND: kind, **(tags or {})}
    if parent_run_id:
        run_tags[TAG_PARENT_RUN] = parent_run_id
    run = mlflow_client.create_run(experiment_id, run_name=run_name, tags=run_tags)
    tracker = Tracker(mlflow_client, run.info.run_id, experiment_id)
    with run_lifecycle(mlflow_client, run.info.run_id, finish_on=finish_on):
        try:
            with interrupts_deferred():
                params = [Param(k, _param(v)) for k, v in cfg.flat().items()]
                for start in range(0, len(params), 100):  # log_batch takes 100 params a call
                    mlflow_client.log_batch(tracker.run_id, params=params[start : start + 100])
                mlflow_client.log_dict(tracker.run_id, redact_values(cfg.to_dict()), CONFIG_FILE)
                yield tracker
        finally:
            tracker.flush()


def environment_tags() -> dict[str, str]:
    return {
        TAG_GIT_COMMIT: _git_commit(),
        TAG_TORCH: torch.__version__,
        TAG_MLFLOW: mlflow.__version__,
        TAG_HOST: platform.node(),
        TAG_COMMAND: redact(shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])),
    }


class Tracker(Callback):
    """Logs a training run: metrics, reconstructions, histograms, curves and the model."""

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self._pending: list[Metric] = []
        self._fixed: torch.Tensor | None = None
        self._histogram_images: torch.Tensor | None = None
        self._cfg: Config | None = None
        self.seconds_logging = 0.0
        """Wall time spent in this tracker's per-run start and per-epoch logging."""
        self.seconds_end_of_run = 0.0
        """Wall time of the once-per-run logging at the end: curves, histograms, model."""

    # buffering
    def _add(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]

    def flush(self) -> None:
        """Write every buffered metric (log_batch takes at most 1000 per call)."""
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self.client.log_batch(self.run_id, metrics=batch)

    # callback hooks
    def on_fit_start(self, model: SparseAutoencoder, cfg: Config, splits: Splits) -> None:
        started = time.perf_counter()
        self._cfg = cfg
        self._fixed = splits.test[:N_FIXED_IMAGES]
        self._histogram_images = splits.test[:N_HISTOGRAM_IMAGES]
        self.client.set_tag(self.run_id, TAG_DEVICE, str(splits.train.device))
        self.client.set_tag(self.run_id, TAG_DATA_DIGEST, splits.digest)
        for context, images in (("train", splits.train), ("test", splits.test)):
            dataset = _dataset(splits.digest, context, images.shape[0])
            _log_input(self.client, self.run_id, dataset, context)
        self.seconds_logging += time.perf_counter() - started

    def on_step(self, step: int) -> None:
        check_interrupted()  # a safe point to stop at: between two optimiser steps

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self._add(metrics, step)

    def on_epoch_end(
        self, epoch: int, step: int, metrics: dict[str, float], model: SparseAutoencoder
    ) -> None:
        started = time.perf_counter()
        self._add(metrics, epoch)
        self.flush()
        grid = reconstruction_grid(model, self._fixed)
        self.client.log_image(self.run_id, grid, artifact_file=reconstruction_file(epoch))
        self.seconds_logging += time.perf_counter() - started

    def on_fit_end(self, model: SparseAutoencoder, history: list[dict[str, float]]) -> None:
        started = time.perf_counter()
        try:
            self._log_final(model, history)
        finally:
            self.seconds_end_of_run = time.perf_counter() - started

    def _log_final(self, model: SparseAutoencoder, history: list[dict[str, float]]) -> None:
        self.flush()
        if history:
            self.client.log_figure(self.run_id, learning_curves(history), CURVES_FILE)
        histograms = activation_histograms(model, self._histogram_images)
        self.client.log_figure(self.run_id, histograms, HISTOGRAMS_FILE)
        if self._cfg.tracking.log_model:
            uri = log_model(self.client, self.run_id, self.experiment_id, model, self._cfg)
            self.client.set_tag(self.run_id, TAG_MODEL_URI, uri)


def log_model(
    client: MlflowClient, run_id: str, experiment_id: str, model: SparseAutoencoder, cfg: Config
) -> str:
    """Log the model (single-tensor output) with a signature, an input example and its config,
    as an MLflow logged model of run ``run_id``; returns its URI, ``models:/<model id>``."""
    wrapped = Reconstructor(copy.deepcopy(model)).to("cpu", memory_format=torch.contiguous_format)
    wrapped.eval()
    example = np.zeros((1, 1, 28, 28), dtype=np.float32)
    with torch.inference_mode():
        output = wrapped(torch.from_numpy(example)).numpy()
    signature = mlflow.models.infer_signature(example, output)
    params = {k: _param(v) for k, v in cfg.flat().items()}
    logged = client.create_logged_model(
        experiment_id, name=MODEL_NAME, source_run_id=run_id, params=params
    )
    status = LoggedModelStatus.FAILED
    try:
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / CONFIG_FILE
            config.write_text(json.dumps(redact_values(cfg.to_dict()), indent=2))
            local = Path(tmp) / MODEL_NAME
            mlflow.pytorch.save_model(
                wrapped,
                str(local),
                mlflow_model=mlflow.models.Model(
                    artifact_path=logged.artifact_location,
                    model_uuid=logged.model_id,
                    run_id=run_id,
                    model_id=logged.model_id,
                ),
                signature=signature,
                input_example=example,
                extra_files=[str(config)],
                code_paths=[str(Path(__file__).parent)],
                serialization_format="pickle",
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
            )
            client.log_model_artifacts(logged.model_id, str(local))
        status = LoggedModelStatus.READY
    finally:
        client.finalize_logged_model(logged.model_id, status)
    return f"models:/{logged.model_id}"


@torch.inference_mode()
def reconstruction_grid(model: SparseAutoencoder, images: torch.Tensor) -> np.ndarray:
    """(H, W, 3) uint8: the images in the top row, their reconstructions below."""
    from torchvision.utils import make_grid

    was_training = model.training
    model.eval()
    x = M.to_float(images)
    recon = model(x)[0].clamp(0, 1)
    model.train(was_training)
    grid = make_grid(torch.cat([x, recon]).float().cpu(), nrow=len(images), padding=2, pad_value=1)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@torch.inference_mode()
def activation_histograms(model: SparseAutoencoder, images: torch.Tensor) -> Figure:
    """One panel per layer: the distribution of its activations on the first test images."""
    was_training = model.training
    model.eval()
    _, acts = model(M.to_float(images))
    model.train(was_training)
    fig = Figure(figsize=(12, 6), layout="constrained")
    axes = fig.subplots(2, 3)
    for ax, layer, act in zip(axes.flat, LAYER_NAMES, acts, strict=True):
        values = act.float().flatten().cpu().numpy()
        positive = values[values > 0]
        ax.set_title(f"{layer}: {1 - positive.size / values.size:.0%} of activations are 0")
        shown = positive[np.isfinite(positive)]
        if shown.size and _spread(shown):
            ax.hist(shown, bins=50, color="tab:blue")
            ax.set_yscale("log")
        else:
            why = "no unit ever active" if not positive.size else "values too large to bin"
            if shown.size and not _spread(shown):
                why = f"every active value is {shown[0]:.3g}"
            ax.text(0.5, 0.5, why, ha="center", transform=ax.transAxes)
        ax.set_xlabel("activation (> 0)")
        ax.set_ylabel("count")
    fig.suptitle(f"Activation histograms on {len(images)} test images")
    return fig


def _spread(values: np.ndarray) -> bool:
    """Whether 50 distinct, finite histogram bins fit between the values' extremes."""
    low, high = float(values.min()), float(values.max())
    edges = np.linspace(low, high, 51)
    return high > low and np.isfinite(high - low) and bool(np.all(np.diff(edges) > 0))


def learning_curves(history: list[dict[str, float]]) -> Figure:
    epochs = np.arange(1, len(history) + 1)
    fig = Figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    for key, label in ((M.EPOCH_MSE, "train MSE"), (M.TEST_MSE, "test MSE")):
        left.plot(epochs, [h[key] for h in history], marker="o", label=label)
    left.set_xlabel("epoch")
    left.set_ylabel("MSE (pixel values in [0, 1])")
    left.set_yscale("log")
    left.legend()
    left.set_title("Reconstruction")
    right.plot(epochs, [h[M.CODE_ACTIVE_FRAC] for h in history], marker="o", color="tab:green")
    right.set_xlabel("epoch")
    right.set_ylabel("fraction of the 64 code units active")
    right.set_ylim(0, 1.05)
    right.set_title("Code sparsity (test set)")
    return fig


def _dataset(digest: str, context: str, size: int) -> mlflow.data.Dataset:
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    split_digest = hashlib.sha256(f"{digest}:{context}:{size}".encode()).hexdigest()[:16]
    return MetaDataset(
        source=HTTPDatasetSource("https://yann.lecun.com/exdb/mnist/"),
        name=f"mnist-{context}-{size}",
        digest=split_digest,
    )


def _log_input(
    client: MlflowClient, run_id: str, dataset: mlflow.data.Dataset, context: str, attempts: int = 3
) -> None:
    """``client.log_inputs``, tried again when a concurrent run registered the same dataset first.

    Two workers that start runs on the same data at the same moment both try to insert the
    dataset row; on a database-backed store the loser gets a unique-key violation. The row then
    exists, so the next attempt only links it.
    """
    for attempt in range(attempts):
        try:
            entity = DatasetEntity(**dataset.to_dict())
            tags = [InputTag(TAG_DATASET_CONTEXT, context)]
            client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=tags)])
            return
        except mlflow.exceptions.MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def _param(value: Any) -> str:
    return "None" if value is None else redact(str(value))


def one_line(err: BaseException) -> str:
    """The exception as one line, credentials redacted: for tags, attributes and consoles."""
    text = str(err).strip().splitlines()
    return redact(f"{type(err).__name__}: {text[0] if text else ''}")[:500]


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# Runs managed by id rather than as the active run: a sweep's parent outlives its worker processes.


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


def baseline_reference(settings: Settings) -> dict[str, float] | None:
    """``sae.baseline.reference`` of the tracked, FINISHED baseline runs; None when none."""
    from sae import baseline

    runs = runs_frame(
        settings,
        [settings.experiment("baseline")],
        "tags.baseline = 'true' and attributes.status = 'FINISHED'",
    )
    if runs.empty or "params.train.beta" not in runs or "tags.beta_source" not in runs:
        return None
    runs = runs.assign(
        beta=pd.to_numeric(runs["params.train.beta"]), beta_source=runs["tags.beta_source"]
    )
    return baseline.reference(runs)


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


# Reading runs back (the report's frames).

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


def require_store(settings: Settings) -> None:
    """Raise ValueError, in one line, when a SQLite store named by the settings does not exist
    (opening it would create an empty one)."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///").split("?")[0])
        if not uri.startswith("sqlite:////") and not path.is_absolute():
            path = Path.cwd() / path
        if not path.is_file():
            raise ValueError(f"no MLflow store at {path}: run an experiment first")


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
    frame["run_name"] = frame.get("tags.mlflow.runName")
    frame["parent_run_id"] = frame.get("tags.mlflow.parentRunId")
    rest = sorted(metrics.values()) + sorted(c for c in raw.columns if c.startswith("params."))
    rest += sorted(c for c in raw.columns if c.startswith("tags."))
    frame = frame[list(RUN_COLUMNS) + rest].sort_values(["start_time", "run_id"])
    return frame.reset_index(drop=True)


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


def reconstruction_file(epoch: int) -> str:
    """The artifact path of epoch ``epoch``'s reconstruction grid: ``images/epoch_001.png``."""
    return f"{IMAGES_DIR}/epoch_{epoch:03d}.png"


def latest_image(settings: Settings, run_id: str) -> str | None:
    """The artifact path of the run's last reconstruction grid (highest epoch), else None."""
    pattern = re.compile(rf"^{IMAGES_DIR}/epoch_(\d+)\.png$")
    found = []
    for info in client(settings).list_artifacts(run_id, IMAGES_DIR):
        match = pattern.match(info.path)
        if match:
            found.append((int(match.group(1)), info.path))
    return max(found)[1] if found else None


def download_artifact(settings: Settings, run_id: str, path: str, dst: str | Path) -> Path:
    """Copy one artifact of the run into the folder ``dst``; returns the local path."""
    Path(dst).mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=settings.tracking_uri
    )
    return Path(local)


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


def log_completed_run(
    settings: Settings,
    experiment: str,
    *,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    history: dict[int, dict[str, float]],
    status: str = "FINISHED",
    parent_run_id: str | None = None,
) -> str:
    """Record a run that happened elsewhere (synthetic runs for tests and benchmarks): its
    params and its metrics by step in one ``log_batch``, then its final status."""
    experiment_id = ensure_experiment(settings, experiment)
    mlflow_client = client(settings)
    if parent_run_id:
        tags = {**tags, TAG_PARENT_RUN: parent_run_id}
    run_id = mlflow_client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), now, step)
        for step, values in sorted(history.items())
        for key, value in values.items()
    ]
    entries = [Param(k, _param(v)) for k, v in params.items()]
    mlflow_client.log_batch(run_id, metrics=metrics[: 1000 - len(entries)], params=entries)
    for start in range(1000 - len(entries), len(metrics), 1000):
        mlflow_client.log_batch(run_id, metrics=metrics[start : start + 1000])
    mlflow_client.set_terminated(run_id, status=status)
    return run_id
