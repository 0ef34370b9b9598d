"""No epoch trained twice: an interrupted trial resumes from its last completed epoch, in its own
MLflow run, exactly as if it had not been interrupted (``sae/resume.py``, ``sae/sweep/resume.py``,
``sae/tracking/checkpoints.py``)."""

import dataclasses

import optuna
import pytest
import torch
from helpers import build_config
from helpers_sweep import client, empty_store, load_study, sweep_base, sweep_config
from optuna.trial import TrialState

from sae import metrics as M
from sae import names, resume, signals, sweep, tracking
from sae.splits import load_splits
from sae.sweep import objective, run_sweep
from sae.sweep.recovery import line_run, worker_id
from sae.train import Callback, fit

EPOCHS = 3
VARYING = ("perf/", "probe/seconds", "system/")
"""Metrics of the machine's speed, which no two runs share."""


class StopAfter(Callback):
    """Raises ``error`` at the first step after epoch ``epoch`` ended, as a signal noted during
    that step is raised at the next safe point."""

    def __init__(self, epoch: int, error: BaseException) -> None:
        self.epoch, self.error, self.done = epoch, error, 0

    def on_epoch_end(self, epoch, step, metrics, model) -> None:
        self.done = epoch

    def on_step(self, step) -> None:
        if self.done == self.epoch:
            raise self.error


class Weights(Callback):
    """Keeps the weights a run ends with."""

    def __init__(self, into: list) -> None:
        self.into = into

    def on_fit_end(self, model, history) -> None:
        self.into.append({k: v.detach().clone() for k, v in model.state_dict().items()})


def _patch_training(monkeypatch, weights: list, stop: Callback | None = None) -> None:
    """Every trial's training also keeps its final weights, and is stopped by ``stop``."""
    real = objective.train_run

    def train_run(cfg, *, callbacks=(), **kwargs):
        extra = [Weights(weights)] + ([stop] if stop else [])
        return real(cfg, callbacks=[*callbacks, *extra], **kwargs)

    monkeypatch.setattr(objective, "train_run", train_run)


def _sweep(tmp_path, **kwargs):
    cfg = sweep_config(trials=1, batch_sizes=(20,), pruner="none", **kwargs)
    return run_sweep(sweep_base(tmp_path, epochs=EPOCHS), cfg, log=lambda _m: None)


