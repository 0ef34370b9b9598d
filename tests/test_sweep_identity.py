"""A study is one experiment: the settings of its trials and its experiment, recorded when it is
created, are compared on every resume (issue 23, class 3)."""

import dataclasses
import json
import runpy
import sys
from pathlib import Path

import pytest
from helpers_sweep import SWEEP, client, load_study, sweep_base, sweep_command, sweep_config
from mlflow.tracking import MlflowClient

from sae import names, sweep, tracking
from sae.sweep import run_sweep
from sae.sweep.identity import identity_json, study_identity
from sae.sweep.space import space_json
from sae.sweep.workers import Context, run_worker

STUDY = ("--trials", "1", "--epochs", "1", "--batch-sizes", "10", "20")
"""The one-trial, one-epoch L1 study every resume below starts from."""


def _cli(base, folder: Path, argv, monkeypatch, capsys) -> tuple[int, str]:
    """``sweep_command(base, *argv)`` in-process in ``folder`` (the run_main a user's command
    goes through, without a second interpreter): (exit status, stderr)."""
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "argv", sweep_command(base, *argv)[1:])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(SWEEP), run_name="__main__")
    return exit_.value.code or 0, capsys.readouterr().err


def _stores(folder: Path) -> tuple[bytes, list[str], list[str]]:
    """What a refused command must leave as it was: the journal, every run, every experiment."""
    mlflow = MlflowClient(tracking_uri=f"sqlite:///{folder}/mlflow.db")
    experiments = sorted(e.name for e in mlflow.search_experiments())
    ids = [e.experiment_id for e in mlflow.search_experiments()]
    runs = sorted(f"{r.info.run_id} {r.info.status}" for r in mlflow.search_runs(ids))
    return (folder / "optuna.journal").read_bytes(), runs, experiments


@pytest.fixture(scope="module")
def one_trial_study(tmp_path_factory):
    """A folder holding a one-trial, one-epoch L1 study made by the CLI; the refusals below
    leave it as it was (which they check)."""
    folder = tmp_path_factory.mktemp("identity-study")
    base = sweep_base(folder)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(folder)
        monkeypatch.setattr(sys, "argv", sweep_command(base, *STUDY)[1:])
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(SWEEP), run_name="__main__")
    assert exit_.value.code in (0, None)
    return folder, base


