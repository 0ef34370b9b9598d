"""The report's figures, drawn from small in-memory frames: readable learning-rate ticks, legends
that name each run's settings, whole epochs, and the trade-off with degenerate trials marked and
the probe accuracy as the colour."""

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sae import baseline as B
from sae import metrics as M
from sae.report import figures

NARROW_LRS = np.geomspace(1.1e-3, 1.9e-3, 6)
"""Learning rates within a fraction of a decade: matplotlib labelled every minor tick there."""


def _trials(lrs=NARROW_LRS, **columns) -> pd.DataFrame:
    n = len(lrs)
    frame = pd.DataFrame(
        {
            "trial_number": range(n),
            "run_id": [f"t{i}" for i in range(n)],
            "label": [f"trial {i}" for i in range(n)],
            "trial_state": ["COMPLETE"] * n,
            "beta": np.geomspace(1e-5, 1e-2, n),
            "lr": lrs,
            "batch_size": pd.array([64, 128] * (n // 2) + [64] * (n % 2), dtype="Int64"),
            M.TEST_MSE: np.linspace(0.004, 0.02, n),
            M.CODE_ACTIVE_FRAC: np.linspace(0.8, 0.2, n),
            M.PROBE_ACCURACY: np.linspace(0.95, 0.7, n),
        }
    )
    return frame.assign(**columns)


def _baseline() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": ["b1", "b2"],
            "label": ["baseline β=0.0001 (script)"] * 2,
            "beta": [1e-4, 1e-4],
            "lr": [1e-3, 1e-3],
            "batch_size": pd.array([100, 100], dtype="Int64"),
            "beta_source": ["script"] * 2,
            B.OUTPUT_ACTIVE: [0.9, 0.9],
            M.TEST_MSE: [0.005, 0.0052],
            M.CODE_ACTIVE_FRAC: [0.58, 0.6],
        }
    )


def _overlapping_labels(fig: Figure, ax: Axes) -> tuple[int, list[str]]:
    """How many neighbouring x tick labels in view overlap, and the labels in view."""
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    low, high = ax.get_xlim()
    shown = [
        t
        for t in ax.get_xticklabels(which="both")
        if t.get_text() and low <= t.get_position()[0] <= high
    ]
    boxes = sorted((t.get_window_extent(renderer) for t in shown), key=lambda b: b.x0)
    overlaps = sum(a.x1 > b.x0 for a, b in zip(boxes, boxes[1:], strict=False))
    return overlaps, [t.get_text() for t in shown]


def test_plot_hyperparameters__learning_rate_labels_are_few_short_and_apart():
    """Bug fix: on a learning-rate range narrower than a decade, matplotlib labelled every minor
    tick of the log axis (1.1x10^-3, 1.2x10^-3, ...) and the labels ran into each other."""
    with figures.style():
        old = Figure(figsize=(16, 5.0), layout="constrained")
        ax = old.subplots(1, 3)[2]
        ax.scatter(NARROW_LRS, NARROW_LRS)
        ax.set_xscale("log")
        assert _overlapping_labels(old, ax)[0] > 0  # the plain log axis the figure had
        for lrs in (NARROW_LRS, np.geomspace(2e-4, 9e-4, 6), np.geomspace(1e-4, 1e-2, 6)):
            fig = figures.plot_hyperparameters(_trials(lrs), _baseline())
            overlaps, labels = _overlapping_labels(fig, fig.axes[2])
            assert overlaps == 0 and 2 <= len(labels) <= 6, labels
            assert all(len(label) <= 7 for label in labels), labels


def test_plot_learning_curves__legend_names_lr_and_batch_size_and_epochs_are_whole():
    trials = _trials(np.geomspace(1e-4, 1e-2, 2))
    base = _baseline()
    curves = pd.DataFrame(
        [
            {"run_id": r, "metric": key, "epoch": epoch, "value": 0.01 / epoch}
            for r in [*base["run_id"], *trials["run_id"]]
            for key in (M.EPOCH_MSE, M.TEST_MSE)
            for epoch in (1, 2, 3)
        ]
    )
    with figures.style():
        fig = figures.plot_learning_curves(curves, base, trials)
        FigureCanvasAgg(fig).draw()
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == [
        "baseline β=0.0001 (script), lr 0.001, batch 100",
        "trial 0, lr 0.0001, batch 64",
        "trial 1, lr 0.01, batch 128",
    ]
    for ax in fig.axes:
        low, high = ax.get_xlim()
        shown = [t for t in ax.get_xticklabels() if low <= t.get_position()[0] <= high]
        assert [t.get_position()[0] for t in shown] == [1, 2, 3]
        assert [t.get_text() for t in shown] == ["1", "2", "3"]


def test_plot_tradeoff__degenerate_trials_are_grey_crosses_off_the_front_coloured_by_probe():
    trials = _trials(np.geomspace(1e-4, 1e-2, 4), degenerate=["false", "false", "false", "true"])
    trials.loc[3, [M.TEST_MSE, M.CODE_ACTIVE_FRAC]] = [0.07, 0.0]
    front = trials.iloc[:3]
    with figures.style():
        fig = figures.plot_tradeoff(trials, front, _baseline())
    ax, colorbar = fig.axes
    assert colorbar.get_ylabel().startswith("probe accuracy")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == [
        "complete trials (3)",
        "degenerate trials, kept off the front (1)",
        "Pareto front (3)",
    ]
    (line,) = ax.get_lines()[:1]  # the front's steps go through the sound trials only
    assert set(line.get_xdata()) == set(front[M.TEST_MSE])
    crosses = ax.collections[1]
    assert list(crosses.get_offsets()[0]) == [0.07, 0.0]


def test_a_topk_study__plots_labels_and_lists_its_k_not_its_fixed_beta():
    """A TopK study (``--family topk``) searches K and keeps beta fixed: the figure's first two
    panels are K against the objectives, with no baseline star (the baseline has no K), the
    trial's label names K, and the trial tables gain a K column."""
    from sae.report.frames import run_label
    from sae.report.tables import degenerate_table

    lrs = np.geomspace(1e-4, 1e-2, 4)
    trials = _trials(lrs, beta=1e-4, topk=pd.array([2, 8, 16, 32], dtype="Int64"))
    with figures.style():
        fig = figures.plot_hyperparameters(trials, _baseline())
    assert [ax.get_title() for ax in fig.axes[:2]] == [
        "K against test MSE",
        "K against code active fraction",
    ]
    assert fig.axes[0].get_xlabel() == "kept code units K (log scale)"
    assert len(fig.axes[0].collections) == 1  # the trials only: no baseline star
    row = trials.iloc[1].copy()
    row["role"] = "trial"
    assert run_label(row) == "trial 1 (K=8)"
    table = degenerate_table(trials.assign(reason="dead"))
    assert list(table.columns[:3]) == ["trial", "K", "beta"] and list(table["K"]) == [2, 8, 16, 32]
    plain = figures.plot_hyperparameters(_trials(lrs), _baseline())  # an l1 study: beta
    assert plain.axes[0].get_title() == "β against test MSE"
