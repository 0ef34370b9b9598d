"""`sae.tether`: a server's whole process group ends with the command that started it, even when
that command is killed with SIGKILL (it cannot stop anything then)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers_proc import live_in_group

from sae import tether

# A starter: runs SERVER under the guard, from a thread that ends at once when asked to, prints
# the guard's pid (its group's id) and waits to be killed.
STARTER = """
import subprocess, sys, threading, time
from sae import tether
started = []
def start():
    started.append(subprocess.Popen(tether.command(sys.argv[2:]), start_new_session=True))
if sys.argv[1] == "thread":
    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
else:
    start()
print(started[0].pid, flush=True)
time.sleep(600)
"""
# A server with a worker of its own; the stubborn one deaf to SIGTERM: only SIGKILL ends it.
SERVER = ["sh", "-c", "sleep 600 & sleep 600"]
STUBBORN = ["sh", "-c", "trap '' TERM; sleep 600 & sleep 600"]


def _start(how: str, server: list[str]) -> tuple[subprocess.Popen[str], int]:
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, how, *server], stdout=subprocess.PIPE, text=True
    )
    group = int(starter.stdout.readline())
    deadline = time.monotonic() + 30
    while len(live_in_group(group)) < 4 and time.monotonic() < deadline:  # guard, sh, 2 sleeps
        time.sleep(0.1)
    return starter, group


def _wait_empty(group: int, timeout: float = 60) -> list[int]:
    """The group's live processes once it is empty or ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while (live := live_in_group(group)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return live


def test_guard__kills_the_servers_whole_group_when_its_starter_is_killed():
    """Fix: ``kill -9`` of experiments/ui.py left both servers running, orphaned. Under the
    guard, the server and its worker end even though they ignore SIGTERM."""
    starter, group = _start("main", STUBBORN)
    try:
        assert len(live_in_group(group)) == 4
        starter.kill()
        starter.wait()
        assert _wait_empty(group) == []
    finally:
        if live_in_group(group):
            os.killpg(group, signal.SIGKILL)


def test_guard__outlives_the_thread_that_started_it_not_the_process():
    """Linux's parent-death signal comes when the starting *thread* ends: the guard keeps the
    server while the starting process runs, and stops it once that process is gone."""
    starter, group = _start("thread", SERVER)
    try:
        time.sleep(4 * tether.POLL_S)  # the thread ended long ago; the signal has come
        assert len(live_in_group(group)) == 4
        starter.kill()
        starter.wait()
        assert _wait_empty(group) == []
    finally:
        if live_in_group(group):
            os.killpg(group, signal.SIGKILL)


def test_guard__a_sigterm_stops_the_group_and_exits_143():
    """How sae.ui stops a server: SIGTERM to its group; the guard then ends what is left."""
    guard = subprocess.Popen(
        tether.command([sys.executable, "-c", "import time; time.sleep(600)"]),
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while len(live_in_group(guard.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(guard.pid, signal.SIGTERM)
    assert guard.wait(60) == 143
    assert _wait_empty(guard.pid) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_signal_on_parent_death__the_kernel_takes_it_on_linux():
    """The prompt notice the guard relies on before its polling (0 clears it again)."""
    assert tether.signal_on_parent_death(0) is True
