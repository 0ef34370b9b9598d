"""Replicate the published 10-epoch baseline with beta 1e-4 (the script's) and 0.005
(the README's)."""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from sae import baseline
from sae.cli import ArgumentParser, add_config_arguments, config_from_args, run_main
from sae.progress import Progress


@dataclass(frozen=True)
class BaselineOptions:
    """The seeds replicated and where the table goes."""

    seeds: int = 3
    """seeds 1..N per beta"""
    output: str | None = None
    """also write the table as Markdown to this file"""

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_dataclass("baseline", BaselineOptions())
    add_config_arguments(parser)
    args = parser.parse_args()
    # The table is written after every run has trained: a bad path must not wait until then.
    output = Path(args.baseline.output) if args.baseline.output else None
    if output and (output.is_dir() or not output.resolve().parent.is_dir()):
        raise ValueError(f"--output {output}: not a file name in an existing folder")
    cfg = config_from_args(args)

    started = time.perf_counter()
    seeds = range(1, args.baseline.seeds + 1)
    runs = baseline.run_baseline(cfg, seeds, callbacks=lambda: [Progress()], log=print)
    minutes = (time.perf_counter() - started) / 60
    table = baseline.comparison_table(runs).to_markdown(index=False, disable_numparse=True)
    beta = baseline.reproducing_beta(runs)
    text = "\n\n".join(
        [
            table,
            "Means ± sample standard deviations over the runs that trained; "
            + baseline.DEAD_RUNS_EXPLANATION,
            f"The README's training loss is reproduced best by beta {beta:g}."
            if beta is not None
            else "No run trained, so no beta reproduces the README's training loss.",
            f"Dead at initialisation (output zero on the first 600 test images) among seeds "
            f"{baseline.DEAD_SCAN_SEEDS.start}-{baseline.DEAD_SCAN_SEEDS.stop - 1}: "
            f"{len(runs.attrs['dead_at_init'])}, namely {runs.attrs['dead_at_init']}.",
            baseline.TEST_LOSS_EXPLANATION,
            f"{len(runs)} runs, {cfg.train.epochs} epochs each, {minutes:.1f} min on "
            f"{runs.attrs.get('device', cfg.train.device)}.",
        ]
    )
    print()
    print(text)
    if output:
        output.write_text(text + "\n")
        print(f"\nwritten to {output}")


def run() -> NoReturn:
    """``sae-baseline``."""
    run_main(main)
