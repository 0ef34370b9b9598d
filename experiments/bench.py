"""Benchmark the training core against the seed's own loop, and the rest of the suite.

    python experiments/bench.py                  # every part; the population part's 63
                                                 # one-epoch trials take longest on a CPU
    python experiments/bench.py --parts throughput --images 20000 --repeats 5   # a quick look
    python experiments/bench.py --parts population --population-ks 1 2 4 8 --population-epochs 2
    python experiments/bench.py --device cuda --amp --parts throughput,eval,flops
    python experiments/bench.py --from-json gpu.json   # log figures measured on another machine

Prints a table, writes a JSON file (the figures, the machine and settings, the date and this
command line), and logs every figure to an MLflow run in the `benchmarks` experiment (the
machine as tags). `python analysis/bench_tables.py FILE.json` makes markdown tables of it.
"""

from sae.cli import run_main
from sae.commands import bench

if __name__ == "__main__":
    # The JSON names the command that made it as the user typed it.
    run_main(lambda: bench.main(program="python experiments/bench.py"))
