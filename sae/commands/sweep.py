"""Search beta, lr and batch size with Optuna; every trial is a tracked MLflow run."""

import dataclasses
import shlex
from pathlib import Path
from typing import NoReturn

from sae import metrics as M
from sae import tracking
from sae.cli import ArgumentParser, add_config_arguments, config_from_args, run_main
from sae.redact import redact
from sae.sweep import SweepConfig, SweepResult, read_space_file, run_sweep
from sae.sweep.confirm import comparison_lines
from sae.sweep.notes import served, ui_address, ui_hint
from sae.sweep.summary import DEGENERATE, degenerate_trials
from sae.tracking import views

TABLE_COLUMNS = {
    "number": "trial",
    "beta": "beta",
    "topk": "K",
    "lr": "lr",
    "batch_size": "batch size",
    M.TEST_MSE: "test MSE",
    M.CODE_L0: "code L0",
    M.CODE_ACTIVE_FRAC: "active fraction",
    M.PROBE_ACCURACY: "probe accuracy",
}
"""The console table's columns (trials frame column: header); of beta and K, the one the
family searched."""
SEARCHED_BY_FAMILY = ("beta", "topk")


UI_COMMAND = "python experiments/ui.py --dashboard"


def ui_command(config_file: str, storage: str | None) -> str:
    """The command that browses these stores: the default one, with the settings file and the
    storage where the sweep was given others (a password in the storage shown as ***)."""
    command = UI_COMMAND
    if Path(config_file).resolve() != Path(tracking.DEFAULT_SETTINGS_FILE).resolve():
        command += f" --config-file {shlex.quote(config_file)}"
    if storage:
        command += f" --storage {shlex.quote(redact(storage))}"
    return command


def report(result: SweepResult, cfg: SweepConfig, browse: str = UI_COMMAND) -> None:
    trials = result.trials
    states = trials["state"].value_counts().to_dict() if len(trials) else {}
    counted = ", ".join(f"{n} {state}" for state, n in states.items())
    minutes = result.seconds / 60
    print(f"\nstudy {cfg.study_name!r}: {len(trials)} trials ({counted}), {minutes:.1f} min")
    title = "best feasible trial" if cfg.objective == "constrained" else "Pareto-optimal trials"
    if len(result.best):
        print(f"\n{title}, each one run on the whole test set (degenerate trials left out):\n")
        best = result.best
        shown = [
            c
            for c in TABLE_COLUMNS
            if c in best and (c not in SEARCHED_BY_FAMILY or best[c].notna().any())
        ]
        table = best[shown].rename(columns=TABLE_COLUMNS)
        table = table.astype(object).where(table.notna(), None)
        print(table.to_markdown(index=False, floatfmt=".6g", missingval=""))
    else:
        print(f"\nno {title} yet")
    kept_off = (
        "kept out of the best trial" if cfg.objective == "constrained" else "kept off the front"
    )
    for _, row in degenerate_trials(result).iterrows():
        print(f"trial {row['number']} degenerate, {kept_off}: {row[DEGENERATE]}")
    _comparisons(result)
    _closing(result, cfg, browse)


def _closing(result: SweepResult, cfg: SweepConfig, browse: str) -> None:
    """Where to look next: the UI, the study's landing view, the registered model."""
    uri = result.tracking_uri
    address = ui_address(uri)
    if served(uri):
        print(f"\nbrowse: {address} (the tracking server's UI)")
    else:
        print(f"\nbrowse: {browse} (the MLflow UI and optuna-dashboard)")
    if result.experiment_id:
        key = views.study_view_key(cfg.study_name)
        print(
            f"the study's trials, lowest test MSE first: "
            f"{views.view_url(address, result.experiment_id, key)}"
        )
        print(f"  ({ui_hint(uri)})")
    if result.registered:
        print(f'the chosen model: mlflow.pytorch.load_model("{result.registered}")')
    print(f"the study's parent run: {result.parent_run_id}; Optuna storage: {result.storage}")


def _comparisons(result: SweepResult) -> None:
    """Each front trial against the tracked baseline runs: n, mean ± sd, Welch's verdict."""
    print()
    print("\n".join(comparison_lines(result.comparisons, result.baseline_runs)))


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
    report(result, args.sweep, ui_command(base.tracking.config_file, args.sweep.storage))


def run() -> NoReturn:
    """``sae-sweep``."""
    run_main(main)
