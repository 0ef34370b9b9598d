"""The replay command: the default Pareto pruner (or the rule its flags name) replayed on a
recorded, unpruned study in trial-number order; a line per trial it would stop, then exactly one
summary line; a pruned study, or one without per-epoch points, refused in one line with exit 1."""

import json
import re
import sys

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from sae import names, sweep
from sae.bench import replay
from sae.cli import run_main
from sae.commands import bench as bench_command

SUMMARY = re.compile(
    r"^replayed: epochs \d+ of \d+ \(\d+\.\d\dx fewer\), "
    r"hypervolume \d\.\d{5} of \d\.\d{5} \(\d+\.\d%\)$"
)


def _trial(beta, finals, epochs=4, state=TrialState.COMPLETE, points=True, degenerate=""):
    """A trial whose test MSE falls from twice its final value to it over ``epochs`` epochs."""
    mse, active = finals
    recorded = {str(e): [mse * (1 + (epochs - e) / epochs), active, 0.0] for e in range(1, 5)}
    attrs = {names.ATTR_DEGENERATE: degenerate}
    if points:
        attrs[names.ATTR_EPOCH_POINTS] = recorded
    return create_trial(
        state=state,
        params={"beta": beta},
        distributions={"beta": FloatDistribution(1e-6, 1.0, log=True)},
        values=list(finals) if state == TrialState.COMPLETE else None,
        user_attrs=attrs,
    )


FINALS = [(0.01, 0.5), (0.02, 0.3), (0.03, 0.1), (0.06, 0.6), (0.015, 0.45), (0.05, 0.7)]
"""Three good trials (the warm-up), a dominated one, a good one that adds 0.5% of the
hypervolume, a dominated one."""


def _journal(tmp_path, trials, name="recorded"):
    path = tmp_path / "optuna.journal"
    study = optuna.create_study(
        storage=sweep.make_storage(str(path)), study_name=name, directions=["minimize"] * 2
    )
    for trial in trials:
        study.add_trial(trial)
    return path


def _run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["sae-bench", "replay", *args])
    with pytest.raises(SystemExit) as ended:
        run_main(bench_command.main)
    out, err = capsys.readouterr()
    return ended.value.code, out.splitlines(), err


def test_replay_command__a_line_per_stopped_trial_then_the_summary(tmp_path, monkeypatch, capsys):
    trials = [_trial(1e-4 * (i + 1), finals) for i, finals in enumerate(FINALS)]
    path = _journal(tmp_path, trials)
    code, lines, err = _run(monkeypatch, capsys, "--storage", str(path), "--study", "recorded")
    assert code == 0, err
    # the default rule (projection) stops the two dominated trials and the good one that adds
    # 0.5% of the hypervolume, each at epoch 2, its first decision
    assert [line.split(":")[0] for line in lines[:-1]] == ["trial 3", "trial 4", "trial 5"]
    assert all(line.split(": ")[1].startswith("pruned at epoch 2") for line in lines[:-1])
    assert lines[-1] == (
        "replayed: epochs 18 of 24 (1.33x fewer), hypervolume 0.04800 of 0.04825 (99.5%)"
    )
    assert SUMMARY.match(lines[-1])
    # the study is the storage's only one; another rule, by the sweep's flags: a warm-up of
    # five trials stops only the last
    code, lines, _ = _run(monkeypatch, capsys, "--storage", str(path), "--pareto-warmup", "5")
    assert code == 0 and [line.split(":")[0] for line in lines[:-1]] == ["trial 5"]
    assert lines[-1].startswith("replayed: epochs 22 of 24 (1.09x fewer)")
    # successive halving stops only the dominated two, at epoch 1
    flags = ["--pareto-rule", "halving", "--pareto-grace", "0"]
    code, lines, _ = _run(monkeypatch, capsys, "--storage", str(path), *flags)
    assert code == 0 and [line.split(":")[0] for line in lines[:-1]] == ["trial 3", "trial 5"]
    assert lines[-1] == (
        "replayed: epochs 18 of 24 (1.33x fewer), hypervolume 0.04825 of 0.04825 (100.0%)"
    )


