"""The Optuna journal: damage refused before any write, repaired only by the explicit step."""

import json
import runpy
import socket
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


def _repair_cli(monkeypatch, path: Path) -> int:
    monkeypatch.setattr(sys, "argv", [str(REPAIR), str(path)])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPAIR), run_name="__main__")
    return exit_.value.code


def _trials(path: Path) -> list:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.load_study(study_name="s", storage=storage).get_trials()


def test_adapter__the_operation_codes_are_optuna_s():
    """Pins the operation codes sae.journal reads (which number the studies and trials)."""
    from optuna.storages.journal._storage import JournalOperation

    assert list(journal.OP_CODES) == sorted(op.value for op in JournalOperation)
    assert journal.CREATE_STUDY == JournalOperation.CREATE_STUDY
    assert journal.CREATE_TRIAL == JournalOperation.CREATE_TRIAL


@pytest.mark.parametrize(
    "content",
    [b"hello, this is my thesis\nsecond line\n", bytes(range(256)) * 8, b'{"a": 1}\n'],
    ids=["text", "random bytes", "other json"],
)
def test_repair_cli__refuses_a_file_that_is_not_a_journal(tmp_path, monkeypatch, capsys, content):
    """Regression: repair_journal.py on a text file or random bytes exited 0 and left it empty
    (the original set aside). Now one line, exit 1, the file untouched, nothing set aside."""
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    assert _repair_cli(monkeypatch, path) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {path} is not an Optuna journal ")
    assert line.endswith("nothing was changed")
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_repair_cli__keeps_every_complete_record_after_a_damaged_one(tmp_path, monkeypatch):
    """Regression: one bad record in the middle dropped every later complete record, though the
    README says the repair keeps every complete one. A damaged record that created nothing (here
    a trial's attribute) is dropped alone: the ids of the later records still hold."""
    path = _journal(tmp_path, trials=3)
    lines = path.read_bytes().splitlines(keepends=True)
    damaged = b'{"op_code":8,"worker_id":"w","trial_id":0,"user_attr":{"k":\n'
    path.write_bytes(b"".join([*lines[:4], damaged, *lines[4:]]))
    assert _repair_cli(monkeypatch, path) == 0
    assert path.read_bytes() == b"".join(lines)
    assert [t.state for t in _trials(path)] == [TrialState.COMPLETE] * 3


def test_repair_cli__keeps_a_record_glued_onto_a_cut_one(tmp_path, monkeypatch):
    """A writer that appended after a crash cut a record glues its own whole record onto the
    cut one, on the same line: the whole one is kept."""
    path = _journal(tmp_path, trials=2)
    lines = path.read_bytes().splitlines(keepends=True)
    cut = b'{"op_code":8,"worker_id":"w","trial_id":0,"user'
    path.write_bytes(b"".join([*lines[:-1], cut + lines[-1]]))
    assert _repair_cli(monkeypatch, path) == 0
    assert path.read_bytes() == b"".join(lines)


def test_repair_cli__a_damaged_trial_creation_keeps_the_records_before_it(
    tmp_path, monkeypatch, capsys
):
    """A damaged record that created a trial numbered every later trial: kept, the later records
    would name other trials, so the journal is kept up to it, and the console says so."""
    path = _journal(tmp_path, trials=3)
    lines = path.read_bytes().splitlines(keepends=True)
    creations = [i for i, line in enumerate(lines) if line.startswith(b'{"op_code":4,')]
    second = creations[1]
    damaged = lines[second][:40] + b"\n"
    path.write_bytes(b"".join([*lines[:second], damaged, *lines[second + 1 :]]))
    assert _repair_cli(monkeypatch, path) == 0
    assert path.read_bytes() == b"".join(lines[:second])
    dropped = len(lines) - second - 1
    assert f"and the {dropped} after it" in capsys.readouterr().out
    assert [t.state for t in _trials(path)] == [TrialState.COMPLETE]


def test_repair_cli__fails_running_trials_no_live_process_holds(tmp_path, monkeypatch):
    """Regression: after a repair, a trial whose last records were lost stayed RUNNING forever
    (no worker recorded, or a dead one): every resume counted it as running and ran nothing.
    Now the repair fails it as interrupted and a resume retries its parameters; a trial that a
    live process holds stays RUNNING."""
    import subprocess

    from sae import names, sweep

    dead = subprocess.Popen(["true"])
    dead.wait()
    path = _journal(tmp_path, trials=1)
    storage = optuna.storages.JournalStorage(journal.backend(path))
    study = optuna.load_study(study_name="s", storage=storage)
    x = {"x": optuna.distributions.FloatDistribution(0, 1)}
    nameless = study.ask(x)  # its record of a worker lost
    gone = study.ask(x)
    gone.set_user_attr(names.ATTR_WORKER, f"{socket.gethostname()}:{dead.pid}")
    alive = study.ask(x)
    alive.set_user_attr(names.ATTR_WORKER, sweep.recovery.worker_id())
    assert _repair_cli(monkeypatch, path) == 0
    trials = _trials(path)
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING]
    assert {t.user_attrs[names.ATTR_FAIL_REASON] for t in trials[1:3]} == {names.REASON_ORPHANED}
    assert not any(sweep.counts_as_finished(t) for t in trials[1:])

    study = optuna.load_study(study_name="s", storage=sweep.make_storage(str(path)))
    assert sweep.recover_interrupted(study, study._storage, client(tmp_path)) == [1, 2]
    retries = study.get_trials(states=(TrialState.WAITING,))
    assert [t.params for t in retries] == [nameless.params, gone.params]


_FULL_DISK = """
import errno, os, resource, signal, sys
import optuna
from sae import journal

path, lock = sys.argv[1], sys.argv[2]
if lock == "whole-records":
    backend = journal.backend(path)
else:
    backend = optuna.storages.journal.JournalFileBackend(path)
study = optuna.create_study(storage=optuna.storages.JournalStorage(backend), study_name="s")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as `ulimit -f` under a shell that ignores it
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 50, resource.RLIM_INFINITY))
try:
    study.set_user_attr("k", "x" * 500)
except OSError as err:
    print(errno.errorcode[err.errno])
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
try:
    optuna.create_study(storage=study._storage, study_name="after")
    print("appended")
except AssertionError as err:
    print("AssertionError", err)
"""


@pytest.mark.parametrize("lock", ["whole-records", "optuna-default"])
def test_backend__an_append_cut_by_a_full_disk_leaves_no_partial_record(tmp_path, lock):
    """Regression: with the journal on a full disk (`ulimit -f`), an append cut mid-record was
    left in the file, the next append was glued onto it, Optuna raised `AssertionError: Should
    not reach.` and the journal could not be loaded again. Through ``journal.backend`` the cut
    record is removed before the lock is let go: the next append is whole. (Optuna's own lock,
    the second case, shows the old damage.)"""
    import subprocess

    path = tmp_path / "study.journal"
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(path), lock],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    if lock == "whole-records":
        assert done.stdout.splitlines() == ["EFBIG", "appended"]
        assert journal.find_damage(path) is None
        storage = optuna.storages.JournalStorage(journal.backend(path))
        assert sorted(optuna.get_all_study_names(storage)) == ["after", "s"]
    else:
        assert done.stdout.splitlines() == ["EFBIG", "AssertionError Should not reach."]
        assert journal.find_damage(path) is not None
