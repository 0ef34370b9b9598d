"""The Optuna journal file, checked before anyone writes to it, and repaired on request.

Optuna's ``JournalFileBackend`` appends one JSON record per line. Reading, it silently skips an
incomplete last line (a write cut short by a crash, a copy truncated on the way) and then appends
after it, which glues the next record onto the broken one: from then on the journal cannot be
loaded at all. So every process checks the journal under Optuna's own append lock before opening
it, and refuses a damaged one; ``repair`` is the explicit step that keeps every complete record.

This reads Optuna's file format, which has no public reader that reports damage; the test
``tests/test_journal.py`` pins the format on the installed Optuna so that a change fails loudly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from optuna.storages.journal import JournalFileSymlinkLock

REPAIR_COMMAND = "python experiments/repair_journal.py"


class JournalDamaged(ValueError):
    """The journal has a record that cannot be read; the message says what to do, in one line."""


@dataclass(frozen=True)
class Damage:
    records: int
    """Complete records before the first damaged one."""
    offset: int
    """Byte offset where the damage starts: everything before it reads back whole."""
    dropped_bytes: int
    why: str


@contextlib.contextmanager
def _append_lock(path: Path) -> Iterator[None]:
    """Optuna's own lock around appends, so a record being written is never mistaken for damage."""
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def find_damage(path: str | Path) -> Damage | None:
    """The first damaged record of the journal at ``path``, or None when it reads back whole."""
    path = Path(path)
    with _append_lock(path):
        return _first_damage(path.read_bytes())


def check(path: str | Path) -> None:
    """Raise JournalDamaged, before anything is written, when the journal is damaged."""
    damage = find_damage(path)
    if damage is not None:
        raise JournalDamaged(
            f"Optuna journal {path} is damaged: {damage.why}; nothing was written. Restore it "
            f"from a backup, or run `{REPAIR_COMMAND} {path}` to keep its {damage.records} "
            "complete records (the damaged file is kept beside it)"
        )


def repair(path: str | Path) -> tuple[Damage | None, Path | None]:
    """Keep the records before the first damaged one; the original is kept as
    ``<path>.damaged-<time>``. Returns (the damage found, the backup), (None, None) when whole.

    Records after a damaged one are dropped too, even when they parse: each record applies to the
    state the ones before it built, so the readable prefix is the only state known to be whole.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no Optuna journal at {path}")
    with _append_lock(path):
        data = path.read_bytes()
        damage = _first_damage(data)
        if damage is None:
            return None, None
        backup = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        shutil.copy2(path, backup)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".repair")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data[: damage.offset])
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return damage, backup


def _first_damage(data: bytes) -> Damage | None:
    offset = 0
    for records, line in enumerate(data.splitlines(keepends=True)):
        why = ""
        if not line.endswith(b"\n"):
            why = "its last record is incomplete (a write cut short, or a truncated copy)"
        else:
            try:
                json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                why = f"record {records + 1} is not valid JSON"
        if why:
            return Damage(records, offset, len(data) - offset, why)
        offset += len(line)
    return None
