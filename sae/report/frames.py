"""The report's data: which runs it describes (``Selection``) and those runs as tidy frames, one
row per run and one row per (run, epoch, metric). ``load_frames`` is the part to import from a
notebook.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sae import metrics as M
from sae import names, tracking
from sae.redact import redact

# What a selected run is in the report.
ROLE_BASELINE = "baseline"
ROLE_TRIAL = "trial"
ROLE_STUDY = "study"
"""The sweep's parent run of the reported study."""
ROLE_CONFIRM = "confirm"
"""A confirmation run of the study: a trial's parameters trained again with another seed."""
ROLE_OTHER = "other"
"""A run of an experiment named with --experiment that is none of the above."""

NUMERIC_PARAMS = {
    "beta": names.param("train", "beta"),
    "lr": names.param("train", "lr"),
    "batch_size": names.param("train", "batch_size"),
    "seed": names.param("train", "seed"),
    "epochs": names.param("train", "epochs"),
    "test_batch_size": names.param("train", "test_batch_size"),
    "train_size": names.param("data", "train_size"),
    "test_size": names.param("data", "test_size"),
    "topk": names.param("model", "topk"),
}
"""Config fields that get a numeric column of their own, from their params; a size of None
(all the images) is NaN here."""
INTEGER_PARAMS = (
    "batch_size",
    "seed",
    "epochs",
    "test_batch_size",
    "train_size",
    "test_size",
    "topk",
)
TEXT_PARAMS = {"data_order": names.param("train", "data_order")}
"""Config fields that get a text column of their own."""
TRAIN_PARAMS = tuple(NUMERIC_PARAMS) + tuple(TEXT_PARAMS)
TAG_COLUMNS = {
    "kind": names.TAG_KIND,
    "study": names.TAG_STUDY,
    "trial_number": names.TAG_TRIAL_NUMBER,
    "trial_state": names.TAG_TRIAL_STATE,
    "baseline": names.TAG_BASELINE,
    "beta_source": names.TAG_BETA_SOURCE,
    "degenerate": names.TAG_DEGENERATE,
    "degenerate_reason": names.TAG_DEGENERATE_REASON,
    "front": names.TAG_FRONT,
    "confirm_trial": names.TAG_CONFIRM_TRIAL,
    "confirm_trial_run_id": names.TAG_CONFIRM_TRIAL_RUN,
}
"""Columns of the runs frame taken from tags."""
FINAL_METRICS = (*M.EPOCH_METRICS, *M.EVAL_METRICS, *M.FINAL_METRICS)
"""Every run gets a column for each of these, NaN where the run did not log it."""
CURVE_METRICS = (
    M.EPOCH_LOSS,
    M.EPOCH_MSE,
    M.TEST_MSE,
    M.README_TEST_LOSS,
    M.CODE_ACTIVE_FRAC,
    M.CODE_L0,
)
"""The per-epoch metrics read back into the curves frame."""
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
_STATE_OF_STATUS = {"RUNNING": "RUNNING", "SCHEDULED": "RUNNING", "FINISHED": "COMPLETE"}


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
    TAG_COLUMNS columns (confirm_trial_run_id: the run id of the trial a confirmation run
    repeats), one column per metric key (final values), then params.* and tags.*."""
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
    def confirmations(self) -> pd.DataFrame:
        return self.runs[self.runs["role"] == ROLE_CONFIRM]

    @property
    def parent(self) -> pd.Series | None:
        parents = self.runs[self.runs["role"] == ROLE_STUDY]
        return parents.iloc[-1] if len(parents) else None


def load_frames(settings: tracking.Settings, selection: Selection | None = None) -> Frames:
    """Read the selected runs in one search and their curves in one query per metric.

    Raises ValueError, in one line, when there is no store, or when the selection matches
    nothing: an experiment that is not in the store, a study that none of the selected runs
    belongs to (the messages list those there are), experiments or tags that select no run. The
    default selection of a store with no runs yet is no error: its report says so.
    """
    selection = selection or Selection()
    tracking.require_store(settings)
    default = not selection.experiments
    experiments = (
        (settings.experiment("baseline"), settings.experiment("sweep"))
        if default
        else selection.experiments
    )
    if not default:
        there = tracking.experiment_names(settings)
        missing = [name for name in experiments if name not in there]
        if missing:
            listed = ", ".join(repr(name) for name in there) or "none"
            raise ValueError(
                redact(
                    f"no experiment {missing[0]!r} in the store: the experiments there are {listed}"
                )
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
    confirm = runs["kind"].eq(names.KIND_CONFIRM)
    runs["role"] = np.select(
        [is_baseline, in_study & confirm, in_study & has_parent, in_study & ~has_parent],
        [ROLE_BASELINE, ROLE_CONFIRM, ROLE_TRIAL, ROLE_STUDY],
        ROLE_OTHER,
    )
    if default:
        runs = runs[runs["role"] != ROLE_OTHER]
    if runs.empty and (selection.experiments or selection.tags):
        raise ValueError(
            redact(f"no run among {_where(selection, experiments)}: nothing to report")
        )
    runs = runs.assign(label=[run_label(row) for _, row in runs.iterrows()])
    first = [*tracking.RUN_COLUMNS, "role", "label", *TRAIN_PARAMS, *TAG_COLUMNS]
    runs = runs[first + [c for c in runs.columns if c not in first]].reset_index(drop=True)
    measured = runs.loc[runs["role"].isin([ROLE_BASELINE, ROLE_TRIAL]), "run_id"]
    curves = tracking.curves_frame(settings, list(measured), CURVE_METRICS)
    return Frames(runs=runs, curves=curves, study=study)


def _where(selection: Selection, experiments: tuple[str, ...]) -> str:
    """The selected runs in words: ``the runs of sae-baseline tagged kind=train``."""
    where = "the runs of " + ", ".join(experiments)
    if selection.tags:
        where += " tagged " + ", ".join(f"{k}={v}" for k, v in selection.tags)
    return where


def _no_such_study(selection: Selection, experiments: tuple[str, ...], studies: list[str]) -> str:
    where = _where(selection, experiments)
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
    for name, param in NUMERIC_PARAMS.items():
        runs[name] = pd.to_numeric(column(runs, f"params.{param}"), errors="coerce")
    for name in INTEGER_PARAMS:
        runs[name] = runs[name].astype("Int64")
    for name, param in TEXT_PARAMS.items():
        runs[name] = column(runs, f"params.{param}")
    for name, tag in TAG_COLUMNS.items():
        runs[name] = column(runs, names.tag_column(tag)).astype(object)
    for name in ("trial_number", "confirm_trial"):
        runs[name] = pd.to_numeric(runs[name], errors="coerce").astype("Int64")
    guessed = runs["status"].map(_STATE_OF_STATUS).fillna("FAIL")
    untagged = runs["study"].notna() & runs["parent_run_id"].notna() & runs["trial_state"].isna()
    untagged &= runs["kind"].ne(names.KIND_CONFIRM)
    runs["trial_state"] = runs["trial_state"].where(~untagged, guessed)
    for key in FINAL_METRICS:
        if key not in runs:
            runs[key] = np.nan
    return runs


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """The column ``name`` as objects, None where missing; all None when there is no such column."""
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
        if not pd.isna(row.get("topk")):  # a TopK trial's knob is its K, not beta
            return f"trial {int(row['trial_number'])} (K={int(row['topk'])})"
        beta = "" if pd.isna(row["beta"]) else f" (β={row['beta']:.2g})"
        return f"trial {int(row['trial_number'])}{beta}"
    return str(row["run_name"] if isinstance(row["run_name"], str) else row["run_id"][:8])


def baseline_label(beta: float, source: object) -> str:
    return f"baseline β={beta:g} ({source if isinstance(source, str) else 'unknown'})"
