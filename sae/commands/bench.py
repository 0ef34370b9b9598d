"""Benchmark the training core against the seed's own loop, and the rest of the suite.

``sae-bench replay --storage FILE --study NAME`` replays the sweep's Pareto pruner on a recorded,
unpruned study instead (``sae.bench.replay``)."""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from sae import bench
from sae.bench.targets import TARGETS, meets
from sae.cli import ArgumentParser, SettingsOptions, run_main
from sae.data import default_root
from sae.paths import owned
from sae.splits import resolve_device

SETTINGS = (
    "images",
    "repeats",
    "population_ks",
    "population_epochs",
    "population_train_size",
    "sweep_trials",
    "sweep_train_size",
    "workers_trials",
    "workers_epochs",
    "workers_train_size",
    "pruning_seeds",
    "pruning_settings",
    "pruning_trials",
    "pruning_epochs",
    "pruning_train_size",
    "grid_setting",
    "grid_seeds",
    "grid_trials",
    "grid_samplers",
)
"""The settings the figures depend on, written beside the machine (and its tags in MLflow)."""


@dataclass(frozen=True)
class BenchOptions:
    """Where the data come from and where the figures go."""

    root: str = field(default_factory=lambda: str(default_root()))
    """data root"""
    output: str = "reports/benchmarks.json"
    """JSON file of the figures"""
    track: bool = True
    """log the figures to MLflow (--no-track: console and JSON only)"""
    from_json: str | None = None
    """measure nothing: log a JSON file this command wrote"""


def print_table(results: dict[str, float]) -> None:
    width = max(map(len, results))
    for key, value in results.items():
        note = ""
        if key in TARGETS:
            op, bound = TARGETS[key]
            note = f"   target {op} {bound:g}: {'met' if meets(key, value) else 'NOT met'}"
        print(f"{key:<{width}}  {value:>12,.3f}{note}")


@dataclass(frozen=True)
class ReplayOptions:
    """The recorded study to replay."""

    storage: str
    """the study's Optuna storage (a journal file or a database URL), or a sweep record (.json)"""
    study: str | None = None
    """the study's name (the only one in the storage by default)"""
    record: str | None = None
    """also write the study's record (its trials' parameters, values and per-epoch points) to
    this JSON file: the form of the benchmark's fixtures"""


def optuna_quiet() -> None:
    """No line from Optuna for each in-memory study the replay makes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def replay_main() -> None:
    """``sae-bench replay``: a line per trial the pruner would stop, then the summary line."""
    from sae.bench import replay
    from sae.sweep.pareto import ParetoPruner

    parser = ArgumentParser(
        prog="sae-bench replay",
        description="Replay the sweep's Pareto pruner (the default rule, or the one the "
        "--pareto-* flags name) on a recorded, unpruned study, in trial-number order.",
    )
    parser.add_dataclass("replay", ReplayOptions(storage=""))
    parser.add_dataclass("rule", ParetoPruner(), prefix="pareto-")
    args = parser.parse_args(sys.argv[2:])
    optuna_quiet()
    opts: ReplayOptions = args.replay
    if not opts.storage:
        raise ValueError("--storage is required: the recorded study's storage or record file")
    study = replay.open_recorded(opts.storage, opts.study)
    if opts.record:
        record = owned(Path(opts.record))
        about = {"command": bench.source(sys.argv, "sae-bench")["command"]}
        replay.write_record(study, record, about)
        print(f"record of study {study.study_name!r} written to {record}")
    replay.replay_lines(replay.replay(study, args.rule), print)


def main(program: str | None = None) -> None:
    """``program`` is how the JSON names the command that made it (default: this one's)."""
    if sys.argv[1:2] == ["replay"]:
        return replay_main()
    parser = ArgumentParser(description=__doc__)
    parser.add_dataclass("bench", bench.BenchConfig())
    parser.add_dataclass("options", BenchOptions())
    parser.add_dataclass("settings", SettingsOptions())
    args = parser.parse_args()
    cfg: bench.BenchConfig = args.bench
    opts: BenchOptions = args.options

    if opts.from_json:
        output = Path(opts.from_json)
        try:
            saved = json.loads(output.read_text())
            info, results = saved["machine"], saved["results"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{output} is not a benchmark JSON file ({err})") from None
        print(f"machine: {info}")
    else:
        info = {**bench.machine(resolve_device(cfg.device)), "amp": str(cfg.amp)}
        info["parts"] = ",".join(cfg.parts)
        info.update({name: str(getattr(cfg, name)) for name in SETTINGS})
        print(f"machine: {info}")
        output = owned(Path(opts.output))  # refused now, not after the benchmark's hour
        origin = bench.source(sys.argv, program)  # the date the benchmark started
        results = bench.run(cfg, opts.root, log=print)
        bench.write_json(results, info, output, origin)
    print()
    print_table(results)
    if opts.track:
        from sae import tracking  # MLflow is only needed to log

        settings = tracking.load_settings(args.settings.config_file, args.settings.tracking_uri)
        run_id = tracking.log_benchmark(settings, results, info, [output])
        done = "logged" if opts.from_json else "written to"
        print(f"\n{done} {output}; MLflow run {run_id} in experiment 'benchmarks'")
    else:
        print(f"\nwritten to {output}")


def run() -> NoReturn:
    """``sae-bench``."""
    run_main(main)
