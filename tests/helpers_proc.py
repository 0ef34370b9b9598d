"""What the tests see of processes through /proc: command lines (where a secret must never be),
children, and process groups (which must be empty once a command has stopped its servers)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from sae.redact import redact

PROC = Path("/proc")


def _stat(pid_dir: Path) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    try:
        return (pid_dir / "stat").read_text().rpartition(")")[2].split()
    except OSError:  # it ended meanwhile
        return None


def _pids() -> Iterator[Path]:
    return (p for p in PROC.iterdir() if p.name.isdigit())


def command_lines() -> dict[int, str]:
    """Every readable process's argv, joined by spaces."""
    lines = {}
    for pid_dir in _pids():
        with contextlib.suppress(OSError):
            argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
            lines[int(pid_dir.name)] = b" ".join(argv).decode(errors="replace")
    return lines


def children(pid: int) -> list[int]:
    return [
        int(p.name) for p in _pids() if (fields := _stat(p)) is not None and int(fields[1]) == pid
    ]


def descendants(pid: int) -> set[int]:
    """Its children, their children, and so on."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pids: Iterable[int]) -> list[int]:
    """Those of ``pids`` that still run (zombies excluded, as in ``live_in_group``)."""
    return [
        pid
        for pid in pids
        if (fields := _stat(PROC / str(pid))) is not None and fields[0] not in "ZX"
    ]


def live_in_group(pgid: int) -> list[int]:
    """The processes of a group that still run (zombies, which only wait to be reaped, excluded:
    where init does not reap orphans they never go)."""
    return [
        int(p.name)
        for p in _pids()
        if (fields := _stat(p)) is not None and int(fields[2]) == pgid and fields[0] not in "ZX"
    ]


class ArgvWatch:
    """Reads every process's command line, every 0.1 s from ``start`` to ``stop``, and keeps the
    (redacted) ones that hold one of ``secrets``. ``scans`` counts the passes made."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = [s for s in secrets if s]
        self.found: dict[int, str] = {}
        self.scans = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            for pid, line in command_lines().items():
                if any(secret in line for secret in self.secrets):
                    masked = line
                    for secret in self.secrets:
                        masked = masked.replace(secret, "<SECRET>")
                    self.found[pid] = redact(masked)
            self.scans += 1
            self._done.wait(0.1)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()


class Command:
    """A command as a user starts it, in its own session, its output collected line by line.

    It is stopped as a user stops it (``stop``: SIGINT, or the signal given, to it alone);
    ``close`` then also kills, by their ids, the process groups of the servers it had started
    (its children, each in a group of its own) if any outlived it, and nothing else.
    """

    def __init__(self, argv: list[str], **popen: object) -> None:
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            **popen,
        )
        self.lines: list[str] = []
        self.groups: set[int] = set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 180) -> re.Match[str]:
        """The first output line matching ``pattern``; fails if none comes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    self.note_groups()
                    return found
            if self.process.poll() is not None:
                self._reader.join(5)
                break
            time.sleep(0.2)
        pytest.fail(f"{self.process.args[1]} never printed {pattern!r}; it printed: {self.lines}")

    def note_groups(self) -> set[int]:
        """Remember the process groups of its children (its servers)."""
        for pid in children(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                self.groups.add(os.getpgid(pid))
        self.groups.discard(self.process.pid)
        return self.groups

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int | None:
        """Send ``sig`` to the command alone; its exit code, or None if it had to be killed."""
        if self.process.poll() is None:
            self.note_groups()
            os.kill(self.process.pid, sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = None
            self.process.wait()
        self._reader.join(5)
        return code

    def close(self) -> None:
        self.stop()
        for group in self.groups:
            if live_in_group(group):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
