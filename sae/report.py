"""The comparison report: tracked runs as tidy frames, tables and seaborn figures set against the
README baseline, written as Markdown and a self-contained HTML page under ``reports/<name>/``.

``load_frames`` is the part to import from a notebook: one row per run and one row per
(run, epoch, metric). ``build_report`` turns those frames into the report. The same store gives
the same tables and the same figure bytes. Every text the report writes is redacted
(``sae.redact``), and a report is built beside its folder and swapped in only when complete.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import os
import platform
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from sae import baseline as B
from sae import metrics as M
from sae import sweep, tracking
from sae.model import CODE_LAYER, LAYER_NAMES, LAYER_SHAPES
from sae.redact import redact

# What a selected run is in the report.
ROLE_BASELINE = "baseline"
ROLE_TRIAL = "trial"
ROLE_STUDY = "study"
"""The sweep's parent run of the reported study."""
ROLE_OTHER = "other"
"""A run of an experiment named with --experiment that is neither of the above."""

TRAIN_PARAMS = ("beta", "lr", "batch_size", "seed", "epochs")
"""TrainConfig fields that get a column of their own, from the params ``train.<field>``."""
TAG_COLUMNS = {
    "kind": tracking.TAG_KIND,
    "study": tracking.TAG_STUDY,
    "trial_number": tracking.TAG_TRIAL_NUMBER,
    "trial_state": tracking.TAG_TRIAL_STATE,
    "baseline": B.TAG_BASELINE,
    "beta_source": B.TAG_BETA_SOURCE,
}
"""Columns of the runs frame taken from tags."""
FINAL_METRICS = (*M.EPOCH_METRICS, *M.EVAL_METRICS)
"""Every run gets a column for each of these, NaN where the run did not log it."""
CURVE_METRICS = (M.EPOCH_LOSS, M.EPOCH_MSE, M.TEST_MSE, M.README_TEST_LOSS, M.CODE_ACTIVE_FRAC)
"""The per-epoch metrics read back into the curves frame."""
HEADLINE_METRICS = (M.TEST_MSE, M.CODE_ACTIVE_FRAC)
"""What a sweep trial is judged on: both minimised."""
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
_STATE_OF_STATUS = {"RUNNING": "RUNNING", "SCHEDULED": "RUNNING", "FINISHED": "COMPLETE"}
BEST_SHOWN = 4
"""How many best trials the figures show beside the baseline (spread along the front)."""

# The report's files, relative to its folder.
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES_DIR = "figures"
TABLES_DIR = "tables"
FIG_BASELINE = "figures/baseline.png"
FIG_CURVES = "figures/learning_curves.png"
FIG_TRADEOFF = "figures/tradeoff.png"
FIG_HYPERPARAMETERS = "figures/hyperparameters.png"
FIG_IMPORTANCES = "figures/importances.png"
FIG_LAYERS = "figures/layer_sparsity.png"
FIG_RECONSTRUCTIONS = "figures/reconstructions.png"
TABLE_BASELINE = "tables/baseline_table.csv"
TABLE_STATES = "tables/trial_states.csv"
TABLE_BEST = "tables/best_trials.csv"
TABLE_IMPORTANCES = "tables/importances.csv"
TABLE_PROVENANCE = "tables/provenance.csv"
TABLE_RUNS = "tables/runs.csv"
TABLE_CURVES = "tables/curves.csv"
OUTPUTS = frozenset(
    {
        REPORT_MD,
        REPORT_HTML,
        *(FIG_BASELINE, FIG_CURVES, FIG_TRADEOFF, FIG_HYPERPARAMETERS, FIG_IMPORTANCES),
        *(FIG_LAYERS, FIG_RECONSTRUCTIONS),
        *(TABLE_BASELINE, TABLE_STATES, TABLE_BEST, TABLE_IMPORTANCES, TABLE_PROVENANCE),
        *(TABLE_RUNS, TABLE_CURVES),
    }
)
"""Every file a report may write in its folder. A rebuild replaces these and removes those it
did not write again; any other file in the folder is the user's and is left alone."""
NAME_PATTERN = re.compile(r"\w[\w.-]{0,99}")
"""A report name: one plain folder name, never a path, never hidden (the build folders are)."""
_BUILDING = ".building-"
"""A report's build folder is ``.<name>.building-<32 hex digits>`` in the output folder."""
_DOWNLOADS = ".artifacts-"
"""Where in its build folder a report downloads the runs' images, for as long as it draws."""

LABELS = {
    M.TEST_MSE: "test MSE",
    M.CODE_ACTIVE_FRAC: "code active fraction",
    M.EPOCH_MSE: "train MSE",
    M.EPOCH_LOSS: "training loss",
    M.README_TEST_LOSS: "testing loss",
}
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


# Selection and frames.


