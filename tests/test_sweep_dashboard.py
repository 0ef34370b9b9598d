"""The sweep in optuna-dashboard's and MLflow's own terms: the objectives named on the study, each
trial linked to its MLflow run, the study's description as its note, the trials as MLflow's table
artifact, the chosen model registered once per study, and closing lines that point at all of it.
"""

import dataclasses

import mlflow
import optuna
import optuna_dashboard
import pytest
import torch
from helpers_postgres import scratch_databases, url
from helpers_sweep import (
    client,
    dashboard_study,
    degenerate_front_stores,
    load_study,
    sweep_base,
    sweep_config,
)
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from sae import metrics as M
from sae import names, sweep
from sae.commands.sweep import report
from sae.sweep import registry, run_sweep
from sae.sweep.notes import note_study, trial_note, ui_address, ui_hint
from sae.sweep.space import space_json
from sae.tracking import views

GOOD = ((1e-2, 1e-3), (5e-3, 1e-3))
"""(lr, beta) at batch size 10 that learn on learnable_data: trials that are not degenerate."""
UI = views.DEFAULT_UI_URL


def _enqueue(storage_url, cfg, *params):
    study = sweep.open_study(sweep.make_storage(storage_url), cfg, sweep.build_space(cfg), 2)
    for lr, beta in params:
        study.enqueue_trial({"lr": lr, "beta": beta, "batch_size": 10})


def _note_of(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    """A finished trial's optuna-dashboard note through the dashboard's public ``get_note``,
    which takes a live Trial handle: made from the trial's storage id (a private name; this test
    fails loudly if it moves)."""
    return optuna_dashboard.get_note(optuna.Trial(study, trial._trial_id))


def _assert_linked(study, mlflow_client, experiment_id):
    """Every trial's user attribute and note link its own MLflow run, in ``experiment_id``."""
    for t in study.get_trials():
        run_id = t.user_attrs[names.ATTR_RUN_ID]
        run = mlflow_client.get_run(run_id)
        assert run.info.experiment_id == experiment_id
        assert run.data.tags[names.TAG_TRIAL_NUMBER] == str(t.number)
        link = f"{UI}/#/experiments/{experiment_id}/runs/{run_id}"
        assert t.user_attrs[names.ATTR_RUN_URL] == link
        note = _note_of(study, t)
        assert f"[trial-{t.number:03d}]({link})" in note
        assert "`python experiments/ui.py`" in note and UI in note


def test_sweep__named_objectives_linked_trials_notes_table_and_the_chosen_model_registered(
    tmp_path, monkeypatch, capsys
):
    base = sweep_base(tmp_path)
    base = dataclasses.replace(base, tracking=dataclasses.replace(base.tracking, log_model=True))
    cfg = sweep_config(trials=2, batch_sizes=(10,))
    _enqueue(str(tmp_path / "optuna.journal"), cfg, *GOOD)
    lines = []
    result = run_sweep(base, cfg, log=lines.append)
    mlflow_client = client(tmp_path)
    parent = mlflow_client.get_run(result.parent_run_id)
    experiment_id = parent.info.experiment_id
    assert result.experiment_id == experiment_id

    # optuna-dashboard: objective names, trial links, the study's note
    study = load_study(tmp_path)
    assert study.metric_names == ["test MSE", "code active fraction"]
    _assert_linked(study, mlflow_client, experiment_id)
    assert optuna_dashboard.get_note(study) == parent.data.tags[names.TAG_DESCRIPTION]
    assert optuna_dashboard.get_note(study).startswith("Optuna study 'sae-sweep'")

    # MLflow: the study's landing view, the trials table
    experiment = mlflow_client.get_experiment(experiment_id)
    assert views.study_view_key("sae-sweep") in views.saved_views(experiment)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_client.tracking_uri)  # load_table needs it
    table = mlflow_client.load_table(experiment_id, "trials.json", run_ids=[result.parent_run_id])
    assert table["number"].tolist() == [0, 1]
    assert table["batch_size"].tolist() == [10, 10]  # whole numbers, not 10.0
    assert table["retry_of"].isna().all()  # missing values written as null
    assert table["mlflow_run_id"].tolist() == result.trials["mlflow_run_id"].tolist()
    assert table[M.TEST_MSE].tolist() == pytest.approx(result.trials[M.TEST_MSE].tolist())

    # the registry: the front point with the lowest test MSE, as the study's version
    chosen = result.best.iloc[0]
    assert chosen["degenerate"] == ""
    assert result.registered == "models:/sae-sweep@study-sae-sweep", "\n".join(lines)
    version = mlflow_client.get_model_version_by_alias("sae-sweep", "study-sae-sweep")
    trial_run = mlflow_client.get_run(chosen["mlflow_run_id"])
    assert version.run_id == chosen["mlflow_run_id"]
    model_uri = trial_run.data.tags[names.TAG_MODEL_URI]
    model_id = model_uri.removeprefix("models:/")
    assert version.source == mlflow_client.get_logged_model(model_id).artifact_location
    assert version.tags == {
        "optuna.study": "sae-sweep",
        names.TAG_FAMILY: "l1",
        "optuna.trial_number": str(chosen.number),
        names.TAG_MODEL_URI: model_uri,
    }
    for words in (
        f"study `sae-sweep`, trial {chosen.number}",
        f"beta {chosen.beta:.3g}, lr {chosen.lr:.3g}, batch size 10",
        f"test MSE {chosen[M.TEST_MSE]:.4g}",
        f"code L0 {chosen[M.CODE_L0]:.4g}",
        f"probe accuracy {chosen[M.PROBE_ACCURACY]:.4g}",
        "degenerate false",
    ):
        assert words in version.description
    parent = mlflow_client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[names.TAG_REGISTERED_MODEL] == f"models:/sae-sweep/{version.version}"
    assert parent.data.tags[names.TAG_REGISTERED_ALIAS] == result.registered
    model = mlflow.pytorch.load_model(result.registered)
    images = torch.rand(3, 1, 28, 28)
    with torch.inference_mode():
        again = mlflow.pytorch.load_model(model_uri)(images)
        assert torch.equal(model(images), again)

    # the closing lines
    capsys.readouterr()
    report(result, cfg)
    out = capsys.readouterr().out.splitlines()
    link = views.view_url(UI, experiment_id, views.study_view_key("sae-sweep"))
    assert out[-5:] == [
        "browse: python experiments/ui.py --dashboard (the MLflow UI and optuna-dashboard)",
        f"the study's trials, lowest test MSE first: {link}",
        f"  ({ui_hint(mlflow_client.tracking_uri)})",
        f'the chosen model: mlflow.pytorch.load_model("{result.registered}")',
        f"the study's parent run: {result.parent_run_id}; Optuna storage: {result.storage}",
    ]
    assert "port" in out[-3] and "experiments/ui.py" in out[-3]

    # a resume keeps the study's note, and adds no version when it chooses the same trial; one
    # that chooses another moves the alias to a new version
    optuna_dashboard.save_note(study, "a note written in the dashboard")
    again = run_sweep(base, cfg, log=lines.append)
    assert optuna_dashboard.get_note(load_study(tmp_path)) == "a note written in the dashboard"
    assert again.registered == result.registered
    versions = mlflow_client.search_model_versions("name = 'sae-sweep'")
    assert [v.version for v in versions] == [version.version]
    trials = again.trials
    other = dataclasses.replace(again, best=trials[trials["number"] != chosen.number])
    for _ in range(2):  # the second time it is the same run again: nothing new
        assert registry.register_chosen(mlflow_client, other, "sae-sweep", lines.append)
    moved = mlflow_client.get_model_version_by_alias("sae-sweep", "study-sae-sweep")
    assert moved.run_id == other.best.iloc[0]["mlflow_run_id"] != version.run_id
    assert len(mlflow_client.search_model_versions("name = 'sae-sweep'")) == 2
    assert not [line for line in lines if "registered" in line]

    # nothing to register: one line why, nothing written
    empty = dataclasses.replace(again, best=again.best.iloc[0:0])
    assert registry.register_chosen(mlflow_client, empty, "sae-sweep", lines.append) is None
    assert lines[-1].startswith("no model registered: the study has no trial on its front")
    assert len(mlflow_client.search_model_versions("name = 'sae-sweep'")) == 2


