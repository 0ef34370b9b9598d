"""Passing faults of the stores and the machine: told apart from a trial's own failures, retried
for a bounded time, and one console line naming the log that holds the traceback."""

import errno
import sqlite3
import subprocess
import sys

import optuna
import psycopg
import pytest
import sqlalchemy.exc
from mlflow.exceptions import MlflowException

from sae import faults
from sae.cli import run_main


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch, tmp_path):
    """Retries in milliseconds, the log in the test's folder, no store left given up."""
    monkeypatch.setattr(faults, "FIRST_WAIT_S", 0.001)
    monkeypatch.setattr(faults, "MAX_WAIT_S", 0.002)
    monkeypatch.setattr(faults, "RETRY_S", 0.05)
    monkeypatch.setattr(faults, "_LOG", [tmp_path / "fault.log"])
    monkeypatch.setattr(faults, "_gave_up", set())
    monkeypatch.setattr(faults, "_warned", set())


def _raised(err: BaseException, cause: BaseException | None = None) -> BaseException:
    """``err`` as raised (from ``cause``), with its traceback."""
    try:
        if cause is None:
            raise err
        raise err from cause
    except BaseException as raised:
        return raised


def _locked() -> BaseException:
    """What MLflow raises when its SQLite store stays locked: an MlflowException from
    SQLAlchemy's OperationalError from sqlite3's."""
    driver = sqlite3.OperationalError("database is locked")
    wrapped = _raised(sqlalchemy.exc.OperationalError("UPDATE runs", {}, driver), driver)
    return _raised(MlflowException("(sqlite3.OperationalError) database is locked"), wrapped)


@pytest.mark.parametrize(
    "err",
    [
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("disk I/O error"),
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EFBIG, "File too large"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        psycopg.OperationalError("server closed the connection unexpectedly"),
        "locked",
        "storage",
    ],
)
def test_is_passing_fault__a_lock_a_full_disk_a_lost_connection(err):
    if err == "locked":
        err = _locked()
    elif err == "storage":  # Optuna's RDB storage wraps what SQLAlchemy raised
        disk = _raised(sqlalchemy.exc.OperationalError("INSERT", {}, Exception("disk I/O error")))
        disk.__cause__ = sqlite3.OperationalError("disk I/O error")
        err = _raised(optuna.exceptions.StorageInternalError("during the commit"), disk)
    assert faults.is_passing_fault(err)


@pytest.mark.parametrize(
    "err",
    [
        ValueError("Too many bins for data range"),
        sqlite3.OperationalError("no such table: runs"),
        OSError(errno.ENOENT, "No such file or directory"),
        MlflowException("RESOURCE_DOES_NOT_EXIST: run 'x' not found"),
        AssertionError("a test's own assertion"),
    ],
)
def test_is_passing_fault__not_for_a_trial_s_own_failure_or_a_damaged_store(err):
    """What a trial does wrong, or a store that is wrong rather than busy, is no passing fault:
    a trial's own failure remains its outcome."""
    assert not faults.is_passing_fault(_raised(err))


def test_is_passing_fault__optuna_journal_that_does_not_read_back_its_own_record(tmp_path):
    """Regression: with the journal on a full disk, a cut record had the next append glued onto
    it, and Optuna's journal storage raised a raw `AssertionError: Should not reach.`."""
    path = tmp_path / "study.journal"
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    storage = optuna.storages.JournalStorage(backend)
    optuna.create_study(storage=storage, study_name="a")
    path.write_bytes(path.read_bytes() + b'{"op_code":4,"worker_id":"cut sh')
    with pytest.raises(AssertionError, match="Should not reach") as raised:
        optuna.create_study(storage=storage, study_name="b")
    assert faults.is_passing_fault(raised.value)
    assert "did not read back the record" in faults.describe(raised.value)


def test_retried__a_lock_released_in_time_is_waited_out_with_one_line(capsys):
    """Regression: the MLflow store locked by another process ended the trial in flight FAIL
    ("database is locked"), counted as finished. Now the call is tried again until the lock
    goes: one warning line, naming the log that holds the traceback."""
    calls = []

    def write():
        calls.append(1)
        if len(calls) < 4:
            raise _locked()
        return "written"

    assert faults.retried(write, "the MLflow store")() == "written"
    assert len(calls) == 4
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("warning: the MLflow store: OperationalError: database is locked;")
    assert f"(details in {faults.log_path()})" in line
    assert "Traceback" in faults.log_path().read_text()


def test_retried__a_fault_that_lasts_is_raised_then_tried_once_per_call():
    """A lasting fault is raised as it was after RETRY_S; the next calls to the same store are
    tried once each (a stopping sweep does not wait again for each), until one succeeds."""
    calls = []

    def always():
        calls.append(1)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        faults.retried(always, "the Optuna journal")()
    assert len(calls) > 1
    calls.clear()
    with pytest.raises(OSError):
        faults.retried(always, "the Optuna journal")()
    assert len(calls) == 1


def test_retried__not_a_trial_s_own_error():
    calls = []

    def wrong():
        calls.append(1)
        raise ValueError("a bad value")

    with pytest.raises(ValueError):
        faults.retried(wrong, "the MLflow store")()
    assert len(calls) == 1