def _histories(tmp_path, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric of the run but the machine's speed: (step, value) in the order logged."""
    mlflow = client(tmp_path)
    keys = [k for k in mlflow.get_run(run_id).data.metrics if not k.startswith(VARYING)]
    return {
        k: [(m.step, m.value) for m in sorted(mlflow.get_metric_history(run_id, k), key=_order)]
        for k in keys
    }


def _order(metric):
    return (metric.step, metric.timestamp)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The trial run without interruption, in a study of its own: its final weights, its run's
    metrics and the trial."""
    folder = tmp_path_factory.mktemp("reference")
    weights: list = []
    with pytest.MonkeyPatch.context() as patch:
        _patch_training(patch, weights)
        (trial,) = _sweep(folder).study.get_trials()
    return weights[0], _histories(folder, trial.user_attrs[names.ATTR_RUN_ID]), trial


def _interrupt(tmp_path, monkeypatch, epoch: int, error: BaseException) -> str:
    """The sweep stopped by ``error`` after epoch ``epoch``: the run id of its trial."""
    weights: list = []
    with monkeypatch.context() as patch:
        _patch_training(patch, weights, StopAfter(epoch, error))
        with pytest.raises(KeyboardInterrupt):
            _sweep(tmp_path)
    (trial,) = load_study(tmp_path).get_trials(states=(TrialState.FAIL,))
    assert trial.user_attrs[names.ATTR_FAIL_REASON] == names.REASON_INTERRUPTED
    return trial.user_attrs[names.ATTR_RUN_ID]


def _resume(tmp_path, monkeypatch):
    """The sweep run again: its retry trial and the weights it ends with."""
    weights: list = []
    with monkeypatch.context() as patch:
        _patch_training(patch, weights)
        result = _sweep(tmp_path)
    (retry,) = result.study.get_trials(states=(TrialState.COMPLETE,))
    return retry, weights[0]


@pytest.mark.parametrize(
    ("epoch", "error"), [(1, KeyboardInterrupt()), (2, signals.RunKilled("received signal 15"))]
)
def test_resume__a_trial_killed_after_epoch_k_ends_as_if_never_interrupted_in_one_run(
    tmp_path, monkeypatch, reference, epoch, error
):
    """Ctrl-C (or SIGTERM) after epoch k; the resumed sweep's retry continues the same MLflow
    run from epoch k + 1 and ends with bitwise the weights, and exactly the metrics at the same
    steps, of the same trial run without interruption; the run ends FINISHED, each step logged
    once; the rungs from before the interruption are on the retry; the checkpoint is kept while
    the trial is interrupted and gone once it ends."""
    reference, reference_history, reference_trial = reference
    run_id = _interrupt(tmp_path, monkeypatch, epoch, error)
    mlflow = client(tmp_path)
    assert mlflow.get_run(run_id).info.status == "KILLED"
    kept = tracking.load_checkpoint(mlflow, run_id)  # torch.load(weights_only=True)
    assert kept["state"]["epoch"] == epoch  # the metrics of the epoch cut short: not logged
    # no secret: no path, URI, settings file or command line, only names, digests and values
    texts = _strings(kept)
    assert not [t for t in texts if str(tmp_path) in t or "://" in t or t.endswith(".yaml")]
    assert set(kept) == {"format", "study", "identity", "params", "state"}
    assert {s for s, _ in _histories(tmp_path, run_id)[M.TEST_MSE]} == set(range(1, epoch + 1))

    retry, weights = _resume(tmp_path, monkeypatch)

    assert retry.user_attrs[names.ATTR_RETRY_OF] == 0
    assert retry.user_attrs[names.ATTR_RUN_ID] == run_id  # one run for the trial, continued
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[names.TAG_TRIAL_STATE] == "COMPLETE"
    assert run.data.tags[names.TAG_TRIAL_NUMBER] == str(retry.number)
    assert weights.keys() == reference.keys()
    assert all(torch.equal(weights[k], reference[k]) for k in reference)
    assert _histories(tmp_path, run_id) == reference_history  # every step once, in order
    assert retry.values == reference_trial.values
    points = retry.user_attrs[names.ATTR_EPOCH_POINTS]
    assert points == reference_trial.user_attrs[names.ATTR_EPOCH_POINTS]
    assert sorted(points) == [str(e) for e in range(1, EPOCHS + 1)]
    assert tracking.load_checkpoint(mlflow, run_id) is None
    assert mlflow.list_artifacts(run_id, tracking.CHECKPOINT_DIR) == []


def _strings(value) -> list[str]:
    """Every string in a checkpoint, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _strings(k) + _strings(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _strings(v)]
    return []


def _damage(mlflow, run_id: str, tmp_path) -> None:
    garbage = tmp_path / "state.pt"
    garbage.write_bytes(b"PK\x03\x04 not a checkpoint")
    mlflow.log_artifact(run_id, str(garbage), tracking.CHECKPOINT_DIR)


def _foreign(mlflow, run_id: str, tmp_path) -> None:
    saved = tracking.load_checkpoint(mlflow, run_id)
    saved["params"] = {**saved["params"], "lr": saved["params"]["lr"] * 2}
    tracking.save_checkpoint(mlflow, run_id, saved)


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (_damage, "it cannot be read: PytorchStreamReader failed reading zip archive"),
        (_foreign, "it was made for other parameters"),
    ],
)
def test_resume__a_damaged_or_foreign_checkpoint_is_refused_in_one_line_and_the_trial_starts_over(
    tmp_path, monkeypatch, capsys, reference, spoil, why
):
    """The retry refuses the checkpoint in one line naming why, trains from epoch 1 in a new run
    (the old one keeps what it logged, KILLED, its checkpoint removed) and ends as the trial run
    without interruption; the sweep goes on."""
    reference, reference_history, _ = reference
    run_id = _interrupt(tmp_path, monkeypatch, 1, KeyboardInterrupt())
    mlflow = client(tmp_path)
    spoil(mlflow, run_id, tmp_path)
    capsys.readouterr()

    retry, weights = _resume(tmp_path, monkeypatch)

    refused = [line for line in capsys.readouterr().out.splitlines() if "refused" in line]
    (line,) = refused
    assert line.startswith(f"trial {retry.number}: the checkpoint of run {run_id} is refused")
    assert f"is refused ({why}" in line
    assert line.endswith("); the trial starts over from epoch 1 in a new run")
    assert all(torch.equal(weights[k], reference[k]) for k in reference)
    new_run = retry.user_attrs[names.ATTR_RUN_ID]
    assert new_run != run_id and mlflow.get_run(new_run).info.status == "FINISHED"
    assert _histories(tmp_path, new_run) == reference_history
    assert mlflow.get_run(run_id).info.status == "KILLED"
    assert mlflow.list_artifacts(run_id, tracking.CHECKPOINT_DIR) == []


