"""The results page of ``make baseline``: the README's figures beside the replication's mean ±
sd and n (``baseline.comparison_table`` of the report's finished baseline runs), with the runs'
command, machine, dates and wall time."""

from __future__ import annotations

import pandas as pd

from sae import baseline as B
from sae import names, tracking
from sae.redact import redact
from sae.report import protocol as P
from sae.report.document import Document, code, strong
from sae.report.frames import Frames
from sae.report.results_text import (
    BASELINE_PAGE,
    NoResults,
    counted,
    finish,
    machine,
    minutes,
    span,
)
from sae.report.tables import LABELS, finished_baseline


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
    doc = Document("`make baseline`, read back from its store")
    commands = counted(base, names.TAG_COMMAND, "a command they do not record")
    doc.text(
        "The baseline runs (experiment ",
        code(settings.experiment("baseline")),
        ", tag ",
        code(f"{names.TAG_BASELINE}=true"),
        f"): {len(base)} of {len(frames.baseline)} FINISHED{_others(frames, base)}, made by "
        f"{commands}; {minutes(span(base))} from the first finished one's start to the last "
        "one's end.",
    )
    doc.text(*machine(base))
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
    return finish(made, doc, again)


def _others(frames: Frames, base: pd.DataFrame) -> str:
    """The baseline runs left out, by status: `` (1 RUNNING, 2 FAILED)``; empty when none."""
    others = frames.baseline[~frames.baseline["run_id"].isin(base["run_id"])]
    if others.empty:
        return ""
    counts = sorted(others["status"].value_counts().items())
    return " (" + ", ".join(f"{n} {status}" for status, n in counts) + ")"


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
