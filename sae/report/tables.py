"""The report's judgements of the runs, as tables: the baseline a trial is compared with, trial
states, which trials are degenerate, the Pareto front of the sweep, the best trials, and the
metrics runs did not log.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sae import baseline as B
from sae import metrics as M
from sae.report.frames import STATES, Frames, column

HEADLINE_METRICS = (M.TEST_MSE, M.CODE_ACTIVE_FRAC)
"""What a sweep trial is judged on: both minimised."""
BEST_SHOWN = 4
"""How many best trials the figures show beside the baseline (spread along the front)."""
LABELS = {
    M.TEST_MSE: "test MSE",
    M.CODE_ACTIVE_FRAC: "code active fraction",
    M.CODE_L0: "code L0",
    M.PROBE_ACCURACY: "probe accuracy",
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


def complete_trials(trials: pd.DataFrame, also: tuple[str, ...] = ()) -> pd.DataFrame:
    """The COMPLETE trials that logged both HEADLINE_METRICS (and the columns ``also``)."""
    done = trials[trials["trial_state"].eq("COMPLETE")]
    return done.dropna(subset=[*HEADLINE_METRICS, *also])


def trial_states(trials: pd.DataFrame) -> pd.DataFrame:
    """How many trials are in each state: COMPLETE, PRUNED, FAIL, RUNNING, then any other."""
    counts = trials["trial_state"].fillna("unknown").value_counts()
    order = [s for s in STATES if s in counts] + sorted(set(counts.index) - set(STATES))
    return pd.DataFrame({"state": order, "trials": [int(counts[s]) for s in order]})


def degenerate_reasons(runs: pd.DataFrame) -> pd.Series:
    """Why each run is degenerate, or None: its tag when it carries one (``true`` with its
    reason tag, ``false``), else ``metrics.degenerate_reason`` of the metrics it logged."""
    tags, tagged = column(runs, "degenerate"), column(runs, "degenerate_reason")
    keys = [key for key in M.EVAL_METRICS if key in runs]
    reasons = []
    for index, tag in tags.items():
        if tag == "true":
            why = tagged[index]
            reasons.append(why if isinstance(why, str) and why else "flagged degenerate")
        elif tag == "false":
            reasons.append(None)
        else:
            values = runs.loc[index, keys]
            reasons.append(M.degenerate_reason(values[values.notna()].to_dict()))
    return pd.Series(reasons, index=runs.index, dtype=object)


def degenerate_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The COMPLETE trials that are degenerate, with their reason (column ``reason``)."""
    done = complete_trials(trials)
    reasons = degenerate_reasons(done)
    out = done[reasons.notna()].assign(reason=reasons[reasons.notna()])
    return out.sort_values(["trial_number", "run_id"])


def swept_front(trials: pd.DataFrame) -> pd.DataFrame | None:
    """The study's front as the sweep found it (``sweep.front.front_of``: its own objectives and
    constraints, never a degenerate trial): the COMPLETE trials whose run carries the front tag
    ``true``, by increasing test MSE; None unless every COMPLETE trial carries the tag (a store
    older than the tag, or trials finished since the sweep's last summary)."""
    done = complete_trials(trials)
    if done.empty or "front" not in done or not done["front"].isin(["true", "false"]).all():
        return None
    front = done[done["front"].eq("true")]
    return front.sort_values([*HEADLINE_METRICS, "trial_number", "run_id"])


def pareto_front(trials: pd.DataFrame) -> pd.DataFrame:
    """The study's front: the sweep's own (``swept_front``) where its runs carry it; else the
    COMPLETE trials, degenerate ones left out, that no other such trial beats on both test MSE
    and code active fraction (both minimised), by increasing test MSE."""
    swept = swept_front(trials)
    if swept is not None:
        return swept
    done = complete_trials(trials)
    done = done[degenerate_reasons(done).isna()]
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


def searches_k(trials: pd.DataFrame) -> bool:
    """Whether the trials are a TopK study's (``--family topk``): their knob is K, not beta."""
    return "topk" in trials and bool(trials["topk"].notna().any())


def _trial_columns(trials: pd.DataFrame) -> dict[str, pd.Series]:
    """The columns every table of trials starts with: number, parameters, the two objectives."""
    topk = {"K": trials["topk"]} if searches_k(trials) else {}  # a TopK study's knob
    return {
        "trial": trials["trial_number"],
        **topk,
        "beta": trials["beta"],
        "lr": trials["lr"],
        "batch size": trials["batch_size"],
        LABELS[M.TEST_MSE]: trials[M.TEST_MSE],
        LABELS[M.CODE_ACTIVE_FRAC]: trials[M.CODE_ACTIVE_FRAC],
    }


def degenerate_table(degenerate: pd.DataFrame) -> pd.DataFrame:
    """The degenerate trials for display: parameters, the two objectives and the reason."""
    return pd.DataFrame(
        {
            **_trial_columns(degenerate),
            "why degenerate": degenerate["reason"],
            "run": degenerate["run_id"].str[:8],
        }
    ).reset_index(drop=True)


def best_table(front: pd.DataFrame, runs: pd.Series, against: pd.Series) -> pd.DataFrame:
    """The best trials for display: parameters, metrics, how many runs each has (its own and its
    confirmation runs: ``runs``, by run id) and the comparison with the baseline (``against``)."""
    degenerate = degenerate_reasons(front)
    table = pd.DataFrame(
        {
            **_trial_columns(front),
            LABELS[M.CODE_L0]: front[M.CODE_L0],
            LABELS[M.PROBE_ACCURACY]: front[M.PROBE_ACCURACY],
            "degenerate": np.where(degenerate.notna(), "yes", "no"),
            "runs": front["run_id"].map(runs).astype("Int64"),
            "against the baseline": front["run_id"].map(against),
            "run": front["run_id"].str[:8],
        }
    )
    return table.reset_index(drop=True)


def missing_metrics(runs: pd.DataFrame, keys: tuple[str, ...]) -> dict[str, int]:
    """How many FINISHED runs lack each of ``keys`` (only keys some run lacks)."""
    finished = runs[runs["status"].eq("FINISHED")]
    counts = {key: int(finished[key].isna().sum()) for key in keys}
    return {key: n for key, n in counts.items() if n}
