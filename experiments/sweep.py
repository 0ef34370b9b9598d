"""Search beta, lr and batch size with Optuna; every trial is a tracked MLflow run.

    python experiments/sweep.py --trials 30                     # the main job: Pareto front
    python experiments/sweep.py --trials 30 --workers 2         # two processes share the study
    python experiments/sweep.py --objective constrained --max-active-frac 0.25
    python experiments/sweep.py --trials 12 --epochs 2 --train-size 10000   # a quick look

Rerunning the same command resumes the study: --trials counts finished trials in total.
Training flags (--epochs, --train-size, ...) apply to every trial; see --help.
"""

import dataclasses

from sae import metrics as M
from sae.cli import (
    ArgumentParser,
    add_config_arguments,
    add_dataclass_arguments,
    config_from_args,
    run_main,
    section_values,
)
from sae.sweep import SweepConfig, SweepResult, read_space_file, run_sweep


def sweep_config(args) -> SweepConfig:
    """Defaults, then the --space file, then the flags."""
    values = section_values(args, "sweep")
    space_file = values.get("space")
    from_file = read_space_file(space_file) if space_file else {}
    return SweepConfig(**{**from_file, **values})


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
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    add_dataclass_arguments(parser, "sweep", SweepConfig(), title="sweep")
    add_config_arguments(parser)
    args = parser.parse_args()
    cfg = sweep_config(args)
    base = config_from_args(args)
    if not base.tracking.track:
        raise ValueError("a sweep is always tracked; drop --no-track")
    base = dataclasses.replace(base, tracking=dataclasses.replace(base.tracking, run_name=None))
    result = run_sweep(base, cfg)
    report(result, cfg)


if __name__ == "__main__":
    run_main(main)
