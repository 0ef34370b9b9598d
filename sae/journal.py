"""The Optuna journal file: appended to whole records only, checked before anyone writes to it,
and repaired on request.

Optuna's ``JournalFileBackend`` appends one JSON record per line. Reading, it silently skips an
incomplete last line (a write cut short by a crash or a full disk, a copy truncated on the way)
and then appends after it, which glues the next record onto the broken one: from then on the
journal cannot be loaded at all. So every append goes through ``WholeRecordsLock``, which cuts a
partial record off before it lets the next writer in; every process checks the journal under
Optuna's own append lock before opening it, and refuses a damaged one; ``repair`` is the explicit
step that keeps every complete record.

This reads Optuna's file format, which has no public reader that reports damage; the test
``tests/test_journal.py`` pins the format on the installed Optuna so that a change fails loudly.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from sae.data.idx import atomic_write

REPAIR_COMMAND = "python experiments/repair_journal.py"

OP_CODES = range(11)
"""Optuna's journal operations (``JournalOperation``: create study 0 ... discard trials 10)."""
CREATE_STUDY, CREATE_TRIAL = 0, 4
"""The operations that number what they create by their place in the journal: a study's id and
a trial's id are counts of the records of their kind before them."""
_OP_CODE = re.compile(rb'\{"op_code":\s*(\d+)')


class JournalDamaged(ValueError):
    """The journal has a record that cannot be read; the message says what to do, in one line."""


class NotAJournal(ValueError):
    """The file is not an Optuna journal: nothing in it is touched."""


@dataclass(frozen=True)
class Damage:
    records: int
    """Complete records before the first damaged one."""
    offset: int
    """Byte offset where the damage starts: everything before it reads back whole."""
    dropped_bytes: int
    why: str


@dataclass(frozen=True)
class Repair:
    """What ``repair`` did."""

    damage: Damage
    """The first damaged record."""
    kept: int
    """Complete records kept, in their order."""
    damaged: int
    """Damaged records dropped (pieces of lines that read as no record)."""
    after_dropped: int
    """Complete records after a damaged one dropped too: the damaged one may have created a study
    or trial, and every id after it would then name another (0 unless so)."""
    backup: Path


