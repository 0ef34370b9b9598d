"""Claims with their uncertainty: each best trial's runs (its own and its confirmation runs with
other seeds) against the baseline's (``baseline.reference_runs``), metric by metric, as n,
mean ± sd and Welch's t-test (``sae.stats``); and how far parameter importances can be trusted.
"""

from __future__ import annotations

import pandas as pd

from sae import baseline as B
from sae import metrics as M
from sae import stats
from sae.report.tables import LABELS

CLAIMS = ((M.TEST_MSE, True), (M.CODE_ACTIVE_FRAC, True), (M.PROBE_ACCURACY, False))
"""What a trial is compared with the baseline on, each with whether lower is better."""
"""Parameter importances from fewer complete trials than this are indicative only."""
CLAIM_COLUMNS = (
    "trial",
    "quantity",
    "trial n",
    "trial mean",
    "trial sd",
    "baseline n",
    "baseline mean",
    "baseline sd",
    "p",
    "verdict",
    "run",
)
"""The columns of ``claims``: one row per (best trial, quantity)."""


def baseline_runs(base: pd.DataFrame) -> pd.DataFrame:
    """The baseline's sample: ``baseline.reference_runs`` of the finished baseline runs."""
    if base.empty:
        return base
    return B.reference_runs(base)


def trial_runs(trial: pd.Series, confirmations: pd.DataFrame) -> pd.DataFrame:
    """The trial's sample: its own run and its FINISHED confirmation runs (other seeds)."""
    mine = confirmations[
        confirmations["confirm_trial_run_id"].eq(trial["run_id"])
        & confirmations["status"].eq("FINISHED")
    ]
    return pd.concat([trial.to_frame().T, mine], ignore_index=True)


def claims(front: pd.DataFrame, confirmations: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Every best trial against the baseline runs ``base`` on each of CLAIMS (CLAIM_COLUMNS):
    n, mean and sd of both samples, Welch's p-value and ``stats.verdict``."""
    rows = []
    for _, trial in front.iterrows():
        ours = trial_runs(trial, confirmations)
        for key, lower_is_better in CLAIMS:
            theirs = base[key] if key in base else pd.Series(dtype=float)
            c = stats.compare(ours[key], theirs)
            rows.append(
                {
                    "trial": trial["trial_number"],
                    "quantity": LABELS[key],
                    "trial n": c.ours.n,
                    "trial mean": c.ours.mean,
                    "trial sd": c.ours.sd,
                    "baseline n": c.theirs.n,
                    "baseline mean": c.theirs.mean,
                    "baseline sd": c.theirs.sd,
                    "p": c.p,
                    "verdict": stats.verdict(c, lower_is_better) if c.theirs.n else "no baseline",
                    "run": trial["run_id"],
                }
            )
    frame = pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))
    return frame.astype({"trial": "Int64", "trial n": int, "baseline n": int})


def claims_table(found: pd.DataFrame) -> pd.DataFrame:
    """``claims`` for display: each sample as ``stats.describe`` says it, then the verdict."""

    def said(row: pd.Series, side: str) -> str:
        return stats.describe(
            stats.Summary(int(row[f"{side} n"]), row[f"{side} mean"], row[f"{side} sd"])
        )

    return pd.DataFrame(
        {
            "trial": found["trial"],
            "quantity": found["quantity"],
            "the trial's runs": [said(row, "trial") for _, row in found.iterrows()],
            "the baseline's runs": [said(row, "baseline") for _, row in found.iterrows()],
            "verdict": [
                row["verdict"] + (f" (p={row['p']:.2g})" if pd.notna(row["p"]) else "")
                for _, row in found.iterrows()
            ],
        }
    )


def verdicts(found: pd.DataFrame) -> pd.Series:
    """One phrase per trial's run id for the best table: each quantity's verdict in short."""
    out = {}
    for run_id, rows in found.groupby("run", sort=False):
        if rows["baseline n"].eq(0).all():
            out[run_id] = "no baseline"
        elif rows["trial n"].max() < 2:
            out[run_id] = "one run: too few to test"
        elif rows["verdict"].nunique() == 1:
            out[run_id] = f"{rows['verdict'].iloc[0]} on each"
        else:
            out[run_id] = ", ".join(
                f"{q} {v}" for q, v in zip(rows["quantity"], rows["verdict"], strict=True)
            )
    return pd.Series(out, dtype=object)


def run_counts(found: pd.DataFrame) -> pd.Series:
    """How many runs each best trial has (its own and its confirmations), by its run id."""
    return found.groupby("run", sort=False)["trial n"].max()
