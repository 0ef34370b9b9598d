"""Markdown tables of the benchmark's figures, from the JSON files experiments/bench.py writes.

    python analysis/bench_tables.py reports/benchmarks.json      # every group, to stdout
    python analysis/bench_tables.py reports/benchmarks.json --group cpu \
        --output docs/generated/bench-cpu.md
    python analysis/bench_tables.py reports/cuda/bench-cuda-no-amp.json \
        reports/cuda/bench-cuda-amp.json --group gpu --output docs/generated/bench-gpu.md

--group cpu|population|pruning|gpu renders one group (the default, all: each under a heading):
cpu, a table of the figures of each file measured on the CPU, against their targets; population,
the population part by K; pruning, the pruning part by setting and seed; gpu, one table of the
files measured on a CUDA device, a column each (float32, --amp). Each table is headed by the
command, the date and the machine its figures came from; a figure a file lacks is left out, and a
group with no figures is an error (nothing written). --output writes the markdown whole, never
through a symbolic link; without it, it goes to stdout.
"""

from dataclasses import dataclass
from typing import Literal

from sae.bench import tables
from sae.cli import ArgumentParser, run_main


@dataclass(frozen=True)
class TablesOptions:
    """Which tables, and where they go."""

    group: Literal["all", "cpu", "population", "pruning", "gpu"] = "all"
    """the group of figures to render; all: every group with figures, each under a heading"""
    output: str | None = None
    """markdown file to write; none: print to stdout"""


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", metavar="FILE.json", help="benchmark JSON files")
    parser.add_dataclass("tables", TablesOptions())
    args = parser.parse_args()
    opts: TablesOptions = args.tables
    groups = tables.GROUPS if opts.group == "all" else (opts.group,)
    text = tables.render([tables.load(name) for name in args.files], groups)
    if opts.output is None:
        print(text, end="")
    else:
        print(f"written to {tables.write(text, opts.output)}")


if __name__ == "__main__":
    run_main(main)
