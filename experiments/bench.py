"""Benchmark the training core against the seed's own loop, and the rest of the suite.

    python experiments/bench.py                  # about 4 minutes on a 2-core CPU
    python experiments/bench.py --images 60000 --repeats 5
    python experiments/bench.py --device cuda --amp --parts throughput,eval,flops
    python experiments/bench.py --from-json gpu.json   # log figures measured on another machine

Prints a table, writes a JSON file, and logs every figure to an MLflow run in the `benchmarks`
experiment (the machine as tags).
"""

from sae.commands import bench

if __name__ == "__main__":
    bench.run()
