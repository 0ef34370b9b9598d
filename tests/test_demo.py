"""experiments/demo.py: baseline, sweep and report in stores of its own, and the folder it owns."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from helpers import tiny_data
from mlflow.tracking import MlflowClient

from sae import sweep
from sae.commands import demo

DEMO = Path(__file__).resolve().parents[1] / "experiments" / "demo.py"


def _demo(cwd: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The demo as a user runs it, from ``cwd``, without the UI."""
    return subprocess.run(
        [sys.executable, str(DEMO), "--no-ui", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env or {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
    )


def _tiny(tmp_path: Path) -> list[str]:
    data = tiny_data(tmp_path / "data", n_train=40, n_test=20)
    return [
        *("--root", data.root, "--manifest", data.manifest),
        *("--train-size", "40", "--test-size", "20", "--epochs", "1"),
        *("--seeds", "1", "--trials", "2", "--confirm", "0"),
    ]


def test_demo__tiny_run_fills_its_own_stores_and_report_and_exits_0(tmp_path):
    user_store = tmp_path / "user.db"  # the user's own store: the demo must not write there
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{user_store}"}
    result = _demo(tmp_path, *_tiny(tmp_path), env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for number, step in (("[1/3]", "baseline"), ("[2/3]", "sweep"), ("[3/3]", "report")):
        (line,) = [line for line in lines if line.startswith(f"{number} {step} ")]
        assert line.endswith(" s")  # each step's time
    assert any(line.startswith("total ") and line.endswith(" s") for line in lines)
    assert "browse: python experiments/ui.py --config-file demo/mlflow.yaml" in result.stdout

    folder = tmp_path / "demo"
    assert (folder / "reports" / "latest" / "report.md").is_file()
    assert (folder / "reports" / "latest" / "report.html").is_file()
    assert not user_store.exists() and not (tmp_path / "mlflow.db").exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    baseline = client.get_experiment_by_name("sae-baseline")
    assert len(client.search_runs([baseline.experiment_id])) == 2  # 2 betas x 1 seed
    for experiment in client.search_experiments():
        if experiment.name != "Default":
            assert experiment.artifact_location.startswith((folder / "mlartifacts").as_uri())
    study = optuna.load_study(
        study_name="sae-sweep", storage=sweep.make_storage(str(folder / "optuna.journal"))
    )
    assert len(study.get_trials(states=[optuna.trial.TrialState.COMPLETE])) == 2


def test_demo__failing_step_ends_it_in_one_line_naming_the_step(tmp_path):
    data = tiny_data(tmp_path / "data", n_train=40, n_test=20)
    empty = tmp_path / "empty"
    empty.mkdir()
    sizes = ("--train-size", "40", "--test-size", "20")  # what the data holds: its files fail
    result = _demo(tmp_path, "--root", str(empty), "--manifest", data.manifest, *sizes)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: baseline failed (exit 1): ")
    assert "missing" in line and "log: demo/logs/baseline.log" in line
    assert "[2/3]" not in result.stdout and not (tmp_path / "demo" / "optuna.journal").exists()


def test_demo__refuses_a_folder_it_did_not_make_and_leaves_it_alone(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "notes.txt").write_text("mine")
    result = _demo(tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: demo/ holds files not made by the demo (no .sae-demo in it)")
    assert (tmp_path / "demo" / "notes.txt").read_text() == "mine"


def test_prepare_folder__a_rerun_starts_from_an_empty_folder_of_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("demo")
    demo.prepare_folder(folder)
    (folder / "mlflow.db").write_text("an earlier demo's store")
    (folder / "logs").mkdir()
    (folder / "logs" / "sweep.log").write_text("its log")
    demo.record_made(folder)  # as after each of the demo's steps
    demo.prepare_folder(folder)
    assert sorted(p.name for p in folder.iterdir()) == [demo.MARKER, demo.SETTINGS_FILE]
    assert "tracking_uri: sqlite:///mlflow.db" in (folder / demo.SETTINGS_FILE).read_text()


def test_prepare_folder__takes_an_empty_folder(tmp_path):
    (tmp_path / "demo").mkdir()
    demo.prepare_folder(tmp_path / "demo")
    assert (tmp_path / "demo" / demo.MARKER).is_file()


@pytest.mark.parametrize("kind", ["link", "file", "working folder"])
def test_prepare_folder__refuses_what_it_must_not_delete(tmp_path, monkeypatch, kind):
    target = tmp_path / "target"
    target.mkdir()
    demo.prepare_folder(target)  # the demo's own: only the way in is wrong
    folder = tmp_path / "demo"
    if kind == "link":
        folder.symlink_to(target)
    elif kind == "file":
        folder.write_text("a file")
    else:
        folder = target
        (target / "inner").mkdir()
        monkeypatch.chdir(target / "inner")
    before = sorted(p.name for p in target.iterdir())
    with pytest.raises(demo.DemoError, match="pass --folder NEW_FOLDER"):
        demo.prepare_folder(folder)
    assert sorted(p.name for p in target.iterdir()) == before


def _earlier_demo(folder: Path) -> dict[str, bytes]:
    """A folder as an earlier demo left it: its stores, logs and report, listed as made."""
    demo.prepare_folder(folder)
    for path in ("mlflow.db", "mlartifacts/1/abc/model.pt", "logs/sweep.log", "reports/r/a.md"):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(b"the demo's")
    demo.record_made(folder)
    return _files(folder)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): b"" if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("added", ["notes.txt", "reports/r/mine.md", "mlartifacts/mine/"])
def test_prepare_folder__refuses_anything_it_did_not_make_and_deletes_nothing(tmp_path, added):
    """Bug fix: a file a user had added to an earlier demo's folder was deleted with it (the
    whole folder went, as it held the demo's marker). Now the marker lists what the demo made;
    anything else, anywhere in the folder, is refused before anything is deleted."""
    folder = tmp_path / "demo"
    _earlier_demo(folder)
    (folder / added).parent.mkdir(parents=True, exist_ok=True)
    if added.endswith("/"):
        (folder / added).mkdir()
    else:
        (folder / added).write_bytes(b"mine")
    before = _files(folder)
    with pytest.raises(demo.DemoError, match=r"which the demo did not make") as err:
        demo.prepare_folder(folder)
    assert f"holds {added.rstrip('/')}," in str(err.value) and "nothing was deleted" in str(
        err.value
    )
    assert _files(folder) == before


def test_prepare_folder__refuses_a_link_inside_and_deletes_nothing(tmp_path):
    """Bug fix: the folder was deleted whole whatever it held; a link put in place of one of the
    demo's folders is the user's, and nothing is deleted through one or beside it."""
    folder, elsewhere = tmp_path / "demo", tmp_path / "elsewhere"
    _earlier_demo(folder)
    elsewhere.mkdir()
    (elsewhere / "a.md").write_bytes(b"theirs")
    (folder / "reports" / "r" / "a.md").unlink()
    (folder / "reports" / "r").rmdir()
    (folder / "reports" / "r").symlink_to(elsewhere)
    before = _files(folder)
    with pytest.raises(ValueError, match="is a symbolic link"):
        demo.prepare_folder(folder)
    assert _files(folder) == before and (elsewhere / "a.md").read_bytes() == b"theirs"


def test_prepare_folder__a_marker_that_lists_nothing_is_refused(tmp_path):
    """Bug fix: any file named like the marker made the whole folder the demo's to delete."""
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / demo.MARKER).write_text("made by sae-demo: deleted and made again on every run\n")
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(demo.DemoError, match="does not list what the demo made"):
        demo.prepare_folder(folder)
    assert (folder / "notes.txt").read_text() == "mine"


def test_demo__a_file_added_to_its_folder_is_one_line_exit_1_and_nothing_deleted(tmp_path):
    """Bug fix: ``make demo`` deleted a file a user had added to ``demo/``."""
    before = _earlier_demo(tmp_path / "demo")
    (tmp_path / "demo" / "logs" / "my-notes.txt").write_text("mine")
    result = _demo(tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "error: demo/ holds logs/my-notes.txt, which the demo did not make (its .sae-demo does "
        "not list it): move it away or pass --folder NEW_FOLDER; nothing was deleted\n"
    )
    assert _files(tmp_path / "demo") == {**before, "logs/my-notes.txt": b"mine"}


def test_wait_through_interrupts__passes_sigterm_on_and_waits_for_the_child(tmp_path):
    """A service manager stops the demo with SIGTERM, which only the demo receives: the command
    it runs (the UI's servers, a training run) must hear it and end on its own terms."""
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [
            *(sys.executable, "-c"),
            "import pathlib, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
            f"pathlib.Path({str(ready)!r}).touch()\n"
            "time.sleep(60)\n",
        ]
    )
    while not ready.exists():
        assert child.poll() is None
        time.sleep(0.01)
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
    assert demo.wait_through_interrupts(child) == 143
    assert signal.getsignal(signal.SIGTERM) == before  # the handler given back


def test_wait_through_interrupts__a_sigint_to_the_demo_alone_reaches_the_child(
    tmp_path, monkeypatch
):
    """Fix: `kill -INT` to the demo alone (not its process group, as a terminal's Ctrl-C) left it
    waiting forever on the UI, which never heard it. The child (in a session of its own here, so
    only the demo gets the signal) now gets it after the grace period."""
    monkeypatch.setattr(demo, "INTERRUPT_GRACE_S", 0.5)
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [
            *(sys.executable, "-c"),
            "import pathlib, signal, sys, time\n"
            "signal.signal(signal.SIGINT, lambda *_: sys.exit(130))\n"
            f"pathlib.Path({str(ready)!r}).touch()\n"
            "time.sleep(60)\n",
        ],
        start_new_session=True,
    )
    while not ready.exists():
        assert child.poll() is None
        time.sleep(0.01)
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    assert demo.wait_through_interrupts(child) == 130
    assert time.monotonic() - started < 10
