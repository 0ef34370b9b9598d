"""The results of ``make sweep`` and ``make baseline`` as two Markdown pages generated from the
MLflow store, with the report's own judgements (``load_frames``, the front, the degenerate
trials, the baseline table) and the sweep's own comparison with the baseline
(``sweep.confirm.compare_front``): results-sweep.md and results-baseline.md.

Each page starts with the line saying when, on which machine and by what command it was made,
and ends with the command that makes it again; every figure in it is read from the runs.
"""

from __future__ import annotations

import datetime
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sae import baseline as B
from sae import metrics as M
from sae import names, stats, tracking
from sae.cli import ArgumentParser, UsageError
from sae.config import TrainConfig
from sae.data.idx import atomic_write
from sae.paths import owned
from sae.redact import redact
from sae.report import protocol as P
from sae.report.document import Document, Inline, code, strong
from sae.report.frames import (
    ROLE_CONFIRM,
    ROLE_STUDY,
    ROLE_TRIAL,
    Frames,
    Selection,
    column,
    load_frames,
)
from sae.report.tables import (
    LABELS,
    complete_trials,
    degenerate_table,
    degenerate_trials,
    finished_baseline,
    pareto_front,
    swept_front,
    trial_states,
)
from sae.sweep.config import SweepConfig
from sae.sweep.confirm import FrontComparison, compare_front, confirmations_frame

SWEEP_PAGE = "results-sweep.md"
BASELINE_PAGE = "results-baseline.md"
PAGES = (SWEEP_PAGE, BASELINE_PAGE)
DEFAULT_OUTPUT = "docs/generated"
PROGRAM = "python analysis/results_tables.py"
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


@dataclass(frozen=True)
class Results:
    """What ``write_results`` wrote, and the parts the store holds nothing for."""

    written: tuple[Path, ...]
    missing: tuple[str, ...]
    """One phrase per page not written, why and what to run."""
    study: str | None


def write_results(
    settings: tracking.Settings,
    output_dir: str | Path = DEFAULT_OUTPUT,
    *,
    study: str | None = None,
    command: str = PROGRAM,
    rerun: Sequence[str] = (PROGRAM,),
    now: datetime.datetime | None = None,
) -> Results:
    """Write SWEEP_PAGE (the study ``study``, default the most recent) and BASELINE_PAGE into
    ``output_dir``, each whole or not at all (``atomic_write``), through no symbolic link.

    A page the store holds nothing for (no study, no finished baseline run) is not written, and
    one that was there before is left as it was: the other page is still written, and the part
    missing is said in ``Results.missing``. Raises ValueError, in one line and before writing
    anything, for a store that is not there, a ``study`` it does not hold (``load_frames``) or an
    output folder that is a link. ``command`` is the command line said at the top of each page;
    ``rerun`` the one said at the bottom, to which ``--study`` is added.
    """
    frames = load_frames(settings, Selection(study=study))
    out = owned(output_dir)
    targets = {page: owned(out, page) for page in PAGES}
    for path in targets.values():
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not a results page: move it away")
    again = shlex.join([*rerun, *(("--study", frames.study) if frames.study else ())])
    made = made_line(settings, command, now)
    texts, missing = {}, []
    for page, build in ((SWEEP_PAGE, sweep_page), (BASELINE_PAGE, baseline_page)):
        try:
            texts[page] = build(settings, frames, made, again)
        except NoResults as why:
            missing.append(str(why))
    out.mkdir(parents=True, exist_ok=True)
    for page, text in texts.items():
        atomic_write(targets[page], text.encode("utf-8"))
    return Results(tuple(targets[p] for p in texts), tuple(missing), frames.study)


class NoResults(ValueError):
    """The store holds nothing for a page; the message says what to run."""


def made_line(settings: tracking.Settings, command: str, now: datetime.datetime | None) -> str:
    """The page's first line: when, on which host and code, by what command, from which store."""
    now = now or datetime.datetime.now(datetime.UTC)
    env = tracking.environment_tags()
    return redact(
        f"Made {now:%Y-%m-%d %H:%M} UTC on `{env[names.TAG_HOST]}` at git commit "
        f"`{env[names.TAG_GIT_COMMIT]}` by `{command}`, from the runs in "
        f"`{settings.tracking_uri}`."
    )


