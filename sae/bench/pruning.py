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

from sae.bench.replay import front_hypervolume, records, replay

EPOCHS_TARGET = 2.0
"""At least this many times fewer training epochs with the pruner ..."""
HYPERVOLUME_TARGET = 0.98
"""... for a hypervolume at least this fraction of the unpruned front's (means over the seeds):
the small and full settings' target, which runs the sweeps."""
SAFE_SHARE = 0.99
"""The default rule is safe when, replayed on every recorded sweep, its front keeps at least this
fraction of the unpruned front's hypervolume; it is designed to save EPOCHS_TARGET (mean)."""


def sweep_outcome(study: Any) -> dict[str, float]:
    """What one finished sweep spent and found: training epochs (each trial's recorded epochs),
    trials pruned, and the hypervolume of its front (``sweep.best_trials``: no degenerate
    trial), against REFERENCE."""
    from optuna.trial import TrialState

    from sae.names import ATTR_EPOCH_POINTS
    from sae.sweep import best_trials

    trials = study.get_trials(deepcopy=False)
    return {
        "epochs": sum(len(t.user_attrs.get(ATTR_EPOCH_POINTS, {})) for t in trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "front": len(best_trials(study)),
        "hypervolume": front_hypervolume(study),
    }


def pruning_figures(
    folder: Path,
    data_root: str,
    setting: str,
    argv: Sequence[str],
    seeds: Sequence[int],
    log: Callable[[str], None],
) -> dict[str, float]:
    """The sweep command (``argv`` its size: trials, epochs, images) with ``--pruner none``
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
        figures, outcomes = seed_figures(folder, data_root, setting, argv, seed, log)
        out.update(figures)
        seen.append(outcomes)
    out.update(ratio_figures(setting, seen, log))
    return out


def seed_figures(
    folder: Path,
    data_root: str,
    setting: str,
    argv: Sequence[str],
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
            seen["replay"] = sweep_outcome(replay(study, ParetoPruner()).kept)
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


def recorded_figures(log: Callable[[str], None], folder: Path | None = None) -> dict[str, float]:
    """The default Pareto pruner replayed on every recorded full default sweep (``folder``: the
    fixtures, ``sae.bench.replay.RECORDS``, by default), in trial-number order. Keys
    ``pruning_recorded_{record}_...`` for each (epochs, total, saved, pruned, hypervolume,
    unpruned, kept), then ``pruning_recorded_saved_mean``, ``..._kept_min``, ``..._safe`` (1.0
    when every record keeps SAFE_SHARE of its hypervolume) and ``..._target_met`` (safe, and
    EPOCHS_TARGET saved on the mean)."""
    from sae.sweep.pareto import ParetoPruner

    found = records() if folder is None else records(folder)
    if not found:
        raise ValueError(f"no sweep record in {folder or 'sae/bench/records'}")
    out: dict[str, float] = {}
    saved, kept = [], []
    for name, study in found.items():
        result = replay(study, ParetoPruner())
        figures = {
            "epochs": result.epochs,
            "total": result.total,
            "saved": result.saved,
            "pruned": len(result.stops),
            "hypervolume": result.hypervolume,
            "unpruned": result.unpruned,
            "kept": result.kept_share,
        }
        out.update({f"pruning_recorded_{name}_{k}": float(v) for k, v in figures.items()})
        saved.append(result.saved)
        kept.append(result.kept_share)
        log(f"pruning, recorded sweep {name}: {len(result.stops)} trials stopped, {result.line()}")
    out["pruning_recorded_saved_mean"] = statistics.mean(saved)
    out["pruning_recorded_kept_min"] = min(kept)
    safe = min(kept) >= SAFE_SHARE
    out["pruning_recorded_safe"] = float(safe)
    met = safe and statistics.mean(saved) >= EPOCHS_TARGET
    out["pruning_recorded_target_met"] = float(met)
    log(
        f"pruning, {len(found)} recorded sweeps: {statistics.mean(saved):.2f}x fewer epochs "
        f"(mean), the least hypervolume kept {min(kept):.1%}; safe (>= {SAFE_SHARE:.0%} on "
        f"every one): {'yes' if safe else 'NO'}; {EPOCHS_TARGET:g}x target: "
        f"{'met' if met else 'NOT met'}"
    )
    return out
