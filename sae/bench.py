"""Benchmarks: the training core against the seed's own loop, tracking overhead, evaluation,
sweep throughput, peak memory, the arithmetic bound, and sweep trials trained as populations.

The reference loop is written here as a user of the seed would run it: torchvision's MNIST with
``ToTensor``, a shuffled ``DataLoader`` of batch 100, six ReLU layers and the seed's penalty.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import simple_parsing
import torch
import torch.nn.functional as F
from torch import nn

from sae import metrics as M
from sae.config import Config, DataConfig, Device, TrackingConfig, TrainConfig, check_types
from sae.model import LAYER_NAMES, LAYER_SHAPES, SparseAutoencoder
from sae.population import Member, fit_population
from sae.train import Splits, fit, load_splits


class SeedModel(nn.Module):
    """The seed's autoencoder as its script writes it: six layers, ReLU after each."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Conv2d(1, 16, 3, stride=2, padding=1)
        self.enc2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.enc3 = nn.Conv2d(32, 64, 7)
        self.dec1 = nn.ConvTranspose2d(64, 32, 7)
        self.dec2 = nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1)
        self.dec3 = nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        acts = []
        for layer in (self.enc1, self.enc2, self.enc3, self.dec1, self.dec2, self.dec3):
            x = F.relu(layer(x))
            acts.append(x)
        return x, acts


def seed_loss(model: SeedModel, x: torch.Tensor, weight: float = 1e-4) -> torch.Tensor:
    """The seed's loss: MSE plus weight x the sum over all six layers of mean |activation|."""
    out, acts = model(x)
    return F.mse_loss(out, x) + weight * sum(torch.mean(torch.abs(a)) for a in acts)


def seed_loop_images_per_s(
    root: str, images: int | None, device: torch.device, seed: int = 1
) -> float:
    """Train the reference loop on the first ``images`` training images (None: a whole epoch of
    all 60,000); training images/s.

    On a GPU it does what a user of the seed would: the model on the device and each batch
    copied there from the DataLoader.
    """
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    data = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    if images is not None:
        data = Subset(data, range(images))
    loader = DataLoader(data, batch_size=100, shuffle=True)
    model = SeedModel().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    started = time.perf_counter()
    for x, _ in loader:
        loss = seed_loss(model, x.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _synchronize(device)
    return len(data) / (time.perf_counter() - started)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def core_images_per_s(cfg: Config, splits: Splits) -> float:
    """One epoch of the core's training steps (evaluation excluded), untracked."""
    return fit(cfg, splits).history[0][M.PERF_IMAGES_PER_S]


def flops_per_image() -> dict[str, float]:
    """Multiply-adds of each layer from its shapes, and the training FLOPs per image.

    Forward: a convolution costs C_out*H_out*W_out*C_in*k*k multiply-adds, a transposed one
    C_in*H_in*W_in*C_out*k*k. Backward costs the same again for the weight gradient and again
    for the input gradient, except in the first layer, whose input needs none. A multiply-add
    is 2 FLOPs; bias, activations, penalty and optimiser are left out (they are O(elements)).
    """
    model = SparseAutoencoder()
    macs = {}
    shapes = {"input": (1, 28, 28), **LAYER_SHAPES}
    previous = "input"
    for name in LAYER_NAMES:
        layer = getattr(model, name)
        k = layer.kernel_size[0] * layer.kernel_size[1]
        c_in, h_in, w_in = shapes[previous]
        c_out, h_out, w_out = shapes[name]
        if isinstance(layer, nn.ConvTranspose2d):
            macs[name] = c_in * h_in * w_in * c_out * k
        else:
            macs[name] = c_out * h_out * w_out * c_in * k
        previous = name
    forward = 2 * sum(macs.values())
    backward = 2 * sum(2 * m for m in macs.values()) - 2 * macs[LAYER_NAMES[0]]
    return {"forward_flops": forward, "train_flops": forward + backward, **macs}


def matmul_gflops(device: torch.device, size: int = 1024, repeats: int = 20) -> float:
    """What torch reaches on a large float32 matrix product on ``device``: a practical peak.

    On a GPU the size grows to 8192, where a smaller product would not fill the chip.
    """
    if device.type == "cuda":
        size, repeats = 8192, 10
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def eval_ms(cfg: Config, splits: Splits, repeats: int) -> float:
    model = SparseAutoencoder(cfg.model).to(splits.test.device, memory_format=torch.channels_last)
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        M.evaluate(model, splits.test, cfg.train, torch.Generator().manual_seed(i))
        _synchronize(splits.test.device)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[1:])  # the first pass warms the kernels up