@dataclass(frozen=True)
class Selection:
    """Which runs a report describes."""

    experiments: tuple[str, ...] = ()
    """Every run of these experiments; empty means the baseline runs and one sweep study."""
    study: str | None = None
    """The study whose trials the sweep section reports; None means the most recent one."""
    tags: tuple[tuple[str, str], ...] = ()
    """Only runs carrying these tag values."""

    def filter_string(self) -> str:
        clauses = []
        for key, value in self.tags:
            if "'" in value or "`" in key:
                raise ValueError(f"--tag {key}={value}: quotes are not supported in tags")
            clauses.append(f"tags.`{key}` = '{value}'")
        return " and ".join(clauses)

    def describe(self, settings: tracking.Settings) -> str:
        if self.experiments:
            what = "every run of the experiments " + ", ".join(f"`{e}`" for e in self.experiments)
        else:
            what = (
                f"the baseline runs (experiment `{settings.experiment('baseline')}`, tag "
                f"`{B.TAG_BASELINE}=true`) and the trials of "
                + (f"the study `{self.study}`" if self.study else "the most recent study")
                + f" (experiment `{settings.experiment('sweep')}`)"
            )
        if self.tags:
            what += ", tagged " + ", ".join(f"`{k}={v}`" for k, v in self.tags)
        return what


