"""Benchmarks: the training core against the seed's own loop, tracking overhead, evaluation,
sweep throughput, peak memory, the arithmetic bound, sweep trials trained as populations, the
Pareto sweep with and without its pruner, and the families' and samplers' fronts.

loops (what is timed, and the seed's loop), population (the population part), pruning (the
pruning part), frontiers (the frontiers and samplers parts), suite (``BenchConfig`` and ``run``:
the parts in order), output (the figures as JSON, with where they came from), targets (the
bound a figure must meet), tables and markdown (markdown tables of the JSON).
"""

from sae.bench.loops import (
    SeedModel,
    core_images_per_s,
    eval_ms,
    flops_per_image,
    machine,
    matmul_gflops,
    peak_rss_mb,
    probe_seconds,
    seed_loop_images_per_s,
    seed_loss,
    tracked_fit_seconds,
)
from sae.bench.output import source, write_json
from sae.bench.population import WARM_UP_IMAGES, population_figures, sweep_trial_params
from sae.bench.suite import PARTS, BenchConfig, parse_parts, run
from sae.bench.targets import TARGETS, meets

__all__ = [
    "PARTS",
    "TARGETS",
    "WARM_UP_IMAGES",
    "BenchConfig",
    "SeedModel",
    "core_images_per_s",
    "eval_ms",
    "flops_per_image",
    "machine",
    "matmul_gflops",
    "meets",
    "parse_parts",
    "peak_rss_mb",
    "population_figures",
    "probe_seconds",
    "run",
    "source",
    "seed_loop_images_per_s",
    "seed_loss",
    "sweep_trial_params",
    "tracked_fit_seconds",
    "write_json",
]