@pytest.mark.parametrize(
    ("argv", "was", "now"),
    [
        (["--epochs", "2"], "train.epochs=1", "train.epochs=2"),
        (
            ["--penalty-layers", "encoder", "--train-size", "100"],
            "data.train_size=200, train.penalty_layers=all",
            "data.train_size=100, train.penalty_layers=encoder",
        ),
        (["--test-size", "60"], "data.test_size=120", "data.test_size=60"),
        (["--experiment", "elsewhere"], "tracking.experiment=sae-sweep", "=elsewhere"),
        (["--output-activation", "sigmoid"], "model.output_activation=relu", "=sigmoid"),
        (["--adam-beta2", "0.99"], "train.adam_beta2=0.999", "train.adam_beta2=0.99"),
        (["--seed", "7", "--no-probe"], "train.probe=True, train.seed=1", "train.seed=7"),
    ],
    ids=["epochs", "penalty-and-train-size", "test-size", "experiment", "model", "adam", "seed"],
)
def test_sweep_cli__resume_with_other_trial_settings_is_one_line_naming_them_writing_nothing(
    one_trial_study, monkeypatch, capsys, argv, was, now
):
    """Regression: a resumed study took --epochs 2, --penalty kl --train-size 1000, another
    --experiment, ... after 1-epoch L1 trials and trained new trials into the same study (their
    runs in another experiment than its parent run). Now: one line naming the fields, exit 1,
    neither store touched."""
    folder, base = one_trial_study
    before = _stores(folder)
    code, err = _cli(base, folder, [*STUDY, "--trials", "2", *argv], monkeypatch, capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("error: study 'sae-sweep' was created with ") and was in err, err
    assert now in err and "pass the same settings or --study-name NEW" in err, err
    assert _stores(folder) == before


def test_sweep_cli__resume_with_another_count_timeout_population_or_sampler_goes_on(
    one_trial_study, monkeypatch, capsys
):
    """The trial count, timeout, population, sampler, pruner and confirmations are not the
    study's identity (nor the device or the threads): a resume with others runs the missing
    trial into the same study and parent run."""
    folder, base = one_trial_study
    parent = load_study(folder).user_attrs[names.STUDY_PARENT_RUN]
    argv = [*STUDY, "--trials", "2", "--timeout", "600", "--population", "1", "--pruner", "pareto"]
    argv += ["--sampler", "random", "--sampler-seed", "3", "--device", "cpu", "--threads", "1"]
    code, err = _cli(base, folder, argv, monkeypatch, capsys)
    assert code == 0, err
    study = load_study(folder)
    assert len(study.trials) == 2 and study.user_attrs[names.STUDY_PARENT_RUN] == parent


def test_study_identity__leaves_out_what_does_not_define_a_trial(tmp_path):
    """Workers, population, count, timeout, sampler, pruner, confirmations, the device, threads,
    logging cadence and where the stores and files are found do not change the identity; the
    searched fields are not in it; the data is its digest and the images trained on."""
    base = sweep_base(tmp_path)
    base = dataclasses.replace(
        base, tracking=dataclasses.replace(base.tracking, experiment="sae-sweep")
    )
    cfg = sweep_config()
    identity = study_identity(base, cfg)
    other = dataclasses.replace(
        base,
        data=dataclasses.replace(base.data, root=str(tmp_path / "elsewhere"), train_size=200),
        train=dataclasses.replace(base.train, device="cpu", threads=3, log_every=7, beta=0.5),
        tracking=dataclasses.replace(base.tracking, tracking_uri="sqlite:///x.db"),
    )
    others = dataclasses.replace(
        cfg,
        trials=9,
        workers=4,
        population=2,
        timeout=5.0,
        sampler="random",
        confirm=1,
        pruner="pareto",
        max_active_frac=0.1,  # the constrained objective's alone
        pareto_warmup=1,
        sampler_seed=3,
    )
    assert study_identity(other, others) == identity
    assert {"train.beta", "train.lr", "train.batch_size", "data.root"}.isdisjoint(identity)
    assert identity["data.train_size"] == 200 and identity["data.test_size"] == 120
    assert identity["tracking.experiment"] == "sae-sweep" and "data.digest" in identity
    constrained = dataclasses.replace(cfg, objective="constrained")
    tighter = dataclasses.replace(constrained, max_active_frac=0.1)
    assert study_identity(base, tighter) != study_identity(base, constrained)


def test_run_worker__refuses_a_study_of_other_trial_settings(tmp_path):
    """A worker process (and the populations it trains) opens the study through the same check
    as the command: with other settings than the study's it trains nothing."""
    base = sweep_base(tmp_path, epochs=1)
    base = dataclasses.replace(
        base, tracking=dataclasses.replace(base.tracking, experiment="sae-sweep")
    )
    cfg = sweep_config(trials=1, population=2)
    storage_url = str(tmp_path / "optuna.journal")
    storage = sweep.make_storage(storage_url)
    identity = study_identity(base, cfg)
    sweep.open_study(storage, cfg, sweep.build_space(cfg), 1, identity=identity)
    before = (tmp_path / "optuna.journal").read_bytes()
    longer = dataclasses.replace(base, train=dataclasses.replace(base.train, epochs=2))
    settings = tracking.load_settings(base.tracking.config_file)
    ctx = Context(longer, cfg, settings, storage_url, parent_run_id="none", worker=1)
    with pytest.raises(ValueError, match=r"train\.epochs=1; this command has train\.epochs=2"):
        run_worker(ctx)
    assert (tmp_path / "optuna.journal").read_bytes() == before


def _older_study(folder: Path, base, cfg, parent: str | None = None):
    """A study as the sweep made them before it recorded its identity (no such attribute)."""
    storage = sweep.make_storage(str(folder / "optuna.journal"))
    study = sweep.open_study(storage, cfg, sweep.build_space(cfg), base.train.epochs)
    assert study.user_attrs[names.STUDY_SPACE] == space_json(sweep.build_space(cfg))
    if parent:
        study.set_user_attr(names.STUDY_PARENT_RUN, parent)
    assert names.STUDY_IDENTITY not in study.user_attrs
    return study


def test_run_sweep__a_study_older_than_its_identity_records_it_then_holds_to_it(tmp_path):
    """A study made before identities were recorded is resumed and takes this command's
    identity; the next resume with other settings is refused."""
    base = sweep_base(tmp_path, epochs=1)
    cfg = sweep_config(trials=1)
    _older_study(tmp_path, base, cfg)
    lines = []
    run_sweep(base, cfg, log=lines.append)
    recorded = json.loads(load_study(tmp_path).user_attrs[names.STUDY_IDENTITY])
    resolved = dataclasses.replace(
        base, tracking=dataclasses.replace(base.tracking, experiment="sae-sweep")
    )
    assert recorded == json.loads(identity_json(study_identity(resolved, cfg)))
    with pytest.raises(ValueError, match=r"train\.epochs=1; this command has train\.epochs=2"):
        run_sweep(sweep_base(tmp_path, epochs=2), sweep_config(trials=2), log=lambda _m: None)


def test_run_sweep__an_older_study_in_another_experiment_is_refused_from_its_parent_run(tmp_path):
    """A study without a recorded identity is still held to the experiment its parent run lives
    in: its new trials would otherwise be logged apart from it."""
    base = sweep_base(tmp_path, epochs=1)
    cfg = sweep_config(trials=1)
    mlflow = client(tmp_path)
    parent = mlflow.create_run(mlflow.create_experiment("sae-sweep")).info.run_id
    _older_study(tmp_path, base, cfg, parent)
    before = _stores(tmp_path)
    moved = dataclasses.replace(
        base, tracking=dataclasses.replace(base.tracking, experiment="elsewhere")
    )
    with pytest.raises(ValueError, match="lives in experiment 'sae-sweep'"):
        run_sweep(moved, cfg, log=lambda _m: None)
    assert _stores(tmp_path) == before


def test_sweep_cli__resume_on_another_tracking_store_is_one_line_writing_nothing_to_the_study(
    one_trial_study, monkeypatch, capsys
):
    """The tracking URI is not the identity (a server and its file are one store), but a resume
    whose store lacks the study's parent run would log its trials apart from it: refused in one
    line, the study and its store untouched."""
    folder, base = one_trial_study
    before = _stores(folder)
    argv = [*STUDY, "--trials", "3", "--tracking-uri", f"sqlite:///{folder}/other.db"]
    code, err = _cli(base, folder, argv, monkeypatch, capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert "has its parent run" in err and "in another tracking store" in err, err
    assert _stores(folder) == before
