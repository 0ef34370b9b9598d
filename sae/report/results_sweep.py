"""The results page of ``make sweep``: the study's recorded command and settings, machine,
dates and wall time, trial states, degenerate trials, the report's front (``tables.pareto_front``)
and each front trial against the tracked baseline as the sweep prints it
(``sweep.confirm.compare_front``)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sae import baseline as B
from sae import metrics as M
from sae import names, tracking
from sae.cli import ArgumentParser, UsageError
from sae.config import TrainConfig
from sae.redact import redact
from sae.report.document import Document, Inline, code, strong
from sae.report.frames import ROLE_CONFIRM, ROLE_STUDY, ROLE_TRIAL, Frames
from sae.report.results_text import (
    SWEEP_PAGE,
    NoResults,
    finish,
    machine,
    many,
    minutes,
    span,
)
from sae.report.tables import (
    complete_trials,
    degenerate_table,
    degenerate_trials,
    pareto_front,
    swept_front,
    trial_states,
)
from sae.sweep.config import SweepConfig
from sae.sweep.confirm import compare_front, comparison_lines, confirmations_frame

SWEEP_PROGRAMS = ("sweep.py", "sae-sweep")
"""How a sweep's command line starts, as its runs record it (``environment_tags``)."""
FRONT_COLUMNS = {
    "trial_number": "trial",
    "beta": "beta",
    "lr": "lr",
    "batch_size": "batch size",
    M.TEST_MSE: "test MSE",
    M.CODE_L0: "code L0",
    M.CODE_ACTIVE_FRAC: "active fraction",
    M.PROBE_ACCURACY: "probe accuracy",
}
"""The front table's columns (runs frame column: header), those the sweep's console prints."""
WHOLE_COLUMNS = ("trial_number", "batch_size")


def sweep_page(settings: tracking.Settings, frames: Frames, made: str, again: str) -> str:
    """The study's page: its command and settings, machine, date and wall time, trial states,
    degenerate trials, front, and each front trial against the tracked baseline."""
    if frames.study is None:
        raise NoResults(
            f"no sweep study in {redact(settings.tracking_uri)}: run `make sweep` "
            f"(python experiments/sweep.py), so {SWEEP_PAGE} is not written"
        )
    doc = Document("`make sweep`, read back from its store")
    runs = frames.runs
    ran = runs[runs["role"].isin([ROLE_STUDY, ROLE_TRIAL, ROLE_CONFIRM])]
    recorded = recorded_settings(_parent_tag(frames, names.TAG_COMMAND))
    doc.text(*_what_ran(frames, recorded))
    doc.text(*machine(ran))
    doc.text(_wall_time(frames))
    if frames.parent is not None and frames.parent["status"] == "RUNNING":
        doc.text(
            strong("The sweep is still running"),
            " (its parent run is RUNNING): this is a snapshot of the trials finished so far.",
        )
    states = trial_states(frames.trials)
    doc.text(f"The study's {len(frames.trials)} trials by state:")
    doc.table(states)
    _degenerate(doc, frames, recorded)
    front = pareto_front(frames.trials)
    _front(doc, frames, front)
    experiment = settings.experiment("sweep")
    if frames.parent is not None:
        experiment = frames.parent["experiment"]
    confirmations = confirmations_frame(settings, experiment, frames.study)
    baseline_runs = B.tracked_reference_runs(settings)
    numbered = front.assign(number=front["trial_number"])
    found = compare_front(numbered, confirmations, baseline_runs)
    doc.text(
        "Each front trial against the tracked baseline, as the sweep prints it (its confirmed "
        "trials with the n of their runs, the others one run each):"
    )
    doc.code("\n".join(comparison_lines(found, baseline_runs)))
    return finish(made, doc, again)


@dataclass(frozen=True)
class Recorded:
    """The settings of a sweep as its recorded command line gives them."""

    sweep: SweepConfig
    threads: int | None