def test_retried__a_call_inside_a_retried_call_is_left_to_its_caller():
    """MLflow's client calls itself: the inner call is tried once, or the waits would multiply."""
    inner_calls, outer_calls = [], []

    def inner():
        inner_calls.append(1)
        raise _locked()

    def outer():
        outer_calls.append(1)
        faults.retried(inner, "the MLflow store")()

    with pytest.raises(MlflowException):
        faults.retried(outer, "the MLflow store")()
    assert len(inner_calls) == len(outer_calls) > 1


def test_run_main__a_full_disk_is_one_line_and_the_traceback_in_the_log(capsys):
    """Regression: the report on a full disk ended in a raw traceback. Every command ends on a
    lasting fault with one line naming the log file, and exit 1."""

    def main():
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SystemExit) as exit_:
        run_main(main)
    assert exit_.value.code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: OSError: [Errno 28] No space left on device: a fault of the")
    assert line.endswith(f"(details in {faults.log_path()})")
    assert "OSError" in faults.log_path().read_text()


def test_log_fault__a_log_that_cannot_be_written_is_said_on_the_line(tmp_path, monkeypatch):
    """The fault log's own disk may be full: the line says so rather than naming no file."""
    monkeypatch.setattr(faults, "_LOG", [tmp_path / "no-such-folder" / "fault.log"])
    words = faults.log_fault(_raised(OSError(errno.ENOSPC, "No space left on device")))
    assert words.startswith("(its traceback could not be written to ")


def test_run_main__a_file_size_limit_is_one_line(tmp_path):
    """Regression: commands under `ulimit -f` (SIGXFSZ ignored: EFBIG, "File too large") ended
    in a traceback. Now one line and exit 1, in a real process under a real limit."""
    script = (
        "import resource, signal, sys\n"
        "from sae import faults\n"
        "from sae.cli import run_main\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
        f"faults._LOG.append(__import__('pathlib').Path({str(tmp_path / 'fault.log')!r}))\n"
        "def main():\n"
        f"    with open({str(tmp_path / 'big')!r}, 'wb') as f:\n"
        "        f.write(b'x' * 5000)\n"
        "run_main(main)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: OSError: [Errno 27] File too large")
    assert "(its traceback could not be written" in line or "(details in" in line


def test_report_cli__a_full_disk_is_one_line_and_the_previous_report_stays(
    tmp_path, monkeypatch, capsys
):
    """Regression: the report on a full disk ended in a raw traceback (its previous report
    survived, which is right). Now one line naming the log, exit 1, the previous report intact."""
    import runpy
    from pathlib import Path

    from sae import tracking
    from sae.report import figures

    analysis = Path(__file__).resolve().parents[1] / "analysis"
    monkeypatch.syspath_prepend(str(analysis))
    import synthetic_store

    (tmp_path / "mlflow.yaml").write_text(
        "tracking_uri: sqlite:///mlflow.db\nartifact_location: mlartifacts\n"
        "optuna_storage: optuna.journal\n"
    )
    monkeypatch.chdir(tmp_path)
    settings = tracking.load_settings(tmp_path / "mlflow.yaml")
    synthetic_store.synthetic_store(settings, n_runs=4, epochs=2, study="s1")

    def report_cli() -> int:
        argv = ["report.py", "--config-file", "mlflow.yaml", "--no-log"]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(analysis / "report.py"), run_name="__main__")
        return done.value.code

    assert report_cli() == 0
    folder = tmp_path / "reports" / "latest"
    previous = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    capsys.readouterr()

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(figures, "plot_tradeoff", full)
    assert report_cli() == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: OSError: [Errno 28] No space left on device: a fault of")
    assert f"(details in {faults.log_path()})" in line
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == previous


def test_log_path__is_a_new_file_of_its_own_never_a_link_planted_at_a_guessable_name(
    monkeypatch, tmp_path
):
    """Regression: the fault log was ``sae-fault-<time>-<pid>.log`` in the temporary folder,
    opened for appending: a link planted there by another user would have had the traceback
    written through it, outside anything the command owns. It is now made by ``mkstemp``."""
    monkeypatch.setattr(faults.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(faults, "_LOG", [])
    victim = tmp_path / "victim.txt"
    victim.write_text("theirs")
    stamp = faults.time.strftime("%Y%m%dT%H%M%S")
    (tmp_path / f"sae-fault-{stamp}-{faults.os.getpid()}.log").symlink_to(victim)
    words = faults.log_fault(_locked(), "a test")
    path = faults.log_path()
    assert words == f"(details in {path})"
    assert path.parent == tmp_path and not path.is_symlink()
    assert (path.stat().st_mode & 0o777) == 0o600
    assert "database is locked" in path.read_text() and victim.read_text() == "theirs"


def test_is_passing_fault__not_through_a_context_its_raiser_suppressed():
    """Regression: ``raise ValueError(...) from None`` over a refused connection (the one line of
    a storage that cannot be opened) was taken for the passing fault it replaced, so a wrong
    port ended as "a fault ... that outlasted its retries" instead of "cannot open"."""
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError:
            raise ValueError("cannot open Optuna storage postgresql://db:1/x") from None
    except ValueError as err:
        refused = err
    assert not faults.is_passing_fault(refused)
    assert faults.is_passing_fault(_raised(ValueError("wrapped"), ConnectionRefusedError()))
