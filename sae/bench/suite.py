"""The benchmark as one run: its settings (``BenchConfig``) and its parts (``PART_STEPS``: each a
step that adds its figures), run in order (``run``); ``sae.bench.output`` writes the figures."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import simple_parsing
import torch

from sae.bench.loops import (
    core_images_per_s,
    eval_ms,
    flops_per_image,
    matmul_gflops,
    peak_rss_mb,
    probe_seconds,
    seed_loop_images_per_s,
    tracked_fit_seconds,
)
from sae.bench.population import population_figures
from sae.bench.pruning import pruning_figures, recorded_figures
from sae.bench.workers import workers_figures
from sae.config import Config, DataConfig, Device, TrackingConfig, TrainConfig, check_types
from sae.splits import load_splits, resolve_device
from sae.sweep.config import SamplerName

PARTS = (
    "throughput",
    "tracking",
    "eval",
    "probe",
    "sweep",
    "memory",
    "flops",
    "workers",
    "population",
    "pruning",
    "frontiers",
    "samplers",
)
"""The measurements ``run`` can make, in the order it makes them."""

GRID_PARTS = ("frontiers", "samplers")
"""The parts that run a grid of whole sweeps (tens of minutes on the small setting): made only
when ``--parts`` names them."""


def comma_separated(choices: tuple[str, ...], what: str) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: comma-separated names from ``choices`` (``what`` names one)."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(name.strip() for name in text.split(",") if name.strip())
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown) or '(none)'}; choose from {','.join(choices)}"
            )
        return names

    return parse


PRUNING_SETTINGS = ("recorded", "small", "full")
FRONTIER_SETTINGS = ("small", "full")
parse_parts = comma_separated(PARTS, "part")
"""argparse type of ``--parts``."""
parse_pruning_settings = comma_separated(PRUNING_SETTINGS, "pruning setting")
"""argparse type of ``--pruning-settings``."""
parse_samplers = comma_separated(get_args(SamplerName), "sampler")
"""argparse type of ``--grid-samplers``."""


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What the benchmark measures, and on which device."""

    images: int | None = None
    """training images of each throughput run (batch 100); unset means a whole epoch of all
    60,000 for both loops, as a run trains: the seed loop's start-up weighs more than the
    core's, so a shorter run flatters the speedup (a number is a quick look)"""
    repeats: int = 3
    """alternating repetitions of core and reference loop"""
    sweep_trials: int = 6
    """trials of the small sweep"""
    sweep_train_size: int = 3_000
    """training images of each trial of the small sweep"""
    workers_trials: int = 4
    """trials of each sweep of the workers part (1 worker x 2 threads, 2 workers x 1 thread)"""
    workers_epochs: int = 10
    """epochs of each trial of the workers part (the default sweep's)"""
    workers_train_size: int | None = None
    """training images of each trial of the workers part; unset means all 60,000"""
    population_ks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    """population sizes K: K sweep trials trained together, for each K"""
    population_epochs: int = 1
    """epochs each population trains; its trials per hour are projected to the sweep's 10,
    scaled linearly"""
    population_train_size: int | None = None
    """training images of each population member; unset means all 60,000"""
    pruning_seeds: tuple[int, ...] = (0, 1, 2)
    """sampler seeds of the pruning part: a sweep with and one without the pruner for each"""
    pruning_trials: int = 12
    """trials of each sweep of the pruning part's small setting"""
    pruning_epochs: int = 4
    """epochs of each trial of the small setting"""
    pruning_train_size: int = 10_000
    """training images of each trial of the small setting"""
    pruning_settings: tuple[str, ...] = simple_parsing.field(
        default=("recorded",),
        type=parse_pruning_settings,
        nargs=None,
        help=(
            "comma-separated settings of the pruning part: recorded (the default rule replayed on "
            "the recorded full default sweeps, sae/bench/records: seconds; it decides the "
            "default), small (the setting above, a sweep with and one without the pruner for every "
            "seed) and full (the same for the default sweep, 30 trials of 10 epochs on all 60,000 "
            "images, with the first seed; the unpruned one took 70 minutes on 2 CPU cores)"
        ),
    )
    grid_setting: str = "small"
    """setting of the frontiers and samplers parts (sae.bench.frontiers.SETTINGS): small (3
    epochs on 5,000 training and 2,000 test images, minutes a study) or full (the default
    sweep's 10 epochs on all images)"""
    grid_seeds: tuple[int, ...] = (0, 1, 2)
    """sampler seeds of the frontiers and samplers parts: a study per family (or sampler) each"""
    grid_trials: int = 30
    """trials of each study of the frontiers and samplers parts"""
    grid_samplers: tuple[str, ...] = simple_parsing.field(
        default=get_args(SamplerName),
        type=parse_samplers,
        nargs=None,
        help="comma-separated samplers the samplers part compares (on the l1 family)",
    )
    keep_stores: bool = False
    """keep the scratch folder with the benchmark's runs and studies (the pruning part's sweeps
    among them), and print where it is; by default it is removed at the end"""
    device: Device = "auto"
    """auto (cuda when present, else cpu), cpu or cuda"""
    amp: bool = False
    """mixed precision in the core's training steps (CUDA only; populations train in float32)"""
    parts: tuple[str, ...] = simple_parsing.field(
        default=tuple(p for p in PARTS if p not in GRID_PARTS),
        type=parse_parts,
        nargs=None,
        help=(
            "comma-separated measurements to make (by default all but the grids: frontiers, the "
            "l1, kl and topk fronts over the seeds, and samplers, the samplers' hypervolumes after "
            "10, 20 and 30 trials; sae.bench.frontiers)"
        ),
    )

    def __post_init__(self) -> None:
        check_types(self)
        if self.images is not None and self.images < 100:
            raise ValueError(f"--images must be >= 100 (or none: a whole epoch), got {self.images}")
        for name in (
            "repeats",
            "sweep_trials",
            "sweep_train_size",
            "workers_trials",
            "workers_epochs",
            "population_epochs",
            "pruning_trials",
            "pruning_epochs",
            "pruning_train_size",
            "grid_trials",
        ):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be >= 1, got {getattr(self, name)}")
        if self.workers_train_size is not None and self.workers_train_size < 1:
            raise ValueError(f"--workers-train-size must be >= 1, got {self.workers_train_size}")
        if self.population_train_size is not None and self.population_train_size < 1:
            raise ValueError(
                f"--population-train-size must be >= 1, got {self.population_train_size}"
            )
        ks = self.population_ks
        if not ks or min(ks) < 1 or len(set(ks)) < len(ks):
            raise ValueError(f"--population-ks needs distinct sizes >= 1, got {list(ks)}")
        for flag, seeds in (("pruning", self.pruning_seeds), ("grid", self.grid_seeds)):
            if not seeds or len(set(seeds)) < len(seeds):
                raise ValueError(f"--{flag}-seeds needs distinct seeds, got {list(seeds)}")
        if self.grid_setting not in FRONTIER_SETTINGS:
            raise ValueError(
                f"--grid-setting must be one of {', '.join(FRONTIER_SETTINGS)}, "
                f"got {self.grid_setting!r}"
            )