def parse_tag(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` as a pair; raises ValueError on anything else."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--tag expects KEY=VALUE, got {text!r}")
    return key.strip(), value


@dataclass
class Frames:
    """The report's data: the selected runs and their per-epoch curves."""

    runs: pd.DataFrame
    """One row per selected run: tracking.RUN_COLUMNS, role, label, the TRAIN_PARAMS and
    TAG_COLUMNS columns, one column per metric key (final values), then params.* and tags.*."""
    curves: pd.DataFrame
    """One row per (run, epoch, metric) of the baseline runs and trials: run_id, metric, epoch,
    value (CURVE_METRICS)."""
    study: str | None
    """The study the sweep section reports, if any."""

    @property
    def baseline(self) -> pd.DataFrame:
        return self.runs[self.runs["role"] == ROLE_BASELINE]

    @property
    def trials(self) -> pd.DataFrame:
        return self.runs[self.runs["role"] == ROLE_TRIAL]

    @property
    def parent(self) -> pd.Series | None:
        parents = self.runs[self.runs["role"] == ROLE_STUDY]
        return parents.iloc[-1] if len(parents) else None


def load_frames(settings: tracking.Settings, selection: Selection | None = None) -> Frames:
    """Read the selected runs in one search and their curves in one query per metric.

    Raises ValueError, in one line, when there is no store or the selection names a study that
    none of the selected runs belongs to (the message lists the studies there are).
    """
    selection = selection or Selection()
    tracking.require_store(settings)
    default = not selection.experiments
    experiments = (
        (settings.experiment("baseline"), settings.experiment("sweep"))
        if default
        else selection.experiments
    )
    runs = tidy_runs(tracking.runs_frame(settings, experiments, selection.filter_string()))
    is_baseline = runs["baseline"].eq("true")
    if default:
        is_baseline &= runs["experiment"].eq(settings.experiment("baseline"))
    if selection.study is not None:
        studies = sorted(set(runs.loc[~is_baseline, "study"].dropna()))
        if selection.study not in studies:
            raise ValueError(redact(_no_such_study(selection, experiments, studies)))
    study = selection.study or most_recent_study(runs[~is_baseline])
    in_study = runs["study"].eq(study) & ~is_baseline if study else pd.Series(False, runs.index)
    has_parent = runs["parent_run_id"].notna()
    runs["role"] = np.select(
        [is_baseline, in_study & has_parent, in_study & ~has_parent],
        [ROLE_BASELINE, ROLE_TRIAL, ROLE_STUDY],
        ROLE_OTHER,
    )
    if default:
        runs = runs[runs["role"] != ROLE_OTHER]
    runs = runs.assign(label=[run_label(row) for _, row in runs.iterrows()])
    first = [*tracking.RUN_COLUMNS, "role", "label", *TRAIN_PARAMS, *TAG_COLUMNS]
    runs = runs[first + [c for c in runs.columns if c not in first]].reset_index(drop=True)
    measured = runs.loc[runs["role"].isin([ROLE_BASELINE, ROLE_TRIAL]), "run_id"]
    curves = tracking.curves_frame(settings, list(measured), CURVE_METRICS)
    return Frames(runs=runs, curves=curves, study=study)


def _no_such_study(selection: Selection, experiments: tuple[str, ...], studies: list[str]) -> str:
    where = "the runs of " + ", ".join(experiments)
    if selection.tags:
        where += " tagged " + ", ".join(f"{k}={v}" for k, v in selection.tags)
    found = (
        "the studies there are " + ", ".join(repr(s) for s in studies)
        if studies
        else "there is no study there yet (run python experiments/sweep.py)"
    )
    return f"no study {selection.study!r} among {where}: {found}"


def tidy_runs(raw: pd.DataFrame) -> pd.DataFrame:
    """tracking.runs_frame's rows with typed TRAIN_PARAMS and TAG_COLUMNS columns, and a column
    for every FINAL_METRICS key; a trial without a state tag gets one from its run status."""
    runs = raw.copy()
    for name in TRAIN_PARAMS:
        runs[name] = pd.to_numeric(_column(runs, f"params.train.{name}"), errors="coerce")
    for name in ("batch_size", "seed", "epochs"):
        runs[name] = runs[name].astype("Int64")
    for name, tag in TAG_COLUMNS.items():
        runs[name] = _column(runs, f"tags.{tag}").astype(object)
    runs["trial_number"] = pd.to_numeric(runs["trial_number"], errors="coerce").astype("Int64")
    guessed = runs["status"].map(_STATE_OF_STATUS).fillna("FAIL")
    untagged = runs["study"].notna() & runs["parent_run_id"].notna() & runs["trial_state"].isna()
    runs["trial_state"] = runs["trial_state"].where(~untagged, guessed)
    for key in FINAL_METRICS:
        if key not in runs:
            runs[key] = np.nan
    return runs


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame:
        return frame[name].where(frame[name].notna(), None).astype(object)
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def most_recent_study(runs: pd.DataFrame) -> str | None:
    """The study of the sweep parent run that started last (of the latest trial if no parent)."""
    tagged = runs[runs["study"].notna()]
    parents = tagged[tagged["parent_run_id"].isna()]
    pool = parents if len(parents) else tagged
    if pool.empty:
        return None
    return str(pool.sort_values(["start_time", "run_id"]).iloc[-1]["study"])


def run_label(row: pd.Series) -> str:
    if row["role"] == ROLE_BASELINE:
        return baseline_label(row["beta"], row["beta_source"])
    if row["role"] == ROLE_TRIAL and not pd.isna(row["trial_number"]):
        beta = "" if pd.isna(row["beta"]) else f" (β={row['beta']:.2g})"
        return f"trial {int(row['trial_number'])}{beta}"
    return str(row["run_name"] if isinstance(row["run_name"], str) else row["run_id"][:8])


def baseline_label(beta: float, source: object) -> str:
    return f"baseline β={beta:g} ({source if isinstance(source, str) else 'unknown'})"


# Tables.


def finished_baseline(frames: Frames) -> pd.DataFrame:
    """The FINISHED baseline runs with a beta, in the shape baseline.comparison_table takes."""
    runs = frames.baseline
    runs = runs[runs["status"].eq("FINISHED") & runs["beta"].notna()].copy()
    runs["beta_source"] = runs["beta_source"].fillna("unknown")
    return runs.sort_values(["beta", "seed", "run_id"])


def trained_baseline(frames: Frames) -> pd.DataFrame:
    runs = finished_baseline(frames)
    return runs[B.trained(runs)]


def reference(frames: Frames) -> dict[str, float] | None:
    """The baseline a trial is compared with (``sae.baseline.reference``)."""
    return B.reference(finished_baseline(frames))


def trial_states(trials: pd.DataFrame) -> pd.DataFrame:
    """How many trials are in each state: COMPLETE, PRUNED, FAIL, RUNNING, then any other."""
    counts = trials["trial_state"].fillna("unknown").value_counts()
    order = [s for s in STATES if s in counts] + sorted(set(counts.index) - set(STATES))
    return pd.DataFrame({"state": order, "trials": [int(counts[s]) for s in order]})


def pareto_front(trials: pd.DataFrame) -> pd.DataFrame:
    """The COMPLETE trials that no other complete trial beats on both test MSE and code active
    fraction (both minimised), by increasing test MSE."""
    done = trials[trials["trial_state"].eq("COMPLETE")].dropna(subset=list(HEADLINE_METRICS))
    done = done.sort_values([*HEADLINE_METRICS, "trial_number", "run_id"])
    keep, best_active, best_mse = [], np.inf, np.nan
    for index, mse, active in zip(
        done.index, done[M.TEST_MSE], done[M.CODE_ACTIVE_FRAC], strict=True
    ):
        if active < best_active:
            best_active, best_mse = active, mse
            keep.append(index)
        elif active == best_active and mse == best_mse:  # an exact tie is not dominated
            keep.append(index)
    return done.loc[keep]


def spread_along(front: pd.DataFrame, k: int = BEST_SHOWN) -> pd.DataFrame:
    """At most ``k`` trials of the front, evenly spread from the lowest test MSE to the sparsest."""
    if len(front) <= k:
        return front
    picks = sorted({round(i) for i in np.linspace(0, len(front) - 1, k)})
    return front.iloc[picks]


def compare_in_words(values: dict[str, float], ref: dict[str, float]) -> str:
    """For instance "code active fraction 0.21 vs 0.58 (64% lower), test MSE 0.0061 vs 0.0049
    (24% higher)"; a ratio of 2 or more is said as "n times higher"."""
    parts = []
    for key in (M.CODE_ACTIVE_FRAC, M.TEST_MSE):
        ours, theirs = values[key], ref[key]
        if pd.isna(ours):
            parts.append(f"{LABELS[key]} not logged")
            continue
        ratio = ours / theirs if theirs else 1.0
        change = round(100 * (ratio - 1))
        if change == 0:
            how = "the same"
        elif ratio >= 2:
            how = f"{ratio:.1f} times higher"
        else:
            how = f"{abs(change)}% {'higher' if change > 0 else 'lower'}"
        parts.append(f"{LABELS[key]} {ours:.2g} vs {theirs:.2g} ({how})")
    return ", ".join(parts)


def best_table(front: pd.DataFrame, ref: dict[str, float] | None) -> pd.DataFrame:
    """The best trials for display: parameters, the two objectives, the comparison in words."""
    table = pd.DataFrame(
        {
            "trial": front["trial_number"],
            "beta": front["beta"],
            "lr": front["lr"],
            "batch size": front["batch_size"],
            LABELS[M.TEST_MSE]: front[M.TEST_MSE],
            LABELS[M.CODE_ACTIVE_FRAC]: front[M.CODE_ACTIVE_FRAC],
            "against the baseline": [
                compare_in_words(t, ref) if ref else "no baseline" for _, t in front.iterrows()
            ],
            "run": front["run_id"].str[:8],
        }
    )
    return table.reset_index(drop=True)


def missing_metrics(runs: pd.DataFrame, keys: tuple[str, ...]) -> dict[str, int]:
    """How many FINISHED runs lack each of ``keys`` (only keys some run lacks)."""
    finished = runs[runs["status"].eq("FINISHED")]
    counts = {key: int(finished[key].isna().sum()) for key in keys}
    return {key: n for key, n in counts.items() if n}


# Figures.


@contextmanager
def _style() -> Iterator[None]:
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


def plot_baseline(base: pd.DataFrame) -> Figure:
    """The README's two figures beside the replication, per beta: every seed and mean ± sd."""
    if base.empty:
        raise NothingToPlot("no finished baseline run")
    trained = base[B.trained(base)]
    if trained.empty:
        raise NothingToPlot("no baseline run trained")
    panels = (
        (M.EPOCH_LOSS, "training loss (README definition)", "loss (MSE + penalty)"),
        (M.README_TEST_LOSS, "testing loss (README definition)", "2 x MSE(last batch) / 17"),
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
    labels = {r: label for r, label in zip(base["run_id"], base["label"], strict=True)}
    labels |= dict(zip(shown["run_id"], shown["label"], strict=True))
    data = curves[curves["run_id"].isin(labels) & curves["metric"].isin([M.EPOCH_MSE, M.TEST_MSE])]
    data = data.assign(label=data["run_id"].map(labels))
    if data.empty:
        raise NothingToPlot("no per-epoch MSE logged by the baseline runs or the best trials")
    base_order = [lab for lab in dict.fromkeys(base["label"]) if lab in set(data["label"])]
    trial_order = [lab for lab in dict.fromkeys(shown["label"]) if lab in set(data["label"])]
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
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[1].legend(title=None, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(
        "Learning curves: the baseline (mean of the seeds that trained, their range shaded) "
        "against the best trials"
    )
    return fig


def plot_tradeoff(trials: pd.DataFrame, front: pd.DataFrame, base: pd.DataFrame) -> Figure:
    """Every complete trial as a point, the Pareto front drawn, the baseline marked."""
    done = trials[trials["trial_state"].eq("COMPLETE")].dropna(subset=list(HEADLINE_METRICS))
    if done.empty:
        raise NothingToPlot("no complete trial with a test MSE and an active fraction")
    fig = Figure(figsize=(10, 6.2), layout="constrained")
    ax = fig.subplots()
    ax.scatter(
        done[M.TEST_MSE],
        done[M.CODE_ACTIVE_FRAC],
        color="#9e9e9e",
        s=28,
        label=f"complete trials ({len(done)})",
        zorder=2,
    )
    ax.step(
        front[M.TEST_MSE],
        front[M.CODE_ACTIVE_FRAC],
        where="post",
        color="#1f77b4",
        lw=1.8,
        zorder=3,
    )
    ax.scatter(
        front[M.TEST_MSE],
        front[M.CODE_ACTIVE_FRAC],
        color="#1f77b4",
        s=46,
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
    """Beta against test MSE and against active fraction; learning rate by batch size."""
    done = trials[trials["trial_state"].eq("COMPLETE")].dropna(subset=[*HEADLINE_METRICS, "beta"])
    if done.empty:
        raise NothingToPlot("no complete trial with its parameters and metrics")
    fig = Figure(figsize=(16, 5.0), layout="constrained")
    mse_ax, active_ax, lr_ax = fig.subplots(1, 3)
    for ax, key in ((mse_ax, M.TEST_MSE), (active_ax, M.CODE_ACTIVE_FRAC)):
        sns.scatterplot(data=done, x="beta", y=key, color="#1f77b4", s=40, ax=ax, label="trials")
        _mark_baseline(ax, base, "beta", key)
        ax.set_xscale("log")
        ax.set_xlabel("penalty weight β (log scale)")
    mse_ax.set_yscale("log")
    mse_ax.set_ylabel(f"test MSE ({MSE_UNIT}, log scale)")
    mse_ax.set_title("β against test MSE")
    active_ax.set_ylabel(ACTIVE_UNIT)
    active_ax.set_ylim(-0.02, 1.05)
    active_ax.set_title("β against code active fraction")
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
    lr_ax.set_yscale("log")
    lr_ax.set_xlabel("Adam learning rate (log scale)")
    lr_ax.set_ylabel(f"test MSE ({MSE_UNIT}, log scale)")
    lr_ax.set_title("Learning rate by batch size")
    lr_ax.legend(title="batch size", loc="best")
    fig.suptitle(f"Effect of each hyperparameter: {len(done)} complete trials")
    return fig


def plot_importances(importances: pd.DataFrame, complete: int) -> Figure:
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
    ax.set_title(f"Parameter importances (Optuna's PED-ANOVA, {complete} complete trials)")
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


# The document: one list of blocks, written as Markdown and as HTML.


@dataclass
class Document:
    """Every text is redacted as it is added, so neither rendering can show a secret."""

    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, redact(text))))

    def text(self, text: str) -> None:
        self.blocks.append(("text", redact(text)))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("bullets", [redact(item) for item in items]))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", redact_frame(frame.map(_cell).astype(str))))

    def figure(self, path: str, caption: str) -> None:
        self.blocks.append(("figure", (path, redact(caption))))

    def code(self, text: str) -> None:
        self.blocks.append(("code", redact(text)))

    def markdown(self) -> str:
        out = [f"# {redact(self.title)}"]
        for kind, value in self.blocks:
            if kind == "heading":
                out.append("#" * value[0] + " " + value[1])
            elif kind == "text":
                out.append(value)
            elif kind == "bullets":
                out.append("\n".join(f"- {item}" for item in value))
            elif kind == "table":
                out.append(value.to_markdown(index=False, disable_numparse=True))
            elif kind == "figure":
                out.append(f"![{value[1]}]({value[0]})\n\n*{value[1]}*")
            elif kind == "code":
                out.append(f"```\n{value}\n```")
        return "\n\n".join(out) + "\n"

    def html(self, folder: Path) -> str:
        """One page, the figures embedded as data URIs: nothing else to fetch."""
        title = html.escape(redact(self.title))
        body = [f"<h1>{title}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                body.append(f"<h{value[0]}>{_inline(value[1])}</h{value[0]}>")
            elif kind == "text":
                body.append(f"<p>{_inline(value)}</p>")
            elif kind == "bullets":
                items = "".join(f"<li>{_inline(item)}</li>" for item in value)
                body.append(f"<ul>{items}</ul>")
            elif kind == "table":
                body.append(value.to_html(index=False, border=0, escape=True))
            elif kind == "figure":
                data = base64.b64encode((folder / value[0]).read_bytes()).decode("ascii")
                body.append(
                    f'<figure><img src="data:image/png;base64,{data}" '
                    f'alt="{html.escape(value[1])}"><figcaption>{_inline(value[1])}'
                    "</figcaption></figure>"
                )
            elif kind == "code":
                body.append(f"<pre><code>{html.escape(value)}</code></pre>")
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n"
            "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
        )


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
    "color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:.9em}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#f2f2f2}"
    "img{max-width:100%}figure{margin:1.5em 0}figcaption{color:#555;font-style:italic}"
    "code,pre{background:#f6f6f6}pre{padding:.8em;overflow-x:auto}"
)


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
    escaped = re.sub(r"\*([^*]+)\*", r"<em>\1</em>", escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def redact_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell and column name redacted; numbers and times untouched."""
    out = frame.rename(columns=lambda name: redact(name) if isinstance(name, str) else name)
    for name in out.columns:
        if out[name].dtype == object or pd.api.types.is_string_dtype(out[name].dtype):
            out[name] = out[name].map(lambda v: redact(v) if isinstance(v, str) else v)
    return out


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return str(value)


# The report.


@dataclass
class Report:
    folder: Path
    markdown: Path
    html: Path
    figures: list[Path]
    tables: list[Path]
    frames: Frames
    skipped: dict[str, str]
    """The figures not drawn, by path, and why."""
    run_id: str | None = None
    """The report's own MLflow run, when it was logged."""


def check_name(name: str) -> str:
    """``name`` when it is a plain folder name (NAME_PATTERN); else ValueError, in one line."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"report name {name!r} is not a plain folder name: use up to 100 letters, digits, "
            "'_', '-' and '.' (not first), with no path separator"
        )
    return name


def build_report(
    settings: tracking.Settings,
    selection: Selection | None = None,
    name: str = "latest",
    *,
    output_dir: str | Path = "reports",
    storage: str | None = None,
    command: str = "",
    log: bool = False,
) -> Report:
    """Read the selected runs and write ``<output_dir>/<name>/``: report.md, report.html,
    figures/*.png and tables/*.csv (the OUTPUTS); with ``log``, log them as a report run.

    The report is built in a fresh folder beside its own (``<output_dir>/.<name>.building-*``)
    and moved in file by file only once it is complete and logged, so a failure or an interrupt
    leaves the previous report as it was. A rebuild replaces the OUTPUTS and nothing else: files
    a user put in the folder stay.

    ``storage`` is the Optuna storage of the study (default: the settings'); ``command`` is the
    command line shown under Reproducibility. Raises ValueError, in one line and before writing
    anything, when the name is not a plain name, there is no store or no such study.
    """
    check_name(name)
    selection = selection or Selection()
    frames = load_frames(settings, selection)
    output_dir = Path(output_dir)
    target = output_dir / name
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file, not a report folder: move it or choose --name")
    output_dir.mkdir(parents=True, exist_ok=True)
    _remove_unfinished_builds(output_dir, name)
    building = output_dir / f".{name}{_BUILDING}{uuid.uuid4().hex}"
    building.mkdir()
    try:
        writer = _write(settings, selection, frames, building, storage, command)
        run_id = tracking.log_report(settings, name, building) if log else None
        _move_in(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return Report(
        folder=target,
        markdown=target / REPORT_MD,
        html=target / REPORT_HTML,
        figures=sorted(target / p.relative_to(building) for p in writer.figures),
        tables=sorted(target / p.relative_to(building) for p in writer.tables),
        frames=frames,
        skipped=writer.skipped,
        run_id=run_id,
    )


def _write(
    settings: tracking.Settings,
    selection: Selection,
    frames: Frames,
    folder: Path,
    storage: str | None,
    command: str,
) -> _Writer:
    """The whole report, into the empty ``folder``."""
    (folder / FIGURES_DIR).mkdir()
    (folder / TABLES_DIR).mkdir()
    writer = _Writer(settings, frames, folder, storage or settings.optuna_storage)
    doc = Document("Comparison report: the sparse autoencoder against the README baseline")
    with _style():
        writer.overview(doc, selection)
        writer.baseline_section(doc)
        writer.sweep_section(doc)
        writer.figures_section(doc)
    writer.reproducibility(doc, command)
    writer.table(TABLE_RUNS, frames.runs)
    writer.table(TABLE_CURVES, frames.curves)
    (folder / REPORT_MD).write_text(doc.markdown(), encoding="utf-8")
    (folder / REPORT_HTML).write_text(doc.html(folder), encoding="utf-8")
    return writer


def _remove_unfinished_builds(output_dir: Path, name: str) -> None:
    """Remove the build folders of ``name`` that a killed build left, those holding nothing but
    what a build writes: a user's file is never moved into one, so nothing of theirs is lost."""
    pattern = re.compile(re.escape(f".{name}{_BUILDING}") + "[0-9a-f]{32}")
    for entry in output_dir.iterdir():
        if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            files = {p.relative_to(entry).as_posix() for p in entry.rglob("*") if not p.is_dir()}
            if all(f in OUTPUTS or f.startswith(_DOWNLOADS) for f in files):
                shutil.rmtree(entry, ignore_errors=True)


def _move_in(building: Path, target: Path) -> None:
    """Move the finished report into ``target``, each file by one atomic rename and the two
    pages last; then remove the OUTPUTS of an earlier build that this one did not write. Any
    other file in ``target`` is left where it is."""
    written = {p.relative_to(building).as_posix() for p in building.rglob("*") if p.is_file()}
    pages = [p for p in (REPORT_MD, REPORT_HTML) if p in written]
    for folder in (FIGURES_DIR, TABLES_DIR):
        (target / folder).mkdir(parents=True, exist_ok=True)
    for path in [*sorted(written - set(pages)), *pages]:
        os.replace(building / path, target / path)
    for path in sorted(OUTPUTS - written):
        (target / path).unlink(missing_ok=True)


class _Writer:
    """The report's sections, in order; keeps what each later section needs."""

    def __init__(
        self, settings: tracking.Settings, frames: Frames, folder: Path, storage: str
    ) -> None:
        self.settings, self.frames, self.folder, self.storage = settings, frames, folder, storage
        self.figures: list[Path] = []
        self.tables: list[Path] = []
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
        self.tables.append(self.folder / path)

    def figure(self, doc: Document, path: str, caption: str, make: Callable[[], Figure]) -> None:
        try:
            fig = make()
        except NothingToPlot as why:
            self.skipped[path] = redact(str(why))
            doc.text(f"*{caption.split(':')[0]}: not drawn, {why}.*")
            return
        save_figure(fig, self.folder / path)
        self.figures.append(self.folder / path)
        doc.figure(path, caption)

    def overview(self, doc: Document, selection: Selection) -> None:
        runs, frames = self.frames.runs, self.frames
        doc.text(f"Runs from `{self.settings.tracking_uri}`: {selection.describe(self.settings)}.")
        if runs.empty:
            doc.text(
                "**The store holds no runs matching this selection**, so there is nothing to "
                "compare. Run `python experiments/baseline.py` and `python experiments/sweep.py` "
                "first, or choose runs with `--experiment`, `--study` or `--tag`."
            )
            return
        counts = runs["role"].value_counts()
        parts = [f"{counts.get(ROLE_BASELINE, 0)} baseline runs"]
        if frames.study:
            parts.append(f"{counts.get(ROLE_TRIAL, 0)} trials of the study `{frames.study}`")
        if counts.get(ROLE_OTHER, 0):
            parts.append(f"{counts[ROLE_OTHER]} other runs")
        doc.text("Selected: " + ", ".join(parts) + ".")
        measured = runs[runs["role"].isin([ROLE_BASELINE, ROLE_TRIAL])]
        notes = []
        unfinished = measured[measured["status"].ne("FINISHED")]["status"].value_counts()
        if len(unfinished):
            notes.append(
                "Not finished, so left out of the figures: "
                + ", ".join(f"{n} {s}" for s, n in sorted(unfinished.items()))
                + "."
            )
        for key, n in missing_metrics(measured, (*HEADLINE_METRICS, *B.README_FIGURES)).items():
            notes.append(f"{n} finished runs did not log `{key}`; they are left out where needed.")
        doc.bullets(notes)

    def baseline_section(self, doc: Document) -> None:
        doc.heading("1. Baseline: the README's figures and the replication")
        base, all_base = self.base, self.frames.baseline
        if all_base.empty:
            doc.text(
                "No baseline runs in the selection: run `python experiments/baseline.py` "
                "(the README's table uses `--seeds 5`)."
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
        self.table(TABLE_BASELINE, table)
        doc.text(
            "The README reports two figures after 10 epochs. Beside them, the replication's mean "
            "± sample standard deviation over seeds, for each penalty weight: first under the "
            "README's definitions, then under the correct ones."
        )
        doc.table(table)
        doc.text("Means are over the runs that trained; " + B.DEAD_RUNS_EXPLANATION)
        doc.text(
            "The count of seeds dead at initialisation needs the data rather than the store: "
            "`python experiments/baseline.py` prints it. The column headers above say how many "
            "runs of each beta trained."
        )
        beta = B.reproducing_beta(base)
        if beta is not None:
            doc.text(f"The README's training loss is reproduced best by β = {beta:g}.")
        doc.text("**About the README's testing loss.** " + B.TEST_LOSS_EXPLANATION)
        self.figure(
            doc,
            FIG_BASELINE,
            "Baseline: the README's training and testing loss (red) against each seed (grey) and "
            "the mean ± sd (blue); right, the correct test MSE",
            lambda: plot_baseline(base),
        )

    def sweep_section(self, doc: Document) -> None:
        doc.heading("2. Sweep")
        frames, trials = self.frames, self.frames.trials
        if frames.study is None:
            doc.text("No sweep study in the selection: run `python experiments/sweep.py`.")
            return
        parent = frames.parent
        states = trial_states(trials)
        self.table(TABLE_STATES, states)
        count = dict(zip(states["state"], states["trials"], strict=True))
        complete, running_trials = count.get("COMPLETE", 0), count.get("RUNNING", 0)
        still = parent is not None and parent["status"] == "RUNNING"
        doc.text(
            f"Study `{frames.study}`: {len(trials)} trials so far; {complete} complete, "
            f"{len(trials) - complete - running_trials} pruned or failed, {running_trials} "
            "running"
            + (
                ". **The sweep is still running** (its parent run is RUNNING): this is a "
                "snapshot of the trials finished so far."
                if still
                else "."
            )
        )
        if len(states):
            doc.table(states)
        self.table(TABLE_BEST, self.front)
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
            FIG_CURVES,
            "Learning curves: train and test MSE per epoch, the baseline (mean and range over "
            "the seeds that trained) "
            f"against up to {BEST_SHOWN} Pareto-optimal trials",
            lambda: plot_learning_curves(frames.curves, self.base, self.shown),
        )
        self.figure(
            doc,
            FIG_TRADEOFF,
            "Sparsity / reconstruction trade-off: every complete trial, the Pareto front, the "
            "baseline (mean ± sd)",
            lambda: plot_tradeoff(trials, self.front, self.base),
        )
        self.figure(
            doc,
            FIG_HYPERPARAMETERS,
            "Effect of each hyperparameter: β against test MSE and against the code's active "
            "fraction, and the learning rate by batch size",
            lambda: plot_hyperparameters(trials, self.base),
        )
        self.figure(
            doc,
            FIG_IMPORTANCES,
            "Parameter importances: Optuna's evaluator on the study, for each objective",
            self._importances,
        )
        self.figure(
            doc,
            FIG_LAYERS,
            "Per-layer sparsity: active fraction of each layer for the baseline and the best "
            "trials",
            lambda: plot_layer_sparsity(self.base, self.shown),
        )
        self.figure(
            doc,
            FIG_RECONSTRUCTIONS,
            "Reconstructions: the last epoch's grid of the baseline and of the best trials, from "
            "the runs' artifacts",
            self._reconstructions,
        )

    def _importances(self) -> Figure:
        study = self.frames.study
        if study is None:
            raise NothingToPlot("no study in the selection")
        try:
            found = sweep.param_importances(self.storage, study)
        except ValueError as err:
            raise NothingToPlot(str(err)) from None
        if found is None:
            complete = int(self.frames.trials["trial_state"].eq("COMPLETE").sum())
            raise NothingToPlot(
                f"importances need at least {sweep.MIN_IMPORTANCE_TRIALS} complete trials and "
                f"the study has {complete}"
            )
        self.table(TABLE_IMPORTANCES, found)
        complete = int(self.frames.trials["trial_state"].eq("COMPLETE").sum())
        return plot_importances(found, complete)

    def _reconstructions(self) -> Figure:
        picks = []
        for _, group in self.base[B.trained(self.base)].groupby("beta", sort=True):
            picks.append(group.iloc[0])
        picks += [t for _, t in self.shown.iterrows()]
        grids = []
        # inside the build folder, like everything the report writes, and gone before it is done
        with tempfile.TemporaryDirectory(prefix=_DOWNLOADS, dir=self.folder) as tmp:
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
            return plot_reconstructions(grids)

    def reproducibility(self, doc: Document, command: str) -> None:
        doc.heading("4. Reproducibility")
        runs = self.frames.runs
        measured = runs[runs["role"].isin([ROLE_BASELINE, ROLE_TRIAL, ROLE_OTHER])]
        rows = []
        for what, tag in (
            ("git commit", tracking.TAG_GIT_COMMIT),
            ("data digest", tracking.TAG_DATA_DIGEST),
            ("device", tracking.TAG_DEVICE),
            ("torch", tracking.TAG_TORCH),
            ("mlflow", tracking.TAG_MLFLOW),
        ):
            values = _column(measured, f"tags.{tag}").fillna("not recorded").value_counts()
            rows += [{"what": what, "value": v, "runs": int(n)} for v, n in sorted(values.items())]
        if rows:
            doc.text("What the selected runs were made with (from their tags):")
            table = pd.DataFrame(rows)
            self.table(TABLE_PROVENANCE, table)
            doc.table(table)
        commands = _column(measured, f"tags.{tracking.TAG_COMMAND}").dropna().value_counts()
        if len(commands):
            doc.text("The commands that made them (runs per command):")
            doc.code("\n".join(f"{c}    # {n} runs" for c, n in sorted(commands.items())))
        versions = {
            "python": platform.python_version(),
            **{p: _version(p) for p in ("mlflow", "optuna", "torch", "pandas", "seaborn")},
            **{p: _version(p) for p in ("matplotlib", "numpy")},
        }
        doc.text(
            "This report was built with "
            + ", ".join(f"{k} {v}" for k, v in versions.items())
            + f", at git commit `{tracking.environment_tags()[tracking.TAG_GIT_COMMIT]}`, by:"
        )
        doc.code(command or "python analysis/report.py")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# Synthetic runs, for the benchmark and tests.


def synthetic_store(
    settings: tracking.Settings,
    n_runs: int,
    epochs: int = 3,
    seed: int = 0,
    study: str = "synthetic",
    progress: Callable[[int], None] | None = None,
) -> None:
    """Log ``n_runs`` plausible runs, one ``log_batch`` each: 10 baseline runs (2 betas x 5
    seeds), then a study parent and the rest as its trials with every per-epoch metric."""
    rng = np.random.default_rng(seed)
    n_base = min(10, n_runs)
    for i in range(n_base):
        source = "script" if i < n_base / 2 else "readme"
        beta = B.BETAS[source]
        _synthetic_run(
            settings,
            settings.experiment("baseline"),
            rng,
            epochs,
            name=B.run_name(beta, i % 5 + 1),
            params={"beta": beta, "lr": 1e-3, "batch_size": 100, "seed": i % 5 + 1},
            tags={
                tracking.TAG_KIND: "baseline",
                B.TAG_BASELINE: "true",
                B.TAG_BETA_SOURCE: source,
            },
        )
    if n_runs <= n_base:
        return
    parent = tracking.log_completed_run(
        settings,
        settings.experiment("sweep"),
        run_name=f"study-{study}",
        params={},
        tags={tracking.TAG_KIND: "sweep", tracking.TAG_STUDY: study},
        history={},
    )
    for number in range(n_runs - n_base):
        state = "FAIL" if number % 50 == 49 else "COMPLETE"
        _synthetic_run(
            settings,
            settings.experiment("sweep"),
            rng,
            epochs,
            name=f"trial-{number:03d}",
            params={
                "beta": float(10 ** rng.uniform(-6, -1)),
                "lr": float(10 ** rng.uniform(-4, -2)),
                "batch_size": int(rng.choice([32, 64, 100, 128, 256])),
                "seed": 1,
            },
            tags={
                tracking.TAG_KIND: "sweep",
                tracking.TAG_STUDY: study,
                tracking.TAG_TRIAL_NUMBER: str(number),
                tracking.TAG_TRIAL_STATE: state,
            },
            status="FAILED" if state == "FAIL" else "FINISHED",
            parent_run_id=parent,
        )
        if progress:
            progress(n_base + number + 1)


def _synthetic_run(
    settings: tracking.Settings,
    experiment: str,
    rng: np.random.Generator,
    epochs: int,
    *,
    name: str,
    params: dict[str, float],
    tags: dict[str, str],
    status: str = "FINISHED",
    parent_run_id: str | None = None,
) -> str:
    active = np.clip(np.log10(params["beta"]) / -6, 0.02, 1.0)  # more penalty, fewer units on
    mse_end = 0.004 + 0.03 * (1 - active) ** 3 * rng.uniform(0.8, 1.2)
    history = {}
    for epoch in range(1, epochs + 1):
        decay = 1 + 2.0 / epoch
        mse = mse_end * decay
        values = {key: float(rng.uniform(0, 1)) for key in FINAL_METRICS}
        values |= {
            M.EPOCH_MSE: mse * 1.02,
            M.EPOCH_LOSS: mse * 1.02 + params["beta"] * 2,
            M.TEST_MSE: mse,
            M.README_TEST_LOSS: mse / 8.5,
            M.CODE_ACTIVE_FRAC: float(np.clip(active * rng.uniform(0.8, 1.1), 0, 1)),
            B.OUTPUT_ACTIVE: 0.9,
        }
        history[epoch] = values
    return tracking.log_completed_run(
        settings,
        experiment,
        run_name=name,
        params={f"train.{k}": v for k, v in {**params, "epochs": epochs}.items()},
        tags=tags,
        history=history,
        status=status,
        parent_run_id=parent_run_id,
    )
