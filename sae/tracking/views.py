"""The MLflow UI's landing view: an experiment's runs sorted by test MSE with the objective columns
shown, saved where the UI itself keeps a shared view.

The MLflow UI (3.x) restores a runs-page view from the experiment tag
``mlflow.sharedViewState.<key>`` when it is opened with ``?viewStateShareKey=<key>``: the tag
holds the view as JSON, the search facets (``searchFilter``, ``orderByKey``, ``orderByAsc``, ...)
beside the table's UI state (``selectedColumns``, ``runsHiddenMode``, ...). It is what the UI's
own "Share" button writes. A view saved here is one such tag; ``view_url`` is its link.
"""

from __future__ import annotations

import hashlib
import json

from mlflow.entities import Experiment
from mlflow.tracking import MlflowClient

from sae import metrics as M
from sae import names

SHARED_VIEW_TAG = "mlflow.sharedViewState."
"""The prefix of the experiment tag that holds a shared view, followed by its key."""
SHARE_KEY_PARAM = "viewStateShareKey"
"""The query parameter of the experiment page that names the shared view to open."""
EXPERIMENT_VIEW = "objectives"
"""The key of an experiment's own landing view: every trained run, best test MSE first."""


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
"""The columns a landing view shows: the two objectives (test MSE, the code's L0), the probe
accuracy, the degenerate flag, then the searched parameters."""
ORDER_BY = column("metrics", M.TEST_MSE)
TRAINED_RUNS = f"metrics.`{M.TEST_MSE}` >= 0"
"""Runs that were evaluated: the sweep's parent run and benchmark runs have no test MSE."""


def view_state(search_filter: str) -> dict[str, object]:
    """The view as the MLflow UI stores it: runs matching ``search_filter``, best test MSE first,
    the objective columns shown."""
    return {
        "searchFilter": search_filter,
        "orderByKey": ORDER_BY,
        "orderByAsc": True,
        "selectedColumns": list(OBJECTIVE_COLUMNS),
        "runsHiddenMode": "SHOW_ALL",
    }


def study_view_key(study: str) -> str:
    """The key of a study's view: ``study-`` and a digest of its name (a tag key keeps to a
    small alphabet; a study name need not)."""
    return "study-" + hashlib.sha256(study.encode()).hexdigest()[:12]


def study_filter(study: str) -> str:
    """The trials of ``study`` (its confirmation runs too), not its parent run."""
    quoted = study.replace("'", "\\'")
    return f"tags.`{names.TAG_STUDY}` = '{quoted}' and {TRAINED_RUNS}"


def save_view(client: MlflowClient, experiment_id: str, key: str, search_filter: str) -> None:
    """Save the landing view ``key`` on the experiment (unchanged tags are not rewritten)."""
    value = json.dumps(view_state(search_filter), sort_keys=True)
    experiment = client.get_experiment(experiment_id)
    if experiment.tags.get(SHARED_VIEW_TAG + key) != value:
        client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + key, value)


def save_experiment_view(client: MlflowClient, experiment_id: str) -> None:
    save_view(client, experiment_id, EXPERIMENT_VIEW, TRAINED_RUNS)


def save_study_view(client: MlflowClient, experiment_id: str, study: str) -> None:
    save_view(client, experiment_id, study_view_key(study), study_filter(study))


def saved_views(experiment: Experiment) -> list[str]:
    """The keys of the views saved on ``experiment``."""
    return sorted(
        k.removeprefix(SHARED_VIEW_TAG) for k in experiment.tags if k.startswith(SHARED_VIEW_TAG)
    )


def view_url(ui_url: str, experiment_id: str, key: str) -> str:
    """The link that opens view ``key`` of the experiment in the MLflow UI at ``ui_url``. The
    model-training workflow is named too: MLflow 3's UI otherwise opens on its GenAI view."""
    return (
        f"{ui_url}/#/experiments/{experiment_id}"
        f"?workflowType=machine_learning&{SHARE_KEY_PARAM}={key}"
    )


DEFAULT_UI_URL = "http://127.0.0.1:5000"
"""Where ``experiments/ui.py`` serves the MLflow UI unless that port is taken: the address links
written into other stores (optuna-dashboard's trial notes) point at."""


def run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow UI at ``ui_url``."""
    return f"{ui_url}/#/experiments/{experiment_id}/runs/{run_id}"
