"""The adapter to MLflow's and Optuna's non-public calls: fails loudly when a release moves one."""

import time
import warnings

import optuna
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from sae import internals


def test_metric_histories__the_sql_store_still_offers_the_bulk_read_and_it_agrees(tmp_path):
    """If this fails, MLflow moved ``get_metric_history_bulk``: the report would silently fall
    back to one query per (run, metric), thousands for a large store. Update the adapter."""
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    runs = [client.create_run(experiment).info.run_id for _ in range(3)]
    for i, run_id in enumerate(runs):
        client.log_batch(
            run_id, metrics=[Metric("m", i + step, 1000 + step, step) for step in (1, 2)]
        )

    assert internals.bulk_history_reader(client) is not None
    bulk = sorted(internals.metric_histories(client, runs, "m"))

    public = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    public._tracking_client = None  # no store to reach: the public per-run path
    assert internals.bulk_history_reader(public) is None
    client_public = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    per_run = sorted(
        (run_id, m.step, m.value, m.timestamp)
        for run_id in runs
        for m in client_public.get_metric_history(run_id, "m")
    )
    assert bulk == per_run and len(bulk) == 6


def test_set_trial_user_attr__reaches_a_running_trial_of_another_handle(tmp_path):
    """If this fails, Optuna renamed the storage methods the sweep uses to give a dead worker's
    trial its reason before failing it with the public ``study.tell``."""
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log"))
    )
    study = optuna.create_study(study_name="s", storage=storage)
    study.ask()  # trial 0, RUNNING, as if another process held it
    internals.set_trial_user_attr(storage, "s", 0, "fail_reason", "worker process died")
    study.tell(0, state=optuna.trial.TrialState.FAIL)
    (trial,) = optuna.load_study(study_name="s", storage=storage).trials
    assert trial.user_attrs == {"fail_reason": "worker process died"}
    assert trial.state == optuna.trial.TrialState.FAIL


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_trial_heartbeats__keep_asked_trials_alive_until_the_block_ends(tmp_path):
    """If this fails, Optuna moved the heartbeat a storage records for a running trial: a
    population's trials (asked and told by hand) would be failed as stale by every other worker
    of a database storage while they train."""
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path}/optuna.db", heartbeat_interval=1, grace_period=2
    )
    study = optuna.create_study(study_name="s", storage=storage)
    beating, silent = study.ask(), study.ask()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        with internals.trial_heartbeats(storage, "s", [beating.number]):
            time.sleep(3.5)
            optuna.storages.fail_stale_trials(study)
            assert study.trials[beating.number].state == optuna.trial.TrialState.RUNNING
    # the other trial had no heartbeat at all: never failed as stale, as Optuna's own rule
    assert study.trials[silent.number].state == optuna.trial.TrialState.RUNNING
    time.sleep(3.5)  # the block ended: its trial goes stale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    assert study.trials[beating.number].state == optuna.trial.TrialState.FAIL


def test_system_metrics_monitor__logs_the_machine_on_a_client_run_and_its_last_sample(tmp_path):
    """The monitor behind mlflow.start_run(log_system_metrics=True), built for a run id: a run
    much shorter than its interval gets nothing from it alone, and one sample from
    publish_last_sample, at step 0; a resumed run continues at step 1."""
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    for step in (0, 1):
        monitor = internals.system_metrics_monitor(run_id, 60.0, client.tracking_uri)
        monitor.start()
        monitor.finish()
        history = client.get_metric_history(run_id, "system/cpu_utilization_percentage")
        assert [m.step for m in history] == list(range(step))
        internals.publish_last_sample(monitor)
        history = client.get_metric_history(run_id, "system/cpu_utilization_percentage")
        assert [m.step for m in history] == list(range(step + 1))


def test_dashboard_front__replaces_the_dashboards_best_trials_and_constraints(tmp_path):
    """If this fails, optuna-dashboard moved the serializer of its study page
    (``optuna_dashboard._app.serialize_study_detail``) or the shape of what it returns: its Best
    Trials would again be every non-dominated trial, a degenerate one among them, and no trial
    would be drawn infeasible (it reads only Optuna's older ``constraints`` attribute)."""
    import optuna_dashboard
    from helpers_sweep import dashboard_study

    study = optuna.create_study(directions=["minimize", "minimize"])
    study.add_trials(
        [
            optuna.trial.create_trial(values=[0.01, 0.5], constraints={"degenerate": -1.0}),
            optuna.trial.create_trial(values=[0.06, 0.0], constraints={"degenerate": 1.0}),
        ]
    )
    stock = dashboard_study(optuna_dashboard.wsgi(study._storage), study._study_id)
    assert [t["number"] for t in stock["best_trials"]] == [0, 1]
    assert [t["constraints"] for t in stock["trials"]] == [[], []]

    app = internals.dashboard_front(
        optuna_dashboard.wsgi(study._storage),
        lambda name: [study.trials[0]] if name == study.study_name else [],
        lambda trial: list(trial.constraints.values()),
    )
    shown = dashboard_study(app, study._study_id)
    assert [t["number"] for t in shown["best_trials"]] == [0]
    assert shown["best_trials"][0]["values"] == [0.01, 0.5]
    assert [t["constraints"] for t in shown["trials"]] == [[-1.0], [1.0]]


def test_delete_run_artifacts__removes_a_folder_of_a_runs_artifacts_and_nothing_else(tmp_path):
    """If this fails, MLflow moved the artifact repositories' ``delete_artifacts``: a trial's
    checkpoint would stay in its run's artifacts after the trial ended."""
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "a").as_uri())
    run_id = client.create_run(experiment).info.run_id
    (tmp_path / "state.pt").write_bytes(b"x")
    client.log_artifact(run_id, str(tmp_path / "state.pt"), "checkpoint")
    client.log_artifact(run_id, str(tmp_path / "state.pt"), "kept")
    internals.delete_run_artifacts(client, run_id, "checkpoint")
    assert [a.path for a in client.list_artifacts(run_id)] == ["kept"]
    internals.delete_run_artifacts(client, run_id, "checkpoint")  # none left: nothing happens
