"""The Optuna journal: damage refused before any write, repaired only by the explicit step."""

import json
import runpy
import sys
from pathlib import Path

import optuna
import pytest
from helpers_sweep import client, sweep_base, sweep_config
from optuna.trial import TrialState

from sae import journal
from sae.sweep import run_sweep

REPAIR = Path(__file__).resolve().parents[1] / "experiments" / "repair_journal.py"


def _journal(tmp_path: Path, trials: int = 2) -> Path:
    """A journal written by Optuna itself, through its public API."""
    path = tmp_path / "study.journal"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=trials)
    return path


def test_adapter__optuna_writes_one_json_record_per_line(tmp_path):
    """Pins the file format sae.journal reads: if Optuna changes it, this fails first."""
    data = _journal(tmp_path).read_bytes()
    assert data.endswith(b"\n")
    assert all(isinstance(json.loads(line), dict) for line in data.splitlines())
    assert journal.find_damage(tmp_path / "study.journal") is None


def test_adapter__optuna_itself_reads_past_a_truncated_tail_silently(tmp_path):
    """Why the check exists: Optuna loads a journal whose last record is cut without a word (and
    would append after the partial line). If Optuna starts refusing it, the check can go."""
    path = _journal(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    assert len(optuna.load_study(study_name="s", storage=storage).trials) == 2
    damage = journal.find_damage(path)
    assert damage is not None and "incomplete" in damage.why


def test_check__a_damaged_record_in_the_middle_is_refused_in_one_line(tmp_path):
    path = _journal(tmp_path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:3], b'{"op_code": 4, "broken\n', *lines[3:]]))
    with pytest.raises(journal.JournalDamaged, match="record 4 is not valid JSON") as err:
        journal.check(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert journal.REPAIR_COMMAND in str(err.value)


def test_sweep__a_damaged_journal_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, capsys
):
    """Regression: resuming on a journal whose last 100 bytes were cut printed "resuming", then a
    JSON error naming no file, and appended onto the partial line: the journal never loaded again
    and a COMPLETE trial was re-marked FAIL. Now: refused in one line with nothing written; the
    explicit repair step keeps every complete record; then the sweep resumes."""
    base = sweep_base(tmp_path, epochs=1)
    run_sweep(base, sweep_config(trials=1, batch_sizes=(50,)), log=lambda _m: None)
    path = tmp_path / "optuna.journal"
    whole = path.read_bytes()
    runs = len(client(tmp_path).search_runs(["1"]))
    resume = sweep_config(trials=2, batch_sizes=(50,))
    cut_short = whole + b'{"op_code": 4, "worker_id": "a write cut sh'
    for damaged in (whole[:-100], cut_short):  # a truncated copy; a crash mid-write
        path.write_bytes(damaged)
        with pytest.raises(ValueError, match="is damaged: its last record is incomplete") as err:
            run_sweep(base, resume, log=lambda _m: None)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
        assert journal.REPAIR_COMMAND in str(err.value)
        assert path.read_bytes() == damaged
        assert len(client(tmp_path).search_runs(["1"])) == runs

    monkeypatch.setattr(sys, "argv", [str(REPAIR), str(path)])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPAIR), run_name="__main__")
    assert exit_.value.code == 0
    assert path.read_bytes() == whole  # every complete record, nothing of the broken one
    (backup,) = tmp_path.glob("optuna.journal.damaged-*")
    assert backup.read_bytes() == cut_short
    assert f"kept {len(whole.splitlines())} complete records" in capsys.readouterr().out

    result = run_sweep(base, resume, log=lambda _m: None)
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2  # trial 0 stays COMPLETE
    assert journal.find_damage(path) is None
