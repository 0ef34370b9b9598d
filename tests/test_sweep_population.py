"""The sweep with --population: trials trained together end as they end alone, one by one."""

import os
import signal

import optuna
import pytest
from helpers_postgres import scratch_databases, url
from helpers_sweep import (
    assert_interrupted,
    children,
    client,
    load_study,
    run_cli,
    sweep_base,
    sweep_config,
)
from optuna.trial import TrialState

from sae import names, steppers, sweep
from sae.sweep import run_sweep

TRIALS = (  # (lr, beta, batch size)
    (1e-2, 1e-3, 10),
    (5e-3, 1e-4, 10),
    (2e-2, 3e-3, 10),
    (1e-2, 1e-3, 20),
)
TWO_GROUPS = (TRIALS[0], TRIALS[1], TRIALS[3])
"""Two batch-size groups: one of two members and one alone."""
RTOL = 1e-4
"""As tests/test_population.py: a member trained in a population equals its solo run to float32
rounding, amplified over the steps."""


def _quiet(_line: str) -> None:
    pass


def _sweep(tmp_path, population, trials=TRIALS, **kwargs):
    tmp_path.mkdir(exist_ok=True)
    base = sweep_base(tmp_path)
    cfg = sweep_config(trials=len(trials), population=population, **kwargs)
    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    study = sweep.open_study(storage, cfg, sweep.build_space(cfg), epochs=base.train.epochs)
    for lr, beta, batch_size in trials:
        study.enqueue_trial({"lr": lr, "beta": beta, "batch_size": batch_size})
    return run_sweep(base, cfg, log=_quiet)


def test_sweep_population__each_trial_ends_as_it_ends_trained_alone(tmp_path):
    """The same three trials, one at a time and as a population of 3 (two batch-size groups):
    the same values, states, params, tags, metrics and artifacts, each in its own child run."""
    alone = _sweep(tmp_path / "alone", 1, TWO_GROUPS)
    together = _sweep(tmp_path / "together", 3, TWO_GROUPS)
    runs = {}
    for name, result in (("alone", alone), ("together", together)):
        mlflow = client(tmp_path / name)
        by_id = {r.info.run_id: r for r in children(mlflow, result.parent_run_id)}
        trials = result.study.get_trials()
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
        runs[name] = []
        for trial in trials:
            run = by_id.pop(trial.user_attrs[names.ATTR_RUN_ID])
            artifacts = sorted(a.path for a in mlflow.list_artifacts(run.info.run_id))
            history = mlflow.get_metric_history(run.info.run_id, "train/loss")
            runs[name].append((trial, run, artifacts, [m.step for m in history]))
        assert not by_id  # one run per trial, nothing else
    for (t1, r1, a1, s1), (t2, r2, a2, s2) in zip(runs["alone"], runs["together"], strict=True):
        assert t1.params == t2.params
        assert t2.values == pytest.approx(t1.values, rel=RTOL, abs=1e-7)
        assert r2.info.status == r1.info.status == "FINISHED"
        assert r2.info.run_name == r1.info.run_name
        assert r2.data.params == r1.data.params
        assert set(r2.data.metrics) == set(r1.data.metrics)
        for key in ("test/mse", "train_epoch/loss", "sparsity/enc3/active_frac"):
            assert r2.data.metrics[key] == pytest.approx(r1.data.metrics[key], rel=RTOL), key
        assert a2 == a1 and s2 == s1  # the same artifacts; the same per-step curve
        for tag in (names.TAG_TRIAL_STATE, names.TAG_TRIAL_NUMBER, names.TAG_STUDY):
            assert r2.data.tags[tag] == r1.data.tags[tag]
        assert t2.user_attrs.keys() == t1.user_attrs.keys()


def test_sweep_population__a_diverging_member_fails_its_trial_and_the_others_complete(
    tmp_path, monkeypatch
):
    """One member's loss turns NaN: its trial ends FAIL with the reason in both stores (its run
    FAILED), the other two members complete, and the sweep ends well."""
    real = steppers.penalty

    def nan_for_one_member(acts, tc, **kw):
        value = real(acts, tc, **kw)
        return value * float("nan") if tc.beta == TRIALS[1][1] else value

    monkeypatch.setattr(steppers, "penalty", nan_for_one_member)
    result = _sweep(tmp_path, 3, TRIALS[:3])
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    failed = trials[1]
    assert failed.user_attrs[names.ATTR_NON_FINITE] is True
    assert "training loss became nan" in failed.user_attrs[names.ATTR_FAIL_REASON]
    mlflow = client(tmp_path)
    run = mlflow.get_run(failed.user_attrs[names.ATTR_RUN_ID])
    assert run.info.status == "FAILED" and run.data.tags[names.TAG_TRIAL_STATE] == "FAIL"
    assert "training loss became nan" in run.data.tags[names.TAG_REASON]
    for trial in (trials[0], trials[2]):
        assert mlflow.get_run(trial.user_attrs[names.ATTR_RUN_ID]).info.status == "FINISHED"
    assert mlflow.get_run(result.parent_run_id).info.status == "FINISHED"


