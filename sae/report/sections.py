"""The report's text sections, in order: overview, baseline, sweep (the figures are in
``gallery``, reproducibility in ``provenance``). Each adds its paragraphs and tables to the
document and writes its CSV tables and PNG figures.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sae import baseline as B
from sae import names, stats, tracking
from sae.report import figures
from sae.report import files as F
from sae.report import protocol as P
from sae.report.claims import (
    CLAIMS,
    baseline_runs,
    claims,
    claims_table,
    run_counts,
    verdicts,
)
from sae.report.document import Document, Inline, code, strong
from sae.report.frames import (
    ROLE_BASELINE,
    ROLE_CONFIRM,
    ROLE_OTHER,
    ROLE_TRIAL,
    Frames,
    Selection,
)
from sae.report.output import Output
from sae.report.tables import (
    HEADLINE_METRICS,
    LABELS,
    best_table,
    complete_trials,
    degenerate_table,
    degenerate_trials,
    finished_baseline,
    missing_metrics,
    pareto_front,
    spread_along,
    swept_front,
    trial_states,
)


class Writer(Output):
    """The report's sections, in order; keeps what each later section needs."""

    def __init__(
        self, settings: tracking.Settings, frames: Frames, folder: Path, storage: str
    ) -> None:
        super().__init__(folder)
        self.settings, self.frames, self.storage = settings, frames, storage
        self.base = finished_baseline(frames)
        self.claim_base = baseline_runs(self.base)  # the sample every trial is compared with
        self.degenerate = degenerate_trials(frames.trials)
        self.front = pareto_front(frames.trials)
        self.shown = spread_along(self.front)

    def overview(self, doc: Document, selection: Selection) -> None:
        runs, frames = self.frames.runs, self.frames
        doc.text(
            "Runs from ",
            code(self.settings.tracking_uri),
            ": ",
            *_described(selection, self.settings),
            ".",
        )
        if runs.empty:
            doc.text(
                strong("The store holds no runs matching this selection"),
                ", so there is nothing to compare. Run ",
                code("python experiments/baseline.py"),
                " and ",
                code("python experiments/sweep.py"),
                " first, or choose runs with ",
                *_listed(("--experiment", "--study", "--tag"), last=" or "),
                ".",
            )
            return
        counts = runs["role"].value_counts()
        parts: list[Inline] = [f"{counts.get(ROLE_BASELINE, 0)} baseline runs"]
        if frames.study:
            parts += [f", {counts.get(ROLE_TRIAL, 0)} trials of the study ", code(frames.study)]
        if counts.get(ROLE_CONFIRM, 0):
            parts.append(f", {counts[ROLE_CONFIRM]} confirmation runs of its trials")
        if counts.get(ROLE_OTHER, 0):
            parts.append(f", {counts[ROLE_OTHER]} other runs")
        doc.text("Selected: ", *parts, ".")
        measured = runs[runs["role"].isin([ROLE_BASELINE, ROLE_TRIAL])]
        notes: list[tuple[Inline, ...]] = []
        unfinished = measured[measured["status"].ne("FINISHED")]["status"].value_counts()
        if len(unfinished):
            notes.append(
                (
                    "Not finished, so left out of the figures: "
                    + ", ".join(f"{n} {s}" for s, n in sorted(unfinished.items()))
                    + ".",
                )
            )
        for key, n in missing_metrics(measured, (*HEADLINE_METRICS, *B.README_FIGURES)).items():
            notes.append(
                (f"{n} finished runs did not log ", code(key), "; they are left out where needed.")
            )
        doc.bullets(notes)

    def baseline_section(self, doc: Document) -> None:
        doc.heading("1. Baseline: the README's figures and the replication")
        base, all_base = self.base, self.frames.baseline
        if all_base.empty:
            doc.text(
                "No baseline runs in the selection: run ",
                code("python experiments/baseline.py"),
                " (the README's table uses ",
                code("--seeds 5"),
                ").",
            )
            return
        if base.empty:
            states = all_base["status"].value_counts()
            doc.text(
                f"The selection holds {len(all_base)} baseline runs but none FINISHED ("
                + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
                + "): nothing to set beside the README."
            )
            return
        table = B.comparison_table(base)
        self.table(F.TABLE_BASELINE, table)
        doc.text(
            f"The README reports two figures after {P.README['epochs']} epochs. Beside them, the "
            "replication's mean ± sample standard deviation over seeds, for each penalty weight: "
            "first under the README's definitions, then under the correct ones."
        )
        differs = P.differences(base)
        if differs:
            doc.text(
                strong("These runs do not follow the README's protocol"),
                f": {'; '.join(differs)}. Their figures are not expected to match the README's.",
            )
        doc.table(table)
        doc.text(*self._exact_reproduction(table))
        doc.text("Means are over the runs that trained; " + B.DEAD_RUNS_EXPLANATION)
        doc.text(
            "The count of seeds dead at initialisation needs the data rather than the store: ",
            code("python experiments/baseline.py"),
            " prints it. The column headers above say how many runs of each beta trained.",
        )
        beta = B.reproducing_beta(base)
        if beta is not None:
            doc.text(f"The README's training loss is reproduced best by β = {beta:g}.")
        trained = base[B.trained(base)]
        for explanation in P.test_loss_explanations(trained):
            doc.text(strong("About the README's testing loss."), " " + explanation)
        self.figure(
            doc,
            F.FIG_BASELINE,
            "Baseline: the README's training and testing loss (red) against each seed (grey) and "
            "the mean ± sd (blue); right, the correct test MSE" + _unlike_readme(differs),
            lambda: figures.plot_baseline(base, P.testing_loss_label(trained)),
        )

    def _exact_reproduction(self, table: pd.DataFrame) -> tuple[Inline, ...]:
        """Which column of the table is the exact reproduction, and how far from the README."""
        gaps = P.exact_gaps(self.base)
        what = "seed 1 with the script's β and its data order, train.data_order script"
        if not gaps:
            return (
                f"No trained run in the selection is the exact reproduction ({what}): run ",
                code("python experiments/baseline.py"),
                ".",
            )
        said = ", ".join(
            f"{LABELS[key]} {value:.8f} against the README's {readme:.8f} "
            f"({abs(gap):.1f}% {'above' if gap > 0 else 'below'})"
            for key, value, readme, gap in gaps
        )
        where: list[Inline] = (
            ["The column ", code(B.EXACT_COLUMN), " is"]
            if B.EXACT_COLUMN in table.columns
            else ["One run is"]
        )
        return (*where, f" the exact reproduction ({what}): {said}.")

    def sweep_section(self, doc: Document) -> None:
        doc.heading("2. Sweep")
        frames, trials = self.frames, self.frames.trials
        if frames.study is None:
            doc.text(
                "No sweep study in the selection: run ", code("python experiments/sweep.py"), "."
            )
            return
        parent = frames.parent
        states = trial_states(trials)
        self.table(F.TABLE_STATES, states)
        count = dict(zip(states["state"], states["trials"], strict=True))
        complete, running_trials = count.get("COMPLETE", 0), count.get("RUNNING", 0)
        still = parent is not None and parent["status"] == "RUNNING"
        doc.text(
            "Study ",
            code(frames.study),
            f": {len(trials)} trials so far; {complete} complete, "
            f"{len(trials) - complete - running_trials} pruned or failed, {running_trials} "
            "running",
            *(
                (
                    ". ",
                    strong("The sweep is still running"),
                    " (its parent run is RUNNING): "
                    "this is a snapshot of the trials finished so far.",
                )
                if still
                else (".",)
            ),
        )
        if len(states):
            doc.table(states)
        self._degenerate(doc)
        self.table(F.TABLE_BEST, self.front)
        if self.front.empty:
            doc.text(
                "No complete trial with a test MSE and an active fraction that is not degenerate "
                "yet: no best trials."
            )
            return
        sound = len(complete_trials(trials)) - len(self.degenerate)
        if swept_front(trials) is not None:
            doc.text(
                f"The {len(self.front)} trials on the study's front among the {sound} complete "
                "trials that are not degenerate, as the sweep found it (its objectives and "
                "constraints; the console, the runs' ",
                code(f"{names.TAG_FRONT}=true"),
                " tag and optuna-dashboard's Best Trials show the same trials).",
            )
        else:
            doc.text(
                f"The {len(self.front)} Pareto-optimal trials among the {sound} complete trials "
                "that are not degenerate: no other such trial has both a lower test MSE and a "
                "lower code active fraction."
            )
        self._protocols(doc)
        found = claims(self.front, frames.confirmations, self.claim_base)
        self.table(F.TABLE_CLAIMS, found)
        doc.text(*self._how_compared(found))
        doc.table(best_table(self.front, run_counts(found), verdicts(found)))
        confirmed = found[found["trial n"].gt(1) & found["baseline n"].gt(0)]
        if len(confirmed):
            doc.text(
                "The confirmed trials against the baseline, quantity by quantity (every best "
                "trial's comparison is in ",
                code(F.TABLE_CLAIMS),
                "):",
            )
            doc.table(claims_table(confirmed))
        elif len(self.claim_base):
            doc.text(
                "No best trial was trained again with other seeds (",
                code("python experiments/sweep.py --confirm K"),
                "), so no trial can be said better or worse than the baseline: one run is too "
                "few to test.",
            )

    def _degenerate(self, doc: Document) -> None:
        """The degenerate complete trials, with their reasons: kept off the front."""
        self.table(F.TABLE_DEGENERATE, self.degenerate)
        complete = len(complete_trials(self.frames.trials))
        if self.degenerate.empty:
            if complete:
                doc.text(f"None of the {complete} complete trials is degenerate.")
            return
        doc.text(
            strong(f"{len(self.degenerate)} of the {complete} complete trials are degenerate"),
            " (a collapsed or dead model: a layer dead on every test image, a code constant over "
            "the test set, or a reconstruction no better than the mean image), so they are kept "
            "off the front:",
        )
        doc.table(degenerate_table(self.degenerate))

    def _protocols(self, doc: Document) -> None:
        """How the trials were trained, against the README's protocol and the baseline runs'."""
        done = complete_trials(self.frames.trials)
        differs = P.differences(done, batch_size=False)
        if differs:
            doc.text(
                strong("The trials do not follow the README's protocol"),
                f": {'; '.join(differs)}.",
            )
        unlike = P.between(done, self.claim_base) if len(self.claim_base) else []
        if unlike:
            doc.text(
                strong("The trials and the baseline runs they are compared with differ in "),
                strong(", ".join(unlike)),
                ": the comparison below is between different protocols.",
            )

    def _how_compared(self, found: pd.DataFrame) -> tuple[Inline, ...]:
        """How a trial is compared with the baseline, with the numbers of runs on each side."""
        if self.claim_base.empty:
            return (
                "No trained baseline run with the script's β in the selection, so no trial "
                "is compared with the baseline.",
            )
        confirmed = int((run_counts(found) > 1).sum())
        base = self.claim_base
        sides = ", ".join(
            f"{LABELS[key]} {stats.describe(stats.summarize(base[key]))}"
            for key, _ in CLAIMS
            if key in base
        )
        return (
            f"Each is compared with the baseline (β = {base['beta'].iloc[0]:g}, the weight the "
            f"seed's script used; its {len(base)} trained runs: {sides}). A trial's runs are "
            f"its own and its confirmation runs with other seeds ({confirmed} of the "
            f"{len(self.front)} trials were confirmed); each difference is tested with "
            f"{stats.TEST_NAME} and called better or worse only when the test finds it, "
            f"otherwise {stats.NOT_DISTINGUISHABLE}. A trial with one run is too few to test.",
        )


