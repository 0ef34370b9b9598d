"""Workers: the trial loop of one worker, and worker processes sharing a study on this machine."""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from tqdm import tqdm

from sae import faults, signals, tracking
from sae.config import Config
from sae.errors import one_line
from sae.splits import Splits, load_splits, resolve_device
from sae.sweep.batch import Batch, run_batch
from sae.sweep.config import SweepConfig
from sae.sweep.identity import study_identity
from sae.sweep.objective import announce, make_objective
from sae.sweep.recovery import counts_as_finished, finished_count, recover_interrupted
from sae.sweep.space import build_space
from sae.sweep.study import make_storage, open_study

EXIT_INTERRUPTED = 130
WORKER_STOP_S = 30.0
"""How long an interrupted worker gets to fail its trial in flight before it is killed."""


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
    progress: Callable[[int], None] | None = None,
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
        if progress:
            progress(done)
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


def _worker_process(ctx: Context) -> None:
    """A worker process: trials until done; on Ctrl-C or SIGTERM it fails its trial in flight as
    interrupted and exits quietly, leaving the one line to the parent."""
    try:
        with signals.interrupts_deferred(escalate=False):
            run_worker(ctx)
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


def run_processes(
    ctx: Context,
    workers: int,
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    mlflow: MlflowClient,
    progress: Callable[[int], None],
) -> None:
    """Run ``workers`` worker processes until they stop. A worker that dies has its trial failed
    and retried by the others (one warning line); on Ctrl-C or SIGTERM every worker is stopped
    and fails its trial in flight as interrupted."""
    spawn = multiprocessing.get_context("spawn")
    procs = [
        spawn.Process(target=_worker_process, args=(dataclasses.replace(ctx, worker=k),))
        for k in range(workers)
    ]
    for p in procs:
        p.start()
    recovered: set[int] = set()
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            signals.check_interrupted()
            progress(finished_count(study))
            # a worker that died mid-trial leaves a RUNNING trial; give it to the others, once
            died = {k for k, p in enumerate(procs) if p.exitcode not in (None, 0)} - recovered
            for k in sorted(died):
                tqdm.write(
                    f"warning: worker {k} was lost (exit code {procs[k].exitcode}); "
                    "its trial goes to another worker"
                )
            if died:
                recovered |= died
                recover_interrupted(study, storage, mlflow)
        progress(finished_count(study))
    except KeyboardInterrupt:
        # Ctrl-C reached the workers too; SIGTERM reached only us, so pass it on.
        for p in procs:
            if p.is_alive():
                p.terminate()
        raise
    finally:
        for p in procs:
            p.join(WORKER_STOP_S)
            if p.is_alive():
                p.kill()
                p.join()
