"""Start the MLflow tracking server for sweep workers on several machines, sign-in required."""

import dataclasses
import os
from typing import NoReturn

from sae import server
from sae.cli import ArgumentParser, run_main


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_dataclass("server", server.TrackingServerConfig())
    cfg = parser.parse_args().server
    # The environment is no command line: a password may stay in its URL.
    from_env = os.environ.get("MLFLOW_BACKEND_STORE_URI")
    server.serve(dataclasses.replace(cfg, backend_store_uri=cfg.backend_store_uri or from_env))


def run() -> NoReturn:
    """``sae-server``."""
    run_main(main)
