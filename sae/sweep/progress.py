"""The sweep's console while trials train: the trials finished, each running trial's epoch and
the time left, read from the study's storage, so that it sees every worker's trials, on this
machine or another."""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from sae.names import ATTR_EPOCH_ENDS, ATTR_EPOCH_POINTS
from sae.sweep.recovery import counts_as_finished

POLL_S = 2.0
"""How often the console reads the study's storage."""
BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} trials |{bar}| [{elapsed}{postfix}]"
"""tqdm's bar without its own estimate from whole trials: the postfix holds ours, by epochs."""


@dataclass(frozen=True)
class Snapshot:
    """Where the sweep stands: what the console shows."""

    finished: int
    """trials that count as finished (``recovery.counts_as_finished``)"""
    running: tuple[tuple[int, int], ...]
    """(trial number, epochs done) of each running trial, by number"""
    seconds_left: float | None
    """the trials' estimated time left; None until an epoch has been measured"""


def epochs_done(trial: FrozenTrial) -> int:
    """The last epoch the trial recorded (its epoch ends or its points), 0 before its first."""
    recorded = {**trial.user_attrs.get(ATTR_EPOCH_POINTS, {})}
    recorded.update(trial.user_attrs.get(ATTR_EPOCH_ENDS, {}))
    return max((int(epoch) for epoch in recorded), default=0)


def snapshot(
    trials: Sequence[FrozenTrial], total: int, epochs: int, workers: int, now: float
) -> Snapshot:
    """Where a sweep of ``total`` trials of ``epochs`` epochs on ``workers`` local workers
    stands, at ``now`` (unix time), from its ``trials``.

    The time left is the epochs left times the mean measured epoch (ATTR_EPOCH_ENDS, every
    trial's), divided by the trials that train at once: the local workers or the running trials
    if more (other machines), never more than there are trials left. The epochs left: for each
    trial not started, the mean epochs of the finished trials (fewer than ``epochs`` when some
    were pruned; ``epochs`` before any finished); for each running trial with ``d`` epochs done,
    the mean epochs beyond ``d`` of the finished trials that went past ``d`` (``epochs - d``
    when none did), less the time it has already spent in its current epoch."""
    finished = [t for t in trials if counts_as_finished(t)]
    running = sorted((t for t in trials if t.state == TrialState.RUNNING), key=lambda t: t.number)
    trained = [epochs_done(t) for t in finished]
    seconds = [float(s) for t in trials for _, s in t.user_attrs.get(ATTR_EPOCH_ENDS, {}).values()]
    shown = tuple((t.number, epochs_done(t)) for t in running)
    unstarted = max(0, total - len(finished) - len(running))
    if not running and not unstarted:
        return Snapshot(len(finished), shown, 0.0)
    if not seconds:
        return Snapshot(len(finished), shown, None)
    epoch_s = statistics.mean(seconds)
    per_trial = statistics.mean(trained) if trained else epochs
    work = unstarted * per_trial * epoch_s
    for trial in running:
        done = epochs_done(trial)
        beyond = [e - done for e in trained if e > done]
        left = statistics.mean(beyond) if beyond else max(epochs - done, 0)
        in_epoch = min(max(now - _last_end(trial), 0.0), epoch_s)
        work += max(left * epoch_s - in_epoch, 0.0)
    at_once = max(1, min(max(workers, len(running)), len(running) + unstarted))
    return Snapshot(len(finished), shown, work / at_once)


def _last_end(trial: FrozenTrial) -> float:
    """When the trial's last recorded epoch ended, else when it started (unix time)."""
    ends = [float(end) for end, _ in trial.user_attrs.get(ATTR_EPOCH_ENDS, {}).values()]
    if ends:
        return max(ends)
    return trial.datetime_start.timestamp() if trial.datetime_start else time.time()


def describe(snap: Snapshot, epochs: int) -> str:
    """The running trials' epochs and the time left: ``trial 12 epoch 4/10, ETA 05:10``, the
    epoch shown the one in training."""
    parts = [f"trial {n} epoch {min(done + 1, epochs)}/{epochs}" for n, done in snap.running]
    left = snap.seconds_left
    parts.append(f"ETA {'measuring' if left is None else tqdm.format_interval(round(left))}")
    return ", ".join(parts)


class SweepProgress:
    """The sweep's console as a context: a thread reads the study every POLL_S seconds and shows
    its ``snapshot``; in a terminal, a tqdm bar of the trials finished with ``describe`` as its
    postfix; elsewhere (CI, a log file), no bar and one line each time trials finish."""

    def __init__(
        self,
        study: optuna.Study,
        total: int,
        epochs: int,
        workers: int,
        stream: TextIO | None = None,
        bars: bool | None = None,
    ) -> None:
        self.study, self.total, self.epochs, self.workers = study, total, epochs, workers
        self.stream = stream or sys.stderr
        self.bars = self.stream.isatty() if bars is None else bars
        self.bar: tqdm | None = None
        self.finished: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-progress", daemon=True)

    def __enter__(self) -> SweepProgress:
        if self.bars:
            self.bar = tqdm(
                total=self.total, desc="trials", file=self.stream, bar_format=BAR_FORMAT
            )
        self.show()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.show()
        if self.bar is not None:
            self.bar.close()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self.show()

    def show(self) -> None:
        """Read the study once and show where it stands. A store that fails to answer leaves
        the console as it was: the workers see the failure if it lasts."""
        try:
            trials = self.study.get_trials(deepcopy=True)
        except Exception:
            return
        snap = snapshot(trials, self.total, self.epochs, self.workers, time.time())
        finished = min(snap.finished, self.total)
        if self.bar is not None:
            self.bar.update(max(finished - self.bar.n, 0))
            self.bar.set_postfix_str(describe(snap, self.epochs))
        elif self.finished is not None and finished > self.finished:
            self.stream.write(
                f"trials: {finished}/{self.total} finished, {describe(snap, self.epochs)}\n"
            )
            self.stream.flush()
        self.finished = finished
