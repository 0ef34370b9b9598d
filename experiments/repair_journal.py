"""Repair a damaged Optuna journal: keep every complete record, set the damaged file aside.

    python experiments/repair_journal.py optuna.journal

A sweep refuses to resume on a journal whose tail is damaged (a write cut short by a crash, a
truncated copy). This keeps the records before the damage, which read back whole, and keeps the
original as optuna.journal.damaged-<time>. Trials whose last records were lost show as running;
the next sweep fails them as interrupted and runs their parameters again.
"""

from sae import journal
from sae.cli import ArgumentParser, run_main


def main() -> None:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
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


if __name__ == "__main__":
    run_main(main)
