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
from sae.config import Config, DataConfig, ModelConfig, TrainConfig
from sae.model import LAYER_NAMES, SparseAutoencoder
from sae.order import ScriptOrder, SeededOrder, make_order
from sae.penalties import penalty
from sae.probe import Encoder, as_encoder, encode_many, probe_accuracy

MAX_LOSS = 1e6
"""A training loss above this has diverged, like NaN: the images are in [0, 1], so a loss this
large means blown-up weights or a runaway penalty, from which a run does not come back."""


class NonFiniteLossError(RuntimeError):
    """The training loss diverged (NaN, infinite, or above MAX_LOSS); the run cannot go on."""


class DeadNetworkError(RuntimeError):
    """The freshly initialised network has a layer that is zero on every training image: no
    gradient can pass it, so the run can never learn to reconstruct. Raised before any step."""


DEAD_SCAN_FIRST = 1000
"""Images a fresh network is first checked on; only a layer dead on all of them is checked on the
whole training set, so a network that is alive pays for one forward pass of these."""


def diverged(value: float) -> bool:
    return not math.isfinite(value) or value > MAX_LOSS


@dataclass(frozen=True)
class Splits:
    """The images of both splits, uint8 (N, 28, 28), on the training device."""

    train: torch.Tensor
    test: torch.Tensor
    digest: str
    """Identifies the exact data files (``sae.data.dataset_digest``)."""
    train_labels: torch.Tensor | None = None
    """The digits of ``train``, int64 (N,), on the same device; None without labels (no probe)."""
    test_labels: torch.Tensor | None = None


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

    @property
    def degenerate_reason(self) -> str | None:
        """Why the last evaluation shows a collapsed model (``metrics.degenerate_reason``)."""
        return M.degenerate_reason(self.final) if self.history else None


def resolve_device(name: str) -> torch.device:
    """``auto`` is cuda when present, else cpu; asking for cuda without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but no CUDA device is available; use --device cpu")
    return torch.device(name)


def data_files(cfg: DataConfig) -> tuple[sae_data.FileSpec, ...]:
    """The four files ``cfg`` reads: its manifest's, else canonical MNIST."""
    return sae_data.load_manifest(cfg.manifest) if cfg.manifest else sae_data.MNIST_FILES


def split_sizes(cfg: DataConfig) -> tuple[int, int]:
    """The training and test images a run on ``cfg`` uses: its sizes, else whole splits.

    Raises ValueError when a size asks for more images than its split holds (the counts that
    loading verifies), so no run is logged with a size it does not train on.
    """
    counts = {spec.name: spec.count for spec in data_files(cfg)}  # the four, always
    sizes = []
    for name, size, what, split in (
        ("train_size", cfg.train_size, "training", counts[sae_data.TRAIN_IMAGES]),
        ("test_size", cfg.test_size, "test", counts[sae_data.TEST_IMAGES]),
    ):
        if size is not None and size > split:
            raise ValueError(
                f"{name} {size} is more than the {split:,} {what} images of the data: pass at "
                f"most {split}, or leave it unset for all of them"
            )
        sizes.append(split if size is None else size)
    return sizes[0], sizes[1]


def load_splits(
    cfg: DataConfig, device: torch.device, log: Callable[[str], None] | None = None
) -> Splits:
    """Prepare (fetch and verify on first use) and load both splits onto ``device``; a size the
    data cannot honour is refused first (``split_sizes``)."""
    split_sizes(cfg)
    files = data_files(cfg)
    raw = sae_data.prepare(Path(cfg.root), files, log=log or (lambda _msg: None))
    train, train_labels = sae_data.load_split(raw, train=True, files=files)
    test, test_labels = sae_data.load_split(raw, train=False, files=files)
    return Splits(
        train=train[: cfg.train_size].to(device),
        test=test[: cfg.test_size].to(device),
        digest=sae_data.dataset_digest(files),
        train_labels=train_labels[: cfg.train_size].to(device),
        test_labels=test_labels[: cfg.test_size].to(device),
    )


