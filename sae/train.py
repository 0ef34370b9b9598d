"""The training core: one loop, ``fit_members``, trains one autoencoder or a population of them
and reports through callbacks; ``fit()`` is that loop for one run.

The loop owns what every run shares (seeding, the dead-at-initialisation check, the callbacks,
the logging window, divergence, the epoch record, and how a failed member leaves); the optimiser
step is the one thing that differs, in ``sae.steppers``. After each epoch it can hand a member's
state to its callbacks, and go on from such a state (``sae.resume``). It knows nothing of MLflow or
Optuna, so it runs the same with tracking off, in a test or inside a trial. Data stay on the
device as uint8 tensors and are converted one batch at a time.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from sae import metrics as M
from sae import resume
from sae.config import Config, ModelConfig, TrainConfig
from sae.model import LAYER_NAMES, SparseAutoencoder
from sae.order import ScriptOrder, SeededOrder, make_order
from sae.records import evaluation_records
from sae.splits import Splits
from sae.steppers import SoloStep, StackedStep

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


class Callback:
    """Hooks ``fit()`` calls; every method is optional. Raising from one stops training."""

    def on_fit_start(self, model: SparseAutoencoder, cfg: Config, splits: Splits) -> None: ...

    def on_resume(self, epoch: int, step: int, history: list[dict[str, float]]) -> None:
        """After on_fit_start when training goes on after ``epoch``: ``history``, its records."""

    def on_step(self, step: int) -> None:
        """After every optimiser step; must be cheap (progress bars)."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        """Every ``log_every`` steps: the TRAIN_STEP_METRICS averaged since the last call."""

    def on_epoch_end(
        self, epoch: int, step: int, metrics: dict[str, float], model: SparseAutoencoder
    ) -> None:
        """After each epoch's evaluation: EPOCH_METRICS and EVAL_METRICS for that epoch."""

    def on_checkpoint(self, epoch: int, state: resume.State) -> None:
        """After on_epoch_end, if defined: the state to go on from (``Member.resume``)."""

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
    return dead_layer(seeded_model(cfg, seed, images.device), images)


def seeded_model(cfg: ModelConfig, seed: int, device: torch.device) -> SparseAutoencoder:
    """The network a run of ``seed`` starts from: ``torch.manual_seed(seed)``, then the model,
    channels-last on ``device`` (drawn from PyTorch's global generator, as the seed's script)."""
    torch.manual_seed(seed)
    return SparseAutoencoder(cfg).to(device, memory_format=torch.channels_last)


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


@dataclass
class Member:
    """One model to train: its config and the callbacks that see its training (a Tracker, a
    pruner)."""

    cfg: Config
    callbacks: Sequence[Callback] = ()
    resume: resume.State | None = None
    """A state ``on_checkpoint`` gave, checked (``resume.problem``): training goes on from it."""


@dataclass
class Outcome:
    """How a member ended: its result (with its history up to the end) and, if it stopped
    early, why."""

    result: FitResult
    error: BaseException | None = None
    step: int = 0
    """The optimiser steps it took."""


@dataclass
class _Live:
    """A member still training: where its outcome goes, its data order and its running sums
    (loss, mse, penalty) over the epoch and since the last report, on the device."""

    member: Member
    outcome: Outcome
    order: SeededOrder | ScriptOrder
    sums: torch.Tensor
    """(2, 3): the epoch's sums, then the window's."""
    batches: torch.Tensor | None = None
    """This epoch's training order."""
    means: dict[str, float] = field(default_factory=dict)
    """This epoch's training means, once it ends."""

    @property
    def model(self) -> SparseAutoencoder:
        return self.outcome.result.model


def fit(
    cfg: Config,
    splits: Splits,
    callbacks: Sequence[Callback] = (),
    resume: resume.State | None = None,
) -> FitResult:
    """Train for ``cfg.train.epochs`` epochs (after those of ``resume``, a state a callback's
    ``on_checkpoint`` gave), evaluating on the whole test split after each; a failure (a
    diverged loss, a network dead at initialisation, a callback that raises) is raised."""
    outcome = fit_members([Member(cfg, callbacks, resume)], splits)[0]
    if outcome.error is not None:
        raise outcome.error
    return outcome.result


