"""The training callback that logs a run.

It buffers metrics in memory and writes them in one ``log_batch`` per epoch, so tracking stays a
small fraction of an epoch's wall time.
"""

from __future__ import annotations

import hashlib
import time

import mlflow
import torch
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import DatasetInput, InputTag, Metric
from mlflow.tracking import MlflowClient

from sae import metrics as M
from sae.config import Config
from sae.model import SparseAutoencoder
from sae.names import (
    TAG_DATA_DIGEST,
    TAG_DATASET_CONTEXT,
    TAG_DEGENERATE,
    TAG_DEGENERATE_REASON,
    TAG_DESCRIPTION,
    TAG_DEVICE,
    TAG_MODEL_URI,
)
from sae.signals import check_interrupted
from sae.splits import Splits
from sae.tracking.artifacts import (
    CURVES_FILE,
    DENSITY_FILE,
    HISTOGRAMS_FILE,
    reconstruction_file,
)
from sae.tracking.figures import (
    activation_histograms,
    feature_density,
    learning_curves,
    reconstruction_grid,
)
from sae.tracking.models import log_model
from sae.train import Callback

N_FIXED_IMAGES = 16
N_HISTOGRAM_IMAGES = 1000


class Tracker(Callback):
    """Logs a training run: metrics, reconstructions, histograms, curves and the model."""

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self._pending: list[Metric] = []
        self._fixed: torch.Tensor | None = None
        self._histogram_images: torch.Tensor | None = None
        self._test_images: torch.Tensor | None = None
        self._cfg: Config | None = None
        self.seconds_logging = 0.0
        """Wall time spent in this tracker's per-run start and per-epoch logging."""
        self.seconds_end_of_run = 0.0
        """Wall time of the once-per-run logging at the end: curves, histograms, model."""

    # buffering
    def _add(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step) for k, v in metrics.items()]

    def discard(self) -> None:
        """Drop the buffered metrics, unwritten."""
        self._pending.clear()

    def flush(self) -> None:
        """Write every buffered metric (log_batch takes at most 1000 per call)."""
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self.client.log_batch(self.run_id, metrics=batch)

    # callback hooks
    def on_fit_start(self, model: SparseAutoencoder, cfg: Config, splits: Splits) -> None:
        started = time.perf_counter()
        self._cfg = cfg
        self._fixed = splits.test[:N_FIXED_IMAGES]
        self._histogram_images = splits.test[:N_HISTOGRAM_IMAGES]
        self._test_images = splits.test
        self.client.set_tag(self.run_id, TAG_DEVICE, str(splits.train.device))
        self.client.set_tag(self.run_id, TAG_DATA_DIGEST, splits.digest)
        for context, images in (("train", splits.train), ("test", splits.test)):
            dataset = _dataset(splits.digest, context, images.shape[0])
            _log_input(self.client, self.run_id, dataset, context)
        self.seconds_logging += time.perf_counter() - started

    def on_step(self, step: int) -> None:
        check_interrupted()  # a safe point to stop at: between two optimiser steps

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self._add(metrics, step)

    def on_epoch_end(
        self, epoch: int, step: int, metrics: dict[str, float], model: SparseAutoencoder
    ) -> None:
        started = time.perf_counter()
        self._add(metrics, epoch)
        self.flush()
        grid = reconstruction_grid(model, self._fixed)
        self.client.log_image(self.run_id, grid, artifact_file=reconstruction_file(epoch))
        self.seconds_logging += time.perf_counter() - started

    def on_fit_end(self, model: SparseAutoencoder, history: list[dict[str, float]]) -> None:
        started = time.perf_counter()
        try:
            self._log_final(model, history)
        finally:
            self.seconds_end_of_run = time.perf_counter() - started

    def _log_final(self, model: SparseAutoencoder, history: list[dict[str, float]]) -> None:
        self.flush()
        if history:
            mark_degenerate(self.client, self.run_id, M.degenerate_reason(history[-1]))
            self.client.log_figure(self.run_id, learning_curves(history), CURVES_FILE)
        rates = M.code_firing_rates(model, self._test_images).numpy()
        density = feature_density(rates, self._test_images.shape[0])
        self.client.log_figure(self.run_id, density, DENSITY_FILE)
        histograms = activation_histograms(model, self._histogram_images)
        self.client.log_figure(self.run_id, histograms, HISTOGRAMS_FILE)
        if self._cfg.tracking.log_model:
            uri = log_model(self.client, self.run_id, self.experiment_id, model, self._cfg)
            self.client.set_tag(self.run_id, TAG_MODEL_URI, uri)


def mark_degenerate(client: MlflowClient, run_id: str, reason: str | None) -> None:
    """The degenerate tags of a run; a degenerate run's description starts by saying so."""
    if reason is None:
        client.set_tag(run_id, TAG_DEGENERATE, "false")
        return
    client.set_tag(run_id, TAG_DEGENERATE, "true")
    client.set_tag(run_id, TAG_DEGENERATE_REASON, reason)
    description = client.get_run(run_id).data.tags.get(TAG_DESCRIPTION, "")
    client.set_tag(run_id, TAG_DESCRIPTION, f"**Degenerate:** {reason}. {description}".strip())


def _dataset(digest: str, context: str, size: int) -> mlflow.data.Dataset:
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    split_digest = hashlib.sha256(f"{digest}:{context}:{size}".encode()).hexdigest()[:16]
    return MetaDataset(
        source=HTTPDatasetSource("https://yann.lecun.com/exdb/mnist/"),
        name=f"mnist-{context}-{size}",
        digest=split_digest,
    )


def _log_input(
    client: MlflowClient, run_id: str, dataset: mlflow.data.Dataset, context: str, attempts: int = 3
) -> None:
    """``client.log_inputs``, tried again when a concurrent run registered the same dataset first.

    Two workers that start runs on the same data at the same moment both try to insert the
    dataset row; on a database-backed store the loser gets a unique-key violation. The row then
    exists, so the next attempt only links it.
    """
    for attempt in range(attempts):
        try:
            entity = DatasetEntity(**dataset.to_dict())
            tags = [InputTag(TAG_DATASET_CONTEXT, context)]
            client.log_inputs(run_id, datasets=[DatasetInput(entity, tags=tags)])
            return
        except mlflow.exceptions.MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
