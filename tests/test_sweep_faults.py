"""One trial's failure stays in that trial; signals, lost workers and concurrent starts leave both
stores agreeing; no secret given on the command line is written down."""

import os
import runpy
import signal
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from helpers_postgres import scratch_databases, url
from helpers_sweep import (
    SLOW_TRIAL,
    SWEEP,
    assert_interrupted,
    children,
    clean_env,
    client,
    console_lines,
    load_study,
    resuming_slow_trial,
    running_with_run,
    sweep_base,
    sweep_command,
    sweep_config,
    wait_for,
)
from optuna.trial import TrialState

from sae import names, steppers, sweep, tracking
from sae import splits as splits_module
from sae import train as train_module
from sae.sweep import objective as sweep_objective
from sae.sweep import run_sweep
from sae.tracking import tracker as tracker_module


def _quiet(_line: str) -> None:
    pass


def test_trial__exception_in_end_of_run_logging_fails_that_trial_only(
    tmp_path, monkeypatch, capsys
):
    """Regression: a trial whose end-of-run histogram raised (`Too many bins`) crashed the whole
    sweep, ended the parent FAILED, and every resume crashed again on the same parameters."""
    real = tracker_module.activation_histograms
    calls = []

    def too_many_bins_once(model, images):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("Too many bins for data range. Cannot create 50 finite-sized bins.")
        return real(model, images)

    monkeypatch.setattr(tracker_module, "activation_histograms", too_many_bins_once)
    base = sweep_base(tmp_path)
    result = run_sweep(base, sweep_config(), log=_quiet)
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    failed = trials[0]
    reason = "ValueError: Too many bins for data range. Cannot create 50 finite-sized bins."
    assert failed.user_attrs[names.ATTR_FAIL_REASON] == reason
    assert failed.user_attrs[names.ATTR_FAILED] is True
    assert sweep.counts_as_finished(failed)
    mlflow = client(tmp_path)
    run = mlflow.get_run(failed.user_attrs[names.ATTR_RUN_ID])
    assert run.info.status == "FAILED"
    assert run.data.tags[names.TAG_TRIAL_STATE] == "FAIL"
    assert run.data.tags[names.TAG_REASON] == reason
    assert run.data.tags[names.TAG_ERROR] == reason
    assert mlflow.get_run(result.parent_run_id).info.status == "FINISHED"
    assert capsys.readouterr().out.splitlines() == [f"trial 0 FAIL: {reason}"]
    # a failure of the trial itself is its outcome: a resume does not run it again
    again = run_sweep(base, sweep_config(), log=_quiet)
    assert len(again.study.get_trials()) == 3


def test_fit__a_finite_but_absurd_loss_counts_as_diverged(tmp_path, monkeypatch):
    """Regression: a loss of 1e30 was trained on; the run then crashed in its logging."""
    from helpers import build_config

    real = steppers.penalty
    monkeypatch.setattr(steppers, "penalty", lambda acts, tc, **kw: real(acts, tc, **kw) + 1e7)
    cfg = build_config(tmp_path)
    splits = splits_module.load_splits(cfg.data, splits_module.resolve_device("cpu"))
    with pytest.raises(train_module.NonFiniteLossError, match=r"above 1e\+06: diverged"):
        train_module.fit(cfg, splits)


def test_sweep_cli__runaway_learning_rates_fail_their_trials_in_one_line_each(
    tmp_path, monkeypatch, capfd
):
    """Regression: `--lr-range 10 1000` ended the sweep in a traceback with the parent FAILED.
    Now each trial diverges (FAIL with its reason, one line), and the command succeeds. Run
    in-process through the command's own main (capfd sees what logging writes too). On noise:
    there a runaway rate diverges, where on learnable data it may kill a layer first."""
    base = sweep_base(tmp_path, learnable=False)
    monkeypatch.chdir(tmp_path)
    argv = ("--lr-range", "10", "1000", "--trials", "2", "--epochs", "2")
    monkeypatch.setattr(sys, "argv", sweep_command(base, *argv)[1:])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(SWEEP), run_name="__main__")
    out, err = capfd.readouterr()
    assert exit_.value.code == 0, err
    assert "Traceback" not in err and console_lines(err) == [], err
    failed = [line for line in out.splitlines() if " FAIL: " in line]
    assert [line.split(" FAIL: ")[0] for line in failed] == ["trial 0", "trial 1"]
    assert all("training loss became" in line for line in failed)
    study = load_study(tmp_path)
    assert all(t.state == TrialState.FAIL for t in study.trials)
    assert all(t.user_attrs[names.ATTR_NON_FINITE] for t in study.trials)
    parent = study.user_attrs[names.STUDY_PARENT_RUN]
    assert client(tmp_path).get_run(parent).info.status == "FINISHED"


