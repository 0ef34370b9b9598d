"""The report's sections, in order: overview, baseline, sweep, figures, reproducibility. Each
adds its paragraphs and tables to the document and writes its CSV tables and PNG figures.
"""

from __future__ import annotations

import importlib.metadata
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from sae import baseline as B
from sae import metrics as M
from sae import names, sweep, tracking
from sae.redact import redact
from sae.report import figures
from sae.report import files as F
from sae.report.document import Document, Inline, code, em, redact_frame, strong
from sae.report.frames import ROLE_BASELINE, ROLE_OTHER, ROLE_TRIAL, Frames, Selection, column
from sae.report.tables import (
    BEST_SHOWN,
    HEADLINE_METRICS,
    best_table,
    finished_baseline,
    missing_metrics,
    pareto_front,
    reference,
    spread_along,
    trial_states,
)

PROVENANCE = (
    ("git commit", names.TAG_GIT_COMMIT),
    ("data digest", names.TAG_DATA_DIGEST),
    ("device", names.TAG_DEVICE),
    ("torch", names.TAG_TORCH),
    ("mlflow", names.TAG_MLFLOW),
)
"""What the reproducibility section counts the runs by: (what, the tag that says it)."""
VERSIONS = ("mlflow", "optuna", "torch", "pandas", "seaborn", "matplotlib", "numpy")
"""The packages whose versions the report says it was built with, after python's."""


