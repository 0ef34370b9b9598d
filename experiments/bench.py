"""Benchmark the training core against the seed's own loop, and the rest of the suite.

    python experiments/bench.py                  # about 5 minutes on a 2-core CPU
    python experiments/bench.py --images 60000 --repeats 5
    python experiments/bench.py --device cuda --amp

Prints a table, writes a JSON file, and logs every figure to an MLflow run in the `benchmarks`
experiment (the machine as tags).
"""

import argparse
from pathlib import Path

from sae import bench, tracking
from sae.cli import ArgumentParser, run_main
from sae.data import default_root

TARGETS = {
    "speedup_vs_seed_loop": (">=", 2.0),
    "tracking_overhead_pct": ("<=", 3.0),
    "sweep_speedup_2w": (">=", 1.2),
}


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20_000, help="images per throughput run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repetitions")
    parser.add_argument("--sweep-trials", type=int, default=6, help="trials of the small sweep")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--root", default=str(default_root()), help="data root")
    parser.add_argument("--output", default="reports/benchmarks.json", help="JSON file")
    parser.add_argument("--config-file", default="mlflow.yaml", help="tracking settings")
    args = parser.parse_args()
    if args.images < 100 or args.repeats < 1 or args.sweep_trials < 1:
        raise ValueError("--images must be >= 100, --repeats and --sweep-trials >= 1")

    cfg = bench.BenchConfig(
        images=args.images,
        repeats=args.repeats,
        sweep_trials=args.sweep_trials,
        device=args.device,
        amp=args.amp,
    )
    info = bench.machine()
    print(f"machine: {info}")
    results = bench.run(cfg, args.root, log=print)
    width = max(map(len, results))
    print()
    for key, value in results.items():
        target = TARGETS.get(key)
        note = ""
        if target:
            op, bound = target
            met = value >= bound if op == ">=" else value <= bound
            note = f"   target {op} {bound:g}: {'met' if met else 'NOT met'}"
        print(f"{key:<{width}}  {value:>12,.3f}{note}")
    output = Path(args.output)
    bench.write_json(results, info, output)
    settings = tracking.load_settings(args.config_file)
    run_id = tracking.log_benchmark(settings, results, info, [output])
    print(f"\nwritten to {output}; MLflow run {run_id} in experiment 'benchmarks'")


if __name__ == "__main__":
    run_main(main)