@torch.inference_mode()
def dead_layer(model: SparseAutoencoder, images: torch.Tensor, batch: int = 2000) -> str | None:
    """Why ``model`` is dead on every one of ``images`` (uint8 (N, 28, 28)), or None.

    A layer whose ReLU output is zero on every image passes no gradient, so nothing before it can
    learn and nothing after it can depend on the input. Checked on the first DEAD_SCAN_FIRST
    images; a layer dead there is checked on all of them.
    """
    was_training = model.training
    model.eval()
    try:
        suspects = _dead_layers(model, images[:DEAD_SCAN_FIRST], batch)
        if suspects and len(images) > DEAD_SCAN_FIRST:
            suspects = [s for s in _dead_layers(model, images, batch) if s in suspects]
    finally:
        model.train(was_training)
    if not suspects:
        return None
    layer = suspects[-1] if "dec3" in suspects else suspects[0]
    what = "the output" if layer == "dec3" else f"layer {layer}"
    return f"{what} is zero on every one of the {len(images):,} training images"


def _dead_layers(model: SparseAutoencoder, images: torch.Tensor, batch: int) -> list[str]:
    alive = None
    for start in range(0, images.shape[0], batch):
        _, acts = model(M.to_float(images[start : start + batch]))
        on = torch.stack([(act > 0).any() for act in acts])
        alive = on if alive is None else alive | on
    return [layer for layer, on in zip(LAYER_NAMES, alive.tolist(), strict=True) if not on]


def dead_at_init(cfg: ModelConfig, seed: int, images: torch.Tensor) -> str | None:
    """Why the network that ``fit`` builds for ``seed`` is dead before training, or None.

    Builds it as ``fit`` does (``torch.manual_seed(seed)``, then the model), on ``images``'
    device; this draws from PyTorch's global generator, as ``fit`` does anyway.
    """
    torch.manual_seed(seed)
    model = SparseAutoencoder(cfg).to(images.device, memory_format=torch.channels_last)
    return dead_layer(model, images)


def alive_seeds(
    n: int, cfg: ModelConfig, images: torch.Tensor, start: int = 1, skip: Sequence[int] = ()
) -> tuple[list[int], dict[int, str]]:
    """The first ``n`` seeds from ``start`` (leaving out ``skip``) whose network is alive at
    initialisation on ``images``, and the seeds passed over with the reason."""
    alive: list[int] = []
    dead: dict[int, str] = {}
    seed = start
    while len(alive) < n:
        if seed - start > 100 * n + 1000:
            raise ValueError(f"no {n} seeds alive at initialisation from seed {start}")
        if seed not in skip:
            why = dead_at_init(cfg, seed, images)
            if why is None:
                alive.append(seed)
            else:
                dead[seed] = why
        seed += 1
    return alive, dead


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
    order = make_order(tc.data_order, tc.seed)  # right after the model, as the seed's script
    # CPU reads of a scalar are free, so check every step there; on a GPU a read is a host sync,
    # so the check rides on the periodic report.
    check_every = 1 if device.type == "cpu" else tc.log_every
    # Mixed precision: the forward pass in float16, the loss scaled so small gradients survive.
    autocast = torch.autocast(device.type, dtype=torch.float16, enabled=tc.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=tc.amp)
    result = FitResult(model=model)
    for cb in callbacks:
        cb.on_fit_start(model, cfg, splits)
    dead = dead_layer(model, splits.train)
    if dead:
        raise DeadNetworkError(f"dead at initialisation: {dead}; no gradient can reach the weights")

    n = splits.train.shape[0]
    step = 0
    for epoch in range(1, tc.epochs + 1):
        model.train()
        batches_order = order.train(n).to(device)
        # Sums stay on the device: (loss, mse, penalty) over the epoch and since the last report.
        epoch_sums = torch.zeros(3, device=device)
        window_sums = torch.zeros(3, device=device)
        window_steps = 0
        started = time.perf_counter()
        for start in range(0, n, tc.batch_size):
            # batch
            x = M.to_float(
                splits.train[batches_order[start : start + tc.batch_size]]
            )  # (B, 1, 28, 28)
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
                raise NonFiniteLossError(non_finite_message(epoch, step, loss.item()))
            for cb in callbacks:
                cb.on_step(step)
            # periodic report
            if step % tc.log_every == 0:
                values = (window_sums / window_steps).tolist()
                if diverged(values[0]):
                    raise NonFiniteLossError(non_finite_message(epoch, step, values[0]))
                for cb in callbacks:
                    cb.on_log(step, dict(zip(M.TRAIN_STEP_METRICS, values, strict=True)))
                window_sums.zero_()
                window_steps = 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started

        record = epoch_record(model, splits, tc, order, epoch_sums, epoch, step, seconds)
        result.history.append(record)
        for cb in callbacks:
            cb.on_epoch_end(epoch, step, record, model)

    for cb in callbacks:
        cb.on_fit_end(model, result.history)
    return result


