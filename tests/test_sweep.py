"""The sweep on tiny data: linked runs, resume, failures, parallel workers, bad input."""

import dataclasses
import runpy
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from helpers_sweep import (
    SLOW_TRIAL,
    SWEEP,
    children,
    clean_env,
    client,
    resuming_slow_trial,
    running_with_run,
    sweep_base,
    sweep_command,
    sweep_config,
    wait_for,
)
from optuna.trial import TrialState

from sae import names, steppers, sweep
from sae.sweep import SweepConfig, run_sweep


def test_sweep__three_trials_in_two_sessions_are_three_linked_child_runs_under_one_parent(
    tmp_path,
):
    """Two trials, then a rerun asking for three: it resumes the same study and parent, runs only
    the missing trial (with new parameters), and every trial is a linked child run."""
    base = sweep_base(tmp_path)
    first = run_sweep(base, sweep_config(trials=2), log=lambda _m: None)
    result = run_sweep(base, sweep_config(trials=3), log=lambda _m: None)
    assert result.parent_run_id == first.parent_run_id
    mlflow = client(tmp_path)
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == 3  # the resumed sampler does not replay the first draws
    runs = {r.info.run_id: r for r in children(mlflow, result.parent_run_id)}
    assert len(runs) == 3
    for trial in trials:
        run = runs[trial.user_attrs[names.ATTR_RUN_ID]]
        assert run.data.tags[names.TAG_TRIAL_NUMBER] == str(trial.number)
        assert run.data.tags[names.TAG_TRIAL_STATE] == "COMPLETE"
        assert run.data.tags[names.TAG_STUDY] == "sae-sweep"
        assert run.info.run_name == f"trial-{trial.number:03d}"
        assert float(run.data.params["train.beta"]) == pytest.approx(trial.params["beta"])
        assert int(run.data.params["train.batch_size"]) == trial.params["batch_size"]
    parent = mlflow.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[names.TAG_DESCRIPTION].startswith("Optuna study 'sae-sweep'")
    artifacts = {a.path for a in mlflow.list_artifacts(result.parent_run_id)}
    assert {"trials.csv", "pareto_front.csv", "plots"} <= artifacts
    plots = {a.path for a in mlflow.list_artifacts(result.parent_run_id, "plots")}
    assert "plots/pareto_front.png" in plots and "plots/optimization_history.png" in plots
    assert parent.data.metrics["trials/finished"] == 3
    assert len(result.best) >= 1


def test_sweep__non_finite_trial_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real = steppers.penalty
    calls = []

    def nan_in_first_trial(acts, tc, **kw):
        calls.append(1)
        value = real(acts, tc, **kw)
        return value * float("nan") if len(calls) == 1 else value

    monkeypatch.setattr(steppers, "penalty", nan_in_first_trial)
    result = run_sweep(sweep_base(tmp_path), sweep_config(), log=lambda _m: None)
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    failed = trials[0]
    assert failed.user_attrs[names.ATTR_NON_FINITE] is True
    assert "training loss became nan" in failed.user_attrs[names.ATTR_FAIL_REASON]
    run = client(tmp_path).get_run(failed.user_attrs[names.ATTR_RUN_ID])
    assert run.info.status == "FAILED"
    assert run.data.tags[names.TAG_TRIAL_STATE] == "FAIL"
    assert "training loss became nan" in run.data.tags["optuna.reason"]


