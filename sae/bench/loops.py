"""The loops the benchmark times: the seed's own loop as its user would run it (torchvision's
MNIST with ``ToTensor``, a shuffled ``DataLoader`` of batch 100, six ReLU layers and the seed's
penalty), the core's epoch, evaluation, the probe, a tracked run, a command's peak memory, and
the arithmetic bound (FLOPs per image, a matrix product's rate).
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sae import metrics as M
from sae.config import Config
from sae.model import LAYER_NAMES, LAYER_SHAPES, SparseAutoencoder
from sae.splits import Splits
from sae.train import fit


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
    synchronize(device)
    return len(data) / (time.perf_counter() - started)


def synchronize(device: torch.device) -> None:
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
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def eval_ms(cfg: Config, splits: Splits, repeats: int) -> float:
    model = SparseAutoencoder(cfg.model).to(splits.test.device, memory_format=torch.channels_last)
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        M.evaluate(model, splits.test, cfg.train, torch.Generator().manual_seed(i))
        synchronize(splits.test.device)
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
        synchronize(splits.train.device)
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
