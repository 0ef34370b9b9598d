"""Regenerate the comparison report from whatever the MLflow store holds."""

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from sae import report, tracking
from sae.cli import ArgumentParser, SettingsOptions, repeatable, run_main


@dataclass(frozen=True)
class ReportOptions:
    """Which runs the report covers and where it goes."""

    name: str = "latest"
    """report folder name, not a path"""
    experiment: list[str] = repeatable("NAME")
    """report every run of this experiment (repeatable); default: the baseline runs and the most
    recent study"""
    study: str | None = None
    """the study the sweep section reports; unset means the latest"""
    tag: list[str] = repeatable("KEY=VALUE")
    """only runs with this tag value (repeatable)"""
    storage: str | None = None
    """the study's Optuna storage; unset means mlflow.yaml's"""
    output_dir: str = "reports"
    """the folder of the reports"""
    log: bool = True
    """log the report as an MLflow run"""


def main(program: str | None = None) -> None:
    """``program`` is how the report names the command that made it (default: this one's)."""
    parser = ArgumentParser(description=__doc__)
    parser.add_dataclass("report", ReportOptions())
    parser.add_dataclass("settings", SettingsOptions())
    args = parser.parse_args()
    opts: ReportOptions = args.report

    settings = tracking.load_settings(args.settings.config_file, args.settings.tracking_uri)
    selection = report.Selection(
        experiments=tuple(opts.experiment),
        study=opts.study,
        tags=tuple(report.parse_tag(t) for t in opts.tag),
    )
    program = program or Path(sys.argv[0]).name
    built = report.build_report(
        settings,
        selection,
        opts.name,
        output_dir=opts.output_dir,
        storage=opts.storage,
        command=shlex.join([*shlex.split(program), *sys.argv[1:]]),
        log=opts.log,
    )
    print(f"report:  {built.markdown}")
    print(f"html:    {built.html}")
    print(f"figures: {len(built.figures)} in {built.folder / report.FIGURES_DIR}")
    print(f"tables:  {len(built.tables)} in {built.folder / report.TABLES_DIR}")
    if built.run_id:
        print(f"logged:  run {built.run_id} in experiment {settings.experiment('report')}")


def run() -> NoReturn:
    """``sae-report``."""
    run_main(main)