def _page(made: str, doc: Document, again: str) -> str:
    doc.text("Made again by ", code(again))
    return f"{made}\n\n{doc.markdown()}"


# The sweep.


def sweep_page(settings: tracking.Settings, frames: Frames, made: str, again: str) -> str:
    """The study's page: its command and settings, machine, date and wall time, trial states,
    degenerate trials, front, and each front trial against the tracked baseline."""
    if frames.study is None:
        raise NoResults(
            f"no sweep study in {redact(settings.tracking_uri)}: run `make sweep` "
            f"(python experiments/sweep.py), so {SWEEP_PAGE} is not written"
        )
    doc = Document("Results of `make sweep`")
    runs = frames.runs
    ran = runs[runs["role"].isin([ROLE_STUDY, ROLE_TRIAL, ROLE_CONFIRM])]
    recorded = recorded_settings(_parent_tag(frames, names.TAG_COMMAND))
    doc.text(*_what_ran(frames, recorded))
    doc.text(*_machine(ran))
    doc.text(_wall_time(frames))
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
    return _page(made, doc, again)


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
            f"seed {cfg.sampler_seed}, {cfg.workers} worker{'s' if cfg.workers != 1 else ''}, "
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


def _counted(runs: pd.DataFrame, tag: str, missing: str = "not recorded") -> str:
    """The values of ``tag`` on ``runs``, with how many runs carry each when they differ:
    ```cpu```, ```cpu` (30 runs), `cuda` (6 runs)``; ``missing`` when none does."""
    values = column(runs, names.tag_column(tag)).dropna().value_counts()
    if values.empty:
        return missing
    if len(values) == 1:
        return f"`{values.index[0]}`"
    return ", ".join(f"`{v}` ({n} runs)" for v, n in sorted(values.items()))


def _machine(runs: pd.DataFrame) -> list[Inline]:
    """Where the runs ran and with what, from their tags, and on which days."""
    times = [*runs["start_time"].dropna(), *runs["end_time"].dropna()]
    days = sorted({f"{t:%Y-%m-%d}" for t in times})
    when = (days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}") if days else "not recorded"
    said = "; ".join(
        f"{what} {_counted(runs, tag)}"
        for what, tag in (
            ("host", names.TAG_HOST),
            ("device", names.TAG_DEVICE),
            ("torch", names.TAG_TORCH),
            ("git commit", names.TAG_GIT_COMMIT),
        )
    )
    return [f"The machine and code, from the runs' tags: {said}. Dates (UTC): {when}."]


def _span(runs: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first start and the last end of ``runs``; None when either is unknown."""
    starts, ends = runs["start_time"].dropna(), runs["end_time"].dropna()
    if starts.empty or ends.empty:
        return None
    return starts.min(), ends.max()


def minutes(span: tuple[pd.Timestamp, pd.Timestamp] | None) -> str:
    if span is None:
        return "an unknown time"
    return f"{(span[1] - span[0]).total_seconds() / 60:.1f} minutes"


def _wall_time(frames: Frames) -> str:
    """The wall time from the runs' start and end times: the parent run's, the trials' and the
    confirmation runs'."""
    parts = []
    if frames.parent is not None:
        parent = frames.runs[frames.runs["role"] == ROLE_STUDY].tail(1)
        parts.append(f"{minutes(_span(parent))} from the parent run's start to its end")
    trials = frames.trials
    parts.append(
        f"{minutes(_span(trials))} for the {len(trials)} trials (the first one's start to the "
        "last one's end)"
    )
    confirm = frames.confirmations
    if len(confirm):
        parts.append(f"{minutes(_span(confirm))} for the {len(confirm)} confirmation runs")
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
        f"The {_many(len(front), 'trial')} on the study's front among the {sound} complete "
        "trials that are not degenerate (",
        *how,
        "), by increasing test MSE; each figure is its one run's, on the whole test set:",
    )
    doc.table(front_table(front))