def recorded_settings(command: str | None) -> Recorded | None:
    """The sweep's settings read back from its command line (``sweep.py --trials 30 ...``), the
    flags it does not give at this code's defaults; None when the command is not a sweep's or
    cannot be read back (a flag this code no longer has a value for)."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        return None
    if not words or Path(words[0]).name not in SWEEP_PROGRAMS:
        return None
    parser = ArgumentParser(exit_on_error=False, allow_abbrev=False, add_help=False)
    parser.add_dataclass("sweep", SweepConfig())
    parser.add_dataclass("train", TrainConfig())
    try:
        args, _ = parser.parse_known_args(words[1:])
    except (UsageError, ValueError):
        return None
    return Recorded(args.sweep, args.train.threads)


def _workers(workers: int | str) -> str:
    if workers == "auto":
        return "workers chosen by --workers auto"
    return f"{workers} worker{'s' if workers != 1 else ''}"


def _parent_tag(frames: Frames, tag: str) -> str | None:
    parent = frames.parent
    if parent is None:
        return None
    value = parent.get(names.tag_column(tag))
    return value if isinstance(value, str) else None


def _what_ran(frames: Frames, recorded: Recorded | None) -> list[Inline]:
    """The command the study's parent run records, the sweep's settings it gives, and how each
    trial trained (the trials' params)."""
    command = _parent_tag(frames, names.TAG_COMMAND)
    parts: list[Inline] = ["Study ", code(str(frames.study))]
    if command:
        parts += [", made by ", code(command), " (as its parent run records it)"]
    if recorded is not None:
        cfg = recorded.sweep
        threads = (
            f"{recorded.threads} thread{'s' if recorded.threads != 1 else ''}"
            if recorded.threads
            else "torch's own number of threads"
        )
        parts.append(
            f": {cfg.trials} trials, objective {cfg.objective}, the {cfg.sampler} sampler with "
            f"seed {cfg.sampler_seed}, {_workers(cfg.workers)}, "
            f"{cfg.confirm} front trials confirmed, {threads} (the flags it does not give at "
            "this code's defaults)"
        )
    done = complete_trials(frames.trials)
    measured = done if len(done) else frames.trials
    said = "; ".join(
        f"{int(epochs)} epochs on {_images(train)} training images, tested on {_images(test)} "
        "test images"
        for epochs, train, test in _protocols(measured)
    )
    parts.append(f". Each trial trained {said} (its run's params)." if said else ".")
    return parts


def _protocols(trials: pd.DataFrame) -> list[tuple[int, int | None, int | None]]:
    """The distinct (epochs, training images, test images) of ``trials``; None for all."""
    found = trials.dropna(subset=["epochs"])
    sizes = {
        tuple(None if pd.isna(v) else int(v) for v in row)
        for row in found[["epochs", "train_size", "test_size"]].itertuples(index=False)
    }
    return sorted(sizes, key=str)


def _images(size: int | None) -> str:
    return "all the" if size is None else f"{size:,}"


def _wall_time(frames: Frames) -> str:
    """The wall time from the runs' start and end times: the parent run's, the trials' and the
    confirmation runs'."""
    parts = []
    if frames.parent is not None:
        parent = frames.runs[frames.runs["role"] == ROLE_STUDY].tail(1)
        parts.append(f"{minutes(span(parent))} from the parent run's start to its end")
    trials = frames.trials
    parts.append(
        f"{minutes(span(trials))} for the {len(trials)} trials (the first one's start to the "
        "last one's end)"
    )
    confirm = frames.confirmations
    if len(confirm):
        parts.append(f"{minutes(span(confirm))} for the {len(confirm)} confirmation runs")
    return "Wall time: " + "; ".join(parts) + "."


def _degenerate(doc: Document, frames: Frames, recorded: Recorded | None) -> None:
    found = degenerate_trials(frames.trials)
    complete = len(complete_trials(frames.trials))
    if found.empty:
        doc.text(f"None of the {complete} complete trials is degenerate.")
        return
    constrained = recorded is not None and recorded.sweep.objective == "constrained"
    doc.text(
        strong(f"{len(found)} of the {complete} complete trials are degenerate"),
        f" (a collapsed or dead model), so they are kept "
        f"{'out of the best trial' if constrained else 'off the front'}:",
    )
    doc.table(degenerate_table(found))


def _front(doc: Document, frames: Frames, front: pd.DataFrame) -> None:
    sound = len(complete_trials(frames.trials)) - len(degenerate_trials(frames.trials))
    if front.empty:
        doc.text("No complete trial that is not degenerate: the study has no front yet.")
        return
    how: list[Inline] = (
        ["as the sweep found it: its runs' ", code(f"{names.TAG_FRONT}=true"), " tags"]
        if swept_front(frames.trials) is not None
        else ["no other such trial has both a lower test MSE and a lower code active fraction"]
    )
    doc.text(
        f"The {many(len(front), 'trial')} on the study's front among the {sound} complete "
        "trials that are not degenerate (",
        *how,
        "), by increasing test MSE; each figure is its one run's, on the whole test set:",
    )
    doc.table(front_table(front))


def front_table(front: pd.DataFrame) -> pd.DataFrame:
    """The front as the sweep's console prints it: FRONT_COLUMNS, numbers to 6 digits."""
    table = front[list(FRONT_COLUMNS)].copy()
    for name in FRONT_COLUMNS:
        whole = name in WHOLE_COLUMNS
        table[name] = [_number(v, whole) for v in table[name]]
    return table.rename(columns=FRONT_COLUMNS).reset_index(drop=True)


def _number(value: object, whole: bool) -> str:
    if value is None or pd.isna(value):
        return ""
    return str(int(value)) if whole else f"{float(value):.6g}"