def test_sweep__a_registry_failure_is_one_line_and_the_sweep_still_finishes(tmp_path, monkeypatch):
    base = sweep_base(tmp_path)
    base = dataclasses.replace(base, tracking=dataclasses.replace(base.tracking, log_model=True))
    cfg = sweep_config(trials=1, batch_sizes=(10,))
    _enqueue(str(tmp_path / "optuna.journal"), cfg, GOOD[0])

    def refuse(self, name, *args, **kwargs):
        raise MlflowException(f"the registry refused {name}")

    monkeypatch.setattr(MlflowClient, "create_model_version", refuse)
    lines = []
    result = run_sweep(base, cfg, log=lines.append)
    assert result.registered is None
    assert lines[-1] == "no model registered: MlflowException: the registry refused sae-sweep"
    mlflow_client = client(tmp_path)
    parent = mlflow_client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials/finished"] == 1
    assert "trials.json" in {a.path for a in mlflow_client.list_artifacts(result.parent_run_id)}
    assert names.TAG_REGISTERED_MODEL not in parent.data.tags


def test_sweep__two_workers_on_postgresql_note_every_trial(tmp_path):
    """save_note from worker processes on an RDB storage; no model logged, so none registered
    (one line why)."""
    with scratch_databases("optuna") as dbs:
        storage = url(dbs["optuna"])
        cfg = sweep_config(trials=4, workers=2, storage=storage, batch_sizes=(10,))
        _enqueue(storage, cfg, *GOOD, *GOOD)
        lines = []
        result = run_sweep(sweep_base(tmp_path), cfg, log=lines.append)
        study = optuna.load_study(study_name="sae-sweep", storage=sweep.make_storage(storage))
        trials = study.get_trials()
        assert len(trials) >= 4
        assert len({t.user_attrs[names.ATTR_WORKER] for t in trials}) == 2
        assert study.metric_names == ["test MSE", "code active fraction"]
        _assert_linked(study, client(tmp_path), result.experiment_id)
        assert optuna_dashboard.get_note(study).startswith("Optuna study 'sae-sweep'")
        chosen = result.best.iloc[0]["number"]
        assert lines[-1] == f"no model registered: trial {chosen}'s run logged no model " + (
            "(--no-log-model)"
        )


