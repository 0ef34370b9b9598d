"""The MLflow UI's landing views (sae.tracking.views): the state the UI restores, the filters it
searches with, the envelope its Views menu lists, the links, and ensure_experiment saving them.
(tests/test_ui.py opens them in a real browser.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import mlflow
import pytest
from helpers_sweep import empty_store
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sae import metrics as M
from sae import names, tracking
from sae.tracking import views

OBJECTIVES = [
    "metrics.`test/mse`",
    "metrics.`sparsity/enc3/l0`",
    "metrics.`probe/accuracy`",
    "tags.`degenerate`",
    "params.`train.beta`",
    "params.`train.lr`",
    "params.`train.batch_size`",
]
VIEW_TAG = "mlflow.sharedViewState.objectives"


@pytest.fixture
def store(tmp_path) -> tuple[MlflowClient, str]:
    """A client on a copy of an empty store, and a new experiment's id."""
    empty_store(tmp_path / "mlflow.db")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    return client, client.create_experiment("e", artifact_location=str(tmp_path / "art"))


class CountingClient(MlflowClient):
    """Counts experiment-tag writes; ``race`` makes the next write land and then fail, as when
    another process wrote the same tag at the same moment; ``fail`` makes it fail unwritten."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.writes = 0
        self.race = self.fail = False

    def set_experiment_tag(self, experiment_id, key, value):
        self.writes += 1
        if not self.fail:
            super().set_experiment_tag(experiment_id, key, value)
        if self.race or self.fail:
            raise MlflowException("UNIQUE constraint failed: experiment_tags.key")


def test_view_state__objective_columns_first_sorted_by_test_mse_ascending():
    state = views.view_state("x")
    assert state["searchFilter"] == "x"
    assert state["orderByKey"] == "metrics.`test/mse`"
    assert state["orderByAsc"] is True  # a bool: the UI writes its own state so
    assert state["selectedColumns"] == state["columnOrder"] == OBJECTIVES
    assert state["runsHiddenMode"] == "SHOW_ALL"
    [chart] = state["compareRunCharts"]
    [section] = state["compareRunSections"]
    assert chart["type"] == "SCATTER" and chart["metricSectionId"] == section["uuid"]
    assert (chart["xaxis"], chart["yaxis"]) == (
        {"key": "sparsity/enc3/l0", "type": "METRIC"},
        {"key": "test/mse", "type": "METRIC"},
    )
    assert json.loads(json.dumps(state)) == state


def _bundle() -> str:
    folder = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    files = sorted(folder.glob("*.js"))
    if not files:
        pytest.skip(f"no MLflow UI bundle at {folder} (mlflow-skinny has none)")
    return "\n".join(f.read_text(errors="replace") for f in files)


def _js_list(bundle: str, *first: str) -> list[str]:
    """The bundle's array literal of strings that starts with ``first``."""
    start = ",".join(f'"{item}"' for item in first)
    found = re.search(r"\[" + re.escape(start) + r'(?:,"\w+")*\]', bundle)
    assert found, f"the MLflow UI no longer lists {first} with its view keys"
    return json.loads(found.group(0))


def test_view_state__every_key_is_one_mlflow_ui_restores_from_a_saved_view():
    """The adapter's check on MLflow's UI bundle (no public API holds this format): the tag
    prefix, the URL parameter, the envelope, the keys a shared view restores and the chart card
    fail here, loudly, when an MLflow upgrade moves them."""
    bundle = _bundle()
    assert f'"{views.SHARED_VIEW_TAG}"' in bundle and f'"{views.SHARE_KEY_PARAM}"' in bundle
    assert "string `name`, number `createdAt`, and string `state`" in bundle
    facets = _js_list(bundle, "searchFilter", "orderByKey", "orderByAsc")
    ui_state = _js_list(bundle, "selectedColumns", "columnOrder")
    not_shared = _js_list(bundle, "runsExpanded", "runsPinned")
    restored = set(facets) | (set(ui_state) - set(not_shared))
    assert set(views.view_state("")) <= restored, set(views.view_state("")) - restored
    assert 'this.type=c.SCATTER,this.xaxis={key:"",type:"METRIC"}' in bundle


def _run(client, experiment_id, study, mse=None, parent=None) -> str:
    tags = {names.TAG_STUDY: study}
    if parent:
        tags[names.TAG_PARENT_RUN] = parent
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    if mse is not None:
        client.log_batch(run_id, metrics=[Metric(M.TEST_MSE, mse, 0, 0)])
    return run_id


@pytest.mark.parametrize("study", ["sae-sweep", "o'brien", 'the "best"', 'it\'s "x"', "a\\b"])
def test_study_filter__its_trials_and_confirmations_not_its_parent_nor_another_study(store, study):
    """Fix: the first cut escaped a quote with a backslash, which MLflow's search syntax does not
    know: a study named o'brien matched no run."""
    client, experiment_id = store
    parent = _run(client, experiment_id, study)
    trial = _run(client, experiment_id, study, 0.1, parent)
    confirm = _run(client, experiment_id, study, 0.2, trial)
    for other in ("sae-sweep-2", "o", "brien", "the best", "a/b"):
        _run(client, experiment_id, other, 0.3, _run(client, experiment_id, other))
    found = client.search_runs([experiment_id], views.study_filter(study))
    assert {r.info.run_id for r in found} == {trial, confirm}
    escaped = f"tags.`{names.TAG_STUDY}` = '{study.replace(chr(39), chr(92) + chr(39))}'"
    if "'" in study:  # the first cut's filter
        assert client.search_runs([experiment_id], escaped) == []


