"""The results of ``make sweep`` and ``make baseline`` as two Markdown pages generated from the
MLflow store, results-sweep.md (``results_sweep``) and results-baseline.md
(``results_baseline``), each starting with the line saying when, on which machine and by what
command it was made and ending with the command that makes it again; every figure in them is
read from the runs, with the report's own judgements and the sweep's own comparisons.
"""

from __future__ import annotations

import datetime
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sae import tracking
from sae.data.idx import atomic_write
from sae.paths import owned
from sae.report.frames import Selection, load_frames
from sae.report.results_baseline import baseline_page
from sae.report.results_sweep import (
    FRONT_COLUMNS,
    WHOLE_COLUMNS,
    comparison_lines,
    front_table,
    recorded_settings,
    sweep_page,
)
from sae.report.results_text import BASELINE_PAGE, SWEEP_PAGE, NoResults, made_line

__all__ = [
    "BASELINE_PAGE",
    "DEFAULT_OUTPUT",
    "FRONT_COLUMNS",
    "PAGES",
    "PROGRAM",
    "SWEEP_PAGE",
    "WHOLE_COLUMNS",
    "Results",
    "comparison_lines",
    "front_table",
    "recorded_settings",
    "write_results",
]

PAGES = (SWEEP_PAGE, BASELINE_PAGE)
DEFAULT_OUTPUT = "docs/generated"
PROGRAM = "python analysis/results_tables.py"


@dataclass(frozen=True)
class Results:
    """What ``write_results`` wrote, and the parts the store holds nothing for."""

    written: tuple[Path, ...]
    missing: tuple[str, ...]
    """One phrase per page not written, why and what to run."""
    study: str | None


def write_results(
    settings: tracking.Settings,
    output_dir: str | Path = DEFAULT_OUTPUT,
    *,
    study: str | None = None,
    command: str = PROGRAM,
    rerun: Sequence[str] = (PROGRAM,),
    now: datetime.datetime | None = None,
) -> Results:
    """Write SWEEP_PAGE (the study ``study``, default the most recent) and BASELINE_PAGE into
    ``output_dir``, each whole or not at all (``atomic_write``), through no symbolic link.

    A page the store holds nothing for (no study, no finished baseline run) is not written, and
    one that was there before is left as it was: the other page is still written, and the part
    missing is said in ``Results.missing``. Raises ValueError, in one line and before writing
    anything, for a store that is not there, a ``study`` it does not hold (``load_frames``) or an
    output folder that is a link. ``command`` is the command line said at the top of each page;
    ``rerun`` the one said at the bottom, to which ``--study`` is added.
    """
    frames = load_frames(settings, Selection(study=study))
    out = owned(output_dir)
    targets = {page: owned(out, page) for page in PAGES}
    for path in targets.values():
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not a results page: move it away")
    again = shlex.join([*rerun, *(("--study", frames.study) if frames.study else ())])
    made = made_line(settings, command, now)
    texts, missing = {}, []
    for page, build in ((SWEEP_PAGE, sweep_page), (BASELINE_PAGE, baseline_page)):
        try:
            texts[page] = build(settings, frames, made, again)
        except NoResults as why:
            missing.append(str(why))
    if texts:
        out.mkdir(parents=True, exist_ok=True)
    for page, text in texts.items():
        atomic_write(targets[page], text.encode("utf-8"))
    return Results(tuple(targets[p] for p in texts), tuple(missing), frames.study)
