"""Train the sparse autoencoder once on MNIST, tracked in MLflow."""

from typing import NoReturn

from sae import metrics as M
from sae.cli import ArgumentParser, add_config_arguments, config_from_args, run_main
from sae.progress import Progress
from sae.runner import train_run


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    add_config_arguments(parser)
    cfg = config_from_args(parser.parse_args())
    outcome = train_run(cfg, callbacks=[Progress()], log=print)
    final = outcome.result.final
    if final:
        probe = final.get(M.PROBE_ACCURACY)
        print(
            f"final: test MSE {final[M.TEST_MSE]:.6f}, train loss {final[M.EPOCH_LOSS]:.8f}, "
            f"README testing loss {final[M.README_TEST_LOSS]:.8f}, code L0 "
            f"{final[M.CODE_L0]:.1f} of 64 units"
            + (f", probe accuracy {probe:.3f}" if probe is not None else "")
        )
        why = outcome.result.degenerate_reason
        if why:
            print(f"degenerate: {why}")
    if outcome.run_id:
        print(f"MLflow run {outcome.run_id} in {outcome.tracking_uri}")
        print(f"browse: mlflow ui --backend-store-uri {outcome.tracking_uri}")


def run() -> NoReturn:
    """``sae-train``."""
    run_main(main)
