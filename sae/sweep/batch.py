"""A batch of trials trained together: K trials asked at once, grouped by batch size, each group
trained in one pass as a population (``sae.population``), every trial with its own MLflow run,
closed with its own status, and its own outcome told to the study.

A trial here ends exactly as it ends in the one-at-a-time objective (``sae.sweep.objective``):
the same run, tags and user attributes, the same states and reasons. One member's failure
(an exception, a diverged loss, a dead network, a prune) ends its trial only; Ctrl-C or SIGTERM
ends every trial of the batch as interrupted (retried on resume) and is raised. Each member keeps
its checkpoint after every epoch (``sweep.resume``), and the retries of a population's trials,
grouped by the epoch they go on from, resume together.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState

from sae import faults, internals, tracking
from sae.config import Config
from sae.population import Member, fit_population
from sae.runner import Resume
from sae.splits import Splits
from sae.sweep.config import SweepConfig
from sae.sweep.objective import (
    Report,
    TrialPlan,
    announce,
    objective_values,
    plan_trial,
    record_outcome,
    run_started,
    settle,
)
from sae.sweep.resume import (
    Checkpointer,
    checkpoint_header,
    keeps_checkpoint,
    remove_checkpoint,
    resume_from,
)
from sae.sweep.space import build_space
from sae.train import FitResult

_STATES = {"COMPLETE": TrialState.COMPLETE, "PRUNED": TrialState.PRUNED, "FAIL": TrialState.FAIL}


@dataclass
class _Entry:
    """One trial of the batch on its way: its plan, and its run once opened."""

    trial: optuna.Trial
    plan: TrialPlan | None = None
    start: Resume = Resume()
    """The run it continues and the state it goes on from, for a retry (``sweep.resume``)."""
    run: Any = None
    """The trial's ``tracking.tracked_run`` context, entered."""
    run_id: str | None = None
    tracker: tracking.Tracker | None = None
    told: bool = False
    fault: BaseException | None = None
    """The passing fault of the stores or the machine that ended the trial, if one did."""


@dataclass
class Batch:
    """What every batch of a worker shares."""

    study: optuna.Study
    storage: optuna.storages.BaseStorage
    base: Config
    sweep: SweepConfig
    settings: tracking.Settings
    parent_run_id: str
    splits: Splits
    mlflow: MlflowClient
    log: Callable[[str], None]


def run_batch(batch: Batch, size: int) -> None:
    """Ask ``size`` trials, train them by group (their batch size and the epoch they go on
    from), and tell each its outcome. Raises only KeyboardInterrupt (Ctrl-C, SIGTERM;
    ``faults.FaultPersisted`` when a passing fault of the stores or the machine outlasted its
    retries), after ending every trial of the batch."""
    study = batch.study
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        # as study.optimize does before each trial: fail the trials of workers gone silent (a
        # storage with heartbeats), whose parameters are then tried again
        optuna.storages.fail_stale_trials(study)
    entries = [_Entry(study.ask()) for _ in range(size)]
    numbers = [e.trial.number for e in entries]
    with internals.trial_heartbeats(batch.storage, study.study_name, numbers):
        try:
            space = build_space(batch.sweep)
            for entry in entries:
                try:
                    entry.plan = plan_trial(entry.trial, batch.base, batch.sweep, space)
                    cfg = entry.plan.cfg
                    entry.start = resume_from(
                        batch.mlflow, entry.trial, cfg, batch.splits, batch.log
                    )
                except Exception as err:
                    entry.plan = None
                    _finish(batch, entry, err)
            # one loop per batch size and epoch gone on from
            groups: dict[tuple[int, int], list[_Entry]] = {}
            for entry in entries:
                if entry.plan is not None:
                    epoch = entry.start.state["epoch"] if entry.start.state else 0
                    key = (entry.plan.cfg.train.batch_size, epoch)
                    groups.setdefault(key, []).append(entry)
            for group in groups.values():
                _train_group(batch, group)
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: every trial, retried on resume
            for entry in entries:
                _finish(batch, entry, err, close=True)
            raise
        except Exception as err:  # of the population as a whole (out of memory): its trials only
            for entry in entries:
                _finish(batch, entry, err, close=True)
    fault = next((e.fault for e in entries if e.fault is not None), None)
    if fault is not None:  # the sweep stops as on an interruption; the trials are retried
        raise faults.FaultPersisted(faults.describe(fault)) from fault


def _train_group(batch: Batch, group: Sequence[_Entry]) -> None:
    """Open each trial's run, train the group as one population, end each trial."""
    members = []
    for entry in group:
        try:
            _open_run(batch, entry)
        except Exception as err:
            _finish(batch, entry, err, close=True)
            continue
        report = Report(entry.trial, batch.sweep, entry.plan.cfg.train.epochs)
        checkpoints = Checkpointer(batch.mlflow, checkpoint_header(entry.trial))
        checkpoints.run_id = entry.run_id
        callbacks = [entry.tracker, report, checkpoints]
        members.append((entry, Member(entry.plan.cfg, callbacks, entry.start.state)))
    if not members:
        return
    outcomes = fit_population([member for _, member in members], batch.splits)
    for (entry, _), outcome in zip(members, outcomes, strict=True):
        _finish(batch, entry, outcome.error, close=True, result=outcome.result)


def _open_run(batch: Batch, entry: _Entry) -> None:
    plan = entry.plan
    run = tracking.tracked_run(
        plan.cfg,
        batch.settings,
        kind="sweep",
        run_name=plan.run_name,
        tags=plan.tags,
        parent_run_id=batch.parent_run_id,
        finish_on=(optuna.TrialPruned,),
        run_id=entry.start.run_id,
        resumable=True,
    )
    entry.tracker = run.__enter__()
    entry.run, entry.run_id = run, entry.tracker.run_id
    run_started(batch.mlflow, entry.trial, entry.run_id, plan.run_name)


def _finish(
    batch: Batch,
    entry: _Entry,
    err: BaseException | None,
    *,
    close: bool = False,
    result: FitResult | None = None,
) -> None:
    """End the trial's run (when ``close``) with the status ``err`` earns, then the trial: its
    values when it trained to the end (``result``), else its state and reason, and one console
    line when it did not complete. A trial already told is left alone."""
    if entry.told:
        return
    entry.told = True
    if close and entry.run is not None:
        run, entry.run = entry.run, None
        err = _close(run, err)
    values = None
    if err is None:
        try:
            values = objective_values(batch.sweep, entry.trial, result.final)
        except Exception as raised:
            err = raised
    state, reason = ("COMPLETE", "") if err is None else settle(entry.trial, err)
    if err is not None and faults.is_passing_fault(err):
        entry.fault = err
    record_outcome(batch.mlflow, entry.trial, entry.run_id, state, reason)
    if not keeps_checkpoint(err):  # an interrupted trial's retry goes on from it
        remove_checkpoint(batch.mlflow, entry.run_id)
    frozen = batch.study.tell(entry.trial, values, state=_STATES[state], skip_if_finished=True)
    if not isinstance(err, KeyboardInterrupt) and entry.fault is None:
        announce(batch.log)(batch.study, frozen)  # an interruption is one line for the sweep


def _close(run: Any, err: BaseException | None) -> BaseException | None:
    """Leave the run's context with ``err`` (its status follows: ``tracking.run_lifecycle``);
    the error the trial ends with: ``err``, or what closing the run raised."""
    try:
        if err is None:
            run.__exit__(None, None, None)
        else:
            run.__exit__(type(err), err, err.__traceback__)
    except BaseException as raised:
        return raised
    return err
