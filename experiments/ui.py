"""Browse the runs: the MLflow UI (and optuna-dashboard) on the stores of this project.

    python experiments/ui.py                 # MLflow UI on http://127.0.0.1:5000 (or a free port)
    python experiments/ui.py --dashboard     # and optuna-dashboard on the sweep's storage

The stores are the ones `mlflow.yaml` names, the same the runs were logged to. Ctrl-C stops all.
Neither server has a login: binding anything but loopback needs --allow-remote-without-login.
"""

from sae.commands import ui

if __name__ == "__main__":
    ui.run()
