"""Start the MLflow tracking server for sweep workers on several machines, sign-in required.

    read -rs MLFLOW_AUTH_ADMIN_PASSWORD; export MLFLOW_AUTH_ADMIN_PASSWORD   # first start only
    python experiments/server.py \\
        --backend-store-uri postgresql+psycopg://sae@DBHOST:5432/sae_mlflow \\
        --artifacts-destination /srv/mlflow-artifacts \\
        --host 0.0.0.0 --allowed-hosts SERVER:5000

It runs `mlflow server --app-name basic-auth` with MLflow's host check, the stores passed through
its environment (never its command line) and the database password left to libpq (~/.pgpass,
PGPASSFILE or PGPASSWORD). Workers sign in with MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD. Ctrl-C stops it.
"""

import os

from sae import server, ui
from sae.cli import ArgumentParser, add_dataclass_arguments, run_main, section_values


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    add_dataclass_arguments(parser, "server", server.TrackingServerConfig(), title="server")
    values = section_values(parser.parse_args(), "server")
    ui.reject_password("--backend-store-uri", values.get("backend_store_uri"))
    ui.reject_password("--auth-db", values.get("auth_db"))
    values.setdefault("backend_store_uri", os.environ.get("MLFLOW_BACKEND_STORE_URI"))
    server.serve(server.TrackingServerConfig(**values))


if __name__ == "__main__":
    run_main(main)