def _many(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


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


def comparison_lines(
    comparisons: list[FrontComparison], baseline_runs: pd.DataFrame | None
) -> list[str]:
    """The lines the sweep prints under its front (``sae.commands.sweep``): each front trial
    against the tracked baseline runs, n, mean ± sd and Welch's verdict."""
    if baseline_runs is None or baseline_runs.empty:
        return ["no tracked baseline runs to compare with: run `python experiments/baseline.py`"]
    beta = f"beta {baseline_runs['beta'].iloc[0]:g}, " if "beta" in baseline_runs else ""
    lines = [
        f"compared with the tracked baseline ({beta}{len(baseline_runs)} runs that trained; "
        f"{stats.TEST_NAME}):"
    ]
    once = []
    for c in comparisons:
        if not c.confirmed:
            once.append(str(c.trial))
            continue
        lines.append(f"trial {c.trial}, seeds {', '.join(str(s) for s in c.seeds)}:")
        lines += [f"  {line}" for line in c.lines()]
    if once:
        lines.append(
            f"trial{'s' if len(once) > 1 else ''} {', '.join(once)}: one run each (n=1), too few "
            "to call better or worse than the baseline (confirm them with --confirm)"
        )
    return lines


# The baseline.


def baseline_page(settings: tracking.Settings, frames: Frames, made: str, again: str) -> str:
    """The replication's page: the README's figures beside the baseline runs' mean ± sd and n
    (``baseline.comparison_table``, as the report shows it), with their command, machine, date
    and wall time."""
    base = finished_baseline(frames)
    if base.empty:
        held = len(frames.baseline)
        raise NoResults(
            f"no finished baseline run in {redact(settings.tracking_uri)}"
            + (f" ({held} not finished)" if held else "")
            + f": run `make baseline` (python experiments/baseline.py --seeds 5), so "
            f"{BASELINE_PAGE} is not written"
        )
    doc = Document("Results of `make baseline`")
    commands = _counted(base, names.TAG_COMMAND, "a command they do not record")
    doc.text(
        "The baseline runs (experiment ",
        code(settings.experiment("baseline")),
        ", tag ",
        code(f"{names.TAG_BASELINE}=true"),
        f"): {len(base)} of {len(frames.baseline)} FINISHED, made by {commands}; "
        f"{minutes(_span(base))} from the first one's start to the last one's end.",
    )
    doc.text(*_machine(base))
    differs = P.differences(base)
    if differs:
        doc.text(
            strong("These runs do not follow the README's protocol"), f": {'; '.join(differs)}."
        )
    doc.text(
        "The README's two figures beside the replication's mean ± sample standard deviation over "
        "the runs of each penalty weight that trained (their number in each column's header): "
        "first under the README's definitions, then under the correct ones."
    )
    doc.table(B.comparison_table(base))
    _baseline_notes(doc, base)
    return _page(made, doc, again)


def _seeds(base: pd.DataFrame) -> str:
    said = []
    for beta, group in base.groupby("beta", sort=True):
        seeds = ", ".join(str(int(s)) for s in sorted(group["seed"].dropna()))
        said.append(f"beta {beta:g}: {seeds or 'not recorded'}")
    return "; ".join(said)


def _baseline_notes(doc: Document, base: pd.DataFrame) -> None:
    """The exact reproduction against the README's figures, the beta that reproduces them, and
    what the README's testing loss is, with the runs' own numbers."""
    doc.text(
        f"The seeds: {_seeds(base)}. Means are over the runs that trained; "
        + B.DEAD_RUNS_EXPLANATION
    )
    gaps = P.exact_gaps(base)
    if gaps:
        said = ", ".join(
            f"{LABELS[key]} {value:.8f} against the README's {readme:.8f} ({abs(gap):.2f}% "
            f"{'above' if gap > 0 else 'below'})"
            for key, value, readme, gap in gaps
        )
        doc.text(
            "The column ",
            code(B.EXACT_COLUMN),
            f" repeats the seed's script exactly (seed 1, its β, its data order): {said}.",
        )
    beta = B.reproducing_beta(base)
    if beta is not None:
        doc.text(f"The README's training loss is reproduced best by β = {beta:g}.")
    for explanation in P.test_loss_explanations(base[B.trained(base)]):
        doc.text(strong("About the README's testing loss."), " " + explanation)
