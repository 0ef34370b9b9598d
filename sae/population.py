"""A population of models trained in one pass: K members of the same architecture, each with its
own seed, learning rate, penalty weight and data order, stepped together.

The members' parameters are stacked (``torch.func.stack_module_state``) and one step runs the
model over all K batches at once with ``torch.func.vmap``, so every layer is one kernel for the
whole population (a convolution over K stacked models becomes one grouped convolution) instead
of K small ones. Each member's Adam state and learning rate are its own: the update is Adam's,
written over the stacked tensors. A member's trajectory is the one ``sae.train.fit`` gives the
same config: the same initial weights (its seed), the same batches (its own order), the same
update, equal up to float32 rounding (the batched kernels add in another order), which
``tests/test_population.py`` bounds.

At the end of each epoch the members are evaluated on the whole test split in one pass too, each
in its own test order (``sae.metrics.evaluate_many``), and at the last epoch their codes for the
probe come from one encoding pass (``sae.probe.encode_many``); each record is the one
``sae.train.fit`` makes, through the same functions.

Isolation: a member whose loss diverges, whose network is dead at initialisation, or whose
callback raises (a pruned trial) leaves the population with its own error; the others go on
unchanged. Ctrl-C (KeyboardInterrupt) still stops the whole population.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from sae import metrics as M
from sae.config import Config, TrainConfig
from sae.model import SparseAutoencoder
from sae.order import make_order
from sae.penalties import penalty
from sae.train import (
    Callback,
    DeadNetworkError,
    FitResult,
    NonFiniteLossError,
    Splits,
    dead_layer,
    diverged,
    evaluation_records,
    non_finite_message,
    training_means,
)

SHARED_FIELDS = (
    "epochs",
    "batch_size",
    "test_batch_size",
    "log_every",
    "adam_beta1",
    "adam_beta2",
    "adam_eps",
    "probe",
)
"""Training fields every member must share: they set the population's common loop."""


@dataclass
class Member:
    """One member: its config and the callbacks that see its training (a Tracker, a pruner)."""

    cfg: Config
    callbacks: Sequence[Callback] = ()


@dataclass
class Outcome:
    """How a member ended: its result (with its history up to the end) and, if it left the
    population early, why."""

    result: FitResult
    error: BaseException | None = None
    step: int = 0
    """The optimiser steps it took."""


@dataclass
class _Live:
    """A member still training: its index in the population and its running sums."""

    index: int
    model: SparseAutoencoder
    order: object
    epoch_sums: torch.Tensor
    window_sums: torch.Tensor
    train_order: torch.Tensor | None = None


def check_population(members: Sequence[Member]) -> None:
    """One line when the members cannot share a loop."""
    if not members:
        raise ValueError("a population needs at least one member")
    first = members[0].cfg
    for member in members[1:]:
        for name in SHARED_FIELDS:
            if getattr(member.cfg.train, name) != getattr(first.train, name):
                raise ValueError(f"every member of a population needs the same {name}")
        if member.cfg.model != first.model:
            raise ValueError("every member of a population needs the same model")
    if any(m.cfg.train.amp for m in members):
        raise ValueError("a population trains in float32: drop --amp")


def _adam_step(
    params: dict[str, torch.Tensor],
    state: dict[str, tuple[torch.Tensor, torch.Tensor]],
    lr: torch.Tensor,
    step: int,
    tc: TrainConfig,
) -> None:
    """torch.optim.Adam's update (no weight decay, no amsgrad) on stacked parameters, with each
    member's learning rate ``lr[k]``; ``step`` counts from 1."""
    b1, b2 = tc.adam_beta1, tc.adam_beta2
    correction1 = 1 - b1**step
    correction2 = math.sqrt(1 - b2**step)
    with torch.no_grad():
        for name, p in params.items():
            avg, avg_sq = state[name]
            grad = p.grad
            avg.lerp_(grad, 1 - b1)
            avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            step_size = (lr / correction1).view(-1, *([1] * (p.dim() - 1)))
            denom = (avg_sq.sqrt() / correction2).add_(tc.adam_eps)
            p.sub_(step_size * avg / denom)


