"""The report's seaborn figures, each from the frames alone, in one fixed style: the same data
gives the same PNG bytes. A figure that cannot be drawn raises ``NothingToPlot`` with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from sae import baseline as B
from sae import metrics as M
from sae.model import CODE_LAYER, LAYER_NAMES, LAYER_SHAPES
from sae.report.tables import (
    HEADLINE_METRICS,
    LABELS,
    complete_trials,
    degenerate_reasons,
    searches_k,
)

MSE_UNIT = "per-pixel MSE, pixels in [0, 1]"
ACTIVE_UNIT = f"fraction of the {LAYER_SHAPES[CODE_LAYER][0]} code units active per image"

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.family": "DejaVu Sans",
    "axes.titlesize": 12,
    "axes.labelsize": 10.5,
    "legend.fontsize": 9,
    "svg.hashsalt": "sae-report",
}
BASELINE_COLORS = ("#222222", "#8c8c8c", "#b15928", "#6a3d9a")
TRIAL_COLORS = sns.color_palette("tab10").as_hex()


class NothingToPlot(Exception):
    """A figure cannot be drawn from the data at hand; the message says why, for the report."""


@contextmanager
def style() -> Iterator[None]:
    """One fixed look for every figure, from matplotlib's defaults whatever the caller set."""
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        with (
            sns.axes_style("whitegrid"),
            sns.plotting_context("notebook"),
            matplotlib.rc_context(STYLE),
        ):
            yield


def save_figure(fig: Figure, path: Path) -> None:
    """PNG without a software or date stamp, so the same figure gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})


def _baseline_colors(labels: list[str]) -> dict[str, str]:
    return {label: BASELINE_COLORS[i % len(BASELINE_COLORS)] for i, label in enumerate(labels)}


def _trial_colors(labels: list[str]) -> dict[str, str]:
    return {label: TRIAL_COLORS[i % len(TRIAL_COLORS)] for i, label in enumerate(labels)}


def plot_baseline(base: pd.DataFrame, testing_label: str) -> Figure:
    """The README's two figures beside the replication, per beta: every seed and mean ± sd;
    ``testing_label`` says how the README's testing loss is computed with the runs' batches."""
    if base.empty:
        raise NothingToPlot("no finished baseline run")
    trained = base[B.trained(base)]
    if trained.empty:
        raise NothingToPlot("no baseline run trained")
    panels = (
        (M.EPOCH_LOSS, "training loss (README definition)", "loss (MSE + penalty)"),
        (M.README_TEST_LOSS, "testing loss (README definition)", testing_label),
        (M.TEST_MSE, "test MSE, whole test set (correct)", MSE_UNIT),
    )
    betas = sorted(trained["beta"].unique())
    names = {
        b: f"β={b:g}\n({trained.loc[trained['beta'] == b, 'beta_source'].iloc[0]})" for b in betas
    }
    data = trained.assign(x=trained["beta"].map(names))
    order = [names[b] for b in betas]
    fig = Figure(figsize=(13, 4.4), layout="constrained")
    for ax, (key, title, unit) in zip(fig.subplots(1, 3), panels, strict=True):
        points = data.dropna(subset=[key])
        for i, name in enumerate(order):
            group = points[points["x"] == name]
            offsets = np.linspace(-0.12, 0.12, len(group)) if len(group) > 1 else [0.0]
            ax.scatter(
                i + np.asarray(offsets), group[key], color="#9e9e9e", s=22, zorder=2, label=None
            )
        sns.pointplot(
            data=points,
            x="x",
            y=key,
            order=order,
            errorbar="sd",
            color="#1f4e79",
            markers="D",
            capsize=0.15,
            linestyles="none",
            ax=ax,
        )
        if key in B.README_FIGURES:
            ax.axhline(
                B.README_FIGURES[key],
                color="#c0392b",
                ls="--",
                lw=1.5,
                label=f"README: {B.README_FIGURES[key]:.8f}",
            )
            ax.legend(loc="upper left", frameon=True)
        ax.set_title(title)
        ax.set_xlabel("penalty weight β (its source)")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
    fig.suptitle(
        f"Baseline replication: {len(trained)} trained runs (grey: each seed; blue: mean ± sd) "
        "against the README's figures (red)"
    )
    return fig


def plot_learning_curves(curves: pd.DataFrame, base: pd.DataFrame, shown: pd.DataFrame) -> Figure:
    """Train and test MSE per epoch: the baseline runs that trained (mean, and the range over
    seeds shaded) and the best trials."""
    base = base[B.trained(base)]
    base_labels = [_with_settings(run) for _, run in base.iterrows()]
    trial_labels = [_with_settings(run) for _, run in shown.iterrows()]
    labels = dict(zip(base["run_id"], base_labels, strict=True))
    labels |= dict(zip(shown["run_id"], trial_labels, strict=True))
    data = curves[curves["run_id"].isin(labels) & curves["metric"].isin([M.EPOCH_MSE, M.TEST_MSE])]
    data = data.assign(label=data["run_id"].map(labels))
    if data.empty:
        raise NothingToPlot("no per-epoch MSE logged by the baseline runs or the best trials")
    base_order = [lab for lab in dict.fromkeys(base_labels) if lab in set(data["label"])]
    trial_order = [lab for lab in dict.fromkeys(trial_labels) if lab in set(data["label"])]
    palette = _baseline_colors(base_order) | _trial_colors(trial_order)
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    titles = {M.EPOCH_MSE: "Train MSE (epoch mean, while training)", M.TEST_MSE: "Test MSE"}
    for ax, key in zip(axes, titles, strict=True):
        part = data[data["metric"] == key]
        sns.lineplot(
            data=part,
            x="epoch",
            y="value",
            hue="label",
            hue_order=base_order + trial_order,
            palette=palette,
            errorbar=("pi", 100),  # min to max over seeds: never below zero on a log axis
            marker="o",
            ax=ax,
            legend=key == M.TEST_MSE,
        )
        ax.set_yscale("log")
        ax.set_title(titles[key])
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"MSE ({MSE_UNIT}, log scale)")
        epoch_ticks(ax.xaxis)
    axes[1].legend(title=None, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(
        "Learning curves: the baseline (mean of the seeds that trained, their range shaded) "
        "against the best trials"
    )
    return fig


def _with_settings(run: pd.Series) -> str:
    """A run's label with its learning rate and batch size, for a legend."""
    parts = [run["label"]]
    if not pd.isna(run["lr"]):
        parts.append(f"lr {run['lr']:.2g}")
    if not pd.isna(run["batch_size"]):
        parts.append(f"batch {int(run['batch_size'])}")
    return ", ".join(parts)


