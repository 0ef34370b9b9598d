"""Search beta, lr and batch size with Optuna; every trial is a tracked MLflow run."""

import dataclasses
from typing import NoReturn

from sae import metrics as M
from sae.cli import ArgumentParser, add_config_arguments, config_from_args, run_main
from sae.sweep import SweepConfig, SweepResult, read_space_file, run_sweep


def report(result: SweepResult, cfg: SweepConfig) -> None:
    trials = result.trials
    states = trials["state"].value_counts().to_dict() if len(trials) else {}
    print(
        f"\nstudy {cfg.study_name!r}: {len(trials)} trials {states}, {result.seconds / 60:.1f} min"
    )
    title = "Pareto-optimal trials" if cfg.objective == "pareto" else "best feasible trial"
    columns = [
        "number",
        "beta",
        "lr",
        "batch_size",
        M.TEST_MSE,
        M.CODE_ACTIVE_FRAC,
        "mlflow_run_id",
    ]
    if len(result.best):
        print(f"\n{title} (test MSE and code active fraction on the whole test set):\n")
        print(result.best[columns].to_markdown(index=False, floatfmt=".6g"))
    else:
        print(f"\nno {title} yet")
    if result.baseline:
        b = result.baseline
        print(
            f"\nbaseline (beta 1e-4, mean of {b['runs']:.0f} tracked runs): "
            f"test MSE {b[M.TEST_MSE]:.6g}, code active fraction {b[M.CODE_ACTIVE_FRAC]:.3g}"
        )
    else:
        print("\nno tracked baseline runs to compare with: run `python experiments/baseline.py`")
    served = result.tracking_uri.startswith(("http://", "https://"))
    print(f"\nbrowse: {result.tracking_uri if served else 'python experiments/ui.py --dashboard'}")
    print(f"the study's parent run: {result.parent_run_id}; Optuna storage: {result.storage}")


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_dataclass("sweep", SweepConfig())
    # Defaults, then the --space file, then the flags.
    parser.read_defaults_from("--space", lambda path: {"sweep": read_space_file(path)})
    add_config_arguments(parser)
    args = parser.parse_args()
    base = config_from_args(args)
    if not base.tracking.track:
        raise ValueError("a sweep is always tracked; drop --no-track")
    base = dataclasses.replace(base, tracking=dataclasses.replace(base.tracking, run_name=None))
    result = run_sweep(base, args.sweep)
    report(result, args.sweep)


def run() -> NoReturn:
    """``sae-sweep``."""
    run_main(main)
