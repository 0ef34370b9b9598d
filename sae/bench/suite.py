"""The benchmark as one run: its settings (``BenchConfig``), its parts in order (``run``), and its
figures as JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import simple_parsing

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
from sae.bench.pruning import pruning_figures
from sae.config import Config, DataConfig, Device, TrackingConfig, TrainConfig, check_types
from sae.data.idx import atomic_write
from sae.paths import owned
from sae.train import load_splits

PARTS = (
    "throughput",
    "tracking",
    "eval",
    "probe",
    "sweep",
    "memory",
    "flops",
    "population",
    "pruning",
)
"""The measurements ``run`` can make, in the order it makes them."""


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


PRUNING_SETTINGS = ("small", "full")
parse_parts = comma_separated(PARTS, "part")
"""argparse type of ``--parts``."""
parse_pruning_settings = comma_separated(PRUNING_SETTINGS, "pruning setting")
"""argparse type of ``--pruning-settings``."""


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
        default=("small",), type=parse_pruning_settings, nargs=None
    )
    """comma-separated sweeps of the pruning part: small (the setting above, every seed) and
    full (the default sweep, 30 trials of 10 epochs on all 60,000 images, with the first seed;
    the unpruned one took 70 minutes on 2 CPU cores)"""
    keep_stores: bool = False
    """keep the scratch folder with the benchmark's runs and studies (the pruning part's sweeps
    among them), and print where it is; by default it is removed at the end"""
    device: Device = "auto"
    """auto (cuda when present, else cpu), cpu or cuda"""
    amp: bool = False
    """mixed precision in the core's training steps (CUDA only; populations train in float32)"""
    parts: tuple[str, ...] = simple_parsing.field(default=PARTS, type=parse_parts, nargs=None)
    """comma-separated measurements to make"""

    def __post_init__(self) -> None:
        check_types(self)
        if self.images is not None and self.images < 100:
            raise ValueError(f"--images must be >= 100 (or none: a whole epoch), got {self.images}")
        for name in (
            "repeats",
            "sweep_trials",
            "sweep_train_size",
            "population_epochs",
            "pruning_trials",
            "pruning_epochs",
            "pruning_train_size",
        ):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be >= 1, got {getattr(self, name)}")
        if self.population_train_size is not None and self.population_train_size < 1:
            raise ValueError(
                f"--population-train-size must be >= 1, got {self.population_train_size}"
            )
        ks = self.population_ks
        if not ks or min(ks) < 1 or len(set(ks)) < len(ks):
            raise ValueError(f"--population-ks needs distinct sizes >= 1, got {list(ks)}")
        seeds = self.pruning_seeds
        if not seeds or len(set(seeds)) < len(seeds):
            raise ValueError(f"--pruning-seeds needs distinct seeds, got {list(seeds)}")


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
    """``run``'s measurements, with ``tmp`` its scratch folder."""
    from sae.train import resolve_device

    device = resolve_device(bench.device)
    results: dict[str, Any] = {}
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

    # 1. Throughput, alternating the two loops so that both see the same machine state.
    if "throughput" in bench.parts:
        splits = load_splits(cfg.data, device)
        core, seed = [], []
        for i in range(bench.repeats):
            core.append(core_images_per_s(cfg, splits))
            seed.append(seed_loop_images_per_s(data_root, bench.images, device))
            log(f"throughput repeat {i + 1}: core {core[-1]:,.0f}, seed loop {seed[-1]:,.0f} img/s")
        results["core_images_per_s"] = statistics.median(core)
        results["seed_loop_images_per_s"] = statistics.median(seed)
        results["speedup_vs_seed_loop"] = results["core_images_per_s"] / statistics.median(seed)

    # 2. Tracking overhead: a whole epoch (all 60,000 images) with the tracker and without.
    if "tracking" in bench.parts:
        epoch_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_size=None))
        epoch_splits = load_splits(epoch_cfg.data, device)
        on, off, end = [], [], []
        for _ in range(bench.repeats):
            off.append(tracked_fit_seconds(epoch_cfg, epoch_splits, track=False)[0])
            seconds, end_of_run = tracked_fit_seconds(epoch_cfg, epoch_splits, track=True)
            on.append(seconds)
            end.append(end_of_run)
        results["epoch_seconds_untracked"] = statistics.median(off)
        results["epoch_seconds_tracked"] = statistics.median(on)
        overhead = 100 * (statistics.median(on) / statistics.median(off) - 1)
        results["tracking_overhead_pct"] = overhead
        results["tracking_end_of_run_seconds"] = statistics.median(end)
        log(f"tracking overhead {overhead:.2f}% of an epoch")

    # 3. Evaluation over the whole test set.
    if "eval" in bench.parts:
        full = load_splits(dataclasses.replace(cfg.data, train_size=100), device)
        results["eval_ms_10k"] = eval_ms(cfg, full, bench.repeats)

    # The linear probe at the end of a run, against the run's time (target: within 5%).
    if "probe" in bench.parts:
        whole = dataclasses.replace(cfg.data, train_size=None)
        results.update(probe_seconds(cfg, load_splits(whole, device), bench.repeats))
        log(
            f"probe {results['probe_seconds']:.2f} s, "
            f"{results['probe_pct_of_10_epoch_run']:.1f}% of a 10-epoch run"
        )

    # 4. and 5. Sweep throughput and peak memory, each in fresh processes.
    python = sys.executable
    if "sweep" in bench.parts:
        common = [
            *("--root", data_root, "--config-file", str(tmp / "mlflow.yaml"), "--epochs", "1"),
            *("--train-size", str(bench.sweep_train_size), "--test-size", "2000"),
            *("--no-log-model", "--device", bench.device, "--trials", str(bench.sweep_trials)),
        ]
        # one worker, two workers, then one worker training populations of 2 and of every trial
        runs = [(1, 1, "1w"), (2, 1, "2w"), (1, 2, "pop2")]
        runs.append((1, bench.sweep_trials, f"pop{bench.sweep_trials}"))
        for workers, population, name in runs:
            study = f"bench-{name}-{time.time_ns()}"
            rss, seconds = peak_rss_mb(
                [
                    *(python, "-m", "sae", "sweep", *common),
                    *("--workers", str(workers), "--population", str(population)),
                    *("--study-name", study),
                ],
                tmp,
            )
            results[f"sweep_trials_per_hour_{name}"] = bench.sweep_trials / seconds * 3600
            results[f"sweep_peak_rss_mb_{name}"] = rss
            log(
                f"sweep, {workers} worker(s), population {population}: "
                f"{bench.sweep_trials} trials in {seconds:.1f} s"
            )
        results["sweep_speedup_2w"] = (
            results["sweep_trials_per_hour_2w"] / results["sweep_trials_per_hour_1w"]
        )
    if "memory" in bench.parts:
        train = [python, "-m", "sae", "train", "--root", data_root]
        train += ["--epochs", "1", "--no-track", "--device", bench.device]
        results["train_peak_rss_mb"], _ = peak_rss_mb(train, tmp)

    # 6. The arithmetic bound.
    if "flops" in bench.parts:
        flops = flops_per_image()
        results["train_mflops_per_image"] = flops["train_flops"] / 1e6
        results["matmul_gflops"] = matmul_gflops(device)
        if "core_images_per_s" in results:
            achieved = flops["train_flops"] * results["core_images_per_s"] / 1e9
            results["achieved_gflops"] = achieved
            results["fraction_of_matmul_peak"] = achieved / results["matmul_gflops"]

    # 7. Sweep trials trained together as populations of K, as a trial trains: the default
    # TrainConfig (probe on, float32) but for the sampled beta, lr and batch size.
    if "population" in bench.parts:
        base = dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, train_size=bench.population_train_size),
            train=TrainConfig(epochs=bench.population_epochs, device=bench.device),
        )
        if "matmul_gflops" not in results:
            results["matmul_gflops"] = matmul_gflops(device)
        results.update(
            population_figures(
                base,
                load_splits(base.data, device),
                bench.population_ks,
                results["matmul_gflops"],
                log,
            )
        )

    # 8. The Pareto sweep with and without its pruner, each sweep in a fresh process.
    if "pruning" in bench.parts:
        sizes = {
            "small": (bench.pruning_trials, bench.pruning_epochs, bench.pruning_train_size),
            "full": (30, 10, None),
        }
        for setting in bench.pruning_settings:
            trials, epochs, images = sizes[setting]
            argv = ["--trials", str(trials), "--epochs", str(epochs), "--device", bench.device]
            if images is not None:
                argv += ["--train-size", str(images)]
            seeds = bench.pruning_seeds if setting == "small" else bench.pruning_seeds[:1]
            results.update(pruning_figures(tmp, data_root, setting, argv, epochs, seeds, log))
    return results


def write_json(results: dict[str, Any], info: dict[str, str], path: Path) -> None:
    """Write the figures to ``path`` whole (a temporary file renamed), never through a symbolic
    link at ``path``: refused in one line (``sae.paths.owned``)."""
    path = owned(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"machine": info, "results": results}, indent=2, sort_keys=True)
    atomic_write(path, text.encode("utf-8"))