def fit_population(members: Sequence[Member], splits: Splits) -> list[Outcome]:
    """Train every member for the shared number of epochs in one pass; one Outcome each, in
    order. Each member's callbacks see what ``fit`` would show them."""
    check_population(members)
    tc0 = members[0].cfg.train
    device = splits.train.device
    if tc0.threads:
        torch.set_num_threads(tc0.threads)
    outcomes = [Outcome(FitResult(model=None)) for _ in members]  # type: ignore[arg-type]
    live: list[_Live] = []
    for k, member in enumerate(members):
        tc = member.cfg.train
        torch.manual_seed(tc.seed)
        model = SparseAutoencoder(member.cfg.model).to(device, memory_format=torch.channels_last)
        order = make_order(tc.data_order, tc.seed)  # right after the model, as in fit()
        outcomes[k].result.model = model
        try:
            for cb in member.callbacks:
                cb.on_fit_start(model, member.cfg, splits)
            dead = dead_layer(model, splits.train)
            if dead:
                raise DeadNetworkError(
                    f"dead at initialisation: {dead}; no gradient can reach the weights"
                )
        except Exception as err:  # this member only
            outcomes[k].error = err
            continue
        zeros = torch.zeros(3, device=device)
        live.append(_Live(k, model, order, zeros.clone(), zeros.clone()))

    params, buffers = stack_module_state([m.model for m in live]) if live else ({}, {})
    params = {name: p.contiguous().detach().requires_grad_() for name, p in params.items()}
    state = {name: (torch.zeros_like(p), torch.zeros_like(p)) for name, p in params.items()}
    template = copy.deepcopy(members[0].cfg.model)
    base = SparseAutoencoder(template).to("meta")
    lr = torch.tensor([members[m.index].cfg.train.lr for m in live], device=device)
    cfgs = [members[m.index].cfg.train for m in live]

    encoder = _Encoder(template).to("meta")

    def forward(p: dict, b: dict, x: torch.Tensor) -> tuple:
        return functional_call(base, (p, b), (x,))

    def one(p: dict, b: dict, x: torch.Tensor) -> tuple:
        recon, acts = forward(p, b, x)
        return F.mse_loss(recon, x), acts

    def encode(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(encoder, (p, b), (x,))

    n = splits.train.shape[0]
    batch = tc0.batch_size
    check_every = 1 if device.type == "cpu" else tc0.log_every
    step = 0
    window_steps = 0

    def drop(positions: list[int], errors: list[BaseException]) -> None:
        nonlocal params, state, lr, cfgs, live
        for position, err in zip(positions, errors, strict=True):
            member = live[position]
            _unstack(params, position, member.model)
            outcomes[member.index].error = err
            outcomes[member.index].step = step
        keep = [i for i in range(len(live)) if i not in positions]
        index = torch.tensor(keep, device=device, dtype=torch.long)
        params = {k: v.detach()[index].clone().requires_grad_() for k, v in params.items()}
        state = {k: (a[index].clone(), s[index].clone()) for k, (a, s) in state.items()}
        buffers_kept = {k: v[index] for k, v in buffers.items()}
        buffers.clear()
        buffers.update(buffers_kept)
        lr = lr[index]
        cfgs = [cfgs[i] for i in keep]
        live = [live[i] for i in keep]

    for epoch in range(1, tc0.epochs + 1):
        if not live:
            break
        for member in live:
            member.train_order = member.order.train(n).to(device)
            member.epoch_sums.zero_()
            member.window_sums.zero_()
        window_steps = 0
        started = time.perf_counter()
        for start in range(0, n, batch):
            if not live:
                break
            index = torch.stack([m.train_order[start : start + batch] for m in live])
            x = splits.train[index].unsqueeze(2).float().div_(255)  # (K, B, 1, 28, 28)
            mse, acts = vmap(one)(params, buffers, x)
            pen = torch.stack([penalty(tuple(a[i] for a in acts), tc) for i, tc in enumerate(cfgs)])
            loss = mse + pen
            for p in params.values():
                p.grad = None
            loss.sum().backward()
            step += 1
            window_steps += 1
            _adam_step(params, state, lr, step, tc0)
            parts = torch.stack((loss.detach(), mse.detach(), pen.detach()), dim=1)  # (K, 3)
            failed: list[int] = []
            errors: list[BaseException] = []
            values = loss.detach().tolist() if step % check_every == 0 else None
            for i, member in enumerate(live):
                member.epoch_sums += parts[i]
                member.window_sums += parts[i]
                if values is not None and diverged(values[i]):
                    failed.append(i)
                    errors.append(NonFiniteLossError(non_finite_message(epoch, step, values[i])))
                    continue
                try:
                    for cb in members[member.index].callbacks:
                        cb.on_step(step)
                    if step % tc0.log_every == 0:
                        means = (member.window_sums / window_steps).tolist()
                        if diverged(means[0]):
                            raise NonFiniteLossError(non_finite_message(epoch, step, means[0]))
                        logged = dict(zip(M.TRAIN_STEP_METRICS, means, strict=True))
                        for cb in members[member.index].callbacks:
                            cb.on_log(step, logged)
                except Exception as err:
                    failed.append(i)
                    errors.append(err)
            if step % tc0.log_every == 0:
                for member in live:
                    member.window_sums.zero_()
                window_steps = 0
            if failed:
                drop(failed, errors)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started

        # The end of the epoch: each member's training means (a diverged one leaves), then one
        # evaluation pass, and at the last epoch one encoding pass, for all the others. The model
        # has no dropout or batch norm, so the training's forward is also the evaluation's.
        means, failed, errors = [], [], []  # means: one per member that stays, in order
        for i, member in enumerate(live):
            try:
                means.append(
                    training_means(splits, cfgs[i], member.epoch_sums, epoch, step, seconds)
                )
            except NonFiniteLossError as err:
                failed.append(i)
                errors.append(err)
        if failed:
            drop(failed, errors)
        if not live:
            break
        evaluations = evaluation_records(
            lambda x: vmap(forward)(params, buffers, x),  # x: (K, B, 1, 28, 28), a batch each
            lambda x: vmap(encode, in_dims=(0, 0, None))(params, buffers, x),  # x: one for all
            splits,
            cfgs,
            [member.order for member in live],
            epoch,
        )
        failed, errors = [], []
        for i, (member, evaluation) in enumerate(zip(live, evaluations, strict=True)):
            _unstack(params, i, member.model)
            record = {**means[i], **evaluation}
            outcomes[member.index].result.history.append(record)
            try:
                for cb in members[member.index].callbacks:
                    cb.on_epoch_end(epoch, step, record, member.model)
            except Exception as err:
                failed.append(i)
                errors.append(err)
        if failed:
            drop(failed, errors)

    for i, member in enumerate(live):
        _unstack(params, i, member.model)
        outcomes[member.index].step = step
        result = outcomes[member.index].result
        try:
            for cb in members[member.index].callbacks:
                cb.on_fit_end(member.model, result.history)
        except Exception as err:
            outcomes[member.index].error = err
    return outcomes


SIZES = (1, 2, 4, 8, 16, 32)
"""The population sizes ``fastest_size`` tries."""


def fastest_size(
    cfg: Config, splits: Splits, sizes: Sequence[int] = SIZES, steps: int = 30
) -> tuple[int, dict[int, float]]:
    """The population size that trains the most images per second on ``splits``' device, and
    the rate of each size tried (members of ``cfg`` with seeds ``cfg.train.seed`` on, ``steps``
    steps of its batch size, no probe). Each size runs twice, the first to warm the kernels up;
    sizes stop growing at the first that is no faster than the best so far or runs out of
    memory."""
    n = steps * cfg.train.batch_size
    small = Splits(train=splits.train[:n], test=splits.test[:1000], digest=splits.digest)
    tc = dataclasses.replace(cfg.train, epochs=1, probe=False, log_every=steps)
    rates: dict[int, float] = {}
    for size in sizes:
        members = [
            Member(dataclasses.replace(cfg, train=dataclasses.replace(tc, seed=tc.seed + k)))
            for k in range(size)
        ]
        try:
            for _ in range(2):
                outcomes = fit_population(members, small)
        except torch.OutOfMemoryError:
            break
        trained = [o.result.history[0] for o in outcomes if o.result.history]
        rates[size] = len(trained) * trained[0][M.PERF_IMAGES_PER_S] if trained else 0.0
        if rates[size] < max(rates.values()):
            break
    return max(rates, key=rates.get), rates


def _unstack(params: dict[str, torch.Tensor], position: int, model: SparseAutoencoder) -> None:
    """Copy member ``position``'s slice of the stacked parameters into its own module."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name][position])


class _Encoder(SparseAutoencoder):
    """The autoencoder whose forward is its encoder, under the same parameter names:
    ``functional_call`` calls a module's forward, and the probe needs the code alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)