@dataclasses.dataclass
class Context:
    """What every part of a run reads: its settings, its device and base config, its scratch
    folder, and the figures the parts before it measured (the arithmetic bound reads the core's
    throughput; the population part, the matrix product's rate)."""

    bench: BenchConfig
    data_root: str
    log: Callable[[str], None]
    tmp: Path
    device: torch.device
    cfg: Config
    results: dict[str, Any] = dataclasses.field(default_factory=dict)


def run(bench: BenchConfig, data_root: str, log: Callable[[str], None]) -> dict[str, Any]:
    """The measurements of the benchmark issue named in ``bench.parts``; a flat dict of figures.
    Its scratch stores (runs, studies) live in a temporary folder, removed at the end unless
    ``bench.keep_stores``."""
    tmp = Path(tempfile.mkdtemp(prefix="sae-bench-"))
    try:
        return measure(bench, data_root, log, tmp)
    finally:
        if bench.keep_stores:
            log(f"the benchmark's scratch stores are kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def measure(
    bench: BenchConfig, data_root: str, log: Callable[[str], None], tmp: Path
) -> dict[str, Any]:
    """``run``'s measurements, with ``tmp`` its scratch folder: each part named in
    ``bench.parts``, in PARTS order, adds its figures."""
    (tmp / "mlflow.yaml").write_text(
        "tracking_uri: sqlite:///mlflow.db\nartifact_location: mlartifacts\n"
        "optuna_storage: optuna.journal\n"
    )
    cfg = Config(
        data=DataConfig(root=data_root, train_size=bench.images),
        # the probe is measured on its own (part "probe"), not inside every timed epoch
        train=TrainConfig(epochs=1, device=bench.device, amp=bench.amp, probe=False),
        tracking=TrackingConfig(config_file=str(tmp / "mlflow.yaml"), log_model=False),
    )
    context = Context(bench, data_root, log, tmp, resolve_device(bench.device), cfg)
    for name, part in PART_STEPS.items():
        if name in bench.parts:
            context.results.update(part(context))
    return context.results


