"""Repair a damaged Optuna journal: keep every complete record, set the damaged file aside, and
fail as interrupted the trials it leaves running that no live process holds."""

from typing import NoReturn

import optuna

from sae import journal
from sae.cli import ArgumentParser, run_main
from sae.names import REASON_ORPHANED
from sae.sweep.recovery import fail_dead_holders


def main() -> None:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("journal", help="the Optuna journal file")
    args = parser.parse_args()
    repair = journal.repair(args.journal)
    if repair is None:
        print(f"{args.journal} reads back whole: nothing to repair")
    else:
        after = (
            f", and the {repair.after_dropped} after it (the damaged one may have created a "
            "study or trial, which numbers every later record)"
            if repair.after_dropped
            else ""
        )
        print(
            f"{args.journal}: kept {repair.kept} complete records, dropped {repair.damaged} "
            f"damaged ({repair.damage.why}){after}; the original is {repair.backup}"
        )
    for study, numbers in fail_orphans(args.journal).items():
        print(
            f"study {study!r}: trials {numbers} were running with no live worker: failed as "
            "interrupted, the next sweep runs their parameters again"
        )


def fail_orphans(path: str) -> dict[str, list[int]]:
    """Fail as interrupted, in every study of the journal, the RUNNING trials that no live
    process on this machine holds: their worker is gone, or their record of it was lost. The
    journal's numbers by study name, of those that had any."""
    storage = optuna.storages.JournalStorage(journal.backend(path))
    failed = {}
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        numbers = fail_dead_holders(study, storage, REASON_ORPHANED, orphan_age_s=0.0)
        if numbers:
            failed[name] = numbers
    return failed


def run() -> NoReturn:
    """``sae-repair-journal``."""
    run_main(main)
