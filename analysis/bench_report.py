"""Time the comparison report on a store of N synthetic runs with a few epochs each.

    python analysis/bench_report.py                     # 1000 runs of 3 epochs (a few minutes)
    python analysis/bench_report.py --runs 200 --keep   # keep the temporary store to look at

Logs the runs into a temporary SQLite store (one log_batch per run: 10 baseline runs, one study
of the rest), builds the report from it and logs it as a run, prints the timings and writes them
to a JSON file. The temporary folder is removed afterwards unless --keep.
"""

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import synthetic_store

from sae import report, tracking
from sae.cli import ArgumentParser, run_main
from sae.data.idx import atomic_write
from sae.paths import owned


def progress(logged: int) -> None:
    if logged % 100 == 0:
        print(f"logged {logged} runs", flush=True)


@dataclass(frozen=True)
class BenchReportOptions:
    """The synthetic store and where the timings go."""

    runs: int = 1000
    """runs to log"""
    epochs: int = 3
    """epochs per run"""
    output: str = "reports/bench_report.json"
    """JSON file of the timings"""
    keep: bool = False
    """keep the temporary store"""

    def __post_init__(self) -> None:
        if self.runs < 1 or self.epochs < 1:
            raise ValueError("--runs and --epochs must be >= 1")


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_dataclass("bench", BenchReportOptions())
    args = parser.parse_args().bench

    folder = Path(tempfile.mkdtemp(prefix="sae-bench-report-"))
    settings = tracking.Settings(
        tracking_uri=f"sqlite:///{folder}/mlflow.db",
        artifact_location=(folder / "mlartifacts").as_uri(),
        optuna_storage=str(folder / "optuna.journal"),
    )
    try:
        started = time.perf_counter()
        synthetic_store.synthetic_store(
            settings,
            args.runs,
            args.epochs,
            progress=progress,
        )
        logged = time.perf_counter() - started

        started = time.perf_counter()
        frames = report.load_frames(settings)
        read = time.perf_counter() - started
        started = time.perf_counter()
        built = report.build_report(settings, name="bench", output_dir=folder / "reports")
        build = time.perf_counter() - started
        started = time.perf_counter()
        tracking.log_report(settings, "bench", built.folder)
        log = time.perf_counter() - started
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    figures = {
        "runs": args.runs,
        "epochs": args.epochs,
        "selected_runs": len(frames.runs),
        "curve_rows": len(frames.curves),
        "figures": len(built.figures),
        "seconds_logging_runs": round(logged, 2),
        "seconds_reading_frames": round(read, 2),
        "seconds_building_report": round(build, 2),
        "seconds_logging_report": round(log, 2),
        "seconds_report_total": round(build + log, 2),
        "cpus": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
    }
    for key, value in figures.items():
        print(f"{key:>24}: {value}")
    output = owned(args.output)  # never written through a symbolic link
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, (json.dumps(figures, indent=2) + "\n").encode("utf-8"))
    print(f"written to {args.output}" + (f"; store kept in {folder}" if args.keep else ""))


if __name__ == "__main__":
    run_main(main)