def fit_members(members: Sequence[Member], splits: Splits) -> list[Outcome]:
    """Train every member for the shared ``epochs`` in one loop; one Outcome each, in order.

    One member trains as itself (``SoloStep``); several are stepped together
    (``StackedStep``, see ``sae.population`` for what they must share). A member whose loss
    diverges, whose network is dead at initialisation, or whose callback raises leaves with its
    own error and the others go on unchanged; Ctrl-C (KeyboardInterrupt) stops them all.
    """
    tc = members[0].cfg.train
    device = splits.train.device
    if any(m.cfg.train.amp for m in members) and device.type != "cuda":
        raise ValueError(f"--amp needs a CUDA device; this run is on {device.type}")
    if tc.threads:
        torch.set_num_threads(tc.threads)
    engine = _Engine(members, splits)
    for epoch in range(engine.epoch + 1, tc.epochs + 1):
        if not engine.live:
            break
        seconds = engine.train_epoch(epoch)
        engine.end_epoch(epoch, seconds)
    engine.finish()
    return [live.outcome for live in engine.started]


class _Engine:
    """The state of one ``fit_members`` call: the members still training, in step order, their
    stepper, the steps taken and the epochs done. ``each`` is the one way a member leaves."""

    def __init__(self, members: Sequence[Member], splits: Splits) -> None:
        self.splits, self.tc = splits, members[0].cfg.train
        self.epoch, self.step = resume.start([member.resume for member in members])
        device = splits.train.device
        self.started: list[_Live] = []
        for member in members:
            model = seeded_model(member.cfg.model, member.cfg.train.seed, device)
            # the order right after the model, as the seed's script draws it
            order = make_order(member.cfg.train.data_order, member.cfg.train.seed)
            sums = torch.zeros(2, 3, device=device)
            live = _Live(member, Outcome(FitResult(model=model)), order, sums)
            if member.resume:  # weights, order, window and records as the epoch left them
                history = resume.restore(member.resume, member.cfg, splits, model, order, sums[1])
                live.outcome.result.history.extend(history)
            self.started.append(live)
        self.live = list(self.started)
        self.stepper: SoloStep | StackedStep | None = None  # made for the members that start
        self.each(self._begin)
        if len(self.live) == 1:
            self.stepper = SoloStep(self.live[0].model, self.live[0].member.cfg.train)
        elif self.live:
            cfgs = [live.member.cfg.train for live in self.live]
            self.stepper = StackedStep([m.model for m in self.live], members[0].cfg.model, cfgs)
        for position, live in enumerate(self.live):
            if live.member.resume:
                self.stepper.load_optimizer_state(position, live.member.resume["optimizer"])

    def _begin(self, position: int, live: _Live) -> None:
        for cb in live.member.callbacks:
            cb.on_fit_start(live.model, live.member.cfg, self.splits)
        if live.member.resume:  # alive at initialisation: it trained
            for cb in live.member.callbacks:
                cb.on_resume(self.epoch, self.step, live.outcome.result.history)
            return
        dead = dead_layer(live.model, self.splits.train)
        if dead:
            raise DeadNetworkError(
                f"dead at initialisation: {dead}; no gradient can reach the weights"
            )

    def each(self, call: Callable[[int, _Live], None]) -> None:
        """``call(position, live)`` for every member still training; a member whose call raises
        leaves with that error, its weights and steps as they are, and the rest go on."""
        failed: dict[int, BaseException] = {}
        for position, live in enumerate(self.live):
            try:
                call(position, live)
            except Exception as err:  # this member only
                failed[position] = err
        if not failed:
            return
        for position, err in failed.items():
            live = self.live[position]
            if self.stepper is not None:
                self.stepper.sync(position, live.model)
            live.outcome.error, live.outcome.step = err, self.step
        keep = [i for i in range(len(self.live)) if i not in failed]
        if self.stepper is not None:
            self.stepper.keep(keep)
        self.live = [self.live[i] for i in keep]

    def train_epoch(self, epoch: int) -> float:
        """One epoch of optimiser steps, every member on its own order; its seconds."""
        tc, images = self.tc, self.splits.train
        n = images.shape[0]
        for live in self.live:
            live.batches = live.order.train(n).to(images.device)
            live.sums.zero_()
        # CPU reads of a scalar are free, so check every step there; on a GPU a read is a host
        # sync, so the check rides on the periodic report.
        check_every = 1 if images.device.type == "cpu" else tc.log_every
        window = 0
        started = time.perf_counter()
        for start in range(0, n, tc.batch_size):
            # batch, forward, loss, backward and step, every member at once
            batches = [live.batches[start : start + tc.batch_size] for live in self.live]
            parts = self.stepper.step(images, batches)  # (K, 3) loss, mse, penalty
            self.step += 1
            window += 1
            losses = parts[:, 0].tolist() if self.step % check_every == 0 else None
            report = self.step % tc.log_every == 0
            self.each(functools.partial(self._after_step, epoch, parts, losses, window))
            if report:
                for live in self.live:
                    live.sums[1].zero_()
                window = 0
            if not self.live:
                break
        if images.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    def _after_step(
        self,
        epoch: int,
        parts: torch.Tensor,
        losses: list[float] | None,
        window: int,
        position: int,
        live: _Live,
    ) -> None:
        """Member ``position``'s sums, divergence check and on_step, and every ``log_every``
        steps its periodic report: the TRAIN_STEP_METRICS averaged over the ``window`` steps
        since the last one."""
        live.sums += parts[position]
        if losses is not None and diverged(losses[position]):
            raise NonFiniteLossError(non_finite_message(epoch, self.step, losses[position]))
        for cb in live.member.callbacks:
            cb.on_step(self.step)
        if self.step % self.tc.log_every == 0:
            values = (live.sums[1] / window).tolist()
            if diverged(values[0]):
                raise NonFiniteLossError(non_finite_message(epoch, self.step, values[0]))
            for cb in live.member.callbacks:
                cb.on_log(self.step, dict(zip(M.TRAIN_STEP_METRICS, values, strict=True)))

    def end_epoch(self, epoch: int, seconds: float) -> None:
        """Each member's training means (a diverged one leaves), one evaluation pass for all
        (and at the last epoch one encoding pass for the probe), then each member's record."""

        def means(position: int, live: _Live) -> None:
            cfg = live.member.cfg.train
            live.means = training_means(self.splits, cfg, live.sums[0], epoch, self.step, seconds)

        self.each(means)
        if not self.live:
            return
        with self.stepper.evaluating() as (forward, encoder):
            cfgs = [live.member.cfg.train for live in self.live]
            ords = [live.order for live in self.live]
            code = self.live[0].member.cfg.model.topk is None  # one model for all
            evaluations = evaluation_records(forward, encoder, self.splits, cfgs, ords, epoch, code)

        def record(position: int, live: _Live) -> None:
            self.stepper.sync(position, live.model)
            record = {**live.means, **evaluations[position]}
            live.outcome.result.history.append(record)
            callbacks = live.member.callbacks
            for cb in callbacks:
                cb.on_epoch_end(epoch, self.step, record, live.model)
            wanted = (type(cb).on_checkpoint is not Callback.on_checkpoint for cb in callbacks)
            if any(wanted):  # the state is built only for a callback that takes it
                optimizer = self.stepper.optimizer_state(position)
                state = resume.member_state(
                    live.member.cfg,
                    self.splits,
                    live.model,
                    optimizer,
                    live.order,
                    live.sums[1],
                    self.step,
                    live.outcome.result.history,
                )
                for cb in callbacks:
                    cb.on_checkpoint(epoch, state)

        self.each(record)
        self.epoch = epoch

    def finish(self) -> None:
        """The members that trained to the end: their weights, steps and on_fit_end."""

        def end(position: int, live: _Live) -> None:
            self.stepper.sync(position, live.model)
            live.outcome.step = self.step
            for cb in live.member.callbacks:
                cb.on_fit_end(live.model, live.outcome.result.history)

        self.each(end)


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


def non_finite_message(epoch: int, step: int, value: float) -> str:
    """Why a run was stopped for a diverged loss, in one line naming the fix."""
    what = f"{value}" if not math.isfinite(value) else f"{value:.3g} (above {MAX_LOSS:g}: diverged)"
    return (
        f"training loss became {what} at epoch {epoch}, step {step}; "
        "lower lr or beta (the run was stopped)"
    )
