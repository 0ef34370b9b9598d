"""Repair a damaged Optuna journal: keep every complete record, set the damaged file aside.

    python experiments/repair_journal.py optuna.journal

A sweep refuses to resume on a journal with a damaged record (a write cut short by a crash, a
truncated copy). This keeps every complete record, also those after a damaged one unless it may
have created a study or trial (ids are numbered by those records, so every later one would name
another: then only the records before it are kept), and keeps the original as
optuna.journal.damaged-<time>. It refuses, changing nothing, a file that is not an Optuna
journal. Trials left running that no live process on this machine holds (their last records
lost) are failed as interrupted: the next sweep runs their parameters again. Run it while no
sweep uses the journal.
"""

from sae.commands import repair_journal

if __name__ == "__main__":
    repair_journal.run()
