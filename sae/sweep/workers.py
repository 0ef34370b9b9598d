"""Workers: the trial loop of one worker, and worker processes sharing a study on this machine."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.queues import Queue

import optuna
import psutil
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from tqdm import tqdm

from sae import faults, signals, tracking
from sae.config import Config
from sae.errors import one_line
from sae.splits import Splits, load_splits, resolve_device
from sae.sweep.batch import Batch, run_batch
from sae.sweep.config import SweepConfig
from sae.sweep.confirm import Confirmation, train_confirmation
from sae.sweep.identity import study_identity
from sae.sweep.objective import announce, make_objective
from sae.sweep.recovery import counts_as_finished, recover_interrupted
from sae.sweep.space import build_space
from sae.sweep.study import make_storage, open_study

EXIT_INTERRUPTED = 130
WORKER_STOP_S = 30.0
"""How long an interrupted worker gets to fail its trial in flight before it is killed."""
POLL_S = 1.0
"""How often the parent looks at its workers, and an idle worker at its queue."""
WORKER_MEMORY = 2 * 2**30
"""The memory ``--workers auto`` leaves room for per worker process: a sweep process peaked at
about 2 GB in the benchmark (docs/performance.md, peak resident memory of a sweep process)."""


@dataclass(frozen=True)
class WorkerPlan:
    """How many worker processes a sweep runs and with how many torch threads each."""

    workers: int
    threads: int | None
    """torch threads per worker; None: torch's own choice"""
    line: str
    """the choice in words, one console line"""


