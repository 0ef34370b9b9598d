"""A server's processes end with the command that started them, even when that command is killed
with SIGKILL and has no chance to stop them.

Every server runs under a small guard, ``python -m sae.tether PID -- COMMAND...``, started in a
process group of its own: the guard runs COMMAND in that group and, once process PID is gone
(Linux tells it at once through ``PR_SET_PDEATHSIG``; everywhere it also checks its parent every
``POLL_S``), stops the whole group, the server's own workers included: SIGTERM, then SIGKILL for
what outlives ``GRACE_S``. A SIGTERM or SIGHUP to the guard stops the group the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.5
"""How often the guard checks that the command that started it still runs."""
GRACE_S = 5.0
"""How long the group has to stop on SIGTERM before SIGKILL."""
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PARENT_GONE = signal.SIGUSR1
"""The signal Linux sends the guard when the thread that started it ends."""


def command(argv: list[str], parent: int | None = None) -> list[str]:
    """``argv`` under the guard, tied to process ``parent`` (default: this one)."""
    parent = os.getpid() if parent is None else parent
    return [sys.executable, "-m", "sae.tether", str(parent), "--", *argv]


def signal_on_parent_death(sig: int) -> bool:
    """Linux: ``sig`` to this process when the thread that started it ends (the kernel's
    ``PR_SET_PDEATHSIG``); whether that was set. Elsewhere, or where a sandbox refuses it, the
    guard's polling notices instead."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _members(pgid: int) -> list[int] | None:
    """The group's live processes, this one left out; None where there is no /proc. Zombies do
    not count: where the system's init does not reap orphans they would stay forever."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    members = []
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after its ")"
            fields = stat.read_text().rpartition(")")[2].split()
            pid = int(stat.parent.name)
            if pid != os.getpid() and int(fields[2]) == pgid and fields[0] not in "ZX":
                members.append(pid)
    return members


def live_in_group(pgid: int) -> bool:
    """Whether a process of the group (other than this one) still runs."""
    members = _members(pgid)
    if members is None:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    return bool(members)


def _stop_group(process: subprocess.Popen[bytes] | None, grace: float = GRACE_S) -> None:
    """SIGTERM to the guard's group (the server and its workers), SIGKILL for what outlives
    ``grace``."""
    pgid = os.getpgrp()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's SIGTERM reaches the guard too
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(deadline - time.monotonic(), 0))
    while live_in_group(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    members = _members(pgid)
    if members is None:  # no /proc to tell the guard apart: the whole group, the guard too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in members or []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if process is not None:
        process.wait()


def guard(parent: int, argv: list[str]) -> int:
    """Run ``argv`` until it ends (its exit status) or until ``parent`` is gone or a SIGTERM or
    SIGHUP comes (the group stopped; 143)."""
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    def parent_thread_gone(_signum: int, _frame: object) -> None:
        # Linux signals the end of the starting *thread*; the process may live on.
        nonlocal stopping
        stopping = stopping or os.getppid() != parent

    if os.getpgrp() != os.getpid():  # the group it stops must be its own
        os.setpgid(0, 0)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    signal.signal(_PARENT_GONE, parent_thread_gone)
    signal_on_parent_death(_PARENT_GONE)
    if os.getppid() != parent:  # gone before the line above
        return 143
    process = subprocess.Popen(argv)
    while not stopping and process.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(POLL_S)
        stopping = stopping or os.getppid() != parent
    if stopping or live_in_group(os.getpgrp()):  # or workers the server left behind
        _stop_group(process)
    if stopping:
        return 143
    code = process.wait()
    return code if code >= 0 else 128 - code  # as a shell reports a signal


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        sys.stderr.write("usage: python -m sae.tether PARENT_PID -- COMMAND...\n")
        return 2
    return guard(int(args[0]), args[2:])


if __name__ == "__main__":
    raise SystemExit(main())