def test_replay_command__writes_a_record_that_replays_alike(tmp_path, monkeypatch, capsys):
    path = _journal(tmp_path, [_trial(1e-4 * (i + 1), f) for i, f in enumerate(FINALS)])
    record = tmp_path / "record.json"
    code, lines, _ = _run(monkeypatch, capsys, "--storage", str(path), "--record", str(record))
    assert code == 0 and lines[0] == f"record of study 'recorded' written to {record}"
    saved = json.loads(record.read_text())
    assert saved["format"] == replay.RECORD_FORMAT and saved["epochs"] == 4
    assert "sae-bench replay --storage" in saved["command"]
    assert set(saved["trials"][0]["user_attrs"]) <= set(replay.KEPT_ATTRS)
    code, again, _ = _run(monkeypatch, capsys, "--storage", str(record))
    assert code == 0 and again == lines[1:]


@pytest.mark.parametrize(
    ("trials", "message"),
    [
        (
            [_trial(1e-4, FINALS[0]), _trial(2e-4, FINALS[1], state=TrialState.PRUNED)],
            r"^error: study 'recorded' was pruned \(1 trials, first 1\): a replay needs every "
            r"trial trained to its end \(--pruner none\)$",
        ),
        (
            [_trial(1e-4, FINALS[0]), _trial(2e-4, FINALS[1], points=False)],
            r"^error: study 'recorded' has no per-epoch points for every epoch of trial 1 ",
        ),
    ],
    ids=["pruned", "no-points"],
)
def test_replay_command__refuses_a_study_it_cannot_replay_in_one_line(
    tmp_path, monkeypatch, capsys, trials, message
):
    path = _journal(tmp_path, trials)
    code, lines, err = _run(monkeypatch, capsys, "--storage", str(path))
    assert code == 1 and lines == []
    assert len(err.strip().splitlines()) == 1 and re.match(message, err.strip()), err


def test_replay_command__names_what_is_missing(tmp_path, monkeypatch, capsys):
    code, _, err = _run(monkeypatch, capsys, "--storage", str(tmp_path / "none.journal"))
    assert code == 1 and err.strip() == f"error: no Optuna storage at {tmp_path / 'none.journal'}"
    assert not (tmp_path / "none.journal").exists()  # nothing created
    path = _journal(tmp_path, [_trial(1e-4, FINALS[0])])
    code, _, err = _run(monkeypatch, capsys, "--storage", str(path), "--study", "other")
    assert code == 1 and "no study 'other' in" in err and "'recorded'" in err


def test_restore__a_record_becomes_a_study_the_sweep_resumes(tmp_path):
    trials = [_trial(1e-4 * (i + 1), f) for i, f in enumerate(FINALS)]
    study = replay.read_record(_record(tmp_path, trials))
    study.set_user_attr(names.STUDY_IDENTITY, '{"epochs": 4}')
    url = str(tmp_path / "continued.journal")
    replay.restore(study, url)
    back = optuna.load_study(study_name="recorded", storage=sweep.make_storage(url))
    assert back.user_attrs[names.STUDY_IDENTITY] == '{"epochs": 4}'
    assert [t.params for t in back.trials] == [t.params for t in study.trials]
    assert [t.user_attrs for t in back.trials] == [t.user_attrs for t in study.trials]
    with pytest.raises(ValueError, match="is already in"):
        replay.restore(study, url)


def _record(tmp_path, trials):
    path = tmp_path / "record.json"
    replay.write_record(replay.open_recorded(str(_journal(tmp_path, trials))), path, {})
    return path


def test_recorded_sweeps__each_is_a_whole_full_default_sweep_and_says_what_made_it():
    """The recorded full default sweeps (the fixtures): 30 trials of 10 epochs each, unpruned,
    each with the command that made it; a recording cut short (records/partial) is 10 epochs a
    trial too, with fewer trials."""
    for folder, whole in ((replay.RECORDS, True), (replay.RECORDS / "partial", False)):
        for name, study in replay.records(folder).items():
            trials, epochs = replay.replayed_trials(study)
            assert epochs == 10 and (len(trials) == 30) == whole, name
            assert json.loads((folder / f"{name}.json").read_text())["command"], name
