"""Browse the runs: the MLflow UI (and optuna-dashboard) on the stores of this project.

    python experiments/ui.py                 # MLflow UI on http://127.0.0.1:5000 (or a free port)
    python experiments/ui.py --dashboard     # and optuna-dashboard on the sweep's storage

The stores are the ones `mlflow.yaml` names, the same the runs were logged to. Ctrl-C stops all.
Neither server has a login: binding anything but loopback needs --allow-remote-without-login.
"""

import dataclasses

from sae import tracking, ui
from sae.cli import ArgumentParser, run_main


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", default="mlflow.yaml", help="tracking settings")
    parser.add_argument("--tracking-uri", help="override the file's tracking_uri")
    parser.add_argument("--storage", help="override the file's optuna_storage")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        ui.REMOTE_FLAG,
        action="store_true",
        help="bind a --host other than loopback although the UI has no login",
    )
    parser.add_argument(
        "--port", type=int, default=ui.MLFLOW_PORT, help="MLflow UI port; a free one if taken"
    )
    parser.add_argument("--dashboard", action="store_true", help="also start optuna-dashboard")
    parser.add_argument(
        "--dashboard-port",
        type=int,
        default=ui.DASHBOARD_PORT,
        help="optuna-dashboard port; a free one if taken",
    )
    args = parser.parse_args()
    for name in ("port", "dashboard_port"):
        if not 0 <= getattr(args, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be a port number, 0-65535")
    instead = ", or the whole URL in mlflow.yaml or MLFLOW_TRACKING_URI"
    ui.reject_password("--tracking-uri", args.tracking_uri, instead)
    ui.reject_password("--storage", args.storage, ", or the whole URL in mlflow.yaml")
    settings = tracking.load_settings(args.config_file, args.tracking_uri)
    if args.storage:
        settings = dataclasses.replace(settings, optuna_storage=args.storage)
    ui.serve(
        settings,
        host=args.host,
        port=args.port,
        dashboard=args.dashboard,
        dashboard_port=args.dashboard_port,
        allow_remote=args.allow_remote_without_login,
    )


if __name__ == "__main__":
    run_main(main)
