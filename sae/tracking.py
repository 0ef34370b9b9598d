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
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient

from sae import metrics as M
from sae.config import Config
from sae.model import LAYER_NAMES, Reconstructor, SparseAutoencoder
from sae.names import (  # noqa: F401  (re-exported: older call sites use these here)
    EXPERIMENT_KIND,
    TAG_COMMAND,
    TAG_DATA_DIGEST,
    TAG_DESCRIPTION,
    TAG_DEVICE,
    TAG_ERROR,
    TAG_EXPERIMENT_KIND,
    TAG_GIT_COMMIT,
    TAG_HOST,
    TAG_KIND,
    TAG_MLFLOW,
    TAG_MODEL_URI,
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
RECONSTRUCTIONS_KEY = "reconstructions"
"""``mlflow.log_image`` key: 16 fixed test images (top) over their reconstructions, per epoch."""
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


def connect(settings: Settings) -> None:
    """Point this process's MLflow client at the configured store, created if new.

    ``mlflow.set_tracking_uri`` also writes MLFLOW_TRACKING_URI into the environment; that is
    put back as it was, so our own choice is never mistaken later for the user's override.
    """
    ensure_store(settings.tracking_uri)
    user_value = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(settings.tracking_uri)
    if user_value is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = user_value


def ensure_experiment(settings: Settings, name: str) -> str:
    """The id of experiment ``name``, created with the configured artifact location if new, and
    labelled as model training (``TAG_EXPERIMENT_KIND``)."""
    connect(settings)
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.tags.get(TAG_EXPERIMENT_KIND) is None:  # made before the tag, or elsewhere
            client.set_experiment_tag(found.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
        return found.experiment_id
    # A tracking server chooses (and serves) artifact locations itself: a local folder named
    # here would only exist on the machine that created the experiment.
    served = settings.tracking_uri.startswith(("http://", "https://"))
    location = None if served else settings.artifact_location.rstrip("/") + "/" + name
    try:
        return client.create_experiment(
            name, artifact_location=location, tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND}
        )
    except mlflow.exceptions.MlflowException:
        # another worker created it between our lookup and create
        found = client.get_experiment_by_name(name)
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
    """Open a run, log the config and environment, and always close it with a final status.

    FINISHED on success; KILLED on Ctrl-C or SIGTERM; FAILED on any other exception, with the
    error as a tag; FINISHED too for the exceptions in ``finish_on`` (an early stop such as a
    pruned trial). The exception is re-raised; no run is ever left RUNNING. The experiment is
    ``experiment``, else the config's, else the one mlflow.yaml names for ``kind``.
    """
    name = experiment or cfg.tracking.experiment or settings.experiment(kind)
    experiment_id = ensure_experiment(settings, name)
    run = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name,
        parent_run_id=parent_run_id,
        tags={**environment_tags(), TAG_KIND: kind, **(tags or {})},
    )
    tracker = Tracker(run.info.run_id)
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        with interrupts_deferred():
            mlflow.log_params({k: _param(v) for k, v in cfg.flat().items()})
            mlflow.log_dict(redact_values(cfg.to_dict()), CONFIG_FILE)
            yield tracker
        status = RunStatus.to_string(RunStatus.FINISHED)
    except (KeyboardInterrupt, RunKilled):
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    except finish_on:
        status = RunStatus.to_string(RunStatus.FINISHED)
        raise
    except BaseException as err:
        tracker.client.set_tag(tracker.run_id, TAG_ERROR, one_line(err))
        raise
    finally:
        try:
            tracker.flush()
        finally:
            mlflow.end_run(status)


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

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.client = MlflowClient()
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
        mlflow.set_tag(TAG_DEVICE, str(splits.train.device))
        mlflow.set_tag(TAG_DATA_DIGEST, splits.digest)
        for context, images in (("train", splits.train), ("test", splits.test)):
            _log_input(_dataset(splits.digest, context, images.shape[0]), context)
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
        mlflow.log_image(
            reconstruction_grid(model, self._fixed), key=RECONSTRUCTIONS_KEY, step=epoch
        )
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
            mlflow.log_figure(learning_curves(history), CURVES_FILE)
        mlflow.log_figure(activation_histograms(model, self._histogram_images), HISTOGRAMS_FILE)
        if self._cfg.tracking.log_model:
            info = log_model(model, self._cfg)
            self.client.set_tag(self.run_id, TAG_MODEL_URI, info.model_uri)