def test_notes__a_tracking_server_links_its_own_ui_without_credentials():
    uri = "https://alice:secret@mlflow.example.org:8443/"
    assert ui_address(uri) == "https://mlflow.example.org:8443"
    assert ui_address("sqlite:////tmp/mlflow.db") == UI
    note = trial_note(3, "trial-003", f"{ui_address(uri)}/#/experiments/1/runs/r", uri)
    assert "secret" not in note and "alice" not in note
    assert "tracking server at https://mlflow.example.org:8443" in note


def test_registry__aliases_are_valid_and_readable_where_the_name_allows():
    assert registry.study_alias("sae-sweep") == "study-sae-sweep"
    for name in ("my study", "a/b", "ü" * 3, "x" * 300):
        alias = registry.study_alias(name)
        assert alias == views.study_view_key(name) and registry.VALID_ALIAS.match(alias)
    assert registry.model_name("team/sweeps:mnist") == "team-sweeps-mnist"


def test_open_study__names_the_objectives_also_of_an_older_study_without_names(tmp_path):
    for objective, named in (
        ("pareto", ["test MSE", "code active fraction"]),
        ("pareto-probe", ["test MSE", "code active fraction", "probe accuracy"]),
        ("constrained", ["test MSE"]),
    ):
        cfg = sweep_config(objective=objective, study_name=objective)
        storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
        older = optuna.create_study(
            study_name=objective, storage=storage, directions=cfg.directions
        )  # as a sweep made it before the names
        older.set_user_attr(names.STUDY_SPACE, space_json(sweep.build_space(cfg)))
        older.set_user_attr(names.STUDY_OBJECTIVE, objective)
        assert older.metric_names is None
        sweep.open_study(storage, cfg, sweep.build_space(cfg), epochs=2)
        assert optuna.load_study(study_name=objective, storage=storage).metric_names == named


def test_note_study__written_when_missing_never_over_a_note_already_there():
    study = optuna.create_study()
    assert note_study(study, "") is False and optuna_dashboard.get_note(study) == ""
    assert note_study(study, "first") is True
    assert note_study(study, "second") is False  # a resume, or a note written by hand
    assert optuna_dashboard.get_note(study) == "first"


def test_ui_command__names_the_settings_file_and_storage_the_sweep_was_given(tmp_path):
    """The closing line's browse command opens the sweep's own stores: the default command for
    the project's mlflow.yaml, the settings file and storage otherwise (never a password)."""
    from sae.commands.sweep import UI_COMMAND, ui_command

    assert ui_command("mlflow.yaml", None) == UI_COMMAND
    assert ui_command("demo/mlflow.yaml", None) == f"{UI_COMMAND} --config-file demo/mlflow.yaml"
    assert ui_command("a b.yaml", "postgresql://u:secret@db/o") == (
        f"{UI_COMMAND} --config-file 'a b.yaml' --storage 'postgresql://u:***@db/o'"
    )


@pytest.mark.parametrize("objective", ["pareto", "constrained"])
def test_dashboard__best_trials_are_the_sweeps_front_and_degenerate_trials_infeasible(
    tmp_path, objective
):
    """Regression: optuna-dashboard's own Best Trials were every non-dominated COMPLETE trial
    (for one objective, the lowest test MSE), and it read no ``constraints:<key>`` written by
    ``Trial.set_constraint``: the README's screenshot showed a degenerate trial (test MSE 0.066,
    no better than the mean image) as a Best Trial. Served through ``dashboard.app``, the Best
    Trials are ``front.best_trials`` and the degenerate trials are drawn infeasible."""
    from sae.sweep import dashboard
    from sae.sweep.front import best_trials

    _, study, _, _ = degenerate_front_stores(tmp_path, objective)
    front = [t.number for t in best_trials(study)]
    assert front == ([0, 1, 3] if objective == "pareto" else [1])
    study_id = study._study_id  # the dashboard's own id of it, in its URLs

    stock = dashboard_study(optuna_dashboard.wsgi(study._storage), study_id)
    shown = sorted(t["number"] for t in stock["best_trials"])
    assert shown == ([0, 1, 2] if objective == "pareto" else [0])  # the defect, as it was
    assert all(t["constraints"] == [] for t in stock["trials"])

    served = dashboard_study(dashboard.app(study._storage), study_id)
    assert sorted(t["number"] for t in served["best_trials"]) == front
    infeasible = {t["number"] for t in served["trials"] if any(c > 0 for c in t["constraints"])}
    assert infeasible == ({2, 4} if objective == "pareto" else {0, 2, 4})
    # the stock app of the same process is left as it was
    again = dashboard_study(optuna_dashboard.wsgi(study._storage), study_id)
    assert sorted(t["number"] for t in again["best_trials"]) == shown