def test_resume__a_trial_interrupted_in_its_first_epoch_continues_its_run_from_the_start(
    tmp_path, monkeypatch, reference
):
    """No checkpoint yet: the retry trains from epoch 1, still in the trial's own run, whose
    steps are logged once (what the cut epoch had logged was dropped)."""
    reference, reference_history, _ = reference

    class FirstSteps(Callback):
        def on_step(self, step) -> None:
            if step == 3:
                raise KeyboardInterrupt

    weights: list = []
    with monkeypatch.context() as patch:
        _patch_training(patch, weights, FirstSteps())
        with pytest.raises(KeyboardInterrupt):
            _sweep(tmp_path)
    (trial,) = load_study(tmp_path).trials[:1]
    run_id = trial.user_attrs[names.ATTR_RUN_ID]
    assert tracking.load_checkpoint(client(tmp_path), run_id) is None

    retry, weights = _resume(tmp_path, monkeypatch)
    assert retry.user_attrs[names.ATTR_RUN_ID] == run_id
    assert all(torch.equal(weights[k], reference[k]) for k in reference)
    assert _histories(tmp_path, run_id) == reference_history


def test_resume__a_trial_that_fails_by_itself_leaves_no_checkpoint(tmp_path, monkeypatch):
    """A trial that ends by itself (here, an error in its own training after epoch 1) keeps no
    checkpoint, as a completed one keeps none (the first test) and a pruned one, which ends the
    same way."""
    weights: list = []
    with monkeypatch.context() as patch:
        _patch_training(patch, weights, StopAfter(1, RuntimeError("its own error")))
        result = _sweep(tmp_path)
    (trial,) = result.study.get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs[names.ATTR_FAILED]
    run_id = trial.user_attrs[names.ATTR_RUN_ID]
    assert client(tmp_path).list_artifacts(run_id, tracking.CHECKPOINT_DIR) == []


def test_state__refused_for_another_config_data_or_shape(tmp_path):
    """The engine's own check of a state (``resume.problem``): the config, the data, the weights'
    shapes; a state it passes puts the run back where it was, and the run goes on from it to the
    weights of the uninterrupted one."""
    cfg = build_config(tmp_path, epochs=2)
    splits = load_splits(cfg.data, torch.device("cpu"))

    class Keep(Callback):
        states: dict = {}

        def on_checkpoint(self, epoch, state) -> None:
            self.states[epoch] = state

    keep = Keep()
    whole = fit(cfg, splits, [keep])
    state = keep.states[1]
    assert resume.problem(state, cfg, splits) is None
    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=cfg.train.lr * 2))
    assert resume.problem(state, other, splits) == "made for another configuration"
    moved = dataclasses.replace(splits, digest="another")
    assert resume.problem(state, cfg, moved) == "made on other data"
    cut = {**state, "model": {**state["model"], "enc1.bias": torch.zeros(3)}}
    assert resume.problem(cut, cfg, splits) == "its weights do not fit the model"
    assert resume.problem({**state, "format": 0}, cfg, splits).startswith("not a training state")
    with pytest.raises(ValueError, match="cannot resume from this state"):
        fit(cfg, splits, resume={**state, "epoch": 5})
    resumed = fit(cfg, splits, resume=state)
    after = resumed.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in whole.model.state_dict().items())


