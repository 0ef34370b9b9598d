"""The training core: ``fit()`` trains the autoencoder and reports through callbacks.

It knows nothing of MLflow or Optuna, so it runs the same with tracking off, in a test or inside a
trial. Data stay on the device as uint8 tensors and are converted one batch at a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from sae import data as sae_data
from sae import metrics as M
from sae.config import Config, DataConfig, TrainConfig
from sae.model import SparseAutoencoder
from sae.penalties import penalty

MAX_LOSS = 1e6
"""A training loss above this has diverged, like NaN: the images are in [0, 1], so a loss this
large means blown-up weights or a runaway penalty, from which a run does not come back."""


class NonFiniteLossError(RuntimeError):
    """The training loss diverged (NaN, infinite, or above MAX_LOSS); the run cannot go on."""


def diverged(value: float) -> bool:
    return not math.isfinite(value) or value > MAX_LOSS


@dataclass(frozen=True)
class Splits:
    """The images of both splits, uint8 (N, 28, 28), on the training device."""

    train: torch.Tensor
    test: torch.Tensor
    digest: str
    """Identifies the exact data files (``sae.data.dataset_digest``)."""


class Callback:
    """Hooks ``fit()`` calls; every method is optional. Raising from one stops training."""

    def on_fit_start(self, model: SparseAutoencoder, cfg: Config, splits: Splits) -> None: ...

    def on_step(self, step: int) -> None:
        """After every optimiser step; must be cheap (progress bars)."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """Every ``log_every`` steps: the TRAIN_STEP_METRICS averaged since the last call."""

    def on_epoch_end(
        self, epoch: int, step: int, metrics: dict[str, float], model: SparseAutoencoder
    ) -> None:
        """After each epoch's evaluation: EPOCH_METRICS and EVAL_METRICS for that epoch."""

    def on_fit_end(self, model: SparseAutoencoder, history: list[dict[str, float]]) -> None: ...


@dataclass
class FitResult:
    model: SparseAutoencoder
    history: list[dict[str, float]] = field(default_factory=list)
    """One dict of EPOCH_METRICS and EVAL_METRICS per epoch."""

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def resolve_device(name: str) -> torch.device:
    """``auto`` is cuda when present, else cpu; asking for cuda without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but no CUDA device is available; use --device cpu")
    return torch.device(name)


def load_splits(
    cfg: DataConfig, device: torch.device, log: Callable[[str], None] | None = None
) -> Splits:
    """Prepare (fetch and verify on first use) and load both splits onto ``device``."""
    files = sae_data.load_manifest(cfg.manifest) if cfg.manifest else sae_data.MNIST_FILES
    raw = sae_data.prepare(Path(cfg.root), files, log=log or (lambda _msg: None))
    train, _ = sae_data.load_split(raw, train=True, files=files)
    test, _ = sae_data.load_split(raw, train=False, files=files)
    return Splits(
        train=train[: cfg.train_size].to(device),
        test=test[: cfg.test_size].to(device),
        digest=sae_data.dataset_digest(files),
    )


def fit(cfg: Config, splits: Splits, callbacks: Sequence[Callback] = ()) -> FitResult:
    """Train for ``cfg.train.epochs`` epochs, evaluating on the whole test split after each."""
    tc: TrainConfig = cfg.train
    device = splits.train.device
    if tc.amp and device.type != "cuda":
        raise ValueError(f"--amp needs a CUDA device; this run is on {device.type}")
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    model = SparseAutoencoder(cfg.model).to(device, memory_format=torch.channels_last)
    # The fused kernel computes the same Adam update in one pass over the parameters.
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=tc.lr,
        betas=(tc.adam_beta1, tc.adam_beta2),
        eps=tc.adam_eps,
        fused=True,
    )
    shuffle = torch.Generator().manual_seed(tc.seed)
    eval_shuffle = torch.Generator().manual_seed(tc.seed + 1)
    # CPU reads of a scalar are free, so check every step there; on a GPU a read is a host sync,
    # so the check rides on the periodic report.
    check_every = 1 if device.type == "cpu" else tc.log_every
    # Mixed precision: the forward pass in float16, the loss scaled so small gradients survive.
    autocast = torch.autocast(device.type, dtype=torch.float16, enabled=tc.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=tc.amp)
    result = FitResult(model=model)
    for cb in callbacks:
        cb.on_fit_start(model, cfg, splits)

    n = splits.train.shape[0]
    step = 0
    for epoch in range(1, tc.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=shuffle).to(device)
        # Sums stay on the device: (loss, mse, penalty) over the epoch and since the last report.
        epoch_sums = torch.zeros(3, device=device)
        window_sums = torch.zeros(3, device=device)
        window_steps = 0
        started = time.perf_counter()
        for start in range(0, n, tc.batch_size):
            # batch
            x = M.to_float(splits.train[order[start : start + tc.batch_size]])  # (B, 1, 28, 28)
            # forward and loss
            with autocast:
                recon, acts = model(x)
                mse = F.mse_loss(recon.float(), x)
                pen = penalty(acts, tc).float()
                loss = mse + pen
            # backward and step
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            window_steps += 1
            parts = torch.stack((loss.detach(), mse.detach(), pen.detach()))
            epoch_sums += parts
            window_sums += parts
            if step % check_every == 0 and diverged(loss.item()):
                raise NonFiniteLossError(_non_finite_message(epoch, step, loss.item()))
            for cb in callbacks:
                cb.on_step(step)
            # periodic report
            if step % tc.log_every == 0:
                values = (window_sums / window_steps).tolist()
                if diverged(values[0]):
                    raise NonFiniteLossError(_non_finite_message(epoch, step, values[0]))
                for cb in callbacks:
                    cb.on_log(step, dict(zip(M.TRAIN_STEP_METRICS, values, strict=True)))
                window_sums.zero_()
                window_steps = 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started

        # per-epoch evaluation
        batches = math.ceil(n / tc.batch_size)
        loss_mean, mse_mean, pen_mean = (epoch_sums / batches).tolist()
        if diverged(loss_mean):
            raise NonFiniteLossError(_non_finite_message(epoch, step, loss_mean))
        record = {
            M.EPOCH_LOSS: loss_mean,
            M.EPOCH_MSE: mse_mean,
            M.EPOCH_PENALTY: pen_mean,
            M.PERF_IMAGES_PER_S: n / seconds,
            M.PERF_EPOCH_SECONDS: seconds,
            **M.evaluate(model, splits.test, tc, eval_shuffle),
        }
        result.history.append(record)
        for cb in callbacks:
            cb.on_epoch_end(epoch, step, record, model)

    for cb in callbacks:
        cb.on_fit_end(model, result.history)
    return result


def _non_finite_message(epoch: int, step: int, value: float) -> str:
    what = f"{value}" if not math.isfinite(value) else f"{value:.3g} (above {MAX_LOSS:g}: diverged)"
    return (
        f"training loss became {what} at epoch {epoch}, step {step}; "
        "lower lr or beta (the run was stopped)"
    )