def log_model(model: SparseAutoencoder, cfg: Config) -> mlflow.models.model.ModelInfo:
    """Log the model (single-tensor output) with a signature, an input example and its config."""
    wrapped = Reconstructor(copy.deepcopy(model)).to("cpu", memory_format=torch.contiguous_format)
    wrapped.eval()
    example = np.zeros((1, 1, 28, 28), dtype=np.float32)
    with torch.inference_mode():
        output = wrapped(torch.from_numpy(example)).numpy()
    signature = mlflow.models.infer_signature(example, output)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / CONFIG_FILE
        config.write_text(json.dumps(redact_values(cfg.to_dict()), indent=2))
        return mlflow.pytorch.log_model(
            wrapped,
            name=MODEL_NAME,
            signature=signature,
            input_example=example,
            extra_files=[str(config)],
            code_paths=[str(Path(__file__).parent)],
            serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
        )


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


def _log_input(dataset: mlflow.data.Dataset, context: str, attempts: int = 3) -> None:
    """``mlflow.log_input``, tried again when a concurrent run registered the same dataset first.

    Two workers that start runs on the same data at the same moment both try to insert the
    dataset row; on a database-backed store the loser gets a unique-key violation. The row then
    exists, so the next attempt only links it.
    """
    for attempt in range(attempts):
        try:
            mlflow.log_input(dataset, context=context)
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
    """Create a RUNNING run that is not the active one (children name it as their parent)."""
    experiment_id = ensure_experiment(settings, experiment)
    run = MlflowClient().create_run(
        experiment_id,
        run_name=run_name,
        tags={**environment_tags(), **tags, TAG_DESCRIPTION: description},
    )
    return run.info.run_id


def set_run_status(run_id: str, status: str) -> None:
    """RUNNING reopens a run; FINISHED, FAILED and KILLED end it."""
    client = MlflowClient()
    if status == "RUNNING":
        client.update_run(run_id, status="RUNNING")
    else:
        client.set_terminated(run_id, status=status)


def run_status(run_id: str) -> str:
    return MlflowClient().get_run(run_id).info.status


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    MlflowClient().log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_summary(
    run_id: str,
    metrics: dict[str, float],
    tables: dict[str, Any],
    figures: dict[str, Figure],
) -> None:
    """Metrics, CSV tables (pandas frames by artifact path) and figures (by artifact path)."""
    client = MlflowClient()
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
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
    client = MlflowClient()
    run = client.create_run(
        experiment_id, run_name="benchmark", tags={**environment_tags(), **tags, TAG_KIND: "bench"}
    )
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
    )
    for path in files:
        client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id, "FINISHED")
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
_IDS_PER_QUERY = 500
_NO_LIMIT = 10**9


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
    connect(settings)
    client = MlflowClient()
    names = {}
    for name in dict.fromkeys(experiment_names):
        found = client.get_experiment_by_name(name)
        if found is not None:
            names[found.experiment_id] = name
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in RUN_COLUMNS})
    if not names:
        return empty
    raw = mlflow.search_runs(
        experiment_ids=sorted(names), filter_string=filter_string, output_format="pandas"
    )
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


