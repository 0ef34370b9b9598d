"""Where runs go: mlflow.yaml read into Settings, with the environment and flags on top."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sae.errors import reason
from sae.paths import check_plain_name
from sae.redact import redact

DEFAULT_SETTINGS_FILE = "mlflow.yaml"
_SETTINGS_KEYS = {"tracking_uri", "artifact_location", "experiments", "optuna_storage"}
ARTIFACTS_BESIDE_DATABASE = "mlartifacts"
"""The artifact folder beside a SQLite database named by --tracking-uri or MLFLOW_TRACKING_URI."""


class SettingsError(ValueError):
    """mlflow.yaml cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Settings:
    """Where runs go: read from mlflow.yaml, overridden by MLFLOW_TRACKING_URI and flags.

    Artifacts follow a local database named outside the file: when the tracking URI comes from
    ``--tracking-uri`` or MLFLOW_TRACKING_URI and is a ``sqlite:///FILE`` other than the file's,
    ``artifact_location`` is ``mlartifacts/`` beside FILE; otherwise it is the file's. Either way
    it only places new experiments: an experiment keeps the artifact location it was created
    with (MLflow's rule). ``optuna_storage`` never follows the tracking URI: ``--storage`` moves it.
    """

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
    MLFLOW_TRACKING_URI environment variable, then the file; a relative ``sqlite:///`` path is
    relative to the file's folder wherever it comes from. The artifact location follows a local
    SQLite database named by the flag or the environment (see ``Settings``).
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
        raise SettingsError(f"{path}: not valid YAML ({reason(err)})") from None
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
    for name in experiments.values():  # each names its experiment's artifact folder
        try:
            check_plain_name(name, "experiment name")
        except ValueError as err:
            raise SettingsError(f"{path}: key 'experiments': {err}") from None

    base = path.resolve().parent
    file_uri = _anchored(raw.get("tracking_uri") or defaults.tracking_uri, base)
    override = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    uri = _anchored(override, base) if override else file_uri
    check_tracking_uri(uri)
    artifacts = raw.get("artifact_location", defaults.artifact_location)
    if "://" not in artifacts:
        artifacts = (base / artifacts).resolve().as_uri()
    database = sqlite_file(uri)
    if override and uri != file_uri and database is not None:
        artifacts = (database.parent / ARTIFACTS_BESIDE_DATABASE).as_uri()
    storage = raw.get("optuna_storage", defaults.optuna_storage)
    if "://" not in storage:
        storage = str((base / storage).resolve())
    return Settings(
        tracking_uri=uri,
        artifact_location=artifacts,
        experiments=dict(experiments),
        optuna_storage=storage,
    )


def _anchored(uri: str, base: Path) -> str:
    """``uri`` with a relative ``sqlite:///`` path made absolute from ``base`` (an in-memory
    database, ``sqlite:///:memory:``, has no path)."""
    path = uri.removeprefix("sqlite:///")
    if path == uri or path.startswith(("/", ":memory:")) or not path.split("?")[0]:
        return uri
    return "sqlite:///" + str(base / path)


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
