"""The sweep's console while trials train (``sae.sweep.progress``): each running trial's epoch and
the time left, estimated from the epochs the trials record (``ATTR_EPOCH_ENDS``)."""

import io
import time

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from sae import metrics as M
from sae.names import ATTR_EPOCH_ENDS, ATTR_EPOCH_POINTS, ATTR_FAIL_REASON, REASON_INTERRUPTED
from sae.sweep import progress
from sae.sweep.config import SweepConfig
from sae.sweep.objective import Report
from sae.sweep.progress import Snapshot, SweepProgress, describe, snapshot

EPOCH_S = 5.0


def _ends(epochs: int, last_end: float) -> dict[str, list[float]]:
    """``epochs`` recorded epochs of EPOCH_S seconds each, the last ending at ``last_end``."""
    return {str(e): [last_end - (epochs - e) * EPOCH_S, EPOCH_S] for e in range(1, epochs + 1)}


def _trial(number: int, state: TrialState, epochs: int, last_end: float, **attrs):
    values = [0.01, 0.2] if state == TrialState.COMPLETE else None
    trial = create_trial(
        state=state, values=values, user_attrs={ATTR_EPOCH_ENDS: _ends(epochs, last_end), **attrs}
    )
    trial.number = number
    return trial


def _study_trials(now: float) -> list:
    """A sweep of 6 trials of 10 epochs: one complete (10 epochs), one pruned at epoch 4, one
    interrupted after 2 (not finished: retried), one running with 2 epochs done (2 s into its
    third), one running in its first epoch; two not started."""
    return [
        _trial(0, TrialState.COMPLETE, 10, now - 100),
        _trial(1, TrialState.PRUNED, 4, now - 60),
        _trial(2, TrialState.FAIL, 2, now - 50, **{ATTR_FAIL_REASON: REASON_INTERRUPTED}),
        _trial(3, TrialState.RUNNING, 2, now - 2.0),
        _trial(4, TrialState.RUNNING, 0, now),
    ]


def test_snapshot__time_left_from_the_measured_epochs_and_the_finished_trials_epochs():
    """Worked by hand: the finished trials trained 10 and 4 epochs (mean 7), every epoch took 5 s.
    Not started: 2 trials x 7 epochs = 70 s. Trial 3 (2 done): the finished trials that went past
    epoch 2 had 8 and 2 epochs more, mean 5: 25 s less the 2 s it is into its third = 23 s.
    Trial 4 (none done): 7 epochs, 35 s. (70 + 23 + 35) s over 2 workers = 64 s."""
    now = time.time()
    snap = snapshot(_study_trials(now), total=6, epochs=10, workers=2, now=now)
    assert snap.finished == 2  # complete and pruned; the interrupted trial is retried
    assert snap.running == ((3, 2), (4, 0))
    assert snap.seconds_left == pytest.approx(64.0, abs=0.1)
    assert describe(snap, 10) == "trial 3 epoch 3/10, trial 4 epoch 1/10, ETA 01:04"


def test_snapshot__more_running_trials_than_workers_counts_the_other_machines():
    """Three trials running with one local worker: the others run elsewhere, so three at once;
    never more at once than there are trials left."""
    now = time.time()
    running = [_trial(n, TrialState.RUNNING, 1, now) for n in range(3)]  # each 1 epoch of 3
    snap = snapshot(running, total=3, epochs=3, workers=1, now=now)
    assert snap.seconds_left == pytest.approx(2 * EPOCH_S, abs=0.1)  # 3 x 10 s over 3
    one = snapshot(running[:1], total=1, epochs=3, workers=4, now=now)
    assert one.seconds_left == pytest.approx(2 * EPOCH_S, abs=0.1)  # one trial: no faster


def test_snapshot__before_any_epoch_measuring_and_when_done_nothing_left():
    started = create_trial(state=TrialState.RUNNING)
    started.number = 0
    snap = snapshot([started], total=2, epochs=10, workers=2, now=time.time())
    assert snap.seconds_left is None
    assert describe(snap, 10) == "trial 0 epoch 1/10, ETA measuring"
    now = time.time()
    done = [_trial(n, TrialState.COMPLETE, 10, now) for n in range(2)]
    assert snapshot(done, total=2, epochs=10, workers=2, now=now) == Snapshot(2, (), 0.0)


def _study_with(trials: list) -> optuna.Study:
    study = optuna.create_study(directions=["minimize", "minimize"])
    for trial in trials:
        study.add_trial(trial)
    return study


def test_sweep_progress__off_a_terminal_one_line_per_finished_trial_and_no_carriage_return(
    monkeypatch,
):
    monkeypatch.setattr(progress, "POLL_S", 3600.0)  # the test calls show() itself
    now = time.time()
    study = _study_with([_trial(0, TrialState.COMPLETE, 2, now)])
    stream = io.StringIO()
    with SweepProgress(study, total=3, epochs=2, workers=1, stream=stream, bars=False) as shown:
        assert stream.getvalue() == ""  # the trials finished before it started are no news
        study.add_trial(_trial(1, TrialState.PRUNED, 1, now))
        shown.show()
        shown.show()  # nothing new: no line
    assert stream.getvalue() == "trials: 2/3 finished, ETA 00:08\n"  # 1.5 epochs x 5 s


def test_sweep_progress__in_a_terminal_a_tqdm_bar_with_the_running_trials_epochs(monkeypatch):
    monkeypatch.setattr(progress, "POLL_S", 3600.0)
    now = time.time()
    study = _study_with([_trial(0, TrialState.COMPLETE, 2, now)])
    study.add_trial(_trial(1, TrialState.RUNNING, 1, now))
    stream = io.StringIO()
    with SweepProgress(study, total=2, epochs=2, workers=1, stream=stream, bars=True):
        pass
    shown = stream.getvalue()
    assert "trials: 1/2 trials" in shown
    assert "trial 1 epoch 2/2, ETA 00:05" in shown


def test_report__records_each_epochs_end_and_seconds_beside_its_point():
    """The callback that records ATTR_EPOCH_POINTS also records ATTR_EPOCH_ENDS, whose format
    the Pareto pruner does not read, so its points stay as they were."""
    study = optuna.create_study(directions=["minimize", "minimize"])
    trial = study.ask()
    report = Report(trial, SweepConfig(pruner="none"), epochs=2)
    before = time.time()
    report.on_fit_start(None, None, None)
    for epoch in (1, 2):
        report.on_epoch_end(epoch, 10 * epoch, {M.TEST_MSE: 0.1, M.CODE_ACTIVE_FRAC: 0.2}, None)
    attrs = study.trials[0].user_attrs
    assert attrs[ATTR_EPOCH_POINTS] == {"1": [0.1, 0.2, 0.0], "2": [0.1, 0.2, 0.0]}
    ends = attrs[ATTR_EPOCH_ENDS]
    assert list(ends) == ["1", "2"]
    (end1, took1), (end2, took2) = ends["1"], ends["2"]
    assert before <= end1 <= end2 <= time.time()
    assert took1 == pytest.approx(end1 - before, abs=0.05)
    assert took2 == pytest.approx(end2 - end1, abs=1e-6)
