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


def replay(study: Any, pruner: Any, epochs: int) -> Any:
    """What ``pruner`` would have kept of the unpruned ``study`` (a sweep of ``epochs`` epochs,
    one worker), as an in-memory study: its trials in number order, each deciding at its rungs
    against the points the earlier ones would have recorded, up to where they would have stopped.

    The same trials either way, so the comparison measures the pruner alone; a real pruned sweep
    also draws other trials after its first prune (its sampler learns from the pruned points).
    """
    import copy

    import optuna
    from optuna.trial import TrialState, create_trial

    from sae.names import ATTR_EPOCH_POINTS, ATTR_PRUNED_AT

    kept = optuna.create_study(directions=study.directions)
    seen: list[Any] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        points = trial.user_attrs.get(ATTR_EPOCH_POINTS, {})
        running = copy.deepcopy(trial)
        running.state = TrialState.RUNNING
        stopped = None
        for epoch in range(1, epochs + 1):
            running.user_attrs = {
                ATTR_EPOCH_POINTS: {e: p for e, p in points.items() if int(e) <= epoch}
            }
            if pruner.decide([*seen, running], trial.number, epoch, epochs):
                stopped = epoch
                break
        if stopped is None:
            seen.append(trial)
            kept.add_trial(trial)
        else:
            running.state = TrialState.PRUNED
            seen.append(running)
            kept.add_trial(
                create_trial(
                    state=TrialState.PRUNED,
                    params=trial.params,
                    distributions=trial.distributions,
                    user_attrs={**running.user_attrs, ATTR_PRUNED_AT: stopped},
                )
            )
    return kept


def pruning_figures(
    folder: Path,
    data_root: str,
    setting: str,
    argv: Sequence[str],
    epochs: int,
    seeds: Sequence[int],
    log: Callable[[str], None],
) -> dict[str, float]:
    """The sweep command (``argv`` its size: trials, ``epochs``, images) with ``--pruner none``
    and ``--pruner pareto`` for each sampler seed, each in a fresh process on its own study in
    ``folder`` (which holds the benchmark's mlflow.yaml); and the pruner replayed on each
    unpruned study (``replay``: the same trials, so the pruner's own cost). Keys
    ``pruning_{setting}_...``: each seed's (``seed_figures``), then the means over the seeds
    of the ratios (``ratio_figures``) and whether they meet the target."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line for each study read back
    out: dict[str, float] = {}
    seen = []
    for seed in seeds:
        figures, outcomes = seed_figures(folder, data_root, setting, argv, epochs, seed, log)
        out.update(figures)
        seen.append(outcomes)
    out.update(ratio_figures(setting, seen, log))
    return out


def seed_figures(
    folder: Path,
    data_root: str,
    setting: str,
    argv: Sequence[str],
    epochs: int,
    seed: int,
    log: Callable[[str], None],
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """One seed's two sweeps and the replay: their figures under
    ``pruning_{setting}_seed{seed}_{none,pareto,replay}_...``, and their outcomes by name."""
    from sae.sweep.pareto import ParetoPruner

    seen: dict[str, dict[str, float]] = {}
    out: dict[str, float] = {}
    for pruner in ("none", "pareto"):
        name = f"pruning-{setting}-{seed}-{pruner}-{time.time_ns()}"
        study, seconds = run_sweep(folder, data_root, argv, name, seed, pruner)
        seen[pruner] = {**sweep_outcome(study), "seconds": seconds}
        if pruner == "none":
            seen["replay"] = sweep_outcome(replay(study, ParetoPruner(), epochs))
        for figure, value in seen[pruner].items():
            out[f"pruning_{setting}_seed{seed}_{pruner}_{figure}"] = value
        log(
            f"pruning, {setting}, seed {seed}, --pruner {pruner}: {seen[pruner]['epochs']} "
            f"epochs, {seen[pruner]['pruned']} trials pruned, {seconds:.0f} s, hypervolume "
            f"{seen[pruner]['hypervolume']:.5f} ({seen[pruner]['front']} on the front)"
        )
    for figure, value in seen["replay"].items():
        out[f"pruning_{setting}_seed{seed}_replay_{figure}"] = value
    log(
        f"pruning, {setting}, seed {seed}, replayed on the unpruned sweep: "
        f"{seen['replay']['epochs']} epochs, {seen['replay']['pruned']} trials pruned, "
        f"hypervolume {seen['replay']['hypervolume']:.5f}"
    )
    return out, seen


def run_sweep(
    folder: Path, data_root: str, argv: Sequence[str], name: str, seed: int, pruner: str
) -> tuple[Any, float]:
    """The Pareto sweep ``argv`` as study ``name`` with ``--pruner pruner``, in a fresh process
    in ``folder``: the finished study, read back, and the process's wall seconds."""
    import optuna

    from sae.sweep import make_storage

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
    return optuna.load_study(study_name=name, storage=storage), seconds


def ratio_figures(
    setting: str, seen: Sequence[dict[str, dict[str, float]]], log: Callable[[str], None]
) -> dict[str, float]:
    """Over the seeds' outcomes (``seed_figures``), the means of the unpruned epochs over the
    pruned's and of the pruned hypervolume over the unpruned's, for the pruned sweep and the
    replay (``pruning_{setting}_[replay_]{epochs,hypervolume}_ratio``), and
    ``pruning_{setting}_target_met`` (1.0 or 0.0: the pruned sweep's means against
    EPOCHS_TARGET and HYPERVOLUME_TARGET)."""
    ratios: dict[str, list[float]] = {
        "epochs": [],
        "hypervolume": [],
        "replay_epochs": [],
        "replay_hypervolume": [],
    }
    for outcomes in seen:
        unpruned = outcomes["none"]
        for prefix, pruned in (("", outcomes["pareto"]), ("replay_", outcomes["replay"])):
            ratios[prefix + "epochs"].append(unpruned["epochs"] / pruned["epochs"])
            ratios[prefix + "hypervolume"].append(
                pruned["hypervolume"] / unpruned["hypervolume"]
                if unpruned["hypervolume"]
                else float("nan")
            )
    out = {f"pruning_{setting}_{figure}_ratio": statistics.mean(v) for figure, v in ratios.items()}
    log(
        f"pruning, {setting}, replayed: {out[f'pruning_{setting}_replay_epochs_ratio']:.2f}x "
        f"fewer epochs, hypervolume {out[f'pruning_{setting}_replay_hypervolume_ratio']:.1%}"
    )
    epochs, volume = statistics.mean(ratios["epochs"]), statistics.mean(ratios["hypervolume"])
    met = epochs >= EPOCHS_TARGET and volume >= HYPERVOLUME_TARGET
    out[f"pruning_{setting}_target_met"] = float(met)
    log(
        f"pruning, {setting}: {epochs:.2f}x fewer epochs, hypervolume {volume:.1%} of the "
        f"unpruned front's (means over {len(seen)} seeds); target "
        f"{EPOCHS_TARGET:g}x within {1 - HYPERVOLUME_TARGET:.0%}: {'met' if met else 'NOT met'}"
    )
    return out
