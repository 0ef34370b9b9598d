"""A config as MLflow params: ``section.field`` keys, string values with credentials masked."""

from __future__ import annotations

from typing import Any

from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from sae.config import Config
from sae.redact import redact

_PARAMS_PER_BATCH = 100
"""``log_batch`` takes at most 100 params a call."""


def param_value(value: Any) -> str:
    return "None" if value is None else redact(str(value))


def config_params(cfg: Config) -> dict[str, str]:
    """Every config field, flattened as ``section.field``, as the string MLflow keeps."""
    return {k: param_value(v) for k, v in cfg.flat().items()}


def log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    entries = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(entries), _PARAMS_PER_BATCH):
        client.log_batch(run_id, params=entries[start : start + _PARAMS_PER_BATCH])
