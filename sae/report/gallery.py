"""The report's figures section: each figure drawn from what the text sections read, with its
caption, or the reason it was not drawn in its place."""

from __future__ import annotations

import tempfile

from matplotlib.figure import Figure

from sae import baseline as B
from sae import metrics as M
from sae import sweep, tracking
from sae.report import figures
from sae.report import files as F
from sae.report.document import Document
from sae.report.frames import ROLE_BASELINE
from sae.report.sections import Writer
from sae.report.tables import BEST_SHOWN
from sae.stats import importance_caveat


def figures_section(w: Writer, doc: Document) -> None:
    """Section 3: every figure, each with its caption or the reason it was not drawn."""
    doc.heading("3. Figures")
    frames, trials = w.frames, w.frames.trials
    if frames.runs.empty:
        doc.text("No runs, so no figures.")
        return
    w.figure(
        doc,
        F.FIG_CURVES,
        "Learning curves: train and test MSE per epoch, the baseline (mean and range over "
        "the seeds that trained) "
        f"against up to {BEST_SHOWN} Pareto-optimal trials",
        lambda: figures.plot_learning_curves(frames.curves, w.base, w.shown),
    )
    w.figure(
        doc,
        F.FIG_TRADEOFF,
        "Sparsity / reconstruction trade-off: every complete trial (coloured by its probe "
        "accuracy), the degenerate ones as grey crosses, kept off the Pareto front, the front "
        "and the baseline (mean ± sd)",
        lambda: figures.plot_tradeoff(trials, w.front, w.base),
    )
    w.figure(
        doc,
        F.FIG_HYPERPARAMETERS,
        "Effect of each hyperparameter: β against test MSE and against the code's active "
        "fraction, and the learning rate by batch size",
        lambda: figures.plot_hyperparameters(trials, w.base),
    )
    complete = int(trials["trial_state"].eq("COMPLETE").sum())
    caveat = importance_caveat(complete)
    w.figure(
        doc,
        F.FIG_IMPORTANCES,
        "Parameter importances: Optuna's evaluator on the study, for each objective"
        + (f", {caveat}" if caveat else ""),
        lambda: _importances(w, complete, caveat),
    )
    w.figure(
        doc,
        F.FIG_LAYERS,
        "Per-layer sparsity: active fraction of each layer for the baseline and the best trials",
        lambda: figures.plot_layer_sparsity(w.base, w.shown),
    )
    w.figure(
        doc,
        F.FIG_RECONSTRUCTIONS,
        "Reconstructions: the last epoch's grid of the baseline and of the best trials, from "
        "the runs' artifacts",
        lambda: _reconstructions(w),
    )


def _importances(w: Writer, complete: int, caveat: str) -> Figure:
    study = w.frames.study
    if study is None:
        raise figures.NothingToPlot("no study in the selection")
    try:
        found = sweep.param_importances(w.storage, study)
    except ValueError as err:
        raise figures.NothingToPlot(str(err)) from None
    if found is None:
        raise figures.NothingToPlot(
            f"importances need at least {sweep.MIN_IMPORTANCE_TRIALS} complete trials and "
            f"the study has {complete}"
        )
    w.table(F.TABLE_IMPORTANCES, found)
    return figures.plot_importances(found, complete, caveat)


def _reconstructions(w: Writer) -> Figure:
    picks = []
    for _, group in w.base[B.trained(w.base)].groupby("beta", sort=True):
        picks.append(group.iloc[0])
    picks += [t for _, t in w.shown.iterrows()]
    grids = []
    # inside the build folder, like everything the report writes, and gone before it is done
    with tempfile.TemporaryDirectory(prefix=F.DOWNLOADS, dir=w.folder) as tmp:
        for i, run in enumerate(picks):
            path = tracking.latest_image(w.settings, run["run_id"])
            if path is None:
                continue
            local = tracking.download_artifact(w.settings, run["run_id"], path, f"{tmp}/{i}")
            seed = f", seed {run['seed']}" if run["role"] == ROLE_BASELINE else ""
            grids.append(
                (
                    f"{run['label']}{seed}: test MSE {run[M.TEST_MSE]:.4g}, "
                    f"code active fraction {run[M.CODE_ACTIVE_FRAC]:.2f}",
                    local,
                )
            )
        return figures.plot_reconstructions(grids)
