"""The optimiser steps of the training engine (``sae.train.fit_members``): the one thing that
differs between training one model and training a population of K.

``SoloStep`` trains one model as itself, with PyTorch's fused Adam kernel (and float16 autocast
with a loss scaler under ``--amp``): every figure of a single run comes from it. ``StackedStep``
trains K models of the same architecture at once: their parameters are stacked
(``torch.func.stack_module_state``) and one step runs the model over all K batches with
``torch.func.vmap``, so every layer is one kernel for the whole population (a convolution over K
stacked models becomes one grouped convolution); each member's Adam state and learning rate are
its own, the update being Adam's written over the stacked tensors. A member's trajectory is the
one ``SoloStep`` gives the same config, equal up to float32 rounding (the batched kernels add in
another order), which ``tests/test_population.py`` bounds.

Both answer the same calls: ``step`` (one optimiser step of every member on its own batch,
returning each member's (loss, mse, penalty)), ``evaluating`` (the members as a
``sae.metrics.Forward`` and a ``sae.probe.Encoder``), ``sync`` (copy a member's weights into its
own module), ``keep`` (go on with some of the members only), and ``optimizer_state`` and
``load_optimizer_state`` (a member's Adam state, in one form for both, to resume from:
``OptimizerState``).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from sae import metrics as M
from sae.config import ModelConfig, TrainConfig
from sae.model import SparseAutoencoder
from sae.penalties import penalty
from sae.probe import Encoder, as_encoder

OptimizerState = dict[str, Any]
"""One member's optimiser state on the CPU, the same for both steppers: ``step`` (the steps
taken), ``exp_avg`` and ``exp_avg_sq`` (Adam's averages, by parameter name) and ``scaler`` (the
loss scaler's ``state_dict`` under ``--amp``, else empty)."""


class SoloStep:
    """One model trained as itself: the fused Adam kernel computes the update in one pass over
    the parameters; under ``amp`` the forward runs in float16, the loss scaled so that small
    gradients survive."""

    def __init__(self, model: SparseAutoencoder, tc: TrainConfig) -> None:
        device = next(model.parameters()).device
        self.model, self.tc = model, tc
        self.code_penalised = model.topk is None
        self.optimizer = torch.optim.Adam(
            model.parameters(),
            lr=tc.lr,
            betas=(tc.adam_beta1, tc.adam_beta2),
            eps=tc.adam_eps,
            fused=True,
        )
        self.autocast = torch.autocast(device.type, dtype=torch.float16, enabled=tc.amp)
        self.scaler = torch.amp.GradScaler(device.type, enabled=tc.amp)

    def step(self, images: torch.Tensor, batches: Sequence[torch.Tensor]) -> torch.Tensor:
        """One step on ``images[batches[0]]`` (uint8); the detached (1, 3) (loss, mse, penalty)."""
        x = M.to_float(images[batches[0]])  # (B, 1, 28, 28)
        # forward and loss
        with self.autocast:
            recon, acts = self.model(x)
            mse = F.mse_loss(recon.float(), x)
            pen = penalty(acts, self.tc, code=self.code_penalised).float()
            loss = mse + pen
        # backward and step
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return torch.stack((loss.detach(), mse.detach(), pen.detach()))[None]

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[tuple[M.Forward, Encoder]]:
        self.model.eval()
        try:
            yield M.as_forward(self.model), as_encoder(self.model)
        finally:
            self.model.train()

    def sync(self, position: int, model: SparseAutoencoder) -> None:
        """Nothing to copy: the model trains in place."""

    def optimizer_state(self, position: int) -> OptimizerState:
        names = [name for name, _ in self.model.named_parameters()]
        state = self.optimizer.state_dict()["state"]
        out: OptimizerState = {"step": int(state[0]["step"].item()) if state else 0}
        for key in ("exp_avg", "exp_avg_sq"):
            out[key] = {names[i]: s[key].detach().cpu().clone() for i, s in state.items()}
        out["scaler"] = self.scaler.state_dict() if self.tc.amp else {}
        return out

    def load_optimizer_state(self, position: int, saved: OptimizerState) -> None:
        """Adam goes on from ``saved`` (through its public ``load_state_dict``, which puts each
        tensor on its parameter's device and dtype)."""
        names = [name for name, _ in self.model.named_parameters()]
        whole = self.optimizer.state_dict()
        whole["state"] = {
            i: {
                "step": torch.tensor(float(saved["step"])),  # one each: Adam counts in place
                "exp_avg": saved["exp_avg"][n].clone(),
                "exp_avg_sq": saved["exp_avg_sq"][n].clone(),
            }
            for i, n in enumerate(names)
        }
        self.optimizer.load_state_dict(whole)
        if saved["scaler"]:
            self.scaler.load_state_dict(saved["scaler"])

    def keep(self, positions: Sequence[int]) -> None:
        """With one member, going on with none of them ends training."""


class StackedStep:
    """K models of one architecture stepped together over stacked parameters, each with its own
    learning rate, penalty weight and Adam state (no weight decay, no amsgrad)."""

    def __init__(
        self,
        models: Sequence[SparseAutoencoder],
        model_cfg: ModelConfig,
        cfgs: Sequence[TrainConfig],
    ) -> None:
        device = next(models[0].parameters()).device
        params, self.buffers = stack_module_state(list(models))
        self.params = {name: p.contiguous().detach().requires_grad_() for name, p in params.items()}
        self.state = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in self.params.items()}
        self.cfgs = list(cfgs)
        self.code_penalised = model_cfg.topk is None  # a TopK code is left out of the penalty
        self.lr = torch.tensor([tc.lr for tc in cfgs], device=device)
        self.steps = 0
        template = copy.deepcopy(model_cfg)
        self._base = SparseAutoencoder(template).to("meta")
        self._encoder = _Encoder(template).to("meta")

    def _forward(self, p: dict, b: dict, x: torch.Tensor) -> tuple:
        return functional_call(self._base, (p, b), (x,))

    def _mse(self, p: dict, b: dict, x: torch.Tensor) -> tuple:
        recon, acts = self._forward(p, b, x)
        return F.mse_loss(recon, x), acts

    def _encode(self, p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self._encoder, (p, b), (x,))

    def step(self, images: torch.Tensor, batches: Sequence[torch.Tensor]) -> torch.Tensor:
        """One step of member k on ``images[batches[k]]`` (uint8), for every k; the detached
        (K, 3) (loss, mse, penalty)."""
        x = images[torch.stack(list(batches))].unsqueeze(2).float().div_(255)  # (K, B, 1, 28, 28)
        # forward and loss, every member at once
        mse, acts = vmap(self._mse)(self.params, self.buffers, x)
        pen = torch.stack(
            [
                penalty(tuple(a[i] for a in acts), tc, code=self.code_penalised)
                for i, tc in enumerate(self.cfgs)
            ]
        )
        loss = mse + pen
        # backward and step
        for p in self.params.values():
            p.grad = None
        loss.sum().backward()
        self.steps += 1
        self._adam()
        return torch.stack((loss.detach(), mse.detach(), pen.detach()), dim=1)

    def _adam(self) -> None:
        """torch.optim.Adam's update on the stacked parameters, member k at its ``lr[k]``."""
        tc = self.cfgs[0]  # the betas and eps are shared (sae.population.SHARED_FIELDS)
        b1, b2 = tc.adam_beta1, tc.adam_beta2
        correction1 = 1 - b1**self.steps
        correction2 = math.sqrt(1 - b2**self.steps)
        with torch.no_grad():
            for name, p in self.params.items():
                avg, avg_sq = self.state[name]
                grad = p.grad
                avg.lerp_(grad, 1 - b1)
                avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
                step_size = (self.lr / correction1).view(-1, *([1] * (p.dim() - 1)))
                denom = (avg_sq.sqrt() / correction2).add_(tc.adam_eps)
                p.sub_(step_size * avg / denom)

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[tuple[M.Forward, Encoder]]:
        """The model has no dropout or batch norm, so the training's forward is also the
        evaluation's."""
        params, buffers = self.params, self.buffers
        yield (
            lambda x: vmap(self._forward)(params, buffers, x),  # x: (K, B, 1, 28, 28), one each
            lambda x: vmap(self._encode, in_dims=(0, 0, None))(params, buffers, x),  # one for all
        )

    def sync(self, position: int, model: SparseAutoencoder) -> None:
        """Copy member ``position``'s slice of the stacked parameters into its own module."""
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.params[name][position])

    def keep(self, positions: Sequence[int]) -> None:
        """Go on with the members at ``positions`` only, in that order."""
        index = torch.tensor(list(positions), device=self.lr.device, dtype=torch.long)
        self.params = {
            k: v.detach()[index].clone().requires_grad_() for k, v in self.params.items()
        }
        self.state = {k: (a[index].clone(), s[index].clone()) for k, (a, s) in self.state.items()}
        self.buffers = {k: v[index] for k, v in self.buffers.items()}
        self.lr = self.lr[index]
        self.cfgs = [self.cfgs[i] for i in positions]

    def optimizer_state(self, position: int) -> OptimizerState:
        out: OptimizerState = {"step": self.steps, "scaler": {}}
        for key, which in (("exp_avg", 0), ("exp_avg_sq", 1)):
            out[key] = {n: s[which][position].cpu().clone() for n, s in self.state.items()}
        return out

    def load_optimizer_state(self, position: int, saved: OptimizerState) -> None:
        """Member ``position``'s Adam goes on from ``saved``; the steps are the population's, so
        every member resumed together has taken as many."""
        self.steps = saved["step"]
        with torch.no_grad():
            for name, (avg, avg_sq) in self.state.items():
                avg[position].copy_(saved["exp_avg"][name])
                avg_sq[position].copy_(saved["exp_avg_sq"][name])


class _Encoder(SparseAutoencoder):
    """The autoencoder whose forward is its encoder, under the same parameter names:
    ``functional_call`` calls a module's forward, and the probe needs the code alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)
