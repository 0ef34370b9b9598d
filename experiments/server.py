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

from sae.commands import server

if __name__ == "__main__":
    server.run()
