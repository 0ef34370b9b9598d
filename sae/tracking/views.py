"""The MLflow UI's landing views: an experiment's (or a study's) runs sorted by test MSE with the
objective columns shown and a chart of the two objectives, saved where the UI keeps its views.

The MLflow UI (3.x) keeps a saved view of the runs page in the experiment tag
``mlflow.sharedViewState.<key>``: a JSON envelope ``{name, createdAt, updatedAt, state}`` whose
``state`` is the view's JSON (the search facets ``searchFilter``, ``orderByKey``, ``orderByAsc``
beside the table's and charts' UI state ``selectedColumns``, ``columnOrder``,
``compareRunCharts``, ...). Its "Save view" button writes one; its "Views" menu lists them by
name; ``#/experiments/<id>/runs?viewStateShareKey=<key>`` opens one (``view_url``). The state is
written as plain JSON, which the UI reads as it reads its own (optionally deflated) form.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from urllib.parse import urlencode

from mlflow.entities import Experiment
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sae import metrics as M
from sae import names

SHARED_VIEW_TAG = "mlflow.sharedViewState."
"""The prefix of the experiment tag that holds a saved view, followed by its key."""
SHARE_KEY_PARAM = "viewStateShareKey"
"""The query parameter of the runs page that names the saved view to open."""
EXPERIMENT_VIEW = "objectives"
"""The key of an experiment's own landing view: every trained run, best test MSE first."""
STUDY_VIEW_PREFIX = "study-"
FRONT_VIEW_SUFFIX = "-front"
DEFAULT_UI_PORT = 5000
DEFAULT_UI_URL = f"http://127.0.0.1:{DEFAULT_UI_PORT}"
"""Where ``experiments/ui.py`` serves the MLflow UI unless that port is taken: the address links
written into other stores (optuna-dashboard's trial notes) point at."""


def column(kind: str, key: str) -> str:
    """A runs-table column as the MLflow UI names it: ``metrics.`test/mse```."""
    return f"{kind}.`{key}`"


OBJECTIVE_COLUMNS = (
    column("metrics", M.TEST_MSE),
    column("metrics", M.CODE_L0),
    column("metrics", M.PROBE_ACCURACY),
    column("tags", names.TAG_DEGENERATE),
    column("params", names.param("train", "beta")),
    column("params", names.param("train", "lr")),
    column("params", names.param("train", "batch_size")),
)
"""The columns a landing view shows, in this order: the two objectives (test MSE, the code's L0),
the probe accuracy, the degenerate flag, then the searched parameters. They replace the UI's
default Source, Models and Dataset columns."""
ORDER_BY = column("metrics", M.TEST_MSE)
TRAINED_RUNS = f"metrics.`{M.TEST_MSE}` >= 0"
"""Runs that were evaluated: the sweep's parent run and benchmark runs have no test MSE. With a
filter (or a sort other than by start time) the UI lists runs flat, so a trial shows in its place
without its parent run and without expanding anything."""

_SECTION = "sae-objectives"
CHART_SECTIONS = (
    {
        "uuid": _SECTION,
        "name": "Objectives",
        "display": True,
        "isReordered": False,
        "deleted": False,
        "isGenerated": False,
    },
)
"""The first section of the chart view; the UI adds its own sections for the other metrics."""
CHARTS = (
    {
        "uuid": "sae-l0-vs-test-mse",
        "type": "SCATTER",
        "xaxis": {"key": M.CODE_L0, "type": "METRIC"},
        "yaxis": {"key": M.TEST_MSE, "type": "METRIC"},
        "runsCountToCompare": 100,
        "metricSectionId": _SECTION,
        "deleted": False,
        "isGenerated": False,
    },
)
"""The trade-off, L0 against test MSE, one point a run, as the UI's chart card. (Its parallel
coordinates would draw beta and the learning rate on linear axes, their decades squashed.)"""


def view_state(search_filter: str) -> dict[str, object]:
    """The view as the MLflow UI stores it: runs matching ``search_filter``, best test MSE first,
    the objective columns shown first, every run drawn in the charts."""
    return {
        "searchFilter": search_filter,
        "orderByKey": ORDER_BY,
        "orderByAsc": True,
        "selectedColumns": list(OBJECTIVE_COLUMNS),
        "columnOrder": list(OBJECTIVE_COLUMNS),
        "runsHiddenMode": "SHOW_ALL",
        "compareRunSections": list(CHART_SECTIONS),
        "compareRunCharts": list(CHARTS),
    }


def study_view_key(study: str) -> str:
    """The key of a study's view: ``study-`` and a digest of its name (a tag key keeps to a
    small alphabet; a study name need not)."""
    return STUDY_VIEW_PREFIX + hashlib.sha256(study.encode()).hexdigest()[:12]


def quoted(value: str) -> str:
    """``value`` as a string literal of MLflow's search syntax, which has no escapes: in single
    quotes, or in double quotes when it holds a single quote."""
    return f"'{value}'" if "'" not in value else f'"{value}"'


