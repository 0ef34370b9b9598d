"""The report's reproducibility section: what the selected runs were made with (git commit, data
digest, device, versions, from their tags), the commands that made them, and this build's own."""

from __future__ import annotations

import importlib.metadata
import platform

import pandas as pd

from sae import names, tracking
from sae.report import files as F
from sae.report.document import Document, code
from sae.report.frames import ROLE_BASELINE, ROLE_CONFIRM, ROLE_OTHER, ROLE_TRIAL, column
from sae.report.output import Output

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


def reproducibility(out: Output, doc: Document, runs: pd.DataFrame, command: str) -> None:
    """Section 4: what the runs were made with (their tags), the commands, this build's versions."""
    doc.heading("4. Reproducibility")
    measured = runs[runs["role"].isin([ROLE_BASELINE, ROLE_TRIAL, ROLE_CONFIRM, ROLE_OTHER])]
    rows = []
    for what, tag in PROVENANCE:
        values = column(measured, names.tag_column(tag)).fillna("not recorded").value_counts()
        rows += [{"what": what, "value": v, "runs": int(n)} for v, n in sorted(values.items())]
    if rows:
        doc.text("What the selected runs were made with (from their tags):")
        table = pd.DataFrame(rows)
        out.table(F.TABLE_PROVENANCE, table)
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


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
