"""The README's several-machine set-up on loopback: two sweep workers share a study in PostgreSQL
and log to a sign-in-required tracking server (`experiments/server.py`) whose store is PostgreSQL
too, every connection as a role with a password that libpq reads from a password file
(PGPASSFILE), never from a URL or a command line.

Needs the PostgreSQL server on 127.0.0.1:5432; its databases and role are made from the
maintenance database and dropped afterwards. Skipped, saying why, only where nothing listens
there; under CI=true that fails, and so does any other error. The local server trusts loopback
connections, so it cannot show a wrong password refused; the test checks instead that libpq
(through psycopg and SQLAlchemy, as Optuna and MLflow use it) takes the password from the file.
"""

import secrets

import optuna
import pytest
import sqlalchemy
from helpers_postgres import scratch_databases, scratch_role, url, write_passfile
from helpers_proc import ArgvWatch
from helpers_server import add_user, assert_no_secret_in_runs, run_worker, start_server
from mlflow.tracking import MlflowClient

from sae import names, sweep


@pytest.fixture
def role_and_databases(tmp_path):
    """A role with a password, two databases it owns, and a password file for it."""
    password = secrets.token_urlsafe(18)
    with scratch_role(password) as role, scratch_databases("optuna", "mlflow", owner=role) as dbs:
        passfile = write_passfile(tmp_path / "pgpass", role, password)
        yield role, password, dbs, passfile


def test_libpq__takes_the_password_from_the_password_file(role_and_databases, monkeypatch):
    role, password, dbs, passfile = role_and_databases
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    engine = sqlalchemy.create_engine(url(dbs["optuna"], role))  # as RDBStorage makes its own
    try:
        with engine.connect() as connection:
            info = connection.connection.driver_connection.info
            assert (info.user, info.password) == (role, password)
    finally:
        engine.dispose()
    storage = sweep.make_storage(url(dbs["optuna"], role))
    assert optuna.get_all_study_names(storage) == []


def test_sweep__two_signed_in_workers_on_postgresql_and_a_tracking_server(
    tmp_path, role_and_databases, monkeypatch
):
    role, db_password, dbs, passfile = role_and_databases
    admin_password = secrets.token_urlsafe(18)
    worker_password = secrets.token_urlsafe(18)
    passwords = [db_password, admin_password, worker_password]
    storage_url = url(dbs["optuna"], role)
    with ArgvWatch(passwords) as watch:
        command, server_url = start_server(
            tmp_path, url(dbs["mlflow"], role), admin_password, PGPASSFILE=str(passfile)
        )
        try:
            add_user(server_url, admin_password, "sweep", worker_password, monkeypatch)
            flags = ("--trials", "4", "--workers", "2", "--storage", storage_url)
            done = run_worker(
                tmp_path, server_url, "sweep", worker_password, *flags, PGPASSFILE=str(passfile)
            )
            assert done.returncode == 0, done.stderr[-3000:]

            monkeypatch.setenv("PGPASSFILE", str(passfile))
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "sweep")
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", worker_password)
            study = optuna.load_study(
                study_name="sae-sweep", storage=sweep.make_storage(storage_url)
            )
            trials = study.get_trials()
            finished = [t for t in trials if sweep.counts_as_finished(t)]
            assert 4 <= len(finished) <= 5  # a worker may start one as the other ends the 4th
            assert sorted(t.number for t in trials) == list(range(len(trials)))
            assert len({t.user_attrs[names.ATTR_WORKER] for t in trials}) == 2

            client = MlflowClient(tracking_uri=server_url)
            experiment = client.get_experiment_by_name("auth-sweep")
            assert experiment.artifact_location.startswith("mlflow-artifacts:")  # served
            runs = client.search_runs([experiment.experiment_id])
            parent_id = study.user_attrs[names.STUDY_PARENT_RUN]
            children = {
                r.info.run_id: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id
            }
            assert len(runs) == len(trials) + 1  # no lost and no duplicate runs
            for trial in trials:
                run = children[trial.user_attrs[names.ATTR_RUN_ID]]
                assert run.data.tags[names.TAG_TRIAL_NUMBER] == str(trial.number)
                assert run.info.status == "FINISHED"
            assert client.get_run(parent_id).info.status == "FINISHED"
            assert client.list_artifacts(next(iter(children)), "images")  # through the server
            assert_no_secret_in_runs(client, experiment.experiment_id, passwords)
        finally:
            stopped = command.stop()
            command.close()
    assert stopped == 0
    assert watch.scans > 10 and watch.found == {}
    for text in (done.stdout, done.stderr, *command.lines):
        assert not any(p in text for p in passwords)