def throughput(c: Context) -> dict[str, float]:
    """The core against the seed's loop, alternating the two so that both see the same machine
    state; medians of ``repeats``."""
    splits = load_splits(c.cfg.data, c.device)
    core, seed = [], []
    for i in range(c.bench.repeats):
        core.append(core_images_per_s(c.cfg, splits))
        seed.append(seed_loop_images_per_s(c.data_root, c.bench.images, c.device))
        c.log(f"throughput repeat {i + 1}: core {core[-1]:,.0f}, seed loop {seed[-1]:,.0f} img/s")
    return {
        "core_images_per_s": statistics.median(core),
        "seed_loop_images_per_s": statistics.median(seed),
        "speedup_vs_seed_loop": statistics.median(core) / statistics.median(seed),
    }


def tracking_overhead(c: Context) -> dict[str, float]:
    """A whole epoch (all 60,000 images) with the tracker and without."""
    epoch_cfg = dataclasses.replace(c.cfg, data=dataclasses.replace(c.cfg.data, train_size=None))
    epoch_splits = load_splits(epoch_cfg.data, c.device)
    on, off, end = [], [], []
    for _ in range(c.bench.repeats):
        off.append(tracked_fit_seconds(epoch_cfg, epoch_splits, track=False)[0])
        seconds, end_of_run = tracked_fit_seconds(epoch_cfg, epoch_splits, track=True)
        on.append(seconds)
        end.append(end_of_run)
    overhead = 100 * (statistics.median(on) / statistics.median(off) - 1)
    c.log(f"tracking overhead {overhead:.2f}% of an epoch")
    return {
        "epoch_seconds_untracked": statistics.median(off),
        "epoch_seconds_tracked": statistics.median(on),
        "tracking_overhead_pct": overhead,
        "tracking_end_of_run_seconds": statistics.median(end),
    }


def evaluation(c: Context) -> dict[str, float]:
    """Evaluation over the whole test set."""
    full = load_splits(dataclasses.replace(c.cfg.data, train_size=100), c.device)
    return {"eval_ms_10k": eval_ms(c.cfg, full, c.bench.repeats)}


def probe(c: Context) -> dict[str, float]:
    """The linear probe at the end of a run, against the run's time (target: within 5%)."""
    whole = dataclasses.replace(c.cfg.data, train_size=None)
    out = probe_seconds(c.cfg, load_splits(whole, c.device), c.bench.repeats)
    c.log(
        f"probe {out['probe_seconds']:.2f} s, "
        f"{out['probe_pct_of_10_epoch_run']:.1f}% of a 10-epoch run"
    )
    return out


def sweep(c: Context) -> dict[str, float]:
    """Sweep throughput in fresh processes: one worker, two workers, then one worker training
    populations of 2 and of every trial."""
    common = [
        *("--root", c.data_root, "--config-file", str(c.tmp / "mlflow.yaml"), "--epochs", "1"),
        *("--train-size", str(c.bench.sweep_train_size), "--test-size", "2000"),
        *("--no-log-model", "--device", c.bench.device, "--trials", str(c.bench.sweep_trials)),
    ]
    runs = [(1, 1, "1w"), (2, 1, "2w"), (1, 2, "pop2")]
    runs.append((1, c.bench.sweep_trials, f"pop{c.bench.sweep_trials}"))
    out: dict[str, float] = {}
    for workers, population, name in runs:
        study = f"bench-{name}-{time.time_ns()}"
        rss, seconds = peak_rss_mb(
            [
                *(sys.executable, "-m", "sae", "sweep", *common),
                *("--workers", str(workers), "--population", str(population)),
                *("--study-name", study),
            ],
            c.tmp,
        )
        out[f"sweep_trials_per_hour_{name}"] = c.bench.sweep_trials / seconds * 3600
        out[f"sweep_peak_rss_mb_{name}"] = rss
        c.log(
            f"sweep, {workers} worker(s), population {population}: "
            f"{c.bench.sweep_trials} trials in {seconds:.1f} s"
        )
    out["sweep_speedup_2w"] = out["sweep_trials_per_hour_2w"] / out["sweep_trials_per_hour_1w"]
    return out


def workers(c: Context) -> dict[str, float]:
    """Whole sweep trials with 1 worker x 2 torch threads and 2 workers x 1 thread, each sweep in
    a fresh process: the figure ``--workers auto``'s rule names (``workers_speedup_2x1``)."""
    b = c.bench
    return workers_figures(
        c.tmp, c.data_root, b.workers_trials, b.workers_epochs, b.workers_train_size, c.log
    )