def _unlike_readme(differences: list[str]) -> str:
    """A caption's note on the runs' protocol where it is not the README's."""
    return f" (these runs: {'; '.join(differences)})" if differences else ""


def _described(selection: Selection, settings: tracking.Settings) -> list[Inline]:
    """Which runs the selection holds, in words."""
    if selection.experiments:
        what: list[Inline] = ["every run of the experiments ", *_listed(selection.experiments)]
    else:
        study: list[Inline] = (
            ["the study ", code(selection.study)] if selection.study else ["the most recent study"]
        )
        what = [
            "the baseline runs (experiment ",
            code(settings.experiment("baseline")),
            ", tag ",
            code(f"{names.TAG_BASELINE}=true"),
            ") and the trials of ",
            *study,
            " (experiment ",
            code(settings.experiment("sweep")),
            ")",
        ]
    if selection.tags:
        what += [", tagged ", *_listed([f"{k}={v}" for k, v in selection.tags])]
    return what


def _listed(values: tuple[str, ...] | list[str], last: str = ", ") -> list[Inline]:
    """The values as code spans, separated by commas (``last`` before the last one)."""
    out: list[Inline] = []
    for i, value in enumerate(values):
        if i:
            out.append(last if i == len(values) - 1 else ", ")
        out.append(code(value))
    return out
