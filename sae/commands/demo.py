"""A first picture in five minutes: a short baseline, sweep and report on a subset of MNIST, in
stores of their own under demo/, then the MLflow UI and optuna-dashboard on them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from sae.cli import ArgumentParser, fail, run_main
from sae.errors import first_line
from sae.paths import owned

MARKER = ".sae-demo"
"""The file that says a folder is the demo's, and lists (JSON) every file and folder the demo
made in it: a rerun deletes those and nothing else, and refuses a folder holding anything more."""
MADE_BY = "sae-demo"
SETTINGS_FILE = "mlflow.yaml"
SETTINGS = (
    "# Written by the demo (make demo): its own stores, all in this folder, rewritten each run.\n"
    "# Browse them again: python experiments/ui.py --config-file {folder}/mlflow.yaml --dashboard\n"
    "tracking_uri: sqlite:///mlflow.db\n"
    "artifact_location: mlartifacts\n"
    "optuna_storage: optuna.journal\n"
)
INTERRUPTED = {130: 130, -signal.SIGINT: 130, 143: 143, -signal.SIGTERM: 143}
"""A child's exit status after Ctrl-C or SIGTERM, and the demo's own exit status then."""
INTERRUPT_GRACE_S = 10.0
"""How long the demo gives a child to stop on a Ctrl-C of its own before it passes SIGINT on."""


class DemoError(ValueError):
    """The demo cannot go on; one line for the user."""


@dataclass(frozen=True)
class DemoOptions:
    """What the demo trains and where its stores go."""

    folder: str = "demo"
    """the demo's own folder (stores, logs, report): deleted and made again on every run;
    refused when it holds anything the demo did not make"""
    root: str | None = None
    """data root; unset means the commands' own (data, or SAE_DATA_ROOT)"""
    manifest: str | None = None
    """JSON file of expected IDX sizes and digests; unset means canonical MNIST"""
    train_size: int = 10_000
    """training images of every run (the first N of MNIST's 60,000)"""
    test_size: int = 2_000
    """test images of every run (the first N of MNIST's 10,000)"""
    epochs: int = 3
    """epochs of every run"""
    seeds: int = 2
    """baseline seeds per beta"""
    trials: int = 8
    """sweep trials"""
    confirm: int = 1
    """front trials the sweep trains again with 2 more seeds, so that their comparison with the
    baseline has n=3 (see sae-sweep --confirm)"""
    ui: bool = True
    """start the MLflow UI and optuna-dashboard at the end (--no-ui: stop after the report)"""

    def __post_init__(self) -> None:
        for name in ("train_size", "test_size", "epochs", "seeds", "trials"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.confirm < 0:
            raise ValueError("--confirm must be >= 0")


@dataclass(frozen=True)
class Step:
    """One command the demo runs: its name (also its log's), what it does, and its argv."""

    name: str
    what: str
    argv: list[str]


def prepare_folder(folder: Path) -> None:
    """Make ``folder`` the demo's, empty but for its marker and settings file.

    A folder an earlier demo made (it holds ``MARKER``) is emptied of what that demo listed
    there as made (``record_made``), once it is sure the folder holds nothing else; any other
    folder with something in it is refused, as are a link, a file, a folder holding the working
    folder, and a symbolic link inside: the demo deletes only what it made.
    """
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise DemoError(f"{folder} is not a folder the demo made: pass --folder NEW_FOLDER")
    if Path.cwd().resolve().is_relative_to(folder.resolve()):
        raise DemoError(f"{folder} holds the working folder: pass --folder NEW_FOLDER")
    if folder.is_dir() and any(folder.iterdir()):
        made = _made(folder)
        for path in _entries(folder):  # all of them, before anything is deleted
            if path not in made:
                raise DemoError(
                    f"{folder}/ holds {path}, which the demo did not make (its {MARKER} does not "
                    "list it): move it away or pass --folder NEW_FOLDER; nothing was deleted"
                )
            owned(folder, path)  # never a symbolic link
        # the deepest first, so that each folder is empty when its turn comes; the marker last
        for path in sorted(made, key=lambda p: (p == MARKER, -p.count("/"), p)):
            target = owned(folder, path)
            if target.is_dir():
                target.rmdir()  # emptied first: its entries are deeper
            elif target.exists():
                target.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    owned(folder, MARKER).write_text(json.dumps({"made_by": MADE_BY, "made": []}))
    owned(folder, SETTINGS_FILE).write_text(SETTINGS.format(folder=folder))
    record_made(folder)


def record_made(folder: Path) -> None:
    """Add every file and folder now in ``folder`` (but a symbolic link, which the demo never
    makes) to the list in its MARKER: called after each of the demo's steps, whatever its end,
    so that only what the demo's own commands made is ever listed and deleted."""
    made = sorted(_made(folder) | {p for p in _entries(folder) if not (folder / p).is_symlink()})
    new = owned(folder, f"{MARKER}.new")
    new.write_text(json.dumps({"made_by": MADE_BY, "made": made}, indent=0) + "\n")
    os.replace(new, owned(folder, MARKER))


def _made(folder: Path) -> set[str]:
    """What ``folder``'s MARKER lists as made by the demo (the marker itself included); raises
    DemoError when there is no marker or it lists nothing readable."""
    marker = folder / MARKER
    if marker.is_symlink() or not marker.is_file():
        raise DemoError(
            f"{folder}/ holds files not made by the demo (no {MARKER} in it): "
            "move them away or pass --folder NEW_FOLDER"
        )
    try:
        listed = json.loads(marker.read_text())
        made = set(listed["made"]) if listed.get("made_by") == MADE_BY else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        made = None
    if made is None or not all(isinstance(p, str) for p in made):
        raise DemoError(
            f"{marker} does not list what the demo made in {folder}/ (an older demo's?): "
            "delete the folder yourself or pass --folder NEW_FOLDER; nothing was deleted"
        )
    return made | {MARKER, f"{MARKER}.new"}


def _entries(folder: Path) -> list[str]:
    """Every file, folder and link under ``folder`` as a relative POSIX path, links not
    followed."""
    found = []
    for top, dirs, files in os.walk(folder):
        base = Path(top).relative_to(folder)
        found += [(base / name).as_posix() for name in [*dirs, *files]]
    return sorted(found)


def steps(opts: DemoOptions, folder: Path) -> list[Step]:
    """The demo's commands, in order; the UI comes after them (``serve_ui``)."""
    sae = [sys.executable, "-m", "sae"]
    settings = ["--config-file", str(folder / SETTINGS_FILE)]
    data = [
        *(["--root", opts.root] if opts.root else []),
        *(["--manifest", opts.manifest] if opts.manifest else []),
        *("--train-size", str(opts.train_size), "--test-size", str(opts.test_size)),
        *("--epochs", str(opts.epochs)),
    ]
    confirm = f", {opts.confirm} confirmed" if opts.confirm else ""
    return [
        Step(
            "baseline",
            f"2 betas x {opts.seeds} seed{'s' if opts.seeds > 1 else ''}",
            [*sae, "baseline", "--seeds", str(opts.seeds), *data, *settings],
        ),
        Step(
            "sweep",
            f"{opts.trials} trials{confirm}",
            [*sae, "sweep", "--trials", str(opts.trials), "--confirm", str(opts.confirm)]
            + [*data, *settings],
        ),
        Step(
            "report",
            f"in {folder / 'reports'}",
            [*sae, "report", "--output-dir", str(folder / "reports"), *settings],
        ),
    ]


def serve_ui(folder: Path) -> None:
    """The MLflow UI and optuna-dashboard on the demo's stores, started from this process (as
    ``sae-ui --dashboard`` starts them), so that they end with the demo however it ends."""
    from sae import tracking, ui  # MLflow only now: the steps ran in child processes

    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the demo's own store, as child_env gives
    ui.serve(tracking.load_settings(folder / SETTINGS_FILE), dashboard=True)


def child_env() -> dict[str, str]:
    """The environment of the demo's commands: the user's, but not a MLFLOW_TRACKING_URI, which
    would send the demo's runs to the user's own store instead of the demo's."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def wait_through_interrupts(process: subprocess.Popen[Any]) -> int:
    """Wait for ``process`` to end; returns its exit status.

    Ctrl-C at a terminal reaches the child too (same process group), which ends its run KILLED:
    the demo waits for that instead of leaving it behind. A SIGINT sent to the demo alone (`kill
    -INT`) is passed on once the child has not ended within ``INTERRUPT_GRACE_S`` (sent at once, a
    second SIGINT would cut a child's orderly stop short). SIGTERM, which only the demo receives,
    is passed on at once.
    """

    def forward(signum: int, _frame: object) -> None:
        process.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:
                try:
                    return process.wait(INTERRUPT_GRACE_S)
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGINT)  # it did not get the first one
                except KeyboardInterrupt:
                    continue
    finally:
        signal.signal(signal.SIGTERM, previous)


def log_reason(log: Path) -> str:
    """Why a command failed, from its log: its ``error:`` line (every command ends with one),
    else its last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    return first_line((errors or lines or ["no output"])[-1])


def run_step(step: Step, number: str, logs: Path) -> float:
    """Run ``step`` with its output in ``logs/<name>.log``, on one console line that ends with
    its time; seconds taken. Raises DemoError (or exits 130/143 when interrupted)."""
    log = logs / f"{step.name}.log"
    print(f"{number} {step.name:<8} {step.what:<32}", end=" ", flush=True)
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            step.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
        )
        code = wait_through_interrupts(process)
    seconds = time.perf_counter() - started
    print(f"{seconds:.0f} s" if code == 0 else "")
    if code in INTERRUPTED:
        fail(f"interrupted during the {step.name}; its log: {log}", INTERRUPTED[code])
    if code != 0:
        raise DemoError(f"{step.name} failed (exit {code}): {log_reason(log)} (log: {log})")
    return seconds


def run_steps(opts: DemoOptions, folder: Path) -> float:
    """The demo's steps in its prepared ``folder``, their logs in ``folder/logs``; seconds."""
    logs = owned(folder, "logs")
    logs.mkdir()
    epochs = f"{opts.epochs} epoch{'s' if opts.epochs > 1 else ''}"
    print(
        f"demo: every run {epochs} on {opts.train_size:,} training / {opts.test_size:,} test "
        f"images; stores in {folder}/, logs in {logs}/"
    )
    plan = steps(opts, folder)
    total = 0.0
    for i, step in enumerate(plan, 1):
        total += run_step(step, f"[{i}/{len(plan)}]", logs)
        record_made(folder)
    return total


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_dataclass("demo", DemoOptions())
    opts: DemoOptions = parser.parse_args().demo
    folder = Path(opts.folder)
    prepare_folder(folder)
    try:
        total = run_steps(opts, folder)
    finally:
        record_made(folder)  # whatever the steps' end: what they made is the demo's to delete
    logs = folder / "logs"
    print(f"{'total':<47} {total:.0f} s")
    for line in (logs / "report.log").read_text().splitlines():
        if line.startswith(("report:", "html:")):
            print(line)
    command = f"python experiments/ui.py --config-file {folder / SETTINGS_FILE} --dashboard"
    if not opts.ui:
        print(f"browse: {command}")
        return
    print(f"starting the MLflow UI and optuna-dashboard ({command}); Ctrl-C stops them")
    sys.stdout.flush()
    serve_ui(folder)


def run() -> NoReturn:
    """``sae-demo``."""
    run_main(main)