def _start(base, cwd, *argv):
    return subprocess.Popen(
        sweep_command(base, *argv),
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sweep_cli__sigterm_fails_the_trial_in_flight_in_both_stores_and_resume_retries_it(
    tmp_path, monkeypatch
):
    """Regression: SIGTERM left the Optuna trial RUNNING while its MLflow run said KILLED."""
    base = sweep_base(tmp_path)
    proc = _start(base, tmp_path, *SLOW_TRIAL)
    try:
        (trial,) = wait_for("a running trial", lambda: running_with_run(tmp_path))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert console_lines(err) == ["error: terminated; the run was marked KILLED"]
    study = load_study(tmp_path)
    assert_interrupted(tmp_path, [study.trials[trial.number]])
    parent = client(tmp_path).get_run(study.user_attrs[names.STUDY_PARENT_RUN])
    assert parent.info.status == "KILLED"

    same = resuming_slow_trial(base, monkeypatch)
    resumed = run_sweep(same, sweep_config(trials=1, batch_sizes=(50,)), log=_quiet)
    trials = resumed.study.get_trials()
    retry = [t for t in trials if t.user_attrs.get(names.ATTR_RETRY_OF) == trial.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == trial.params
    assert sweep.finished_count(resumed.study) == 1 and len(trials) == 2
    assert client(tmp_path).get_run(resumed.parent_run_id).info.status == "FINISHED"


def test_sweep_cli__two_workers_stopped_by_sigterm_fail_their_trials_quietly(tmp_path):
    """Regression: with --workers 2, SIGTERM left trials RUNNING and printed worker tracebacks."""
    base = sweep_base(tmp_path)
    proc = _start(base, tmp_path, "--trials", "3", "--workers", "2", "--epochs", "400")
    try:
        running = wait_for("two running trials", lambda: running_with_run(tmp_path, 2))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err + out
    assert console_lines(err) == ["error: terminated; the run was marked KILLED"], err
    study = load_study(tmp_path)
    assert_interrupted(tmp_path, [study.trials[t.number] for t in running])
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_sweep_cli__a_worker_killed_mid_sweep_hands_its_trial_to_the_other(tmp_path):
    """Regression: the study completed, yet the command ended in `RuntimeError: 1 of 2 workers
    failed` with the parent FAILED. Now the lost worker is a warning and the command succeeds."""
    base = sweep_base(tmp_path)
    proc = _start(base, tmp_path, "--trials", "3", "--workers", "2", "--epochs", "20")
    try:
        running = wait_for("two running trials", lambda: running_with_run(tmp_path, 2))
        victim = max(running, key=lambda t: t.number)  # the newest: all its epochs still ahead
        os.kill(int(victim.user_attrs[names.ATTR_WORKER].rpartition(":")[2]), signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err + out
    warnings = [line for line in console_lines(out) if line.startswith("warning: worker")]
    assert len(warnings) == 1 and "its trial goes to another worker" in warnings[0]
    study = load_study(tmp_path)
    killed = study.trials[victim.number]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs[names.ATTR_FAIL_REASON] == names.REASON_WORKER_DIED
    (retry,) = [t for t in study.trials if t.user_attrs.get(names.ATTR_RETRY_OF) == victim.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.user_attrs[names.ATTR_WORKER] != killed.user_attrs[names.ATTR_WORKER]
    assert sweep.finished_count(study) >= 3
    # both workers ran trials, each in its own run under the one parent; the retry continued the
    # killed trial's run (sweep.resume), which ends FINISHED
    assert len({t.user_attrs[names.ATTR_WORKER] for t in study.trials}) >= 2
    assert retry.user_attrs[names.ATTR_RUN_ID] == killed.user_attrs[names.ATTR_RUN_ID]
    run_ids = [t.user_attrs[names.ATTR_RUN_ID] for t in study.trials if t.number != killed.number]
    assert len(set(run_ids)) == len(run_ids)
    mlflow = client(tmp_path)
    parent = study.user_attrs[names.STUDY_PARENT_RUN]
    statuses = {r.info.run_id: r.info.status for r in children(mlflow, parent)}
    assert sorted(statuses) == sorted(run_ids)
    assert set(statuses.values()) == {"FINISHED"}
    assert mlflow.get_run(parent).info.status == "FINISHED"


def test_sweep_cli__two_commands_started_at_once_on_a_new_store_share_one_parent(tmp_path):
    """Regression: two sweeps started together on a new SQLite store: one died creating the
    schema a second time (or left it half-built), and the study got two parent runs."""
    base = sweep_base(tmp_path, new_store=True)
    argv = ("--trials", "2", "--epochs", "1", "--batch-sizes", "50")
    procs = [_start(base, tmp_path, *argv) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "Traceback" not in err and console_lines(err) == [], err
    mlflow = client(tmp_path)
    study = load_study(tmp_path)
    parent = study.user_attrs[names.STUDY_PARENT_RUN]
    runs = mlflow.search_runs([mlflow.get_run(parent).info.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.run_id for r in parents] == [parent]
    trial_runs = {t.user_attrs[names.ATTR_RUN_ID] for t in study.trials}
    assert {r.info.run_id for r in children(mlflow, parent)} == trial_runs
    assert sweep.finished_count(study) >= 2
    assert not list(tmp_path.glob(".mlflow.db.*"))  # no private store left behind


def test_store__an_mlflow_store_that_never_answers_is_one_line_after_a_short_retry(monkeypatch):
    """Regression: a tracking URI with a wrong port (connection refused, a passing fault) was
    tried for the whole RETRY_S and then ended as a fault "that outlasted its retries"; like the
    Optuna storage, a store that has not answered yet is tried for OPEN_RETRY_S and refused as
    one that cannot be opened."""
    from sae import faults

    monkeypatch.setattr(faults, "RETRY_S", 1.0)  # the old path: the raw fault after it
    monkeypatch.setattr(faults, "OPEN_RETRY_S", 0.2)
    monkeypatch.setattr(faults, "FIRST_WAIT_S", 0.01)
    uri = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    with pytest.raises(ValueError, match="cannot open the MLflow store") as err:
        tracking.ensure_store(uri)
    assert "\n" not in str(err.value) and "refused" in str(err.value).lower()


def test_store__a_damaged_mlflow_store_is_one_line(tmp_path):
    path = tmp_path / "mlflow.db"
    path.write_bytes(b"not a database, half of one at best " * 50)
    with pytest.raises(ValueError, match="cannot open the MLflow store") as err:
        tracking.ensure_store(f"sqlite:///{path}")
    assert "\n" not in str(err.value) and "half-built" in str(err.value)


def test_sweep__a_password_in_the_storage_url_is_written_nowhere(tmp_path, monkeypatch, capfd):
    """Regression: a storage URL's password appeared on the console, in the `command` tag of the
    parent and every trial, and in the tables logged as artifacts. Run in-process through the
    command's own main as a user would: with the password on its command line it is refused
    (any user reads it with ``ps``); from mlflow.yaml, where the refusal sends it, it is used and
    written nowhere."""
    secret = "s3cret-do-not-write"
    base = sweep_base(tmp_path)
    monkeypatch.chdir(tmp_path)
    with scratch_databases("optuna") as databases:
        storage = url(databases["optuna"], password=secret)  # trust auth: any password is accepted
        argv = ("--trials", "1", "--epochs", "1")
        monkeypatch.setattr(sys, "argv", sweep_command(base, "--storage", storage, *argv)[1:])
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(SWEEP), run_name="__main__")
        out, err = capfd.readouterr()
        assert exit_.value.code == 1 and "holds a password or token" in err
        assert secret not in out + err and not (tmp_path / "mlartifacts").exists()
        settings = tmp_path / "mlflow.yaml"
        settings.write_text(settings.read_text().replace("optuna.journal", storage))
        monkeypatch.setattr(sys, "argv", sweep_command(base, *argv)[1:])
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(SWEEP), run_name="__main__")
        out, err = capfd.readouterr()
        assert exit_.value.code == 0, err
        study = optuna.load_study(study_name="sae-sweep", storage=sweep.make_storage(storage))
        stored = repr([(t.params, t.user_attrs, t.system_attrs) for t in study.trials])
        stored += repr(study.user_attrs)
    assert secret not in out + err + stored
    assert "***" in out  # the storage is still named, its password masked
    mlflow = client(tmp_path)
    runs = mlflow.search_runs([r.experiment_id for r in mlflow.search_experiments()])
    assert len(runs) == 2
    assert all(secret not in r.data.tags[names.TAG_COMMAND] for r in runs)
    for folder in (tmp_path / "mlartifacts", tmp_path):
        for path in folder.rglob("*"):
            if path.is_file() and path != settings:  # the user's own settings file holds it
                assert secret.encode() not in path.read_bytes(), path


def test_recover__a_killed_trial_is_retried_at_most_twice(tmp_path):
    """README: the parameters of an interrupted trial are tried at most MAX_RETRIES more times."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    study = optuna.create_study(storage=storage, study_name="s", directions=["minimize"] * 2)
    given = []
    for _ in range(sweep.MAX_RETRIES + 1):
        trial = study.ask({"beta": optuna.distributions.FloatDistribution(1e-6, 1e-1, log=True)})
        trial.set_user_attr(names.ATTR_WORKER, f"{socket.gethostname()}:{dead.pid}")
        given.append(sweep.recover_interrupted(study, storage, client(tmp_path)))
    assert sweep.MAX_RETRIES == 2
    assert given == [[0], [1], []]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL] * 3
    assert [t.user_attrs.get(names.ATTR_RETRY_OF) for t in study.trials] == [None, 0, 0]
    assert all(t.user_attrs[names.ATTR_FAIL_REASON] == "worker process died" for t in study.trials)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_heartbeat__a_stale_trial_is_retried_with_its_parameters_alone(tmp_path):
    """A database storage hands each trial its heartbeat fails (a worker lost on any machine) to
    the same retry as the journal's recovery: the retry runs the same parameters marked retry_of
    the first trial, carries none of the dead trial's worker or run, and a line is retried at most
    MAX_RETRIES times."""
    storage = sweep.make_storage(f"sqlite:///{tmp_path}/optuna.db")
    on_stale = storage.get_heartbeat_stale_trial_callback()
    study = optuna.create_study(storage=storage, study_name="s", directions=["minimize"] * 2)
    for _ in range(sweep.MAX_RETRIES + 1):
        trial = study.ask({"beta": optuna.distributions.FloatDistribution(1e-6, 1e-1, log=True)})
        trial.set_user_attr(names.ATTR_WORKER, "elsewhere:1")
        trial.set_user_attr(names.ATTR_RUN_ID, "its-run")
        study.tell(trial, state=TrialState.FAIL)  # as the heartbeat fails it, then calls back
        on_stale(study, study.trials[trial.number])
        if trial.number == 0:
            (retry,) = study.get_trials(states=(TrialState.WAITING,))
            assert retry.user_attrs == {names.ATTR_RETRY_OF: 0}
            assert retry.params == study.trials[0].params
    assert [t.user_attrs.get(names.ATTR_RETRY_OF) for t in study.trials] == [None, 0, 0]
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3
    assert len({t.params["beta"] for t in study.trials}) == 1


def test_sweep__timeout_starts_no_trial_after_the_deadline(tmp_path):
    """README: --timeout stops starting new trials after that many seconds; the sweep ends well."""
    base = sweep_base(tmp_path, epochs=1)
    result = run_sweep(base, sweep_config(trials=100, timeout=4.0), log=_quiet)
    trials = result.study.get_trials()
    assert 1 <= len(trials) < 100
    # the clock starts before the first trial, so no trial starts later than first + timeout
    first = trials[0].datetime_start.timestamp()
    assert all(t.datetime_start.timestamp() <= first + 4.0 for t in trials)
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert client(tmp_path).get_run(result.parent_run_id).info.status == "FINISHED"


def test_sweep__ctrl_c_fails_the_trial_in_flight_in_both_stores(tmp_path, monkeypatch):
    """Regression: Ctrl-C (SIGINT) left the Optuna trial RUNNING or its state unexplained. Now
    the trial in flight is FAIL "interrupted", its run KILLED with the same state and reason, the
    parent KILLED, and the interrupt reaches the command (which prints its one line)."""
    real_penalty, real_run = steppers.penalty, sweep_objective.train_run
    armed = []

    def trial_run(cfg, **kwargs):
        armed.append(kwargs["run_name"] == "trial-001")
        return real_run(cfg, **kwargs)

    sent = []

    def penalty(acts, tc, **kw):
        if armed[-1] and not sent:  # Ctrl-C in the middle of trial 1's training
            sent.append(signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real_penalty(acts, tc, **kw)

    monkeypatch.setattr(sweep_objective, "train_run", trial_run)
    monkeypatch.setattr(steppers, "penalty", penalty)
    base = sweep_base(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(base, sweep_config(), log=_quiet)
    study = load_study(tmp_path)
    assert [t.state for t in study.trials[:2]] == [TrialState.COMPLETE, TrialState.FAIL]
    assert_interrupted(tmp_path, [study.trials[1]])
    assert not study.get_trials(states=(TrialState.RUNNING,))
    retry = study.trials[2]  # waiting for the next session
    assert retry.state == TrialState.WAITING and retry.user_attrs[names.ATTR_RETRY_OF] == 1
    parent = client(tmp_path).get_run(study.user_attrs[names.STUDY_PARENT_RUN])
    assert parent.info.status == "KILLED"


def _store_fault(kind: str) -> BaseException:
    """What the MLflow store raises: locked by another process (an MlflowException from
    SQLAlchemy's OperationalError from sqlite3's, as MLflow chains them), or a full disk."""
    import errno
    import sqlite3

    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    if kind == "full":
        return OSError(errno.ENOSPC, "No space left on device")
    driver = sqlite3.OperationalError("database is locked")
    try:
        try:
            raise sqlalchemy.exc.OperationalError("INSERT INTO metrics", {}, driver) from driver
        except sqlalchemy.exc.OperationalError as wrapped:
            raise MlflowException("(sqlite3.OperationalError) database is locked") from wrapped
    except MlflowException as err:
        return err


def _faulty_store(monkeypatch, kind: str, during: str, times: int | None):
    """The MLflow store fails every epoch's metrics (``log_batch``) once the trial run
    ``during`` starts: ``times`` calls, or every call until ``healed`` is set."""
    from mlflow.tracking import MlflowClient

    from sae import faults

    monkeypatch.setattr(faults, "FIRST_WAIT_S", 0.01)
    monkeypatch.setattr(faults, "MAX_WAIT_S", 0.02)
    monkeypatch.setattr(faults, "_warned", set())
    monkeypatch.setattr(faults, "_gave_up", set())
    monkeypatch.setattr(faults, "_LOG", [])
    real_batch, real_run = MlflowClient.log_batch, sweep_objective.train_run
    state = {"armed": False, "failed": 0, "healed": False}

    def trial_run(cfg, **kwargs):
        state["armed"] = kwargs["run_name"] == during
        return real_run(cfg, **kwargs)

    def log_batch(self, run_id, metrics=(), *args, **kwargs):
        lasting = times is None and not state["healed"]
        if state["armed"] and metrics and (lasting or state["failed"] < (times or 0)):
            state["failed"] += 1
            raise _store_fault(kind)
        return real_batch(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(sweep_objective, "train_run", trial_run)
    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    return state


def test_sweep__a_store_locked_for_a_while_is_waited_out_and_the_sweep_reaches_its_count(
    tmp_path, monkeypatch, capsys
):
    """Regression: the MLflow store held locked by another process ended the trial in flight
    FAIL ("database is locked"), counted as finished and never retried: the sweep never reached
    its count. Now the store call is tried again until the lock goes, with one warning line."""
    state = _faulty_store(monkeypatch, "locked", during="trial-000", times=3)
    base = sweep_base(tmp_path, epochs=1)
    result = run_sweep(base, sweep_config(trials=2, batch_sizes=(50,)), log=_quiet)
    assert state["failed"] == 3
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    err = console_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(
        "warning: the MLflow store: OperationalError: database is locked; trying again"
    ), err


@pytest.mark.parametrize("kind", ["full", "locked"])
def test_sweep_cli__a_lasting_store_fault_stops_in_one_line_and_resume_retries_the_trial(
    tmp_path, monkeypatch, capfd, kind
):
    """Regression: a full disk (or a lock that did not go) during a sweep failed the remaining
    trials as their own outcome ("disk I/O error", with some 330 lines of SQLAlchemy
    tracebacks), and a rerun with space again ran nothing: the failed trials counted as
    finished. Now the store call is retried for a bounded time, then the sweep stops with one
    line naming the log of the traceback, exit 1; the trial in flight is FAIL as interrupted,
    its run KILLED, and a resume trains its parameters again."""
    from sae import faults

    monkeypatch.setattr(faults, "RETRY_S", 0.2)
    state = _faulty_store(monkeypatch, kind, during="trial-001", times=None)
    base = sweep_base(tmp_path, epochs=1)
    monkeypatch.chdir(tmp_path)
    argv = ("--trials", "2", "--batch-sizes", "50", "--epochs", "1")
    monkeypatch.setattr(sys, "argv", sweep_command(base, *argv)[1:])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(SWEEP), run_name="__main__")
    out, err = capfd.readouterr()
    assert exit_.value.code == 1, err
    assert "Traceback" not in out + err
    warning, error = console_lines(err)
    assert warning.startswith("warning: the MLflow store: ")
    assert error.startswith("error: ") and "outlasted its retries" in error
    log = error.rpartition("(details in ")[2].rstrip(")")
    assert "Traceback" in Path(log).read_text()
    study = load_study(tmp_path)
    first, stopped = study.trials[:2]
    assert first.state == TrialState.COMPLETE and stopped.state == TrialState.FAIL
    assert stopped.user_attrs[names.ATTR_FAIL_REASON].startswith(names.REASON_FAULT)
    assert names.ATTR_FAILED not in stopped.user_attrs
    assert not sweep.counts_as_finished(stopped)
    assert client(tmp_path).get_run(stopped.user_attrs[names.ATTR_RUN_ID]).info.status == "KILLED"
    assert len(study.trials) <= 3  # nothing trained after the fault, but its retry waiting

    state["healed"] = True  # space again: the same command resumes, training them again
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(SWEEP), run_name="__main__")
    assert exit_.value.code == 0, capfd.readouterr().err
    study = load_study(tmp_path)
    (retry,) = [t for t in study.trials if t.user_attrs.get(names.ATTR_RETRY_OF) == stopped.number]
    assert retry.state == TrialState.COMPLETE and retry.params == stopped.params
    assert sweep.finished_count(study) == 2


def test_recover__a_running_trial_that_names_no_worker_is_failed_once_it_is_old(tmp_path):
    """Regression: a RUNNING trial with no worker recorded (its worker died before it named
    itself, or the record was lost) was never taken as dead: every resume counted it as running
    and ran nothing. It is failed once older than ORPHAN_AGE_S (a fresh one may be a live
    worker's, about to name itself), and its parameters retried."""
    from sae.sweep import recovery

    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    study = optuna.create_study(storage=storage, study_name="s", directions=["minimize"] * 2)
    trial = study.ask({"beta": optuna.distributions.FloatDistribution(1e-6, 1e-1, log=True)})
    assert recovery.fail_dead_holders(study, storage, "gone") == []  # fresh: left alone
    assert recovery.fail_dead_holders(study, storage, "gone", orphan_age_s=0.0) == [0]
    assert study.trials[0].state == TrialState.FAIL
    assert sweep.recover_interrupted(study, storage, client(tmp_path)) == [0]
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert retry.params == trial.params


def test_make_storage__a_journal_append_through_a_full_disk_is_tried_again(tmp_path, monkeypatch):
    """The Optuna storage's calls are retried while a passing fault lasts: an append that fails
    twice with ENOSPC, then finds space, is written once and whole."""
    import errno

    from sae import faults, journal

    monkeypatch.setattr(faults, "FIRST_WAIT_S", 0.001)
    monkeypatch.setattr(faults, "_LOG", [tmp_path / "fault.log"])
    real = optuna.storages.journal.JournalFileBackend.append_logs
    failures = []

    def append_logs(self, logs):
        if logs[0].get("user_attr") and len(failures) < 2:
            failures.append(1)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, logs)

    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    study = optuna.create_study(storage=storage, study_name="s")
    monkeypatch.setattr(optuna.storages.journal.JournalFileBackend, "append_logs", append_logs)
    study.set_user_attr("k", "v")
    assert len(failures) == 2
    assert load_study(tmp_path, "s").user_attrs == {"k": "v"}
    assert journal.find_damage(tmp_path / "optuna.journal") is None