def probe_seconds(cfg: Config, splits: Splits, repeats: int) -> dict[str, float]:
    """The linear probe's cost against a 10-epoch run's: one epoch is trained and evaluated
    (timed), then the probe (encoding both splits and fitting) is timed ``repeats`` times."""
    from sae.probe import encode, probe_accuracy

    trained = fit(cfg, splits)
    epoch = trained.final[M.PERF_EPOCH_SECONDS] + eval_ms(cfg, splits, 1) / 1000
    times, accuracy = [], 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        accuracy = probe_accuracy(
            encode(trained.model, splits.train),
            splits.train_labels,
            encode(trained.model, splits.test),
            splits.test_labels,
        )
        _synchronize(splits.train.device)
        times.append(time.perf_counter() - started)
    probe = statistics.median(times)
    return {
        "probe_seconds": probe,
        "probe_accuracy_after_1_epoch": accuracy,
        "ten_epoch_run_seconds": 10 * epoch,
        "probe_pct_of_10_epoch_run": 100 * probe / (10 * epoch + probe),
    }


def tracked_fit_seconds(cfg: Config, splits: Splits, track: bool) -> tuple[float, float]:
    """Wall time of fit() with or without the MLflow tracker, less the tracker's once-per-run
    end (curves, histograms, model), which is returned apart: (seconds, end-of-run seconds)."""
    if not track:
        started = time.perf_counter()
        fit(cfg, splits)
        return time.perf_counter() - started, 0.0
    from sae import tracking

    settings = tracking.load_settings(cfg.tracking.config_file, cfg.tracking.tracking_uri)
    with tracking.tracked_run(cfg, settings, kind="benchmarks-tracking") as tracker:
        started = time.perf_counter()
        fit(cfg, splits, [tracker])
        seconds = time.perf_counter() - started
    return seconds - tracker.seconds_end_of_run, tracker.seconds_end_of_run