def epoch_ticks(axis: Axis) -> None:
    """Whole epochs only, labelled as integers."""
    axis.set_major_locator(MaxNLocator(integer=True))
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:.0f}"))


def log_ticks(axis: Axis, values: pd.Series) -> None:
    """A log axis with a few short labels (``3e-4``, ``1e-3``), more per decade the fewer decades
    the values span, and none on the minor ticks: matplotlib labels those on a narrow range, in
    long scientific notation, where they overlapped."""
    values = values[values > 0].dropna()
    decades = float(np.log10(values.max() / values.min())) if len(values) else 0.0
    if decades < 0.5:  # too narrow for round values: three evenly spaced ones
        axis.set_major_locator(MaxNLocator(nbins=3))
    else:
        subs = (1.0, 2.0, 5.0) if decades < 1.2 else (1.0, 3.0) if decades < 2.5 else (1.0,)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(_short))
    axis.set_minor_formatter(NullFormatter())


def _short(value: float, _pos: int | None = None) -> str:
    """``3e-4``, ``1.5e-3``, ``1.05e-3``: three significant digits at most."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def plot_tradeoff(trials: pd.DataFrame, front: pd.DataFrame, base: pd.DataFrame) -> Figure:
    """Every complete trial as a point coloured by its probe accuracy, degenerate trials as grey
    crosses, the Pareto front (of the others) drawn, the baseline marked."""
    done = complete_trials(trials)
    if done.empty:
        raise NothingToPlot("no complete trial with a test MSE and an active fraction")
    reasons = degenerate_reasons(done)
    sound, degenerate = done[reasons.isna()], done[reasons.notna()]
    probed = sound[M.PROBE_ACCURACY].notna()
    fig = Figure(figsize=(10, 6.2), layout="constrained")
    ax = fig.subplots()
    x, y = M.TEST_MSE, M.CODE_ACTIVE_FRAC
    if (~probed).any():
        plain = sound[~probed]
        label = f"complete trials, no probe accuracy ({len(plain)})"
        ax.scatter(plain[x], plain[y], color="#9e9e9e", s=28, label=label, zorder=2)
    if probed.any():
        coloured = sound[probed]
        points = ax.scatter(
            coloured[x],
            coloured[y],
            c=coloured[M.PROBE_ACCURACY],
            cmap="viridis",
            s=34,
            label=f"complete trials ({len(coloured)})",
            zorder=2,
        )
        fig.colorbar(points, ax=ax, label="probe accuracy (digit from the code, test set)")
    if len(degenerate):
        label = f"degenerate trials, kept off the front ({len(degenerate)})"
        ax.scatter(
            degenerate[x], degenerate[y], marker="x", color="#7f7f7f", s=40, label=label, zorder=2
        )
    ax.step(front[x], front[y], where="post", color="#1f77b4", lw=1.8, zorder=3)
    ax.scatter(
        front[x],
        front[y],
        facecolors="none",
        edgecolors="#1f77b4",
        linewidths=1.6,
        s=90,
        label=f"Pareto front ({len(front)})",
        zorder=4,
    )
    if len(front) <= 12:
        for _, t in front.iterrows():
            ax.annotate(
                str(t["trial_number"]),
                (t[M.TEST_MSE], t[M.CODE_ACTIVE_FRAC]),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
                color="#1f77b4",
            )
    _mark_baseline(ax, base, M.TEST_MSE, M.CODE_ACTIVE_FRAC)
    ax.set_xscale("log")
    ax.set_xlabel(f"test MSE ({MSE_UNIT}, log scale)")
    ax.set_ylabel(ACTIVE_UNIT)
    ax.set_ylim(-0.02, 1.05)
    ax.legend(loc="best", frameon=True)
    ax.set_title("Sparsity against reconstruction: lower left is better on both")
    return fig


def _mark_baseline(ax: matplotlib.axes.Axes, base: pd.DataFrame, x: str, y: str) -> None:
    """Each baseline beta as a star at its mean, with ± sd bars over its trained seeds."""
    trained = base[B.trained(base)]
    labels = list(dict.fromkeys(trained["label"]))
    colors = _baseline_colors(labels)
    for label in labels:
        group = trained[trained["label"] == label].dropna(subset=[x, y])
        if group.empty:
            continue
        ax.errorbar(
            group[x].mean(),
            group[y].mean(),
            xerr=_sd(group[x]),
            yerr=_sd(group[y]),
            fmt="*",
            ms=15,
            color=colors[label],
            mec="white",
            capsize=3,
            zorder=5,
            label=f"{label}, {len(group)} seeds",
        )


def _sd(values: pd.Series) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def plot_hyperparameters(trials: pd.DataFrame, base: pd.DataFrame) -> Figure:
    """Beta (a TopK study's K) against test MSE and against active fraction; learning rate by
    batch size."""
    done = complete_trials(trials, also=("beta",))
    if done.empty:
        raise NothingToPlot("no complete trial with its parameters and metrics")
    fig = Figure(figsize=(16, 5.0), layout="constrained")
    mse_ax, active_ax, lr_ax = fig.subplots(1, 3)
    # a TopK study searches K and leaves beta fixed; its baseline has no K to mark
    knob, name, words = (
        ("topk", "K", "kept code units K")
        if searches_k(done)
        else ("beta", "β", "penalty weight β")
    )
    for ax, key in ((mse_ax, M.TEST_MSE), (active_ax, M.CODE_ACTIVE_FRAC)):
        sns.scatterplot(
            data=done.astype({knob: float}), x=knob, y=key, color="#1f77b4", s=40, ax=ax,
            label="trials",
        )  # fmt: skip
        if knob == "beta":
            _mark_baseline(ax, base, "beta", key)
        ax.set_xscale("log")
        marks = done[knob] if knob == "topk" else pd.concat([done["beta"], base["beta"]])
        log_ticks(ax.xaxis, marks.astype(float))
        ax.set_xlabel(f"{words} (log scale)")
    mse_ax.set_yscale("log")
    mse_ax.set_ylabel(f"test MSE ({MSE_UNIT}, log scale)")
    mse_ax.set_title(f"{name} against test MSE")
    active_ax.set_ylabel(ACTIVE_UNIT)
    active_ax.set_ylim(-0.02, 1.05)
    active_ax.set_title(f"{name} against code active fraction")
    active_ax.legend(loc="best")
    mse_ax.legend(loc="best")
    sizes = sorted(done["batch_size"].dropna().astype(int).unique())
    lr_data = done.dropna(subset=["lr", "batch_size"]).astype({"batch_size": int})
    sns.scatterplot(
        data=lr_data,
        x="lr",
        y=M.TEST_MSE,
        hue="batch_size",
        hue_order=sizes,
        palette=sns.color_palette("viridis", len(sizes)).as_hex(),
        s=50,
        ax=lr_ax,
    )
    lr_ax.set_xscale("log")
    log_ticks(lr_ax.xaxis, lr_data["lr"])
    lr_ax.set_yscale("log")
    lr_ax.set_xlabel("Adam learning rate (log scale)")
    lr_ax.set_ylabel(f"test MSE ({MSE_UNIT}, log scale)")
    lr_ax.set_title("Learning rate by batch size")
    lr_ax.legend(title="batch size", loc="best")
    fig.suptitle(f"Effect of each hyperparameter: {len(done)} complete trials")
    return fig


def plot_importances(importances: pd.DataFrame, complete: int, caveat: str = "") -> Figure:
    """Each parameter's importance per objective; ``caveat`` (how far to trust them) in the
    title."""
    data = importances.assign(objective=importances["objective"].map(LABELS))
    order = list(
        data.groupby("param")["importance"].sum().sort_values(ascending=False, kind="stable").index
    )
    fig = Figure(figsize=(9, 1.2 + 0.9 * len(order)), layout="constrained")
    ax = fig.subplots()
    sns.barplot(
        data=data,
        x="importance",
        y="param",
        hue="objective",
        order=order,
        hue_order=[LABELS[k] for k in HEADLINE_METRICS if LABELS[k] in set(data["objective"])],
        palette=["#1f77b4", "#ff7f0e"],
        errorbar=None,
        orient="h",
        ax=ax,
    )
    for bars in ax.containers:
        ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=9)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("importance (share of the objective's variation; sums to 1 per objective)")
    ax.set_ylabel("parameter")
    ax.legend(title="objective", loc="lower right")
    ax.set_title(
        "Parameter importances (Optuna's PED-ANOVA), "
        + (caveat if caveat else f"from {complete} complete trials")
    )
    return fig


def plot_layer_sparsity(base: pd.DataFrame, shown: pd.DataFrame) -> Figure:
    """Active fraction of each layer (test set, final epoch): baseline per beta, best trials."""
    keys = [M.sparsity_key(layer, M.ACTIVE_FRAC) for layer in LAYER_NAMES]
    parts = [shown.set_index("label")[keys]]
    trained = base[B.trained(base)]
    if len(trained):
        parts.insert(0, trained.groupby("label", sort=False)[keys].mean())
    table = pd.concat(parts).dropna(how="all")
    if table.empty:
        raise NothingToPlot("no per-layer sparsity logged by the baseline runs or the best trials")
    table.columns = list(LAYER_NAMES)
    fig = Figure(figsize=(10, 1.6 + 0.55 * len(table)), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(
        table,
        annot=True,
        fmt=".2f",
        vmin=0,
        vmax=1,
        cmap="viridis",
        linewidths=0.5,
        cbar_kws={"label": "fraction of the layer's units active per image"},
        ax=ax,
    )
    ax.set_xlabel("layer (encoder enc1-enc3, enc3 being the code; decoder dec1-dec3)")
    ax.set_ylabel("")
    ax.set_title("Per-layer sparsity on the test set, final epoch (baseline: mean over seeds)")
    return fig


def plot_reconstructions(grids: list[tuple[str, Path]]) -> Figure:
    """Each run's last reconstruction grid: test images on top, reconstructions below."""
    if not grids:
        raise NothingToPlot("no reconstruction images among the runs' artifacts")
    fig = Figure(figsize=(12, 0.4 + 1.45 * len(grids)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(grids), 1))
    for ax, (label, path) in zip(axes, grids, strict=True):
        ax.imshow(matplotlib.image.imread(path), interpolation="nearest")
        ax.set_title(label, loc="left", fontsize=10)
        ax.set_axis_off()
    fig.suptitle("Reconstructions, last epoch: 16 fixed test images (top) and their reconstruction")
    return fig
