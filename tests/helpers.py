"""Tiny configs and data for tests: a verified tiny MNIST and a private MLflow store per test."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from helpers_data import make_tiny_mnist, write_manifest

from sae.config import Config, DataConfig, ModelConfig, TrackingConfig, TrainConfig

N_TRAIN = 200
N_TEST = 120


def tiny_data(root: Path, n_train: int = N_TRAIN, n_test: int = N_TEST) -> DataConfig:
    """Write a tiny verified data set under ``root`` and return the DataConfig that reads it."""
    files = make_tiny_mnist(root, n_train=n_train, n_test=n_test)
    manifest = write_manifest(root / "manifest.json", files)
    return DataConfig(root=str(root), manifest=str(manifest))


def tiny_tracking(tmp: Path, **overrides: Any) -> TrackingConfig:
    """A tracking config writing to a SQLite store and artifact folder inside ``tmp``."""
    (tmp / "mlflow.yaml").write_text(
        "tracking_uri: sqlite:///mlflow.db\nartifact_location: mlartifacts\n"
    )
    return TrackingConfig(config_file=str(tmp / "mlflow.yaml"), **overrides)


def build_config(tmp: Path, *, track: bool = False, **train: Any) -> Config:
    """A config that trains for 2 epochs on tiny data in ``tmp`` in about a second."""
    train = {"epochs": 2, "batch_size": 50, "test_batch_size": 50, "log_every": 2, **train}
    return Config(
        data=tiny_data(tmp / "data"),
        model=ModelConfig(),
        train=dataclasses.replace(TrainConfig(), **train),
        tracking=tiny_tracking(tmp, track=track, log_model=track),
    )