def _patch_population(monkeypatch, weights: list, stop: Callback | None = None) -> None:
    """Every population's members also keep their final weights; the first is stopped by
    ``stop``."""
    from sae.sweep import batch

    real = batch.fit_population

    def fit_population(members, splits):
        members = [
            dataclasses.replace(m, callbacks=[*m.callbacks, Weights(weights)]) for m in members
        ]
        if stop:
            members[0].callbacks.append(stop)
        return real(members, splits)

    monkeypatch.setattr(batch, "fit_population", fit_population)


def test_resume__a_population_interrupted_after_epoch_k_resumes_together_in_its_runs(
    tmp_path, monkeypatch
):
    """Two trials trained as a population, Ctrl-C after epoch 1: the retries go on together
    from their checkpoints, each in its trial's run, to the weights and metrics of the same
    population trained without interruption."""
    (tmp_path / "reference").mkdir()
    base = sweep_base(tmp_path / "reference", epochs=EPOCHS)
    cfg = sweep_config(trials=2, batch_sizes=(20,), pruner="none", population=2)
    reference: list = []
    with monkeypatch.context() as patch:
        _patch_population(patch, reference)
        first = run_sweep(base, cfg, log=lambda _m: None).study.get_trials()
    with monkeypatch.context() as patch:
        _patch_population(patch, [], StopAfter(1, KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            run_sweep(sweep_base(tmp_path, epochs=EPOCHS), cfg, log=lambda _m: None)
    interrupted = load_study(tmp_path).get_trials(states=(TrialState.FAIL,))
    runs = [t.user_attrs[names.ATTR_RUN_ID] for t in interrupted]
    weights: list = []
    with monkeypatch.context() as patch:
        _patch_population(patch, weights)
        study = run_sweep(sweep_base(tmp_path, epochs=EPOCHS), cfg, log=lambda _m: None).study
    retries = study.get_trials(states=(TrialState.COMPLETE,))
    assert [t.user_attrs[names.ATTR_RETRY_OF] for t in retries] == [0, 1]
    assert [t.user_attrs[names.ATTR_RUN_ID] for t in retries] == runs
    for ours, theirs in zip(weights, reference, strict=True):
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    for trial, run_id in zip(first, runs, strict=True):
        expected = _histories(tmp_path / "reference", trial.user_attrs[names.ATTR_RUN_ID])
        assert _histories(tmp_path, run_id) == expected
        assert client(tmp_path).get_run(run_id).info.status == "FINISHED"
        assert client(tmp_path).list_artifacts(run_id, tracking.CHECKPOINT_DIR) == []


def test_recover_interrupted__leaves_running_the_run_a_retry_continues(tmp_path):
    """The interrupted trial and its retry name one run: while the retry trains in it, a
    recovery (another worker's start, a lost worker) leaves that run RUNNING, since only its
    latest holder may end it; and the retry finds it as its line's run."""
    empty_store(tmp_path / "mlflow.db")
    mlflow = client(tmp_path)
    run_id = mlflow.create_run(mlflow.create_experiment("e")).info.run_id
    storage = sweep.make_storage(str(tmp_path / "optuna.journal"))
    study = optuna.create_study(study_name="s", storage=storage)
    first = study.ask()
    first.suggest_float("lr", 1e-3, 1e-2)
    first.set_user_attr(names.ATTR_RUN_ID, run_id)
    first.set_user_attr(names.ATTR_FAIL_REASON, names.REASON_INTERRUPTED)
    study.tell(first, state=TrialState.FAIL)
    retry = study.ask()
    retry.suggest_float("lr", 1e-3, 1e-2)
    retry.set_user_attr(names.ATTR_RETRY_OF, first.number)
    retry.set_user_attr(names.ATTR_WORKER, worker_id())
    assert line_run(study, retry) == run_id
    retry.set_user_attr(names.ATTR_RUN_ID, run_id)

    assert sweep.recover_interrupted(study, storage, mlflow) == []
    assert mlflow.get_run(run_id).info.status == "RUNNING"
