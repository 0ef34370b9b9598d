"""The pruning part: the Pareto sweep with and without its pruner (``sae.sweep.pareto``), from the
same sampler seeds: the training epochs spent, the wall time, and the hypervolume of the final
front of non-degenerate trials."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REFERENCE = (0.07, 1.0)
"""The hypervolume's reference point (test MSE, code active fraction): a reconstruction no
better than MNIST's mean image (test MSE about 0.067) with every code unit active. Fixed, so that
the fronts of all runs are measured against the same point."""

EPOCHS_TARGET = 2.0
"""At least this many times fewer training epochs with the pruner ..."""
HYPERVOLUME_TARGET = 0.98
"""... for a hypervolume at least this fraction of the unpruned front's (means over the seeds)."""


def sweep_outcome(study: Any) -> dict[str, float]:
    """What one finished sweep spent and found: training epochs (each trial's recorded epochs),
    trials pruned, and the hypervolume of its front (``sweep.best_trials``: no degenerate
    trial), against REFERENCE."""
    from optuna.trial import TrialState

    from sae.names import ATTR_EPOCH_POINTS
    from sae.sweep import best_trials
    from sae.sweep.pareto import hypervolume

    trials = study.get_trials(deepcopy=False)
    front = [tuple(t.values[:2]) for t in best_trials(study)]
    return {
        "epochs": sum(len(t.user_attrs.get(ATTR_EPOCH_POINTS, {})) for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "front": len(front),
        "hypervolume": hypervolume(front, REFERENCE),
    }


def pruning_figures(
    folder: Path,
    data_root: str,
    setting: str,
    argv: Sequence[str],
    seeds: Sequence[int],
    log: Callable[[str], None],
) -> dict[str, float]:
    """The sweep command (``argv`` its size: trials, epochs, images) with ``--pruner none`` and
    ``--pruner pareto`` for each sampler seed, each in a fresh process on its own study in
    ``folder`` (which holds the benchmark's mlflow.yaml); keys ``pruning_{setting}_...``."""
    import optuna

    from sae.sweep import make_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line for each study read back
    out: dict[str, float] = {}
    ratios: dict[str, list[float]] = {"epochs": [], "hypervolume": []}
    for seed in seeds:
        seen = {}
        for pruner in ("none", "pareto"):
            name = f"pruning-{setting}-{seed}-{pruner}-{time.time_ns()}"
            command = [
                *(sys.executable, "-m", "sae", "sweep", "--root", data_root, *argv),
                *("--config-file", "mlflow.yaml", "--storage", f"{name}.journal"),
                *("--study-name", name, "--sampler-seed", str(seed), "--pruner", pruner),
                *("--objective", "pareto", "--confirm", "0", "--no-log-model"),
            ]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(f"the {pruner} sweep failed: {done.stderr[-500:]}")
            storage = make_storage(str(folder / f"{name}.journal"))
            seen[pruner] = {
                **sweep_outcome(optuna.load_study(study_name=name, storage=storage)),
                "seconds": seconds,
            }
            key = f"pruning_{setting}_seed{seed}_{pruner}"
            for figure, value in seen[pruner].items():
                out[f"{key}_{figure}"] = value
            log(
                f"pruning, {setting}, seed {seed}, --pruner {pruner}: {seen[pruner]['epochs']} "
                f"epochs, {seen[pruner]['pruned']} trials pruned, {seconds:.0f} s, hypervolume "
                f"{seen[pruner]['hypervolume']:.5f} ({seen[pruner]['front']} on the front)"
            )
        ratios["epochs"].append(seen["none"]["epochs"] / seen["pareto"]["epochs"])
        unpruned = seen["none"]["hypervolume"]
        ratios["hypervolume"].append(
            seen["pareto"]["hypervolume"] / unpruned if unpruned else float("nan")
        )
    epochs, volume = statistics.mean(ratios["epochs"]), statistics.mean(ratios["hypervolume"])
    out[f"pruning_{setting}_epochs_ratio"] = epochs
    out[f"pruning_{setting}_hypervolume_ratio"] = volume
    met = epochs >= EPOCHS_TARGET and volume >= HYPERVOLUME_TARGET
    out[f"pruning_{setting}_target_met"] = float(met)
    log(
        f"pruning, {setting}: {epochs:.2f}x fewer epochs, hypervolume {volume:.1%} of the "
        f"unpruned front's (means over {len(seeds)} seeds); target "
        f"{EPOCHS_TARGET:g}x within {1 - HYPERVOLUME_TARGET:.0%}: {'met' if met else 'NOT met'}"
    )
    return out
