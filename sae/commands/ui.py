"""Browse the runs: the MLflow UI (and optuna-dashboard) on the stores of this project."""

import dataclasses
from dataclasses import dataclass
from typing import NoReturn

from sae import tracking, ui
from sae.cli import ArgumentParser, SettingsOptions, run_main


@dataclass(frozen=True)
class UIOptions:
    """The servers started and where they listen."""

    storage: str | None = None
    """the Optuna storage over the file's optuna_storage"""
    host: str = "127.0.0.1"
    """address to bind"""
    allow_remote_without_login: bool = False
    """bind a --host other than loopback although the UI has no login"""
    port: int = ui.MLFLOW_PORT
    """MLflow UI port; a free one if taken (the dashboard's trial links assume the default)"""
    dashboard: bool = False
    """also start optuna-dashboard"""
    dashboard_port: int = ui.DASHBOARD_PORT
    """optuna-dashboard port; a free one if taken"""


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_dataclass("settings", SettingsOptions())
    parser.add_dataclass("ui", UIOptions())
    args = parser.parse_args()
    opts: UIOptions = args.ui
    for name in ("port", "dashboard_port"):
        if not 0 <= getattr(opts, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be a port number, 0-65535")
    settings = tracking.load_settings(args.settings.config_file, args.settings.tracking_uri)
    if opts.storage:
        settings = dataclasses.replace(settings, optuna_storage=opts.storage)
    ui.serve(
        settings,
        host=opts.host,
        port=opts.port,
        dashboard=opts.dashboard,
        dashboard_port=opts.dashboard_port,
        allow_remote=opts.allow_remote_without_login,
    )


def run() -> NoReturn:
    """``sae-ui``."""
    run_main(main)