def usable_cores() -> int:
    """The cores this process may run on (its affinity: a container's or taskset's share), else
    the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> int:
    """Bytes of memory available to new processes now."""
    return psutil.virtual_memory().available


def plan_workers(
    workers: int | str,
    threads: int | None,
    *,
    runs: int,
    cores: int,
    device: str,
    population: int | None,
    memory: int,
) -> WorkerPlan:
    """The worker processes and torch threads per worker for ``--workers`` (a number or auto)
    and ``--threads`` (None: unset), with ``runs`` the most trainings that can run at once (the
    trials left, or the confirmation runs if more), on ``cores`` usable cores with ``memory``
    bytes available, on ``device`` (cpu, cuda), with ``population`` as given (None: unset).

    ``--workers N`` is N processes; with ``--threads T`` each has T threads, else the cores
    shared among them (one worker: torch's own choice, as before auto). ``auto``: with CUDA or
    ``--population K`` (K > 1), one worker (one process drives the GPU, whose trials share it as
    populations); on a CPU one process per usable core with one torch thread each (``--threads
    T``: one per T cores), at most ``runs`` and what ``memory`` holds at WORKER_MEMORY each, the
    cores left over shared among them. Measured on the setting users run, ``make sweep`` at the
    defaults on 2 cores: 5.1 s an epoch with 2 workers x 1 thread, 7.4 s with 1 worker x 2
    threads (docs/sweep.md); the benchmark's proxy (``experiments/bench.py --parts workers``, 4
    unpruned trials) put 1 x 2 ahead by 1.11x, without the many short trials whose per-trial
    costs a second worker overlaps."""
    given = f"{cores} usable core{_s(cores)}"
    if workers != "auto":
        said = f"--workers {workers}" + (f" --threads {threads}" if threads else "")
        if threads is None and workers > 1:
            threads = max(1, cores // workers)
        return WorkerPlan(
            workers, threads, f"workers: {_shape(workers, threads)} ({said}; {given})"
        )
    overrides = "--workers N or --threads N overrides"
    if device != "cpu" or (population or 1) > 1:
        why = (
            "CUDA: one process drives the GPU" if device != "cpu" else f"--population {population}"
        )
        return WorkerPlan(
            1, threads, f"workers: auto chose {_shape(1, threads)} ({why}); {overrides}"
        )
    per = threads or 1
    fit = max(1, memory // WORKER_MEMORY)
    count = max(1, min(cores // per, runs, fit))
    limits = [f"{given}, CPU"]
    if count < cores // per and count == runs:
        limits.append(f"{runs} run{_s(runs)} to train")
    elif count < cores // per and count == fit:
        limits.append(f"memory for {fit}")
    if threads is None:
        threads = max(1, cores // count)
    else:
        limits.append(f"--threads {threads}")
    line = f"workers: auto chose {_shape(count, threads)} ({'; '.join(limits)}); {overrides}"
    return WorkerPlan(count, threads, line)


def _shape(workers: int, threads: int | None) -> str:
    shape = f"{workers} worker process{'es' if workers != 1 else ''}"
    if threads:
        shape += f" x {threads} torch thread{_s(threads)}"
    return shape


def _s(n: int) -> str:
    return "" if n == 1 else "s"


@dataclass
class Context:
    """What every worker needs to run trials; picklable, so it crosses into worker processes
    through a pipe, never on a command line."""

    base: Config
    sweep: SweepConfig
    settings: tracking.Settings
    """Where the runs go."""
    storage_url: str
    parent_run_id: str
    worker: int = 0
    threads: int | None = None
    deadline: float | None = None
    """time.time() after which no new trial starts (--timeout), shared by every worker."""


def run_worker(
    ctx: Context,
    splits: Splits | None = None,
    log: Callable[[str], None] = tqdm.write,
) -> None:
    """Run trials until the study has ``trials`` finished ones (or the deadline passes): one at a
    time, or ``ctx.sweep.population`` at a time trained together (``sae.sweep.batch``).

    A trial that fails ends FAIL with its reason and one line through ``log``; the worker goes
    on. Ctrl-C or SIGTERM fails the trial in flight as interrupted and is raised.
    """
    import torch

    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    # Our own line replaces Optuna's warning with a traceback for each failed trial.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = make_storage(ctx.storage_url)
    space = build_space(ctx.sweep)
    # the same checks as the command's: a worker trains only trials of the study's identity
    identity = study_identity(ctx.base, ctx.sweep)
    study = open_study(storage, ctx.sweep, space, ctx.base.train.epochs, ctx.worker, identity)
    if splits is None:
        splits = load_splits(ctx.base.data, resolve_device(ctx.base.train.device))
    mlflow = tracking.client(ctx.settings)
    objective = make_objective(ctx.base, ctx.sweep, ctx.parent_run_id, splits, mlflow)
    batch = Batch(
        study, storage, ctx.base, ctx.sweep, ctx.settings, ctx.parent_run_id, splits, mlflow, log
    )
    population = ctx.sweep.population or 1
    while True:
        trials = study.get_trials(deepcopy=False)
        done = sum(counts_as_finished(t) for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        if done + running >= ctx.sweep.trials:
            break
        if ctx.deadline is not None and time.time() > ctx.deadline:
            break
        signals.check_interrupted()
        if population > 1:
            run_batch(batch, min(population, ctx.sweep.trials - done - running))
            continue
        study.optimize(
            objective,
            n_trials=1,
            catch=(Exception,),
            callbacks=[announce(log)],
            gc_after_trial=False,
        )


def _worker_process(ctx: Context, jobs: Queue, ready: Queue) -> None:
    """A worker process: trials until done, then (it says so on ``ready``) the confirmation runs
    the parent hands it on ``jobs`` until it hands it None. On Ctrl-C or SIGTERM it fails its
    trial in flight as interrupted (or ends its confirmation run KILLED) and exits quietly,
    leaving the one line to the parent."""
    try:
        with signals.interrupts_deferred(escalate=False):
            splits = load_splits(ctx.base.data, resolve_device(ctx.base.train.device))
            run_worker(ctx, splits=splits)
            ready.put(ctx.worker)
            _confirm_jobs(ctx, jobs, splits)
    except BaseException as err:
        if faults.is_passing_fault(err):  # its trial failed as interrupted; the others go on
            sys.stderr.write(f"error: worker {ctx.worker}: {faults.fault_line(err)}\n")
            raise SystemExit(1) from None
        if isinstance(err, KeyboardInterrupt):
            raise SystemExit(EXIT_INTERRUPTED) from None
        if isinstance(err, Exception):
            sys.stderr.write(f"error: worker {ctx.worker}: {one_line(err)}\n")
            raise SystemExit(1) from None
        raise


def _confirm_jobs(ctx: Context, jobs: Queue, splits: Splits) -> None:
    """Train the confirmation runs handed on ``jobs``, one at a time, until None (or the parent
    is gone)."""
    parent = multiprocessing.parent_process()
    while parent is None or parent.is_alive():
        signals.check_interrupted()
        try:
            job = jobs.get(timeout=POLL_S)
        except queue.Empty:
            continue
        if job is None:
            return
        experiment = ctx.base.tracking.experiment or ""
        train_confirmation(ctx.base, ctx.sweep, job, experiment, splits, tqdm.write)


class Pool:
    """The worker processes of this machine, as a context: each runs trials until the study has
    its count and says so, then trains the confirmation runs it is handed (``share``), each run
    by one worker. A worker that dies has its trial failed and retried by the others (one
    warning line); on Ctrl-C or SIGTERM every worker is stopped and fails its trial in flight
    as interrupted (its confirmation run KILLED)."""

    def __init__(
        self,
        ctx: Context,
        workers: int,
        study: optuna.Study,
        storage: optuna.storages.BaseStorage,
        mlflow: MlflowClient,
    ) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.jobs, self.ready = spawn.Queue(), spawn.Queue()
        self.procs = [
            spawn.Process(
                target=_worker_process,
                args=(dataclasses.replace(ctx, worker=k), self.jobs, self.ready),
            )
            for k in range(workers)
        ]
        self.study, self.storage, self.mlflow = study, storage, mlflow
        self.lost: set[int] = set()
        self.done_with_trials: set[int] = set()
        self.phase = "its trial goes to another worker"

    def __enter__(self) -> Pool:
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, kind: type | None, err: BaseException | None, tb: object) -> None:
        if isinstance(err, KeyboardInterrupt):
            # Ctrl-C reached the workers too; SIGTERM reached only us, so pass it on.
            for p in self.procs:
                if p.is_alive():
                    p.terminate()
        self.stop()
        for p in self.procs:
            p.join(WORKER_STOP_S)
            if p.is_alive():
                p.kill()
                p.join()
        for q in (self.jobs, self.ready):  # what no worker took is dropped, not waited on
            q.cancel_join_thread()
            q.close()

    def wait_trials(self) -> None:
        """Until every worker still alive is done with trials (the study has its count, or the
        deadline passed), the lost ones' trials failed as their worker died, to be retried."""
        while any(
            p.is_alive() and k not in self.done_with_trials for k, p in enumerate(self.procs)
        ):
            self._watch()

    def share(self, jobs: list[Confirmation]) -> None:
        """Hand ``jobs`` to the workers, each to the first that is free, and wait until they have
        stopped. A worker lost on the way leaves its run RUNNING (or a job untaken)."""
        self.phase = "its confirmation run is trained again"
        for job in jobs:
            self.jobs.put(job)
        self.stop()
        while any(p.is_alive() for p in self.procs):
            self._watch()
        self._watch(wait=False)

    def stop(self) -> None:
        """No more confirmation runs: each worker stops once the ones handed are taken."""
        for _ in self.procs:
            self.jobs.put(None)

    def _watch(self, wait: bool = True) -> None:
        """One look, after POLL_S: the interruption raised, workers that died (one line each,
        what they held recovered), workers done with trials."""
        if wait:
            time.sleep(POLL_S)
        signals.check_interrupted()
        died = {k for k, p in enumerate(self.procs) if p.exitcode not in (None, 0)} - self.lost
        for k in sorted(died):
            tqdm.write(
                f"warning: worker {k} was lost (exit code {self.procs[k].exitcode}); {self.phase}"
            )
        if died:
            self.lost |= died
            recover_interrupted(self.study, self.storage, self.mlflow)
        while True:
            try:
                self.done_with_trials.add(self.ready.get_nowait())
            except queue.Empty:
                return
