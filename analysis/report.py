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

import argparse
import shlex
import sys

from sae import report, tracking
from sae.cli import ArgumentParser, run_main


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--name", default="latest", help="report folder name, not a path (default: latest)"
    )
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        metavar="NAME",
        help="report every run of this experiment (repeatable); default: the baseline runs "
        "and the most recent study",
    )
    parser.add_argument("--study", help="the study the sweep section reports (default: latest)")
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs with this tag value (repeatable)",
    )
    parser.add_argument("--config-file", default=tracking.DEFAULT_SETTINGS_FILE, metavar="FILE")
    parser.add_argument("--tracking-uri", help="overrides mlflow.yaml and MLFLOW_TRACKING_URI")
    parser.add_argument("--storage", help="the study's Optuna storage (default: mlflow.yaml's)")
    parser.add_argument("--output-dir", default="reports", metavar="DIR")
    parser.add_argument(
        "--log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log the report as an MLflow run",
    )
    args = parser.parse_args()

    settings = tracking.load_settings(args.config_file, args.tracking_uri)
    selection = report.Selection(
        experiments=tuple(args.experiment),
        study=args.study,
        tags=tuple(report.parse_tag(t) for t in args.tag),
    )
    command = shlex.join(["python", "analysis/report.py", *sys.argv[1:]])
    built = report.build_report(
        settings,
        selection,
        args.name,
        output_dir=args.output_dir,
        storage=args.storage,
        command=command,
        log=args.log,
    )
    print(f"report:  {built.markdown}")
    print(f"html:    {built.html}")
    print(f"figures: {len(built.figures)} in {built.folder / report.FIGURES_DIR}")
    print(f"tables:  {len(built.tables)} in {built.folder / report.TABLES_DIR}")
    if built.run_id:
        print(f"logged:  run {built.run_id} in experiment {settings.experiment('report')}")


if __name__ == "__main__":
    run_main(main)