def study_filter(study: str) -> str:
    """The trials of ``study`` (its confirmation runs too), not its parent run. A name holding
    both kinds of quote cannot be written as a literal: each quote becomes LIKE's one-character
    wildcard, which may also match a study whose name differs only there."""
    if "'" in study and '"' in study:
        match = f"LIKE '{study.replace(chr(39), '_')}'"
    else:
        match = f"= {quoted(study)}"
    return f"tags.`{names.TAG_STUDY}` {match} and {TRAINED_RUNS}"


def _same_view(value: str | None, name: str, state: str) -> bool:
    try:
        saved = json.loads(value or "")
        return saved["name"] == name and saved["state"] == state
    except (ValueError, TypeError, KeyError):  # absent, or a plain (older) view
        return False


def _created_at(value: str | None) -> int | None:
    try:
        created = json.loads(value or "")["createdAt"]
    except (ValueError, TypeError, KeyError):
        return None
    return created if isinstance(created, int) else None


def save_view(
    client: MlflowClient,
    experiment_id: str,
    key: str,
    name: str,
    search_filter: str,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Save view ``key``, listed in the UI's Views menu as ``name``, on the experiment whose
    current tags are ``tags`` (read when not given). An unchanged view is not rewritten; a
    changed one keeps its creation time. Another process writing the same view at the same
    moment is no error."""
    tag = SHARED_VIEW_TAG + key
    if tags is None:
        tags = client.get_experiment(experiment_id).tags
    state = json.dumps(view_state(search_filter), sort_keys=True)
    if _same_view(tags.get(tag), name, state):
        return
    now = int(time.time() * 1000)
    created = _created_at(tags.get(tag)) or now
    envelope = {"name": name, "createdAt": created, "updatedAt": now, "state": state}
    try:
        client.set_experiment_tag(experiment_id, tag, json.dumps(envelope))
    except MlflowException:
        if not _same_view(client.get_experiment(experiment_id).tags.get(tag), name, state):
            raise


def save_experiment_view(
    client: MlflowClient, experiment_id: str, tags: Mapping[str, str] | None = None
) -> None:
    """The experiment's landing view: every trained run, best test MSE first."""
    name = "Objectives: best test MSE first"
    save_view(client, experiment_id, EXPERIMENT_VIEW, name, TRAINED_RUNS, tags)


def save_study_view(client: MlflowClient, experiment_id: str, study: str) -> None:
    """The view of one study's trials, best test MSE first."""
    name = f"Study {study}: best test MSE first"
    save_view(client, experiment_id, study_view_key(study), name, study_filter(study))


def front_view_key(study: str) -> str:
    """The key of the view of a study's front: the study's view key and ``-front``."""
    return study_view_key(study) + FRONT_VIEW_SUFFIX


def front_filter(study: str) -> str:
    """The trials of ``study`` on its front: those whose run carries TAG_FRONT ``true`` (set by
    the sweep's summary from ``sweep.front.front_of``; never a degenerate trial)."""
    return f"{study_filter(study)} and tags.`{names.TAG_FRONT}` = 'true'"


def save_front_view(client: MlflowClient, experiment_id: str, study: str) -> None:
    """The view of one study's front, best test MSE first: the trials the console, the report
    and optuna-dashboard (``sweep.dashboard``) show as its best."""
    name = f"Study {study}: its front, best test MSE first"
    save_view(client, experiment_id, front_view_key(study), name, front_filter(study))


def saved_views(experiment: Experiment) -> list[str]:
    """The keys of the views saved on ``experiment``."""
    return sorted(
        k.removeprefix(SHARED_VIEW_TAG) for k in experiment.tags if k.startswith(SHARED_VIEW_TAG)
    )


def runs_page(ui_url: str, experiment_id: str, **query: str) -> str:
    """The experiment's runs page in the MLflow UI at ``ui_url``, in the model-training workflow
    (MLflow 3's UI otherwise opens a new browser on its GenAI side), with ``query`` added."""
    params = urlencode({"workflowType": "machine_learning", **query})
    return f"{ui_url}/#/experiments/{experiment_id}/runs?{params}"


def view_url(ui_url: str, experiment_id: str, key: str) -> str:
    """The link that opens view ``key`` of the experiment, as the UI's own share link does (on
    the experiment's bare page the UI drops the key when it redirects to the runs tab)."""
    return runs_page(ui_url, experiment_id, **{SHARE_KEY_PARAM: key})


def sorted_url(ui_url: str, experiment_id: str) -> str:
    """The trained runs, best test MSE first, through the search facets in the URL: for a store
    without a saved view (the UI's default columns then)."""
    return runs_page(
        ui_url, experiment_id, searchFilter=TRAINED_RUNS, orderByKey=ORDER_BY, orderByAsc="true"
    )


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow UI at ``ui_url``."""
    return f"{ui_url}/#/experiments/{experiment_id}/runs/{run_id}"
