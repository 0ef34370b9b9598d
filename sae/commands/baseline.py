"""Replicate the published 10-epoch baseline with beta 1e-4 (the script's) and 0.005
(the README's)."""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from sae import baseline
from sae import metrics as M
from sae.cli import ArgumentParser, add_config_arguments, config_from_args, run_main
from sae.config import Config, TrainConfig
from sae.data.idx import atomic_write
from sae.paths import owned
from sae.progress import Progress


@dataclass(frozen=True)
class BaselineOptions:
    """The seeds replicated and where the table goes."""

    seeds: int = 3
    """how many seeds per beta: the first N from 1 whose network is alive at initialisation
    (the dead ones are skipped and listed)"""
    output: str | None = None
    """also write the table as Markdown to this file"""

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_dataclass("baseline", BaselineOptions())
    # The script's data order by default: it is what reproduces the README's figures.
    add_config_arguments(parser, Config(train=TrainConfig(data_order="script")))
    args = parser.parse_args()
    # The table is written after every run has trained: a bad path must not wait until then.
    output = Path(args.baseline.output) if args.baseline.output else None
    if output and (output.is_dir() or not output.resolve().parent.is_dir()):
        raise ValueError(f"--output {output}: not a file name in an existing folder")
    if output:
        owned(output)  # never written through a symbolic link
    cfg = config_from_args(args)

    started = time.perf_counter()
    runs = baseline.run_baseline(
        cfg, args.baseline.seeds, callbacks=lambda: [Progress()], log=print
    )
    minutes = (time.perf_counter() - started) / 60
    text = "\n\n".join(_summary(runs, cfg, minutes))
    print()
    print(text)
    if output:
        atomic_write(owned(output), (text + "\n").encode("utf-8"))
        print(f"\nwritten to {output}")


def _summary(runs, cfg: Config, minutes: float) -> list[str]:
    """The table and what it says, every number from ``runs``."""
    table = baseline.comparison_table(runs).to_markdown(index=False, disable_numparse=True)
    beta = baseline.reproducing_beta(runs)
    skipped = runs.attrs["skipped"]
    scan = baseline.DEAD_SCAN_SEEDS
    dead = runs.attrs["dead_at_init"]
    trained = runs[baseline.trained(runs)]
    ratio = (trained[M.TEST_MSE] / trained[M.README_TEST_LOSS]).mean() if len(trained) else None
    t = cfg.train
    parts = [
        table,
        "Means ± sample standard deviations over the runs that trained; "
        + baseline.DEAD_RUNS_EXPLANATION,
        "Seeds skipped, dead at initialisation: "
        + ("; ".join(f"{seed} ({why})" for seed, why in skipped.items()) or "none")
        + ".",
        f"The README's training loss is reproduced best by beta {beta:g}."
        if beta is not None
        else "No run trained, so no beta reproduces the README's training loss.",
        f"Dead at initialisation among seeds {scan.start}-{scan.stop - 1}: {len(dead)}, "
        f"namely {dead}.",
        baseline.test_loss_explanation(
            cfg.data.test_size or baseline.README_PROTOCOL["test_size"], t.test_batch_size, ratio
        ),
    ]
    differences = baseline.protocol_differences(
        t.epochs, cfg.data.train_size, cfg.data.test_size, t.batch_size
    )
    if differences:
        parts.append(
            "These runs do not follow the README's protocol ("
            + "; ".join(differences)
            + "), so their figures are not comparable with the README's."
        )
    parts.append(
        f"{len(runs)} runs, {t.epochs} epochs each, {t.data_order} data order, {minutes:.1f} min "
        f"on {runs.attrs.get('device', t.device)}."
    )
    return parts


def run() -> NoReturn:
    """``sae-baseline``."""
    run_main(main)