def memory(c: Context) -> dict[str, float]:
    """Peak memory of a one-epoch training run, in a fresh process."""
    train = [sys.executable, "-m", "sae", "train", "--root", c.data_root]
    train += ["--epochs", "1", "--no-track", "--device", c.bench.device]
    return {"train_peak_rss_mb": peak_rss_mb(train, c.tmp)[0]}


def arithmetic_bound(c: Context) -> dict[str, float]:
    """FLOPs per training image and a matrix product's rate; with the throughput part, what
    the core achieves of that rate."""
    train_flops = flops_per_image()["train_flops"]
    out = {"train_mflops_per_image": train_flops / 1e6, "matmul_gflops": matmul_gflops(c.device)}
    if "core_images_per_s" in c.results:
        achieved = train_flops * c.results["core_images_per_s"] / 1e9
        out["achieved_gflops"] = achieved
        out["fraction_of_matmul_peak"] = achieved / out["matmul_gflops"]
    return out


def population(c: Context) -> dict[str, float]:
    """Sweep trials trained together as populations of K, as a trial trains: the default
    TrainConfig (probe on, float32) but for the sampled beta, lr and batch size."""
    base = dataclasses.replace(
        c.cfg,
        data=dataclasses.replace(c.cfg.data, train_size=c.bench.population_train_size),
        train=TrainConfig(epochs=c.bench.population_epochs, device=c.bench.device),
    )
    out = {} if "matmul_gflops" in c.results else {"matmul_gflops": matmul_gflops(c.device)}
    peak = {**c.results, **out}["matmul_gflops"]
    splits = load_splits(base.data, c.device)
    return {**out, **population_figures(base, splits, c.bench.population_ks, peak, c.log)}


def pruning(c: Context) -> dict[str, float]:
    """The default rule replayed on the recorded sweeps (recorded), and the Pareto sweep with and
    without its pruner, each sweep in a fresh process (small: every seed; full: the first), for
    each setting in ``pruning_settings``."""
    out: dict[str, float] = {}
    for setting in c.bench.pruning_settings:
        if setting == "recorded":
            out.update(recorded_figures(c.log))
            continue
        trials, epochs, images = pruning_size(c.bench, setting)
        argv = ["--trials", str(trials), "--epochs", str(epochs), "--device", c.bench.device]
        if images is not None:
            argv += ["--train-size", str(images)]
        seeds = c.bench.pruning_seeds if setting == "small" else c.bench.pruning_seeds[:1]
        out.update(pruning_figures(c.tmp, c.data_root, setting, argv, seeds, c.log))
    return out


FULL_PRUNING = (30, 10, None)
"""The pruning part's full setting: the default sweep's trials, epochs and images (all)."""


def pruning_size(bench: BenchConfig, setting: str) -> tuple[int, int, int | None]:
    """The trials, epochs and training images (None: all) of each sweep of ``setting``."""
    if setting == "full":
        return FULL_PRUNING
    return bench.pruning_trials, bench.pruning_epochs, bench.pruning_train_size


def frontiers(c: Context) -> dict[str, float]:
    """The l1, kl and topk fronts over the seeds (``sae.bench.frontiers.bench_grid``)."""
    return grids(c, "family")


def samplers(c: Context) -> dict[str, float]:
    """The samplers' hypervolumes after 10, 20 and 30 trials over the seeds."""
    return grids(c, "sampler")


def grids(c: Context, by: str) -> dict[str, float]:
    from sae.bench.frontiers import bench_grid

    b = c.bench
    # a trial as the sweep trains it (the probe on); the setting chooses epochs and data sizes
    base = dataclasses.replace(c.cfg, train=TrainConfig(device=b.device, amp=b.amp))
    journal = str(c.tmp / "optuna.journal")
    grid = (b.grid_setting, b.grid_samplers, b.grid_seeds, b.grid_trials)
    return bench_grid(base, journal, by, *grid, log=c.log)


PART_STEPS: dict[str, Callable[[Context], dict[str, float]]] = {
    "throughput": throughput,
    "tracking": tracking_overhead,
    "eval": evaluation,
    "probe": probe,
    "sweep": sweep,
    "memory": memory,
    "flops": arithmetic_bound,
    "workers": workers,
    "population": population,
    "pruning": pruning,
    "frontiers": frontiers,
    "samplers": samplers,
}
"""Each part's step: the figures it adds to the run's. ``measure`` runs them in this order."""