def epoch_record(
    model: SparseAutoencoder,
    splits: Splits,
    tc: TrainConfig,
    order: SeededOrder | ScriptOrder,
    epoch_sums: torch.Tensor,
    epoch: int,
    step: int,
    seconds: float,
) -> dict[str, float]:
    """fit()'s record of epoch ``epoch`` for its one model: ``training_means``, then
    ``evaluation_records`` with K = 1."""
    record = training_means(splits, tc, epoch_sums, epoch, step, seconds)
    model.eval()
    forward, encoder = M.as_forward(model), as_encoder(model)
    record.update(evaluation_records(forward, encoder, splits, [tc], [order], epoch)[0])
    model.train()
    return record


def training_means(
    splits: Splits,
    tc: TrainConfig,
    epoch_sums: torch.Tensor,
    epoch: int,
    step: int,
    seconds: float,
) -> dict[str, float]:
    """The part of epoch ``epoch``'s record taken while training: the mean training (loss, mse,
    penalty) from ``epoch_sums`` and the speed. A diverged mean loss raises NonFiniteLossError."""
    n = splits.train.shape[0]
    loss_mean, mse_mean, pen_mean = (epoch_sums / math.ceil(n / tc.batch_size)).tolist()
    if diverged(loss_mean):
        raise NonFiniteLossError(non_finite_message(epoch, step, loss_mean))
    return {
        M.EPOCH_LOSS: loss_mean,
        M.EPOCH_MSE: mse_mean,
        M.EPOCH_PENALTY: pen_mean,
        M.PERF_IMAGES_PER_S: n / seconds,
        M.PERF_EPOCH_SECONDS: seconds,
    }


def evaluation_records(
    forward: M.Forward,
    encoder: Encoder,
    splits: Splits,
    cfgs: Sequence[TrainConfig],
    orders: Sequence[SeededOrder | ScriptOrder],
    epoch: int,
) -> list[dict[str, float]]:
    """The rest of epoch ``epoch``'s record for K models, in one pass for all: the evaluation on
    the whole test split (model k in ``orders[k]``'s test order, with its ``cfgs[k]``) and, at
    the last epoch, the probe. ``epochs`` and ``probe`` are common to the ``cfgs``."""
    n_test = splits.test.shape[0]
    records = M.evaluate_many(forward, splits.test, cfgs, [o.test(n_test) for o in orders])
    if epoch == cfgs[0].epochs and cfgs[0].probe and splits.train_labels is not None:
        for record, probe in zip(records, probe_metrics(encoder, splits), strict=True):
            record.update(probe)
    return records


def probe_metrics(encoder: Encoder, splits: Splits) -> list[dict[str, float]]:
    """Each of K models' linear probe test accuracy from its codes, and its wall time: an equal
    share of encoding both splits for all K at once, plus fitting its own probe."""
    started = time.perf_counter()
    train_codes = encode_many(encoder, splits.train)  # (K, N, 64)
    test_codes = encode_many(encoder, splits.test)
    share = (time.perf_counter() - started) / len(train_codes)
    out = []
    for train_code, test_code in zip(train_codes, test_codes, strict=True):
        started = time.perf_counter()
        accuracy = probe_accuracy(train_code, splits.train_labels, test_code, splits.test_labels)
        out.append(
            {M.PROBE_ACCURACY: accuracy, M.PROBE_SECONDS: share + time.perf_counter() - started}
        )
    return out


def non_finite_message(epoch: int, step: int, value: float) -> str:
    """Why a run was stopped for a diverged loss, in one line naming the fix."""
    what = f"{value}" if not math.isfinite(value) else f"{value:.3g} (above {MAX_LOSS:g}: diverged)"
    return (
        f"training loss became {what} at epoch {epoch}, step {step}; "
        "lower lr or beta (the run was stopped)"
    )