@pytest.mark.parametrize("population", [1, 5])
def test_sweep__constrained_objective_excludes_infeasible_and_degenerate_trials_and_prunes(
    tmp_path, population
):
    """The cap excludes the trial with the lowest test MSE, a dead model is never the best
    feasible trial though it meets the cap, and a slow learner is pruned. Before, this test used
    a cap every trial met and never saw a prune; then its best feasible trial had a dead code.
    The same with the first five trials trained together as a population (the sixth, alone,
    is pruned against them)."""
    cfg = sweep_config(
        population=population,
        objective="constrained",
        trials=6,
        max_active_frac=0.1,
        pruner="median",
        batch_sizes=(10,),
        lr_range=(1e-5, 1e-1),
        beta_range=(1e-6, 1.0),
    )
    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    study = sweep.open_study(storage, cfg, sweep.build_space(cfg), epochs=3)
    # (lr, beta): measured on this tiny data, test MSE / active fraction after 3 epochs are about
    # 0.0045/0.23 (best MSE, infeasible), 0.0046/0.15 (infeasible), 0.042/0.07 (the best
    # feasible), 0.058/0.02 (enc2 dead) and 0.060/0.0 (enc3 dead); the sixth barely learns at
    # lr 1e-4 and is pruned.
    for lr, beta in [(3e-3, 1e-6), (3e-3, 1e-3), (2e-2, 1e-3), (1e-2, 1e-2), (1e-3, 3e-2)]:
        study.enqueue_trial({"lr": lr, "beta": beta, "batch_size": 10})
    study.enqueue_trial({"lr": 1e-4, "beta": 1e-6, "batch_size": 10})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_sweep(sweep_base(tmp_path, epochs=3), cfg, log=lambda _m: None)
    # Regression: the deprecated constraints_func printed a FutureWarning on every start
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]
    trials = result.study.get_trials()
    assert len(result.study.directions) == 1
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5 + [TrialState.PRUNED]
    feasible = [t for t in trials[:5] if t.user_attrs[names.ATTR_CONSTRAINT] <= 0]
    assert [t.number for t in feasible] == [2, 3, 4]
    degenerate = [t.number for t in trials[:5] if t.user_attrs[names.ATTR_DEGENERATE]]
    assert degenerate == [3, 4]
    for t in trials[:5]:  # the samplers read the constraints the trial set
        assert t.constraints == {
            "code_active_frac": t.user_attrs[names.ATTR_CONSTRAINT],
            "degenerate": 1.0 if t.number in degenerate else -1.0,
        }
    assert min(trials[:5], key=lambda t: t.value).number == 0  # lowest MSE, but infeasible
    assert list(result.best["number"]) == [2]
    assert [t.number for t in sweep.best_trials(result.study)] == [2]
    mlflow = client(tmp_path)
    for t in trials:
        run = mlflow.get_run(t.user_attrs[names.ATTR_RUN_ID])
        assert run.data.tags[names.TAG_TRIAL_STATE] == t.state.name
        assert run.info.status == "FINISHED"  # a pruned trial ends its run normally
    pruned = mlflow.get_run(trials[5].user_attrs[names.ATTR_RUN_ID])
    assert pruned.data.tags[names.TAG_REASON].startswith("pruned at epoch ")
    assert trials[5].user_attrs[names.ATTR_FAIL_REASON].startswith("pruned at epoch ")


