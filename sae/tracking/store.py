"""The MLflow store: created safely on first use, one client per tracking URI, experiments."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow.entities import Experiment
from mlflow.tracking import MlflowClient

from sae import faults
from sae.errors import reason
from sae.locks import database_lock
from sae.names import EXPERIMENT_KIND, TAG_EXPERIMENT_KIND
from sae.paths import check_plain_name
from sae.redact import redact
from sae.tracking import views
from sae.tracking.settings import Settings, sqlite_file

# MLflow's own artifact progress bars would interleave with ours on every logged model (read
# when an upload starts, so setting it at import is early enough).
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# the traceback of every failed store call, the system metrics' line for every failed sample
faults.divert_tracebacks(
    "mlflow.store.db.utils", "mlflow.system_metrics.system_metrics_monitor", "sae.tracking.system"
)

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
    path = sqlite_file(uri)
    with _quiet_store_logs():
        try:
            if path is not None and not path.exists():
                _create_sqlite_store(path)
            with database_lock(uri, "sae: create the MLflow store"):
                # A store that has not answered yet is tried for OPEN_RETRY_S, as the Optuna
                # storage is: a wrong host or port (a user's mistake) is one line soon.
                search = MlflowClient(uri).search_experiments
                faults.retried(search, RetriedClient.fault_source, faults.OPEN_RETRY_S)(
                    max_results=1
                )
        except Exception as err:
            raise ValueError(_cannot_open(uri, err)) from None
    _READY.add(uri)


def _cannot_open(uri: str, err: Exception) -> str:
    """Why the store at ``uri`` does not open, in one line."""
    if faults.is_passing_fault(err):  # a lock, a full disk, no answer, for OPEN_RETRY_S
        return f"cannot open the MLflow store {redact(uri)}: {faults.describe(err)}"
    why = f"cannot open the MLflow store {redact(uri)}: {reason(err)}"
    if isinstance(err, mlflow.exceptions.MlflowException | ValueError):
        return why
    # sqlalchemy and driver errors of a damaged store
    return (
        f"{why}; if an earlier start was interrupted it may be half-built: move it aside to "
        "start a new one"
    )


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


_CLIENTS: dict[str, MlflowClient] = {}


def client(settings: Settings) -> MlflowClient:
    """The one MLflow client bound to ``settings.tracking_uri``: the store is created (or checked)
    on first use, and the client is kept for the URI. No process-wide state is changed."""
    uri = settings.tracking_uri
    if uri not in _CLIENTS:
        ensure_store(uri)
        _CLIENTS[uri] = RetriedClient(uri)
    return _CLIENTS[uri]


class RetriedClient(faults.Retried, MlflowClient):
    """MLflow's client, every call tried again while a passing fault of the store lasts (a
    locked SQLite file, a full disk, a server out of reach: ``sae.faults``); MLflow's own log
    line and traceback of each failed try go to the fault log, off the console."""

    fault_source = "the MLflow store"


def ensure_experiment(settings: Settings, name: str) -> str:
    """The id of experiment ``name``, created with the configured artifact location if new,
    labelled as model training (``TAG_EXPERIMENT_KIND``) and, unless it holds only benchmark or
    report runs, carrying the MLflow UI's landing view (``views.save_experiment_view``), which an
    experiment made before it gets here too."""
    mlflow_client = client(settings)
    landing = name not in (settings.experiment("benchmarks"), settings.experiment("report"))
    found = mlflow_client.get_experiment_by_name(name)
    if found is None:
        found = _create_experiment(mlflow_client, settings, name)
    if found.tags.get(TAG_EXPERIMENT_KIND) is None:  # made before the tag, or elsewhere
        mlflow_client.set_experiment_tag(found.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
    if landing:
        views.save_experiment_view(mlflow_client, found.experiment_id, found.tags)
    return found.experiment_id


def _create_experiment(mlflow_client: MlflowClient, settings: Settings, name: str) -> Experiment:
    # The name becomes the experiment's folder in the artifact location: one plain folder name,
    # so that no name ('../../x', '/abs') puts its artifacts outside it.
    check_plain_name(name, "experiment name")
    # A tracking server chooses (and serves) artifact locations itself: a local folder named
    # here would only exist on the machine that created the experiment.
    served = settings.tracking_uri.startswith(("http://", "https://"))
    location = None if served else settings.artifact_location.rstrip("/") + "/" + name
    try:
        experiment_id = mlflow_client.create_experiment(
            name, artifact_location=location, tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND}
        )
    except mlflow.exceptions.MlflowException:
        # another worker created it between our lookup and create
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found
    return mlflow_client.get_experiment(experiment_id)


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
