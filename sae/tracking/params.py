"""What a run logs as MLflow params: the fields that define a run or vary between runs, as
``section.field`` keys with string values and credentials masked.

The complete config is the run's ``config.json`` artifact (loadable again with ``--config``);
params are what the MLflow UI offers for columns, comparison axes and search, so settings that
never change a result (tracking, device, threads, logging cadence) and constants no run varies
(Adam's betas and epsilon) are not params.
"""

from __future__ import annotations

from typing import Any

from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from sae.config import Config
from sae.names import param
from sae.redact import redact

_PARAMS_PER_BATCH = 100
"""``log_batch`` takes at most 100 params a call."""

RUN_PARAMS = (
    ("train", "beta"),
    ("train", "lr"),
    ("train", "batch_size"),
    ("train", "epochs"),
    ("train", "seed"),
    ("train", "penalty"),
    ("train", "penalty_layers"),
    ("train", "data_order"),
    ("train", "test_batch_size"),
    ("data", "train_size"),
    ("data", "test_size"),
    ("model", "output_activation"),
)
"""The fields every run logs: the searched parameters, the length of training, the penalty and
the layers it reads, the seed and data order, the data sizes, the evaluation batch (the
README's test loss depends on it) and the output activation."""


def _conditional(cfg: Config) -> dict[str, Any]:
    """Fields that change the training only under a setting, logged when it is on."""
    extra: dict[str, Any] = {}
    if cfg.train.penalty == "kl":
        extra[param("train", "rho")] = cfg.train.rho
    if cfg.train.amp:
        extra[param("train", "amp")] = cfg.train.amp
    if cfg.model.topk is not None:
        extra[param("model", "topk")] = cfg.model.topk
    return extra


def param_value(value: Any) -> str:
    return "None" if value is None else redact(str(value))


def config_params(cfg: Config) -> dict[str, str]:
    """The run's params: ``RUN_PARAMS``, plus ``rho`` for the KL penalty, ``amp`` when on and
    ``topk`` for a TopK code."""
    flat = cfg.flat()
    chosen = {param(section, name): flat[param(section, name)] for section, name in RUN_PARAMS}
    return {k: param_value(v) for k, v in {**chosen, **_conditional(cfg)}.items()}


def log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    entries = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(entries), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=entries[start : start + _PARAMS_PER_BATCH])
