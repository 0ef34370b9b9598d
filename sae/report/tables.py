"""The report's judgements of the runs, as tables: the baseline a trial is compared with, trial
states, the Pareto front of the sweep, the comparison in words, and the metrics runs did not log.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sae import baseline as B
from sae import metrics as M
from sae.report.frames import STATES, Frames

HEADLINE_METRICS = (M.TEST_MSE, M.CODE_ACTIVE_FRAC)
"""What a sweep trial is judged on: both minimised."""
BEST_SHOWN = 4
"""How many best trials the figures show beside the baseline (spread along the front)."""
LABELS = {
    M.TEST_MSE: "test MSE",
    M.CODE_ACTIVE_FRAC: "code active fraction",
    M.EPOCH_MSE: "train MSE",
    M.EPOCH_LOSS: "training loss",
    M.README_TEST_LOSS: "testing loss",
}
"""How the report names a metric in words."""


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


def complete_trials(trials: pd.DataFrame, also: tuple[str, ...] = ()) -> pd.DataFrame:
    """The COMPLETE trials that logged both HEADLINE_METRICS (and the columns ``also``)."""
    done = trials[trials["trial_state"].eq("COMPLETE")]
    return done.dropna(subset=[*HEADLINE_METRICS, *also])


def trial_states(trials: pd.DataFrame) -> pd.DataFrame:
    """How many trials are in each state: COMPLETE, PRUNED, FAIL, RUNNING, then any other."""
    counts = trials["trial_state"].fillna("unknown").value_counts()
    order = [s for s in STATES if s in counts] + sorted(set(counts.index) - set(STATES))
    return pd.DataFrame({"state": order, "trials": [int(counts[s]) for s in order]})


def pareto_front(trials: pd.DataFrame) -> pd.DataFrame:
    """The COMPLETE trials that no other complete trial beats on both test MSE and code active
    fraction (both minimised), by increasing test MSE."""
    done = complete_trials(trials)
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
