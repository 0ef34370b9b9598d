"""Repair a damaged Optuna journal: keep every complete record, set the damaged file aside."""

from typing import NoReturn

from sae import journal
from sae.cli import ArgumentParser, run_main


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("journal", help="the Optuna journal file")
    args = parser.parse_args()
    damage, backup = journal.repair(args.journal)
    if damage is None:
        print(f"{args.journal} reads back whole: nothing to repair")
        return
    print(
        f"{args.journal}: kept {damage.records} complete records, dropped {damage.dropped_bytes} "
        f"bytes from the first damaged one ({damage.why}); the original is {backup}"
    )


def run() -> NoReturn:
    """``sae-repair-journal``."""
    run_main(main)