def test_sweep_population__ctrl_c_fails_every_member_and_resume_retries_them(tmp_path, monkeypatch):
    """Ctrl-C while a population of 3 trains: every member's trial is FAIL "interrupted" with
    its run KILLED, each is queued again, and the next session completes them with their
    parameters."""
    real = steppers.penalty
    sent = []

    def penalty(acts, tc, **kw):
        if not sent:
            sent.append(signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real(acts, tc, **kw)

    monkeypatch.setattr(steppers, "penalty", penalty)
    with pytest.raises(KeyboardInterrupt):
        _sweep(tmp_path, 3, TRIALS[:3])
    study = load_study(tmp_path)
    assert_interrupted(tmp_path, study.trials[:3])
    assert [t.state for t in study.trials[3:]] == [TrialState.WAITING] * 3
    assert [t.user_attrs[names.ATTR_RETRY_OF] for t in study.trials[3:]] == [0, 1, 2]
    parent = client(tmp_path).get_run(study.user_attrs[names.STUDY_PARENT_RUN])
    assert parent.info.status == "KILLED"

    monkeypatch.setattr(steppers, "penalty", real)
    resumed = run_sweep(sweep_base(tmp_path), sweep_config(trials=3, population=3), log=_quiet)
    trials = resumed.study.get_trials()
    assert [t.state for t in trials[3:]] == [TrialState.COMPLETE] * 3
    assert [t.params for t in trials[3:]] == [t.params for t in trials[:3]]
    assert client(tmp_path).get_run(resumed.parent_run_id).info.status == "FINISHED"


def test_sweep_cli__two_workers_each_with_a_population_finish_the_study(tmp_path):
    """--workers 2 --population 2: each worker trains two trials at a time; the study gets
    its four trials, one run each under the one parent."""
    base = sweep_base(tmp_path)
    argv = ("--trials", "4", "--workers", "2", "--population", "2", "--epochs", "1")
    done = run_cli(base, tmp_path, *argv)
    assert done.returncode == 0, done.stderr
    study = load_study(tmp_path)
    assert sweep.finished_count(study) >= 4
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    run_ids = {t.user_attrs[names.ATTR_RUN_ID] for t in study.trials}
    parent = study.user_attrs[names.STUDY_PARENT_RUN]
    runs = children(client(tmp_path), parent)
    assert {r.info.run_id for r in runs} == run_ids
    assert {r.info.status for r in runs} == {"FINISHED"}


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_sweep_population__on_postgresql(tmp_path):
    """A population's trials on a database storage with heartbeats: asked and told by hand,
    they keep their heartbeat while they train and complete."""
    with scratch_databases("optuna") as databases:
        storage = url(databases["optuna"])
        result = run_sweep(
            sweep_base(tmp_path), sweep_config(trials=3, population=3, storage=storage), _quiet
        )
        study = optuna.load_study(study_name="sae-sweep", storage=sweep.make_storage(storage))
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert client(tmp_path).get_run(result.parent_run_id).info.status == "FINISHED"


def test_sweep_population__a_lasting_store_fault_fails_every_member_as_interrupted(
    tmp_path, monkeypatch
):
    """Regression (a full disk during a sweep): each trial failed as its own outcome, counted
    as finished, never run again. In a population too, a store fault that outlasts its retries
    fails every member as interrupted, stops the sweep, and the resume trains their
    parameters."""
    import errno

    from mlflow.tracking import MlflowClient

    from sae import faults

    monkeypatch.setattr(faults, "RETRY_S", 0.1)
    monkeypatch.setattr(faults, "FIRST_WAIT_S", 0.001)
    monkeypatch.setattr(faults, "_warned", set())
    monkeypatch.setattr(faults, "_gave_up", set())
    monkeypatch.setattr(faults, "_LOG", [tmp_path / "fault.log"])
    real = MlflowClient.log_batch

    def full_disk(self, run_id, metrics=(), *args, **kwargs):
        if metrics:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", full_disk)
    with pytest.raises(BaseException) as stopped:
        _sweep(tmp_path, 2, TRIALS[:2])
    assert faults.is_passing_fault(stopped.value)
    study = load_study(tmp_path)
    for trial in study.trials[:2]:
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs[names.ATTR_FAIL_REASON].startswith(names.REASON_FAULT)
        assert not sweep.counts_as_finished(trial)
    assert [t.state for t in study.trials[2:]] == [TrialState.WAITING] * 2

    monkeypatch.setattr(MlflowClient, "log_batch", real)  # space again
    resumed = run_sweep(sweep_base(tmp_path), sweep_config(trials=2, population=2), log=_quiet)
    trials = resumed.study.get_trials()
    assert [t.state for t in trials[2:]] == [TrialState.COMPLETE] * 2
    assert [t.params for t in trials[2:]] == [t.params for t in trials[:2]]
