"""Write the results of `make sweep` and `make baseline` as Markdown pages, from the MLflow store.

    python analysis/results_tables.py                 # the latest study, into docs/generated
    python analysis/results_tables.py --study sae-sweep --output docs/generated
    python analysis/results_tables.py --config-file other/mlflow.yaml

Writes results-sweep.md (the study's command and settings, machine, date, wall time, trial
states, degenerate trials, front and its comparison with the tracked baseline) and
results-baseline.md (the README's figures beside the replication's mean ± sd and n), each
starting with when, where and by what command it was made, and ending with the command that
makes it again.

A store without a sweep study, or without a finished baseline run, still gets the other page:
the page it cannot make is not written (an earlier one is left as it was), and the command ends
with one line naming what to run, exit status 1. A --study the store does not hold, or no store,
is one line and exit 1 before anything is written.
"""

import shlex
import sys
from dataclasses import dataclass

from sae import tracking
from sae.cli import ArgumentParser, SettingsOptions, fail, run_main
from sae.report import results


@dataclass(frozen=True)
class ResultsOptions:
    """Which study the sweep page reports and where the pages go."""

    study: str | None = None
    """the study of the sweep page; unset means the most recent one"""
    output: str = results.DEFAULT_OUTPUT
    """the folder of the two pages"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = ArgumentParser(description=__doc__, prog="results_tables.py")
    parser.add_dataclass("results", ResultsOptions())
    parser.add_dataclass("settings", SettingsOptions())
    args = parser.parse_args(argv)
    opts: ResultsOptions = args.results
    where: SettingsOptions = args.settings

    settings = tracking.load_settings(where.config_file, where.tracking_uri)
    rerun = [*shlex.split(results.PROGRAM)]
    if where.config_file != SettingsOptions.config_file:
        rerun += ["--config-file", where.config_file]
    if where.tracking_uri:
        rerun += ["--tracking-uri", where.tracking_uri]
    if opts.output != results.DEFAULT_OUTPUT:
        rerun += ["--output", opts.output]
    done = results.write_results(
        settings,
        opts.output,
        study=opts.study,
        command=shlex.join([*shlex.split(results.PROGRAM), *argv]),
        rerun=rerun,
    )
    for path in done.written:
        print(f"wrote {path}")
    if done.missing:
        fail("; ".join(done.missing))


if __name__ == "__main__":
    run_main(main)