def sweep_trial_params(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """The parameters of ``count`` trials drawn from the sweep's default space as a sweep with
    the random sampler draws them (``suggest`` on trials of an in-memory study). The draws do not
    depend on ``count``: the first two of four are the two of two."""
    import optuna

    from sae.sweep.config import SweepConfig
    from sae.sweep.space import build_space, suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line for the in-memory study
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    space = build_space(SweepConfig())
    return [suggest(study.ask(), space) for _ in range(count)]


WARM_UP_IMAGES = 1_000
"""Images of each split in the untimed run before the populations are timed."""


def population_figures(
    base: Config,
    splits: Splits,
    ks: Sequence[int],
    peak_gflops: float,
    log: Callable[[str], None],
    sampler_seed: int = 0,
) -> dict[str, float]:
    """Sweep trials trained as populations, for each K in ``ks``; a flat dict of figures.

    K trials' parameters are drawn as the sweep draws them (``sweep_trial_params``: the same
    draws for every K, so K=2 trains K=4's first two), made configs as the sweep makes them
    (``base`` with the trial's beta, lr and batch size), grouped by batch size, and each group
    trained as one population (``fit_population``) for ``base.train.epochs`` epochs, with the
    evaluation and the probe a trial has, untracked (the tracking part measures the tracker's
    cost). Per K (keys ``population_k{K}_...``):

    - ``trials_per_hour``: K trials over the wall time of all groups, projected to the sweep's
      epochs (``TrainConfig().epochs``, 10) by scaling the measured epochs linearly. What a trial
      does once (its start, the probe) is scaled too, so from one measured epoch the projection
      is on the slow side.
    - ``images_per_s``: all members' training images over the groups' training seconds
      (``perf/epoch_seconds``: evaluation and probe excluded).
    - ``fraction_of_matmul_peak``: those images/s times the training FLOPs per image, over
      ``peak_gflops``.
    - ``groups``: batch-size groups, trained one after another; ``failed``: members that left
      their population early (a diverged loss, a dead network), counted as trials as a sweep
      counts them.

    - ``speedup_vs_alone``: the wall time of the same K trials trained alone, one after another
      with ``fit`` (as the sweep trains without --population), over the population's: the fair
      comparison, since trials/hour depends on the mix of batch sizes drawn.

    Also ``population_alone_trials_per_hour`` (all the drawn trials alone), then
    ``population_best_k`` (the most trials per hour) and, when K=1 was measured,
    ``population_speedup_best_vs_k1``. The first trial is trained once untimed on the first
    ``WARM_UP_IMAGES`` images of each split, so that K=1, measured first, does not pay for the
    device's first kernels.
    """
    params = sweep_trial_params(max(ks), sampler_seed)
    epochs = base.train.epochs
    projected = TrainConfig().epochs
    n = splits.train.shape[0]
    train_flops = flops_per_image()["train_flops"]
    device = splits.train.device

    def members(trials: list[dict[str, Any]]) -> list[Member]:
        return [
            Member(dataclasses.replace(base, train=dataclasses.replace(base.train, **p)))
            for p in trials
        ]

    head = {
        name: getattr(splits, name)[:WARM_UP_IMAGES]
        for name in ("train", "test", "train_labels", "test_labels")
        if getattr(splits, name) is not None
    }
    fit_population(members(params[:1]), dataclasses.replace(splits, **head))

    # The same trials alone, one after another, as the sweep trains them without --population
    alone = []
    for member in members(params):
        _synchronize(device)
        started = time.perf_counter()
        fit(member.cfg, splits)
        _synchronize(device)
        alone.append(time.perf_counter() - started)
    out: dict[str, float] = {
        "population_alone_trials_per_hour": len(alone) * 3600 / (sum(alone) * projected / epochs)
    }
    log(
        f"alone: {len(alone)} trial(s) one after another in {sum(alone):.1f} s, "
        f"{out['population_alone_trials_per_hour']:,.0f} trials/h projected to {projected} epochs"
    )
    for k in ks:
        groups: dict[int, list[dict[str, Any]]] = {}
        for p in params[:k]:
            groups.setdefault(p["batch_size"], []).append(p)
        _synchronize(device)
        started = time.perf_counter()
        outcomes = [fit_population(members(group), splits) for group in groups.values()]
        _synchronize(device)
        wall = time.perf_counter() - started
        # the members of a group share each epoch's training seconds; the longest history has
        # every epoch the group trained
        seconds = sum(
            max(sum(r[M.PERF_EPOCH_SECONDS] for r in o.result.history) for o in group)
            for group in outcomes
        )
        images = n * sum(len(o.result.history) for group in outcomes for o in group)
        images_per_s = images / seconds if seconds else 0.0
        fraction = train_flops * images_per_s / 1e9 / peak_gflops
        failed = sum(o.error is not None for group in outcomes for o in group)
        trials_per_hour = k * 3600 / (wall * projected / epochs)
        key = f"population_k{k}"
        out[f"{key}_trials_per_hour"] = trials_per_hour
        out[f"{key}_images_per_s"] = images_per_s
        out[f"{key}_fraction_of_matmul_peak"] = fraction
        out[f"{key}_groups"] = len(groups)
        out[f"{key}_failed"] = failed
        out[f"{key}_speedup_vs_alone"] = sum(alone[:k]) / wall
        log(
            f"population K={k}: {k} trial(s) of {epochs} epoch(s) in {wall:.1f} s as "
            f"{len(groups)} population(s) by batch size, {images_per_s:,.0f} training img/s "
            f"({fraction:.2%} of matmul peak), {failed} failed; {trials_per_hour:,.0f} trials/h "
            f"projected to {projected} epochs ({epochs} measured, scaled linearly); "
            f"{sum(alone[:k]) / wall:.2f}x the same trials alone"
        )
    best = max(ks, key=lambda k: out[f"population_k{k}_trials_per_hour"])
    out["population_best_k"] = best
    if 1 in ks:
        out["population_speedup_best_vs_k1"] = (
            out[f"population_k{best}_trials_per_hour"] / out["population_k1_trials_per_hour"]
        )
    return out


# Linux counts a forked child's peak memory from its parent's at the fork (exec records the old
# address space's high-water mark), so the command is started from a small Python process.
_MEASURE = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "print(usage.ru_maxrss)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def peak_rss_mb(command: list[str], cwd: Path) -> tuple[float, float]:
    """Run ``command``; its peak resident memory (MB, its waited-for children included) and
    wall seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], cwd=cwd, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command[1:4])} failed: {done.stderr[-500:]}")
    return int(done.stdout.strip()) / 1024, seconds


def machine(device: torch.device) -> dict[str, str]:
    """The machine as tags: CPU, cores, threads, versions, and the device the figures are for."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu",
    }


PARTS = ("throughput", "tracking", "eval", "probe", "sweep", "memory", "flops", "population")
"""The measurements ``run`` can make, in the order it makes them."""


def parse_parts(text: str) -> tuple[str, ...]:
    """argparse type of ``--parts``: comma-separated names from ``PARTS``."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown part {', '.join(unknown) or '(none)'}; choose from {','.join(PARTS)}"
        )
    return names


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
        for name in ("repeats", "sweep_trials", "sweep_train_size", "population_epochs"):
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


def run(bench: BenchConfig, data_root: str, log: Callable[[str], None]) -> dict[str, Any]:
    """The measurements of the benchmark issue named in ``bench.parts``; a flat dict of figures."""
    from sae.train import resolve_device

    device = resolve_device(bench.device)
    results: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="sae-bench-"))
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
    return results


def write_json(results: dict[str, Any], info: dict[str, str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"machine": info, "results": results}, indent=2, sort_keys=True))
    tmp.replace(path)
