"""sae/tracking/settings.py: where the artifacts go when the tracking URI comes from elsewhere."""

from pathlib import Path

import pytest

from sae import tracking

FILE = "tracking_uri: sqlite:///runs.db\nartifact_location: arts\noptuna_storage: study.journal\n"


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "project" / "mlflow.yaml"
    path.parent.mkdir()
    path.write_text(FILE)
    return path


def _beside(database: Path) -> str:
    return (database.parent / "mlartifacts").as_uri()


def test_settings__file_uri_keeps_the_files_artifact_location(settings_file):
    settings = tracking.load_settings(settings_file)
    assert settings.tracking_uri == f"sqlite:///{settings_file.parent}/runs.db"
    assert settings.artifact_location == (settings_file.parent / "arts").as_uri()


@pytest.mark.parametrize("source", ["env", "flag"])
def test_settings__absolute_sqlite_from_env_or_flag_puts_artifacts_beside_it(
    settings_file, tmp_path, monkeypatch, source
):
    database = tmp_path / "elsewhere" / "other.db"
    uri = f"sqlite:///{database}"
    if source == "env":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        settings = tracking.load_settings(settings_file)
    else:
        settings = tracking.load_settings(settings_file, tracking_uri=uri)
    assert settings.tracking_uri == uri
    assert settings.artifact_location == _beside(database)
    # the Optuna storage stays the file's: only --storage moves it
    assert settings.optuna_storage == str(settings_file.parent / "study.journal")


def test_settings__relative_sqlite_from_env_is_beside_its_file_under_the_settings_folder(
    settings_file, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # not the settings folder: the path is the file's, not the cwd's
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///sub/other.db")
    settings = tracking.load_settings(settings_file)
    database = settings_file.parent / "sub" / "other.db"
    assert settings.tracking_uri == f"sqlite:///{database}"
    assert settings.artifact_location == _beside(database)


def test_settings__flag_wins_over_env_for_the_artifacts_too(settings_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/env/env.db")
    settings = tracking.load_settings(settings_file, f"sqlite:///{tmp_path}/flag/flag.db?timeout=5")
    assert settings.artifact_location == _beside(tmp_path / "flag" / "flag.db")


@pytest.mark.parametrize(
    "uri",
    [
        "postgresql://sae@db.example/runs",
        "http://127.0.0.1:5000",
        "sqlite:///:memory:",
        "sqlite:///runs.db",  # the file's own database, named again: nothing moves
    ],
)
def test_settings__other_uris_from_env_keep_the_files_artifact_location(
    settings_file, monkeypatch, uri
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    settings = tracking.load_settings(settings_file)
    assert settings.artifact_location == (settings_file.parent / "arts").as_uri()


def test_settings__artifacts_follow_the_database_into_new_experiments_only(
    settings_file, tmp_path, monkeypatch
):
    """The rule places new experiments; one created earlier keeps its location (MLflow's rule)."""
    database = tmp_path / "moved" / "runs.db"
    database.parent.mkdir()
    first = tracking.load_settings(settings_file, f"sqlite:///{database}")
    experiment_id = tracking.ensure_experiment(first, "e")
    client = tracking.client(first)
    created = client.get_experiment(experiment_id).artifact_location
    assert created == _beside(database) + "/e"
    # the same store reached through a settings file that names it: the experiment stays put
    settings_file.write_text(f"tracking_uri: sqlite:///{database}\nartifact_location: arts\n")
    again = tracking.load_settings(settings_file)
    assert again.artifact_location != _beside(database)
    assert tracking.ensure_experiment(again, "e") == experiment_id
    assert tracking.client(again).get_experiment(experiment_id).artifact_location == created