class Writer:
    """The report's sections, in order; keeps what each later section needs."""

    def __init__(
        self, settings: tracking.Settings, frames: Frames, folder: Path, storage: str
    ) -> None:
        self.settings, self.frames, self.folder, self.storage = settings, frames, folder, storage
        self.figure_files: list[Path] = []
        self.table_files: list[Path] = []
        self.skipped: dict[str, str] = {}
        self.base = finished_baseline(frames)
        self.ref = reference(frames)
        self.front = pareto_front(frames.trials)
        self.shown = spread_along(self.front)

    def table(self, path: str, frame: pd.DataFrame) -> None:
        """Write ``frame`` as the CSV file ``path`` (one of OUTPUTS), every text cell redacted."""
        redact_frame(frame).to_csv(
            self.folder / path,
            index=False,
            float_format="%.10g",
            date_format="%Y-%m-%dT%H:%M:%S.%fZ",
        )
        self.table_files.append(self.folder / path)

    def figure(self, doc: Document, path: str, caption: str, make: Callable[[], Figure]) -> None:
        try:
            fig = make()
        except figures.NothingToPlot as why:
            self.skipped[path] = redact(str(why))
            doc.text(em(f"{caption.split(':')[0]}: not drawn, {why}."))
            return
        figures.save_figure(fig, self.folder / path)
        self.figure_files.append(self.folder / path)
        doc.figure(path, caption)

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
            "The README reports two figures after 10 epochs. Beside them, the replication's mean "
            "± sample standard deviation over seeds, for each penalty weight: first under the "
            "README's definitions, then under the correct ones."
        )
        doc.table(table)
        doc.text("Means are over the runs that trained; " + B.DEAD_RUNS_EXPLANATION)
        doc.text(
            "The count of seeds dead at initialisation needs the data rather than the store: ",
            code("python experiments/baseline.py"),
            " prints it. The column headers above say how many runs of each beta trained.",
        )
        beta = B.reproducing_beta(base)
        if beta is not None:
            doc.text(f"The README's training loss is reproduced best by β = {beta:g}.")
        doc.text(strong("About the README's testing loss."), " " + B.TEST_LOSS_EXPLANATION)
        self.figure(
            doc,
            F.FIG_BASELINE,
            "Baseline: the README's training and testing loss (red) against each seed (grey) and "
            "the mean ± sd (blue); right, the correct test MSE",
            lambda: figures.plot_baseline(base),
        )

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
        self.table(F.TABLE_BEST, self.front)
        if self.front.empty:
            doc.text(
                "No complete trial with a test MSE and an active fraction yet: no best trials."
            )
            return
        doc.text(
            f"The {len(self.front)} Pareto-optimal trials: no other complete trial has both a "
            "lower test MSE and a lower code active fraction. Each is compared with the baseline "
            + (
                f"(β = {self.ref['beta']:g}, the weight the seed's script used; mean of "
                f"{self.ref['runs']:.0f} trained runs)."
                if self.ref
                else "(none in the selection, so no comparison)."
            )
        )
        doc.table(best_table(self.front, self.ref))

    def figures_section(self, doc: Document) -> None:
        doc.heading("3. Figures")
        frames, trials = self.frames, self.frames.trials
        if frames.runs.empty:
            doc.text("No runs, so no figures.")
            return
        self.figure(
            doc,
            F.FIG_CURVES,
            "Learning curves: train and test MSE per epoch, the baseline (mean and range over "
            "the seeds that trained) "
            f"against up to {BEST_SHOWN} Pareto-optimal trials",
            lambda: figures.plot_learning_curves(frames.curves, self.base, self.shown),
        )
        self.figure(
            doc,
            F.FIG_TRADEOFF,
            "Sparsity / reconstruction trade-off: every complete trial, the Pareto front, the "
            "baseline (mean ± sd)",
            lambda: figures.plot_tradeoff(trials, self.front, self.base),
        )
        self.figure(
            doc,
            F.FIG_HYPERPARAMETERS,
            "Effect of each hyperparameter: β against test MSE and against the code's active "
            "fraction, and the learning rate by batch size",
            lambda: figures.plot_hyperparameters(trials, self.base),
        )
        self.figure(
            doc,
            F.FIG_IMPORTANCES,
            "Parameter importances: Optuna's evaluator on the study, for each objective",
            self._importances,
        )
        self.figure(
            doc,
            F.FIG_LAYERS,
            "Per-layer sparsity: active fraction of each layer for the baseline and the best "
            "trials",
            lambda: figures.plot_layer_sparsity(self.base, self.shown),
        )
        self.figure(
            doc,
            F.FIG_RECONSTRUCTIONS,
            "Reconstructions: the last epoch's grid of the baseline and of the best trials, from "
            "the runs' artifacts",
            self._reconstructions,
        )

    def _importances(self) -> Figure:
        study = self.frames.study
        if study is None:
            raise figures.NothingToPlot("no study in the selection")
        try:
            found = sweep.param_importances(self.storage, study)
        except ValueError as err:
            raise figures.NothingToPlot(str(err)) from None
        complete = int(self.frames.trials["trial_state"].eq("COMPLETE").sum())
        if found is None:
            raise figures.NothingToPlot(
                f"importances need at least {sweep.MIN_IMPORTANCE_TRIALS} complete trials and "
                f"the study has {complete}"
            )
        self.table(F.TABLE_IMPORTANCES, found)
        return figures.plot_importances(found, complete)

    def _reconstructions(self) -> Figure:
        picks = []
        for _, group in self.base[B.trained(self.base)].groupby("beta", sort=True):
            picks.append(group.iloc[0])
        picks += [t for _, t in self.shown.iterrows()]
        grids = []
        # inside the build folder, like everything the report writes, and gone before it is done
        with tempfile.TemporaryDirectory(prefix=F.DOWNLOADS, dir=self.folder) as tmp:
            for i, run in enumerate(picks):
                path = tracking.latest_image(self.settings, run["run_id"])
                if path is None:
                    continue
                local = tracking.download_artifact(self.settings, run["run_id"], path, f"{tmp}/{i}")
                seed = f", seed {run['seed']}" if run["role"] == ROLE_BASELINE else ""
                grids.append(
                    (
                        f"{run['label']}{seed}: test MSE {run[M.TEST_MSE]:.4g}, "
                        f"code active fraction {run[M.CODE_ACTIVE_FRAC]:.2f}",
                        local,
                    )
                )
            return figures.plot_reconstructions(grids)

    def reproducibility(self, doc: Document, command: str) -> None:
        doc.heading("4. Reproducibility")
        runs = self.frames.runs
        measured = runs[runs["role"].isin([ROLE_BASELINE, ROLE_TRIAL, ROLE_OTHER])]
        rows = []
        for what, tag in PROVENANCE:
            values = column(measured, names.tag_column(tag)).fillna("not recorded").value_counts()
            rows += [{"what": what, "value": v, "runs": int(n)} for v, n in sorted(values.items())]
        if rows:
            doc.text("What the selected runs were made with (from their tags):")
            table = pd.DataFrame(rows)
            self.table(F.TABLE_PROVENANCE, table)
            doc.table(table)
        commands = column(measured, names.tag_column(names.TAG_COMMAND)).dropna().value_counts()
        if len(commands):
            doc.text("The commands that made them (runs per command):")
            doc.code("\n".join(f"{c}    # {n} runs" for c, n in sorted(commands.items())))
        versions = {"python": platform.python_version(), **{p: _version(p) for p in VERSIONS}}
        doc.text(
            "This report was built with "
            + ", ".join(f"{k} {v}" for k, v in versions.items())
            + ", at git commit ",
            code(tracking.environment_tags()[names.TAG_GIT_COMMIT]),
            ", by:",
        )
        doc.code(command or "python analysis/report.py")


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


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