def test_sweep__killed_worker_trial_is_failed_killed_and_retried(tmp_path, monkeypatch):
    """A sweep killed with SIGKILL mid-trial: the rerun fails that trial, ends its MLflow run
    KILLED, runs its parameters again, and completes the total."""
    base = sweep_base(tmp_path)
    slow = subprocess.Popen(
        sweep_command(base, *SLOW_TRIAL),
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        (killed,) = wait_for("a running trial", lambda: running_with_run(tmp_path))
    finally:
        slow.send_signal(signal.SIGKILL)
        slow.wait()
    assert client(tmp_path).get_run(killed.user_attrs[names.ATTR_RUN_ID]).info.status == "RUNNING"

    same = resuming_slow_trial(base, monkeypatch)
    result = run_sweep(same, sweep_config(trials=1, batch_sizes=(50,)), log=lambda _m: None)
    trials = result.study.get_trials()
    assert len(trials) == 2 and trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs[names.ATTR_FAIL_REASON] == "worker process died"
    retries = [t for t in trials if t.user_attrs.get(names.ATTR_RETRY_OF) == 0]
    assert len(retries) == 1 and retries[0].params == trials[0].params
    assert retries[0].state == TrialState.COMPLETE
    assert sum(sweep.counts_as_finished(t) for t in trials) == 1
    run = client(tmp_path).get_run(trials[0].user_attrs[names.ATTR_RUN_ID])
    assert run.info.status == "KILLED" and run.data.tags[names.TAG_TRIAL_STATE] == "FAIL"


@pytest.mark.parametrize(
    ("argv", "files", "message"),
    [
        (["--sampler", "cmaes"], {}, "argument --sampler: invalid choice: 'cmaes'"),
        (["--pruner", "patient"], {}, "argument --pruner: invalid choice: 'patient'"),
        (["--pruner", "median"], {}, "error: --pruner median prunes one objective; with"),
        (
            ["--pruner", "pareto", "--objective", "constrained"],
            {},
            "error: --pruner pareto prunes the Pareto objectives; use median or none",
        ),
        (["--beta-range", "0.1", "0.001"], {}, "error: beta range [0.1, 0.001] is empty"),
        (["--lr-range", "0.01", "0.01"], {}, "error: lr range [0.01, 0.01] is empty or inverted"),
        (["--trials", "0"], {}, "error: --trials must be >= 1, got 0"),
        (["--population", "0"], {}, "error: --population must be >= 1, got 0"),
        (
            ["--pruner", "pareto", "--pareto-factor", "1"],
            {},
            "error: --pareto-factor must be >= 2, got 1",
        ),
        (["--population", "2", "--amp"], {}, "error: a population trains in float32: drop --amp"),
        (["--timeout", "inf"], {}, "argument --timeout: must be a finite number"),
        (["--storage", "postgresql://nobody@127.0.0.1:1/none"], {}, "cannot open Optuna storage"),
        (["--storage", "."], {}, "error: Optuna storage . is a folder: name a journal file in it"),
        (["--space", "missing.yaml"], {}, "error: cannot read search space missing.yaml"),
        (
            ["--space", "space.yaml"],
            {"space.yaml": "batch_size: [64, 12.7]\n"},
            "error: search space space.yaml: batch_size must hold whole numbers",
        ),
        (
            ["--space", "space.yaml"],
            {"space.yaml": "beta: [1.0e-5, .inf]\n"},
            "error: search space space.yaml: beta must hold finite numbers",
        ),
        (["--tracking-uri", "nonsense://"], {}, "error: tracking URI 'nonsense://' is not one"),
        (["--config-file", "missing.yaml"], {}, "error: missing.yaml does not exist"),
        (["--config-file", "."], {}, "error: . is a folder, not a settings file"),
    ],
)
def test_sweep_cli__bad_input_is_one_line_and_writes_nothing(
    tmp_path, monkeypatch, capsys, argv, files, message
):
    """Each class of bad input is one line on stderr, a non-zero exit and no file written. Run
    in-process (the same run_main a user's command goes through) to keep the suite fast."""
    base = sweep_base(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        [str(SWEEP), "--root", base.data.root, "--manifest", base.data.manifest]
        + ["--config-file", "mlflow.yaml", *argv],
    )
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(SWEEP), run_name="__main__")
    err = capsys.readouterr().err
    assert exit_.value.code not in (0, None)
    assert message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.fixture(scope="module")
def one_trial_study(tmp_path_factory) -> Path:
    """A folder with a one-trial study, trained once for the refusal cases (which leave it as it
    was, as they check)."""
    folder = tmp_path_factory.mktemp("one-trial-study")
    run_sweep(sweep_base(folder, epochs=1), sweep_config(trials=1), log=lambda _m: None)
    return folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"beta_range": (1e-5, 1e-2)}, "exists with a different search space"),
        ({"objective": "constrained"}, "exists with objective 'pareto', not 'constrained'"),
    ],
    ids=["space", "objective"],
)
def test_sweep__existing_study_with_another_space_or_objective_is_refused_before_any_write(
    one_trial_study, change, message
):
    """README: a study that exists with a different search space or objective is refused."""
    folder = one_trial_study
    journal = (folder / "optuna.journal").read_bytes()
    runs = len(client(folder).search_runs(["1"]))
    with pytest.raises(ValueError, match=message):
        run_sweep(sweep_base(folder), sweep_config(trials=2, **change), log=lambda _m: None)
    assert (folder / "optuna.journal").read_bytes() == journal
    assert len(client(folder).search_runs(["1"])) == runs


def test_space_file__overrides_ranges_and_rejects_unknown_parameters(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("beta: [1.0e-5, 1.0e-2]\nbatch_size: [64, 128]\n")
    values = sweep.read_space_file(str(path))
    space = sweep.build_space(dataclasses.replace(SweepConfig(), **values))
    assert (space["beta"].low, space["beta"].high) == (1e-5, 1e-2)
    assert space["batch_size"].choices == (64, 128) and space["lr"].low == 1e-4
    path.write_text("momentum: [0.1, 0.9]\n")
    with pytest.raises(ValueError, match="unknown parameter 'momentum'"):
        sweep.read_space_file(str(path))
