"""Regenerate the comparison report from whatever the MLflow store holds.

    python analysis/report.py                          # baseline runs + the most recent study
    python analysis/report.py --study sae-sweep --name sweep-30
    python analysis/report.py --experiment sae-train --tag kind=train --name train-runs
    python analysis/report.py --no-log                 # write the files only, log no run

Writes reports/<name>/report.md, a self-contained report.html, figures/*.png and tables/*.csv,
and logs them as the artifacts of a run tagged `report` in the experiment sae-report. The name
is a plain folder name; the report is swapped in only once complete, and other files in its
folder are kept. Secrets in URLs (user:password@) are written and shown as ***.
"""

from sae.cli import run_main
from sae.commands import report

if __name__ == "__main__":
    # The report names the command that made it as the user typed it.
    run_main(lambda: report.main(program="python analysis/report.py"))
