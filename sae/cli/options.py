"""Flags that several commands share, declared once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SettingsOptions:
    """Which tracking settings a command reads."""

    config_file: str = "mlflow.yaml"
    """tracking settings file"""
    tracking_uri: str | None = None
    """MLflow tracking URI over the file's; unset means MLFLOW_TRACKING_URI, else mlflow.yaml"""
