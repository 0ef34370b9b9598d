"""The trained model as an MLflow logged model, loadable from the run's ``model_uri`` tag.

It is saved in MLflow's ``pt2`` format (``torch.export``): a graph and its weights, so loading it
runs no pickled code and needs no ``sae`` package, and MLflow prints no warning about pickle.
``mlflow.pytorch.load_model`` gives back a module that maps a batch of images (N, 1, 28, 28),
any N, to their reconstructions.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.tracking import MlflowClient

from sae.config import Config
from sae.model import Reconstructor, SparseAutoencoder
from sae.redact import redact_values
from sae.tracking.artifacts import CONFIG_FILE, MODEL_NAME
from sae.tracking.params import config_params

EXAMPLE_BATCH = 2
"""The input example's batch: ``torch.export`` makes a size-1 dimension static, so an example of
one image would fix the batch size of the saved graph to 1."""


def log_model(
    client: MlflowClient, run_id: str, experiment_id: str, model: SparseAutoencoder, cfg: Config
) -> str:
    """Log the model (single-tensor output) in the ``pt2`` format with a signature, an input
    example and its config, as an MLflow logged model of run ``run_id``; returns its URI,
    ``models:/<model id>``."""
    wrapped = Reconstructor(copy.deepcopy(model)).to("cpu", memory_format=torch.contiguous_format)
    wrapped.eval()
    example = np.zeros((EXAMPLE_BATCH, 1, 28, 28), dtype=np.float32)
    with torch.inference_mode():
        output = wrapped(torch.from_numpy(example)).numpy()
    signature = mlflow.models.infer_signature(example, output)
    logged = client.create_logged_model(
        experiment_id, name=MODEL_NAME, source_run_id=run_id, params=config_params(cfg)
    )
    status = LoggedModelStatus.FAILED
    try:
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / CONFIG_FILE
            config.write_text(json.dumps(redact_values(cfg.to_dict()), indent=2))
            local = Path(tmp) / MODEL_NAME
            mlflow.pytorch.save_model(
                wrapped,
                str(local),
                mlflow_model=mlflow.models.Model(
                    artifact_path=logged.artifact_location,
                    model_uuid=logged.model_id,
                    run_id=run_id,
                    model_id=logged.model_id,
                ),
                signature=signature,
                input_example=example,
                extra_files=[str(config)],
                serialization_format="pt2",
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
            )
            client.log_model_artifacts(logged.model_id, str(local))
        status = LoggedModelStatus.READY
    finally:
        client.finalize_logged_model(logged.model_id, status)
    return f"models:/{logged.model_id}"
