"""The comparison report: tracked runs as tidy frames, tables and seaborn figures set against the
README baseline, written as Markdown and a self-contained HTML page under ``reports/<name>/``.

``load_frames`` is the part to import from a notebook: one row per run and one row per
(run, epoch, metric). ``build_report`` turns those frames into the report. The same store gives
the same tables and the same figure bytes. Every text the report writes is redacted
(``sae.redact``), and a report is built beside its folder and swapped in only when complete.

frames (the runs), tables (the judgements), claims (trials against the baseline, with n and
spread), protocol (the runs' protocol against the README's), figures (seaborn), document (the
Jinja2 rendering), sections (what the report says), families (the families' fronts compared,
when the storage holds several), gallery (its figures), provenance (its reproducibility
section), output and files (what it writes), build (where and how it is swapped in).
"""

from sae.report.build import Report, build_report, check_name
from sae.report.files import (
    FIG_BASELINE,
    FIG_CURVES,
    FIG_FAMILIES,
    FIG_HYPERPARAMETERS,
    FIG_IMPORTANCES,
    FIG_LAYERS,
    FIG_RECONSTRUCTIONS,
    FIG_TRADEOFF,
    FIGURES_DIR,
    OUTPUTS,
    REPORT_HTML,
    REPORT_MD,
    TABLE_BASELINE,
    TABLE_BEST,
    TABLE_CLAIMS,
    TABLE_CURVES,
    TABLE_DEGENERATE,
    TABLE_FAMILIES,
    TABLE_IMPORTANCES,
    TABLE_PROVENANCE,
    TABLE_RUNS,
    TABLE_STATES,
    TABLES_DIR,
)
from sae.report.frames import (
    CURVE_METRICS,
    FINAL_METRICS,
    ROLE_CONFIRM,
    Frames,
    Selection,
    load_frames,
    parse_tag,
)
from sae.report.tables import (
    degenerate_reasons,
    degenerate_trials,
    finished_baseline,
    pareto_front,
)
from sae.stats import IMPORTANCE_TRIALS

__all__ = [
    "CURVE_METRICS",
    "FIGURES_DIR",
    "FIG_BASELINE",
    "FIG_CURVES",
    "FIG_FAMILIES",
    "FIG_HYPERPARAMETERS",
    "FIG_IMPORTANCES",
    "FIG_LAYERS",
    "FIG_RECONSTRUCTIONS",
    "FIG_TRADEOFF",
    "FINAL_METRICS",
    "IMPORTANCE_TRIALS",
    "OUTPUTS",
    "REPORT_HTML",
    "REPORT_MD",
    "ROLE_CONFIRM",
    "TABLES_DIR",
    "TABLE_BASELINE",
    "TABLE_BEST",
    "TABLE_CLAIMS",
    "TABLE_CURVES",
    "TABLE_DEGENERATE",
    "TABLE_FAMILIES",
    "TABLE_IMPORTANCES",
    "TABLE_PROVENANCE",
    "TABLE_RUNS",
    "TABLE_STATES",
    "Frames",
    "Report",
    "Selection",
    "build_report",
    "check_name",
    "degenerate_reasons",
    "degenerate_trials",
    "finished_baseline",
    "load_frames",
    "pareto_front",
    "parse_tag",
]