class WholeRecordsLock(JournalFileSymlinkLock):
    """Optuna's append lock (the same lock file), which on release cuts off a record that the
    writer holding it left incomplete: an append that failed part-way (a full disk, a file size
    limit) leaves the journal as it was, so the next append is not glued onto it and a retry of
    the failed call writes its record whole."""

    def __init__(self, filepath: str, grace_period: int | None = 30) -> None:
        super().__init__(filepath, grace_period)
        self._journal = filepath
        self._size: int | None = None
        """The journal's size when this lock was acquired; None while it is not held (Optuna
        also calls ``release`` to break another process's stale lock: that one cuts nothing)."""

    def acquire(self) -> bool:
        acquired = super().acquire()
        self._size = _size(self._journal)
        return acquired

    def release(self) -> None:
        size, self._size = self._size, None
        try:
            if size is not None and _size(self._journal) > size and not _ends_whole(self._journal):
                os.truncate(self._journal, size)
        finally:
            super().release()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _ends_whole(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def backend(path: str | Path) -> JournalFileBackend:
    """Optuna's journal file backend at ``path``, appending through ``WholeRecordsLock``."""
    return JournalFileBackend(str(path), lock_obj=WholeRecordsLock(str(path)))


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
    """Raise JournalDamaged (NotAJournal for another kind of file), before anything is written,
    when the journal is damaged."""
    path = Path(path)
    with _append_lock(path):
        data = path.read_bytes()
    _require_journal(path, data)
    damage = _first_damage(data)
    if damage is not None:
        raise JournalDamaged(
            f"Optuna journal {path} is damaged: {damage.why}; nothing was written. Restore it "
            f"from a backup, or run `{REPAIR_COMMAND} {path}` to keep its complete records "
            "(the damaged file is kept beside it)"
        )


def repair(path: str | Path) -> Repair | None:
    """Keep every complete record and drop the damaged ones; the original is kept as
    ``<path>.damaged-<time>``. Returns what was done, None when the journal reads back whole.
    Raises NotAJournal, leaving the file as it is, when it is not an Optuna journal.

    A record after a damaged one is kept when the damaged one, whose operation is written first
    in every record, neither created a study nor a trial: ids are counted from those records,
    so without one every later id would name another study or trial. When it did, or cannot be
    told, the journal is kept up to the damage only (the rest is in the backup). A record glued
    onto a cut one on the same line (a writer appending after a crash) is kept. The result is
    loaded with Optuna before it replaces the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no Optuna journal at {path}")
    with _append_lock(path):
        data = path.read_bytes()
        _require_journal(path, data)
        damage = _first_damage(data)
        if damage is None:
            return None
        kept, damaged, shifting = _salvage(data)
        if shifting is not None:  # ids after it cannot be trusted: the prefix only
            kept, after = kept[:shifting], len(kept) - shifting
        else:
            after = 0
        repaired = b"".join(kept)
        if not _loads(repaired, path.parent):
            kept, after = kept[: damage.records], len(kept) - damage.records
            repaired = data[: damage.offset]
        backup = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        shutil.copy2(path, backup)
        atomic_write(path, repaired)
    return Repair(damage, len(kept), damaged, after, backup)


def _require_journal(path: Path, data: bytes) -> None:
    """NotAJournal unless the first record is one of Optuna's (an empty file is a new journal)."""
    if not data:
        return
    first = data.split(b"\n", 1)[0]
    if _record(first) is None:
        raise NotAJournal(
            f"{path} is not an Optuna journal (its first record is not one of Optuna's "
            "journal records); nothing was changed"
        )


def _record(piece: bytes) -> dict[str, Any] | None:
    """The journal record ``piece`` holds (one line, its newline stripped), or None."""
    try:
        record = json.loads(piece)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    ok = (
        isinstance(record, dict)
        and type(record.get("op_code")) is int
        and record["op_code"] in OP_CODES
        and isinstance(record.get("worker_id"), str)
    )
    return record if ok else None


def _kind(line: bytes) -> str:
    """What a damaged line fails to be."""
    try:
        json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "valid JSON"
    return "a journal record"


def _first_damage(data: bytes) -> Damage | None:
    offset = 0
    for records, line in enumerate(data.splitlines(keepends=True)):
        why = ""
        if not line.endswith(b"\n"):
            why = "its last record is incomplete (a write cut short, or a truncated copy)"
        elif _record(line.rstrip(b"\r\n")) is None:
            why = f"record {records + 1} is not {_kind(line)}"
        if why:
            return Damage(records, offset, len(data) - offset, why)
        offset += len(line)
    return None


def _salvage(data: bytes) -> tuple[list[bytes], int, int | None]:
    """The complete records of ``data`` (each a line), the number of damaged pieces, and the
    number of records kept before the first damaged piece that may have created a study or a
    trial (None when none may have)."""
    kept: list[bytes] = []
    damaged, shifting = 0, None
    for line in data.splitlines(keepends=True):
        body = line.rstrip(b"\r\n")
        if line.endswith(b"\n") and _record(body) is not None:
            kept.append(body + b"\n")
            continue
        # a cut record, perhaps with whole ones glued after it: split where each record starts
        starts = [m.start() for m in _OP_CODE.finditer(body)] or [0]
        if starts[0] != 0:
            starts.insert(0, 0)
        for begin, end in zip(starts, [*starts[1:], len(body)], strict=True):
            piece = body[begin:end]
            whole = line.endswith(b"\n") or end < len(body)
            if whole and _record(piece) is not None:
                kept.append(piece + b"\n")
                continue
            damaged += 1
            op = _OP_CODE.match(piece)
            numbering = op is None or int(op.group(1)) in (CREATE_STUDY, CREATE_TRIAL)
            if numbering and shifting is None:
                shifting = len(kept)
    return kept, damaged, shifting


def _loads(data: bytes, folder: Path) -> bool:
    """Whether Optuna loads ``data`` as a journal: every study and its trials."""
    with tempfile.TemporaryDirectory(dir=folder, prefix=".journal-check-") as tmp:
        candidate = Path(tmp) / "journal"
        candidate.write_bytes(data)
        try:
            storage = optuna.storages.JournalStorage(JournalFileBackend(str(candidate)))
            for name in optuna.get_all_study_names(storage):
                optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        except Exception:
            return False
    return True
