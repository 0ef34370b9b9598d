"""Which trials count as finished, and recovering interrupted ones: failed, their runs ended KILLED,
their parameters tried again (by Optuna's retry callback, the one the RDB heartbeat also calls),
each retry continuing its line's run (``line_run``).
"""

from __future__ import annotations

import copy
import datetime
import os
import socket
import warnings
from collections import Counter

import optuna
from mlflow.tracking import MlflowClient
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from sae import internals, tracking
from sae.names import (
    ATTR_FAIL_REASON,
    ATTR_FAILED,
    ATTR_NON_FINITE,
    ATTR_RETRY_OF,
    ATTR_RUN_ID,
    ATTR_WORKER,
    REASON_WORKER_DIED,
    TAG_ERROR,
    TAG_REASON,
    TAG_TRIAL_STATE,
)

MAX_RETRIES = 2
"""How many times the parameters of an interrupted trial are tried again."""
ORPHAN_AGE_S = 900.0
"""A RUNNING trial that names no worker is taken as abandoned this long after it started: a
worker names itself first thing, so only one that died at once (or whose record a journal
repair lost) leaves none; the margin covers a store that held it up with retries."""


def counts_as_finished(trial: FrozenTrial) -> bool:
    """COMPLETE, PRUNED, or FAIL by itself (a diverged loss, an exception in the trial): outcomes
    of its parameters. An interrupted trial, or one whose worker died, does not count."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and failed_itself(trial)


def failed_itself(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(ATTR_NON_FINITE) or trial.user_attrs.get(ATTR_FAILED))


def finished_count(study: optuna.Study) -> int:
    return sum(counts_as_finished(t) for t in study.get_trials(deepcopy=False))


def worker_id() -> str:
    """This process, as a trial records who runs it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _is_dead(worker: str) -> bool:
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's worker: the RDB heartbeat tells, not us
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fail_dead_holders(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    reason: str,
    ours: bool = False,
    orphan_age_s: float | None = None,
) -> list[int]:
    """Fail, with ``reason``, the RUNNING trials no live process holds: their worker process on
    this machine is gone, or none was recorded and the trial started over ``orphan_age_s`` ago
    (its worker died before it could say, or the record was lost to a journal repair; default
    ``ORPHAN_AGE_S``); with ``ours``, this process's own trials too. Returns their numbers."""
    orphan_age_s = ORPHAN_AGE_S if orphan_age_s is None else orphan_age_s
    failed = []
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(ATTR_WORKER)
        started = trial.datetime_start or now
        orphan = worker is None and (now - started).total_seconds() >= orphan_age_s
        if orphan or (worker and _is_dead(worker)) or (ours and worker == worker_id()):
            # another process's trial (or ours, between Optuna's steps): no Trial handle here
            internals.set_trial_user_attr(
                storage, study.study_name, trial.number, ATTR_FAIL_REASON, reason
            )
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            failed.append(trial.number)
    return failed


def recover_interrupted(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    mlflow: MlflowClient,
    reason: str = REASON_WORKER_DIED,
    ours: bool = False,
) -> list[int]:
    """Fail the RUNNING trials whose worker process on this machine is gone (with ``reason``;
    with ``ours``, this process's own trials too, when it is being interrupted), end the MLflow
    run (in ``mlflow``) of every interrupted trial KILLED with the trial's state and reason, and
    enqueue the parameters of every interrupted trial again (at most MAX_RETRIES times). Returns
    the numbers of the trials given a retry. Trials that failed by themselves are not retried.

    The journal storage has no heartbeat in Optuna 5, hence the check by process id; an RDB
    storage's heartbeat fails the trials of dead workers on any machine and retries them through
    ``retry_interrupted`` itself, and this then ends their runs the same way.
    """
    fail_dead_holders(study, storage, reason, ours=ours)
    trials = study.get_trials(deepcopy=False)
    retries = Counter(t.user_attrs.get(ATTR_RETRY_OF) for t in trials)
    # a resumed trial continues its line's run: the run is the latest holder's to end
    holder = {t.user_attrs.get(ATTR_RUN_ID): t.number for t in trials}
    given = []
    for trial in trials:
        if trial.state != TrialState.FAIL or failed_itself(trial):
            continue
        run_id = trial.user_attrs.get(ATTR_RUN_ID)
        ours_to_end = run_id and holder[run_id] == trial.number
        if ours_to_end and tracking.run_status(mlflow, run_id) == "RUNNING":
            why = trial.user_attrs.get(ATTR_FAIL_REASON, reason)
            tags = {TAG_TRIAL_STATE: "FAIL", TAG_ERROR: why, TAG_REASON: why}
            tracking.set_tags(mlflow, run_id, tags)
            tracking.set_run_status(mlflow, run_id, "KILLED")
        root = trial.user_attrs.get(ATTR_RETRY_OF, trial.number)
        already = any(
            t.user_attrs.get(ATTR_RETRY_OF) == root and t.number > trial.number for t in trials
        )
        if already or retries[root] >= MAX_RETRIES or not trial.params:
            continue
        retry_interrupted(study, trial)
        retries[root] += 1
        given.append(trial.number)
    return given


def line_run(study: optuna.Study, trial: optuna.Trial) -> str | None:
    """The MLflow run that ``trial``, a retry of an interrupted trial, continues: that of the
    latest trial of its line (the first it retries, and the retries of that one) that had a
    run; None for a trial that retries nothing, or whose line never opened a run."""
    root = trial.user_attrs.get(ATTR_RETRY_OF)
    if root is None:
        return None
    line = [
        t
        for t in study.get_trials(deepcopy=False)
        if (t.number == root or t.user_attrs.get(ATTR_RETRY_OF) == root)
        and t.number < trial.number
        and ATTR_RUN_ID in t.user_attrs
    ]
    return max(line, key=lambda t: t.number).user_attrs[ATTR_RUN_ID] if line else None


def retry_interrupted(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue the parameters of the interrupted ``trial`` again, marked ``ATTR_RETRY_OF`` the
    first trial of its line; the retry gets none of the failed trial's other user attributes
    (its worker, run, reason).

    Optuna's ``RetryHeartbeatStaleTrialCallback`` does the work, keeping the line's history and
    its limit of MAX_RETRIES; this is also the RDB storage's callback for the trials its
    heartbeat fails.
    """
    failed = copy.deepcopy(trial)  # the callback extends lists it reads from the trial
    failed.user_attrs = {ATTR_RETRY_OF: trial.user_attrs.get(ATTR_RETRY_OF, trial.number)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # Optuna marks it experimental
        retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
    retry(study, failed)
