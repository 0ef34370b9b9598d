"""Benchmark the training core against the seed's own loop, and the rest of the suite.

    python experiments/bench.py                  # about 4 minutes on a 2-core CPU
    python experiments/bench.py --images 60000 --repeats 5
    python experiments/bench.py --device cuda --amp --parts throughput,eval,flops
    python experiments/bench.py --from-json gpu.json   # log figures measured on another machine

Prints a table, writes a JSON file, and logs every figure to an MLflow run in the `benchmarks`
experiment (the machine as tags).
"""

import argparse
import json
from pathlib import Path

from sae import bench
from sae.cli import ArgumentParser, run_main
from sae.data import default_root
from sae.train import resolve_device

TARGETS = {
    "speedup_vs_seed_loop": (">=", 2.0),
    "tracking_overhead_pct": ("<=", 3.0),
    "sweep_speedup_2w": (">=", 1.2),
}


def parts(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in bench.PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown part {', '.join(unknown) or '(none)'}; choose from {','.join(bench.PARTS)}"
        )
    return names


def print_table(results: dict[str, float]) -> None:
    width = max(map(len, results))
    for key, value in results.items():
        target = TARGETS.get(key)
        note = ""
        if target:
            op, bound = target
            met = value >= bound if op == ">=" else value <= bound
            note = f"   target {op} {bound:g}: {'met' if met else 'NOT met'}"
        print(f"{key:<{width}}  {value:>12,.3f}{note}")


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20_000, help="images per throughput run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repetitions")
    parser.add_argument("--sweep-trials", type=int, default=6, help="trials of the small sweep")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument(
        "--parts", type=parts, default=bench.PARTS, help=f"comma-separated: {','.join(bench.PARTS)}"
    )
    parser.add_argument("--root", default=str(default_root()), help="data root")
    parser.add_argument("--output", default="reports/benchmarks.json", help="JSON file")
    parser.add_argument("--config-file", default="mlflow.yaml", help="tracking settings")
    parser.add_argument(
        "--track",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log the figures to MLflow (--no-track: console and JSON only)",
    )
    parser.add_argument(
        "--from-json", metavar="PATH", help="measure nothing: log a JSON file this command wrote"
    )
    args = parser.parse_args()
    if args.images < 100 or args.repeats < 1 or args.sweep_trials < 1:
        raise ValueError("--images must be >= 100, --repeats and --sweep-trials >= 1")

    if args.from_json:
        output = Path(args.from_json)
        try:
            saved = json.loads(output.read_text())
            info, results = saved["machine"], saved["results"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{output} is not a benchmark JSON file ({err})") from None
        print(f"machine: {info}")
    else:
        cfg = bench.BenchConfig(
            images=args.images,
            repeats=args.repeats,
            sweep_trials=args.sweep_trials,
            device=args.device,
            amp=args.amp,
            parts=args.parts,
        )
        info = {**bench.machine(resolve_device(args.device)), "amp": str(args.amp)}
        info["parts"] = ",".join(args.parts)
        print(f"machine: {info}")
        results = bench.run(cfg, args.root, log=print)
        output = Path(args.output)
        bench.write_json(results, info, output)
    print()
    print_table(results)
    if args.track:
        from sae import tracking  # MLflow is only needed to log

        settings = tracking.load_settings(args.config_file)
        run_id = tracking.log_benchmark(settings, results, info, [output])
        done = "logged" if args.from_json else "written to"
        print(f"\n{done} {output}; MLflow run {run_id} in experiment 'benchmarks'")
    else:
        print(f"\nwritten to {output}")


if __name__ == "__main__":
    run_main(main)
