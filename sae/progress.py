"""Console progress of a training run: tqdm bars in a terminal, a plain line per epoch otherwise."""

from __future__ import annotations

import math
import sys
from typing import TextIO

from tqdm import tqdm

from sae import metrics as M
from sae.config import Config
from sae.model import SparseAutoencoder
from sae.splits import Splits
from sae.train import Callback


def epoch_line(epoch: int, epochs: int, metrics: dict[str, float]) -> str:
    return (
        f"epoch {epoch}/{epochs}  train loss {metrics[M.EPOCH_LOSS]:.6f}  "
        f"test mse {metrics[M.TEST_MSE]:.6f}  "
        f"code active {metrics[M.CODE_ACTIVE_FRAC]:.1%}  "
        f"{metrics[M.PERF_IMAGES_PER_S]:,.0f} img/s"
    )


class Progress(Callback):
    def __init__(self, stream: TextIO | None = None, bars: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.bars = self.stream.isatty() if bars is None else bars
        self._epochs_bar: tqdm | None = None
        self._batches_bar: tqdm | None = None
        self._epochs = 0
        self._per_epoch = 0

    def on_fit_start(self, model: SparseAutoencoder, cfg: Config, splits: Splits) -> None:
        self._epochs = cfg.train.epochs
        self._per_epoch = math.ceil(splits.train.shape[0] / cfg.train.batch_size)
        if self.bars:
            self._epochs_bar = tqdm(total=self._epochs, desc="epochs", file=self.stream)
            self._batches_bar = tqdm(
                total=self._per_epoch, desc="batches", leave=False, file=self.stream
            )

    def on_step(self, step: int) -> None:
        if self._batches_bar is not None:
            if self._batches_bar.n >= self._per_epoch:
                self._batches_bar.reset()
            self._batches_bar.update()

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        if self._batches_bar is not None:
            self._batches_bar.set_postfix(loss=f"{metrics[M.TRAIN_LOSS]:.5f}", refresh=False)

    def on_epoch_end(
        self, epoch: int, step: int, metrics: dict[str, float], model: SparseAutoencoder
    ) -> None:
        line = epoch_line(epoch, self._epochs, metrics)
        if self._epochs_bar is not None:
            self._epochs_bar.update()
            self._epochs_bar.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def on_fit_end(self, model: SparseAutoencoder, history: list[dict[str, float]]) -> None:
        self.close()

    def close(self) -> None:
        for bar in (self._batches_bar, self._epochs_bar):
            if bar is not None:
                bar.close()
        self._batches_bar = self._epochs_bar = None