def curves_frame(
    settings: Settings,
    run_ids: list[str] | tuple[str, ...],
    metric_keys: list[str] | tuple[str, ...],
) -> pd.DataFrame:
    """The per-epoch values of ``metric_keys`` for ``run_ids``: one row per (run, epoch, metric),
    columns CURVE_COLUMNS, sorted. Per-epoch metrics are logged with step = epoch.

    The public client reads one history per (run, metric); a SQL store answers one query per
    metric for many runs at once, so that is used when the store offers it.
    """
    connect(settings)
    client = MlflowClient()
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    bulk = getattr(store, "get_metric_history_bulk", None)
    run_ids = sorted(set(run_ids))
    rows: list[tuple[str, str, int, float, int]] = []
    for key in metric_keys:
        if bulk is not None:
            for start in range(0, len(run_ids), _IDS_PER_QUERY):
                chunk = run_ids[start : start + _IDS_PER_QUERY]
                rows += [
                    (m.run_id, key, m.step, m.value, m.timestamp)
                    for m in bulk(chunk, key, _NO_LIMIT)
                ]
        else:
            for run_id in run_ids:
                rows += [
                    (run_id, key, m.step, m.value, m.timestamp)
                    for m in client.get_metric_history(run_id, key)
                ]
    frame = pd.DataFrame(rows, columns=[*CURVE_COLUMNS, "timestamp"])
    frame["epoch"] = frame["epoch"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    # a value logged twice at one step (a resumed run) counts once: the later one
    frame = frame.sort_values([*CURVE_COLUMNS[:3], "timestamp", "value"])
    frame = frame.drop_duplicates(list(CURVE_COLUMNS[:3]), keep="last")
    return frame[list(CURVE_COLUMNS)].reset_index(drop=True)


def latest_image(settings: Settings, run_id: str, key: str = RECONSTRUCTIONS_KEY) -> str | None:
    """The artifact path of the last step's PNG logged with ``mlflow.log_image(key=...)``."""
    connect(settings)
    pattern = re.compile(rf"^images/{re.escape(key)}\+step\+(\d+)\+.*(?<!compressed)\.png$")
    found = []
    for info in MlflowClient().list_artifacts(run_id, "images"):
        match = pattern.match(info.path)
        if match:
            found.append((int(match.group(1)), info.path))
    return max(found)[1] if found else None


def download_artifact(settings: Settings, run_id: str, path: str, dst: str | Path) -> Path:
    """Copy one artifact of the run into the folder ``dst``; returns the local path."""
    connect(settings)
    Path(dst).mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=path, dst_path=str(dst), tracking_uri=settings.tracking_uri
    )
    return Path(local)


def log_report(settings: Settings, name: str, folder: str | Path) -> str:
    """Log a report folder as the artifacts of a FINISHED run (kind ``report``, tag ``report``
    = the name) in the report experiment, to browse beside the runs it describes."""
    experiment_id = ensure_experiment(settings, settings.experiment("report"))
    client = MlflowClient()
    run = client.create_run(
        experiment_id,
        run_name=f"report-{name}",
        tags={**environment_tags(), TAG_KIND: "report", TAG_REPORT: name},
    )
    run_id = run.info.run_id
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        client.log_artifacts(run_id, str(folder))
        status = RunStatus.to_string(RunStatus.FINISHED)
    finally:
        client.set_terminated(run_id, status=status)
    return run_id


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
    from mlflow.entities import Param

    experiment_id = ensure_experiment(settings, experiment)
    client = MlflowClient()
    if parent_run_id:
        tags = {**tags, "mlflow.parentRunId": parent_run_id}
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    now = int(time.time() * 1000)
    metrics = [
        Metric(key, float(value), now, step)
        for step, values in sorted(history.items())
        for key, value in values.items()
    ]
    entries = [Param(k, _param(v)) for k, v in params.items()]
    client.log_batch(run_id, metrics=metrics[: 1000 - len(entries)], params=entries)
    for start in range(1000 - len(entries), len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    client.set_terminated(run_id, status=status)
    return run_id
