"""The order in which a run takes its training and test images, epoch by epoch.

``seeded`` draws both from generators of the run's own, seeded from its seed: nothing else in the
process can change them. ``script`` draws them from PyTorch's global generator exactly as the seed's
script does through ``DataLoader(shuffle=True)`` with no generator of its own, which is what
reproduces its published figures (see ../shared/spec/baseline.md). Only the indices change; the
batches are gathered by the same fast core either way.
"""

from __future__ import annotations

import torch

from sae.config import DataOrder


class SeededOrder:
    """Training order from a generator seeded with ``seed``, test order from one with seed + 1."""

    def __init__(self, seed: int) -> None:
        self._train = torch.Generator().manual_seed(seed)
        self._test = torch.Generator().manual_seed(seed + 1)

    def train(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self._train)

    def test(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self._test)

    def state(self) -> list[torch.Tensor]:
        """Where both generators are, to go on from there (``restore``)."""
        return [self._train.get_state(), self._test.get_state()]

    def restore(self, states: list[torch.Tensor]) -> None:
        self._train.set_state(states[0])
        self._test.set_state(states[1])


class ScriptOrder:
    """What the seed's loaders draw from the global generator, from its state when this is made.

    Each time a ``DataLoader(shuffle=True)`` without a generator of its own is iterated, its
    iterator first draws a base seed for its workers (even with no workers), then, at the first
    batch, ``RandomSampler`` draws a seed for a fresh generator and yields ``randperm`` from it.
    The script iterates the training loader, then the test loader, every epoch: call ``train``
    then ``test`` once per epoch. The global generator's state is copied at construction (make
    this right after the model is initialised, as the script's first loader iteration comes
    then), so nothing else in the process that draws from it can shift the order.
    """

    def __init__(self) -> None:
        self._global = torch.Generator()
        self._global.set_state(torch.get_rng_state())

    def _draw_seed(self) -> int:
        return int(torch.empty((), dtype=torch.int64).random_(generator=self._global).item())

    def _iterate_loader(self, n: int) -> torch.Tensor:
        self._draw_seed()  # the iterator's base seed for its workers, unused without workers
        sampler = torch.Generator().manual_seed(self._draw_seed())
        return torch.randperm(n, generator=sampler)

    def train(self, n: int) -> torch.Tensor:
        return self._iterate_loader(n)

    def test(self, n: int) -> torch.Tensor:
        return self._iterate_loader(n)

    def state(self) -> list[torch.Tensor]:
        """Where the copied generator is, to go on from there (``restore``)."""
        return [self._global.get_state()]

    def restore(self, states: list[torch.Tensor]) -> None:
        self._global.set_state(states[0])


def make_order(kind: DataOrder, seed: int) -> SeededOrder | ScriptOrder:
    """The order a run with ``data_order`` ``kind`` takes; make it right after the model."""
    return ScriptOrder() if kind == "script" else SeededOrder(seed)
