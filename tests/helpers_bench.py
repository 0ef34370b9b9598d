"""Benchmark JSON as experiments/bench.py writes it, with figures from the README's tables (a CPU
run, a GPU pair, the population and pruning parts), for the tests of the tables made from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MACHINE = {
    "cpu": "AMD EPYC",
    "cores": "2",
    "torch_threads": "2",
    "torch": "2.14.1",
    "python": "3.11.7",
    "device": "cpu",
    "amp": "False",
    "parts": "throughput,tracking,eval,probe,sweep,memory,flops,population,pruning",
    "images": "None",
    "repeats": "3",
    "population_ks": "(1, 2)",
    "population_epochs": "1",
    "population_train_size": "None",
    "sweep_trials": "6",
    "sweep_train_size": "3000",
    "pruning_seeds": "(0, 1)",
    "pruning_settings": "('small',)",
    "pruning_trials": "12",
    "pruning_epochs": "4",
    "pruning_train_size": "10000",
}

CPU = {
    "core_images_per_s": 5229.4,
    "seed_loop_images_per_s": 2478.2,
    "speedup_vs_seed_loop": 5229.4 / 2478.2,
    "epoch_seconds_untracked": 11.52,
    "epoch_seconds_tracked": 11.43,
    "tracking_overhead_pct": -0.81,
    "tracking_end_of_run_seconds": 3.61,
    "eval_ms_10k": 1001.3,
    "probe_seconds": 1.72,
    "probe_accuracy_after_1_epoch": 0.9123,
    "ten_epoch_run_seconds": 58.6,
    "probe_pct_of_10_epoch_run": 2.85,
    "sweep_trials_per_hour_1w": 369.2,
    "sweep_trials_per_hour_2w": 389.4,
    "sweep_trials_per_hour_pop2": 364.1,
    "sweep_trials_per_hour_pop6": 371.8,
    "sweep_speedup_2w": 389.4 / 369.2,
    "sweep_peak_rss_mb_1w": 1970.2,
    "sweep_peak_rss_mb_2w": 1890.0,
    "sweep_peak_rss_mb_pop2": 2010.5,
    "sweep_peak_rss_mb_pop6": 2200.4,
    "train_peak_rss_mb": 1158.3,
    "train_mflops_per_image": 4.195968,
    "matmul_gflops": 172.4,
    "achieved_gflops": 21.94,
    "fraction_of_matmul_peak": 21.94 / 172.4,
}

POPULATION = {
    "population_alone_trials_per_hour": 24.2,
    "population_k1_trials_per_hour": 20.04,
    "population_k1_images_per_s": 4381.2,
    "population_k1_fraction_of_matmul_peak": 0.1068,
    "population_k1_groups": 1,
    "population_k1_failed": 0,
    "population_k1_speedup_vs_alone": 0.6012,
    "population_k2_trials_per_hour": 22.01,
    "population_k2_images_per_s": 4819.4,
    "population_k2_fraction_of_matmul_peak": 0.1172,
    "population_k2_groups": 2,
    "population_k2_failed": 1,
    "population_k2_speedup_vs_alone": 0.6523,
    "population_best_k": 2,
    "population_speedup_best_vs_k1": 22.01 / 20.04,
}


def _seed(seed: int, none: tuple, pareto: tuple, replay: tuple) -> dict[str, float]:
    out = {}
    for name, (epochs, pruned, front, volume, *seconds) in (
        ("none", none),
        ("pareto", pareto),
        ("replay", replay),
    ):
        figures = {"epochs": epochs, "pruned": pruned, "front": front, "hypervolume": volume}
        if seconds:
            figures["seconds"] = seconds[0]
        out.update({f"pruning_small_seed{seed}_{name}_{k}": v for k, v in figures.items()})
    return out


PRUNING = {
    **_seed(0, (48, 0, 5, 0.03783, 233.4), (36, 4, 4, 0.03686, 166.2), (33, 5, 4, 0.03768)),
    **_seed(1, (48, 0, 6, 0.04399, 189.0), (33, 5, 3, 0.03767, 151.0), (33, 5, 3, 0.03673)),
    "pruning_small_epochs_ratio": (48 / 36 + 48 / 33) / 2,
    "pruning_small_hypervolume_ratio": (0.03686 / 0.03783 + 0.03767 / 0.04399) / 2,
    "pruning_small_replay_epochs_ratio": (48 / 33 + 48 / 33) / 2,
    "pruning_small_replay_hypervolume_ratio": (0.03768 / 0.03783 + 0.03673 / 0.04399) / 2,
    "pruning_small_target_met": 0.0,
}

GPU = {
    "core_images_per_s": 28758.0,
    "seed_loop_images_per_s": 7437.0,
    "speedup_vs_seed_loop": 28758.0 / 7437.0,
    "eval_ms_10k": 59.2,
    "train_mflops_per_image": 4.195968,
    "matmul_gflops": 51234.0,
    "achieved_gflops": 120.7,
    "fraction_of_matmul_peak": 120.7 / 51234.0,
}
GPU_MACHINE = {
    **MACHINE,
    "cpu": "Intel Xeon",
    "cores": "16",
    "torch": "2.11.0+cu130",
    "device": "cuda: NVIDIA H200",
    "parts": "throughput,eval,flops",
}

DATE = "2026-11-28T09:15:42+00:00"
COMMAND = "python experiments/bench.py --device cpu"


def bench_json(
    path: Path,
    results: dict[str, Any],
    machine: dict[str, str] | None = None,
    origin: dict[str, str] | None = None,
) -> Path:
    """Write a benchmark JSON file at ``path`` (``origin``: its date and command; default the
    ones above, {} for a file written before they were kept)."""
    origin = {"date": DATE, "command": COMMAND} if origin is None else origin
    saved = {"machine": machine or MACHINE, "results": results, **origin}
    path.write_text(json.dumps(saved, indent=2))
    return path
