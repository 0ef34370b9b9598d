"""Repair a damaged Optuna journal: keep every complete record, set the damaged file aside.

    python experiments/repair_journal.py optuna.journal

A sweep refuses to resume on a journal whose tail is damaged (a write cut short by a crash, a
truncated copy). This keeps the records before the damage, which read back whole, and keeps the
original as optuna.journal.damaged-<time>. Trials whose last records were lost show as running;
the next sweep fails them as interrupted and runs their parameters again.
"""

from sae.commands import repair_journal

if __name__ == "__main__":
    repair_journal.run()