def test_study_view_key__a_short_tag_key_one_per_study():
    keys = {views.study_view_key(s) for s in ("sae-sweep", "sae-sweep ", "o'brien", "é/ü")}
    assert len(keys) == 4
    assert all(re.fullmatch(r"study-[0-9a-f]{12}", k) for k in keys)
    assert views.study_view_key("sae-sweep") == views.study_view_key("sae-sweep")


def _envelope(client, experiment_id, key=views.EXPERIMENT_VIEW) -> dict:
    return json.loads(client.get_experiment(experiment_id).tags[views.SHARED_VIEW_TAG + key])


def test_save_view__the_envelope_mlflow_ui_lists_written_once_and_updated_in_place(tmp_path):
    empty_store(tmp_path / "mlflow.db")
    client = CountingClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("e")
    client.set_experiment_tag(experiment_id, VIEW_TAG, "{}")  # a plain view, as the first cut
    views.save_experiment_view(client, experiment_id)
    saved = _envelope(client, experiment_id)
    assert saved["name"] == "Objectives: best test MSE first"
    assert isinstance(saved["createdAt"], int) and saved["updatedAt"] == saved["createdAt"]
    assert json.loads(saved["state"]) == views.view_state(views.TRAINED_RUNS)
    assert client.writes == 2

    views.save_experiment_view(client, experiment_id)
    views.save_experiment_view(client, experiment_id, client.get_experiment(experiment_id).tags)
    assert client.writes == 2 and _envelope(client, experiment_id) == saved

    client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps({**saved, "createdAt": 1}))
    views.save_view(client, experiment_id, views.EXPERIMENT_VIEW, saved["name"], "other")
    changed = _envelope(client, experiment_id)
    assert changed["createdAt"] == 1 and changed["updatedAt"] >= saved["updatedAt"]
    assert json.loads(changed["state"])["searchFilter"] == "other"
    assert client.writes == 4

    views.save_study_view(client, experiment_id, "o'brien")
    study = _envelope(client, experiment_id, views.study_view_key("o'brien"))
    assert study["name"] == "Study o'brien: best test MSE first"
    assert json.loads(study["state"])["searchFilter"] == views.study_filter("o'brien")
    keys = views.saved_views(client.get_experiment(experiment_id))
    assert keys == sorted([views.EXPERIMENT_VIEW, views.study_view_key("o'brien")])


def test_save_view__the_same_view_written_by_another_process_at_once_is_no_error(tmp_path):
    empty_store(tmp_path / "mlflow.db")
    client = CountingClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = client.create_experiment("e")
    client.race = True
    views.save_experiment_view(client, experiment_id)
    assert VIEW_TAG in client.get_experiment(experiment_id).tags
    client.race, client.fail = False, True
    with pytest.raises(MlflowException, match="UNIQUE"):
        views.save_study_view(client, experiment_id, "s")


def test_ensure_experiment__new_and_older_experiments_land_on_the_objectives(tmp_path):
    empty_store(tmp_path / "mlflow.db")
    settings = tracking.Settings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "art")
    )
    client = MlflowClient(settings.tracking_uri)
    older = client.create_experiment(settings.experiment("sweep"))  # before the views
    new = tracking.ensure_experiment(settings, "made-here")
    assert tracking.ensure_experiment(settings, settings.experiment("sweep")) == older
    for experiment_id in (older, new):
        tags = client.get_experiment(experiment_id).tags
        assert json.loads(json.loads(tags[VIEW_TAG])["state"])["selectedColumns"] == OBJECTIVES
    updated = client.get_experiment(older).tags[VIEW_TAG]
    tracking.ensure_experiment(settings, settings.experiment("sweep"))
    assert client.get_experiment(older).tags[VIEW_TAG] == updated
    for kind in ("benchmarks", "report"):  # no run there has a test MSE
        experiment_id = tracking.ensure_experiment(settings, settings.experiment(kind))
        assert views.saved_views(client.get_experiment(experiment_id)) == []


def test_urls__the_runs_tab_with_the_view_key_as_the_ui_shares_it():
    """Fix: the first cut linked the experiment's bare page, from which the UI redirects to the
    runs tab without the view key: the UI's default view opened."""
    ui = "http://127.0.0.1:5123"
    assert views.view_url(ui, "7", "objectives") == (
        "http://127.0.0.1:5123/#/experiments/7/runs"
        "?workflowType=machine_learning&viewStateShareKey=objectives"
    )
    fallback = urlsplit(views.sorted_url(ui, "7"))
    path, _, query = fallback.fragment.partition("?")
    assert path == "/experiments/7/runs"
    assert parse_qs(query) == {
        "workflowType": ["machine_learning"],
        "searchFilter": ["metrics.`test/mse` >= 0"],
        "orderByKey": ["metrics.`test/mse`"],
        "orderByAsc": ["true"],
    }
    assert views.run_url(ui, "7", "abc") == "http://127.0.0.1:5123/#/experiments/7/runs/abc"
    assert views.DEFAULT_UI_URL == "http://127.0.0.1:5000"
