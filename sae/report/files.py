"""The files a report writes, relative to its folder ``reports/<name>/``."""

from __future__ import annotations

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
FIG_FAMILIES = "figures/families.png"
TABLE_BASELINE = "tables/baseline_table.csv"
TABLE_STATES = "tables/trial_states.csv"
TABLE_BEST = "tables/best_trials.csv"
TABLE_DEGENERATE = "tables/degenerate_trials.csv"
TABLE_CLAIMS = "tables/claims.csv"
TABLE_IMPORTANCES = "tables/importances.csv"
TABLE_PROVENANCE = "tables/provenance.csv"
TABLE_RUNS = "tables/runs.csv"
TABLE_CURVES = "tables/curves.csv"
TABLE_FAMILIES = "tables/families.csv"
OUTPUTS = frozenset(
    {
        REPORT_MD,
        REPORT_HTML,
        *(FIG_BASELINE, FIG_CURVES, FIG_TRADEOFF, FIG_HYPERPARAMETERS, FIG_IMPORTANCES),
        *(FIG_LAYERS, FIG_RECONSTRUCTIONS),
        *(TABLE_BASELINE, TABLE_STATES, TABLE_BEST, TABLE_IMPORTANCES, TABLE_PROVENANCE),
        *(TABLE_DEGENERATE, TABLE_CLAIMS),
        *(TABLE_RUNS, TABLE_CURVES),
        *(FIG_FAMILIES, TABLE_FAMILIES),
    }
)
"""Every file a report may write in its folder. A rebuild replaces these and removes those it
did not write again; any other file in the folder is the user's and is left alone."""
DOWNLOADS = ".artifacts-"
"""Where in its build folder a report downloads the runs' images, for as long as it draws."""
