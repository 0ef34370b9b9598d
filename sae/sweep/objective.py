"""The objective: one tracked training run per trial, its outcome recorded in both stores, pruning
from per-epoch test MSE, and one console line for each trial that did not complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from sae import faults, tracking
from sae import metrics as M
from sae.config import Config
from sae.errors import one_line
from sae.names import (
    ATTR_ACTIVE,
    ATTR_CONSTRAINT,
    ATTR_DEGENERATE,
    ATTR_EPOCH_ENDS,
    ATTR_EPOCH_POINTS,
    ATTR_FAIL_REASON,
    ATTR_FAILED,
    ATTR_L0,
    ATTR_NON_FINITE,
    ATTR_PROBE,
    ATTR_PRUNED_AT,
    ATTR_RUN_ID,
    ATTR_TEST_MSE,
    ATTR_WORKER,
    REASON_FAULT,
    REASON_INTERRUPTED,
    TAG_DESCRIPTION,
    TAG_FAMILY,
    TAG_PRUNED_AT,
    TAG_REASON,
    TAG_STUDY,
    TAG_TRIAL_NUMBER,
    TAG_TRIAL_STATE,
)
from sae.redact import redact
from sae.runner import train_run
from sae.splits import Splits
from sae.sweep.config import SweepConfig
from sae.sweep.notes import link_trial, note_degenerate
from sae.sweep.pareto import ParetoPruner
from sae.sweep.recovery import worker_id
from sae.sweep.resume import (
    Checkpointer,
    checkpoint_header,
    keeps_checkpoint,
    remove_checkpoint,
    resume_from,
)
from sae.sweep.space import build_space, suggest, with_params
from sae.train import Callback, DeadNetworkError, NonFiniteLossError


class Report(Callback):
    """Records each epoch's objective point on the trial (``ATTR_EPOCH_POINTS``, read by every
    worker's Pareto pruner) and its end time (``ATTR_EPOCH_ENDS``, read by the console), and
    stops the trial when its pruner says so: Optuna's, from the per-epoch test MSE, with the
    constrained objective; the Pareto pruner (``sweep.pareto``) with the Pareto objectives;
    none with --pruner none."""

    def __init__(self, trial: optuna.Trial, sweep: SweepConfig, epochs: int) -> None:
        self.trial, self.epochs = trial, epochs
        self.prune = sweep.pruner_used in ("median", "hyperband")
        self.pruner = sweep.pruner_used
        self.pareto = pareto_pruner(sweep)
        self.points: dict[str, list[float]] = {}
        self.ends: dict[str, list[float]] = {}
        self.mark = time.time()

    def on_fit_start(self, model, cfg, splits) -> None:  # noqa: ANN001
        self.mark = time.time()  # the epochs' time, without the run's setting up

    def _record(self, epoch: int, metrics: dict[str, float]) -> bool:
        point = [metrics[M.TEST_MSE], metrics[M.CODE_ACTIVE_FRAC]]
        if all(math.isfinite(v) for v in point):
            self.points[str(epoch)] = [*point, metrics.get(M.DEGENERATE, 0.0)]
            return True
        return False

    def on_resume(self, epoch, step, history) -> None:  # noqa: ANN001
        """A resumed trial carries the points of the epochs before (and reports their test MSE
        to Optuna's pruner), so that every pruner sees its rungs."""
        for number, metrics in enumerate(history, 1):
            self._record(number, metrics)
            if self.prune:
                self.trial.report(metrics[M.TEST_MSE], number)
        self.trial.set_user_attr(ATTR_EPOCH_POINTS, self.points)

    def on_epoch_end(self, epoch, step, metrics, model) -> None:  # noqa: ANN001
        # when the epoch ended and what it took: the sweep's console and its time left
        now = time.time()
        self.ends[str(epoch)] = [now, now - self.mark]
        self.mark = now
        self.trial.set_user_attr(ATTR_EPOCH_ENDS, self.ends)
        if self._record(epoch, metrics):
            self.trial.set_user_attr(ATTR_EPOCH_POINTS, self.points)
        why = None
        if self.prune:
            self.trial.report(metrics[M.TEST_MSE], epoch)
            if self.trial.should_prune():
                why = f"pruned at epoch {epoch}: its test MSE, by the {self.pruner} pruner"
        elif self.pareto is not None:
            trials = self.trial.study.get_trials(deepcopy=False)
            why = self.pareto.decide(trials, self.trial.number, epoch, self.epochs)
        if why:
            self.trial.set_user_attr(ATTR_PRUNED_AT, epoch)
            raise optuna.TrialPruned(why)


def pareto_pruner(sweep: SweepConfig) -> ParetoPruner | None:
    """The Pareto pruner for a Pareto objective, unless --pruner none."""
    if sweep.pruner_used != "pareto":
        return None
    return ParetoPruner.named_by(sweep)


@dataclasses.dataclass(frozen=True)
class TrialPlan:
    """What a trial trains: its config, run name and run tags."""

    cfg: Config
    run_name: str
    tags: dict[str, str]


def plan_trial(
    trial: optuna.Trial, base: Config, sweep: SweepConfig, space: dict[str, Any]
) -> TrialPlan:
    """Sample the trial's parameters (or take them as enqueued, for a retry) and record who
    runs it."""
    trial.set_user_attr(ATTR_WORKER, worker_id())  # first: a trial naming no worker is orphaned
    params = suggest(trial, space)
    cfg = with_params(base, params)
    tags = {
        TAG_STUDY: sweep.study_name,
        TAG_FAMILY: sweep.family,
        TAG_TRIAL_NUMBER: str(trial.number),
        TAG_DESCRIPTION: _describe_trial(trial.number, sweep, params),
    }
    return TrialPlan(cfg, f"trial-{trial.number:03d}", tags)


def run_started(mlflow: MlflowClient, trial: optuna.Trial, run_id: str, run_name: str) -> None:
    """The trial's MLflow run exists: its id and link on the trial now, while the trial runs (a
    finished trial takes no attribute and no note)."""
    trial.set_user_attr(ATTR_RUN_ID, run_id)
    experiment_id = mlflow.get_run(run_id).info.experiment_id
    link_trial(trial, mlflow.tracking_uri, experiment_id, run_id, run_name)


def settle(trial: optuna.Trial, err: BaseException) -> tuple[str, str]:
    """The state a trial ends in for the error that ended it, and the reason; marks on the
    trial what kind of failure it was (a failure of its own is not retried, an interruption
    is)."""
    if isinstance(err, optuna.TrialPruned):
        return "PRUNED", str(err)
    if faults.is_passing_fault(err):  # a lock, a full disk, a lost connection: retried
        return "FAIL", f"{REASON_FAULT}: {faults.describe(err)}"
    if isinstance(err, KeyboardInterrupt):  # Ctrl-C or SIGTERM (signals.RunKilled): retried
        return "FAIL", REASON_INTERRUPTED
    if isinstance(err, NonFiniteLossError):
        trial.set_user_attr(ATTR_NON_FINITE, True)
        return "FAIL", str(err)
    if isinstance(err, DeadNetworkError):  # decided by the seed and model before any step
        trial.set_user_attr(ATTR_FAILED, True)
        trial.set_user_attr(ATTR_DEGENERATE, str(err))
        return "FAIL", str(err)
    if isinstance(err, Exception):
        trial.set_user_attr(ATTR_FAILED, True)
        return "FAIL", one_line(err)
    return "FAIL", ""


def make_objective(
    base: Config,
    sweep: SweepConfig,
    parent_run_id: str,
    splits: Splits,
    mlflow: MlflowClient,
    log: Callable[[str], None] = tqdm.write,
) -> Callable[[optuna.Trial], Any]:
    """The objective: one tracked training run per trial, nested under ``parent_run_id`` (runs
    in ``mlflow``). Whatever goes wrong inside the trial ends that trial FAIL with its reason (a
    user attribute, and tags on its FAILED run) and is raised for Optuna to record; the sweep
    catches it and goes on. A passing fault of the stores or the machine that outlasted its
    retries is raised as ``faults.FaultPersisted``, an interruption: the trial is retried on
    resume and the sweep stops. The retry of an interrupted trial continues its run from its
    last checkpoint (``sweep.resume``; a refused one is a line through ``log``)."""
    space = build_space(sweep)

    def objective(trial: optuna.Trial) -> Any:
        run_id: list[str] = []
        state, reason, keep = "FAIL", "", False
        try:
            plan = plan_trial(trial, base, sweep, space)
            start = resume_from(mlflow, trial, plan.cfg, splits, log)
            checkpoints = Checkpointer(mlflow, checkpoint_header(trial))

            def started(rid: str) -> None:
                run_id.append(rid)
                checkpoints.run_id = rid
                run_started(mlflow, trial, rid, plan.run_name)

            outcome = train_run(
                plan.cfg,
                kind="sweep",
                run_name=plan.run_name,
                tags=plan.tags,
                parent_run_id=parent_run_id,
                callbacks=[Report(trial, sweep, plan.cfg.train.epochs), checkpoints],
                splits=splits,
                on_run_start=started,
                finish_on=(optuna.TrialPruned,),
                resume=start,
            )
            values = objective_values(sweep, trial, outcome.result.final)
            state = "COMPLETE"
            return values
        except BaseException as err:
            state, reason = settle(trial, err)
            keep = keeps_checkpoint(err)  # an interrupted trial's retry goes on from it
            if faults.is_passing_fault(err) and not isinstance(err, faults.FaultPersisted):
                # stops the sweep as an interruption does, the trial failed to be retried
                raise faults.FaultPersisted(faults.describe(err)) from err
            raise
        finally:
            record_outcome(mlflow, trial, run_id[0] if run_id else None, state, reason)
            if not keep:
                remove_checkpoint(mlflow, run_id[0] if run_id else None)

    return objective


def _describe_trial(number: int, sweep: SweepConfig, params: dict[str, Any]) -> str:
    """The trial run's description in the MLflow UI: where it belongs and what it tried."""
    tried = ", ".join(f"{name} {value:.3g}" for name, value in params.items())
    return f"Trial {number} of study `{sweep.study_name}`: {tried}."


def objective_values(sweep: SweepConfig, trial: optuna.Trial, final: dict[str, float]) -> Any:
    """The objective value(s) from the last epoch's evaluation; a non-finite one is an error.

    Every completed trial also gets the constraint ATTR_DEGENERATE: 1 (infeasible) when the model
    collapsed (``metrics.degenerate_reason``), -1 otherwise, so no sampler or front counts it.
    """
    mse, active = final[M.TEST_MSE], final[M.CODE_ACTIVE_FRAC]
    if not (math.isfinite(mse) and math.isfinite(active)):
        raise NonFiniteLossError(f"test MSE {mse} or active fraction {active} is not finite")
    degenerate = M.degenerate_reason(final) or ""
    trial.set_user_attr(ATTR_ACTIVE, active)
    trial.set_user_attr(ATTR_TEST_MSE, mse)
    trial.set_user_attr(ATTR_DEGENERATE, degenerate)
    if M.CODE_L0 in final:
        trial.set_user_attr(ATTR_L0, final[M.CODE_L0])
    probe = final.get(M.PROBE_ACCURACY)
    if probe is not None:
        trial.set_user_attr(ATTR_PROBE, probe)
    trial.set_constraint(ATTR_DEGENERATE, 1.0 if degenerate else -1.0)
    if degenerate:  # optuna-dashboard shows it infeasible (sweep.dashboard); its note says why
        note_degenerate(trial, degenerate)
    if sweep.objective == "pareto":
        return mse, active
    if sweep.objective == "pareto-probe":
        if probe is None or not math.isfinite(probe):
            raise ValueError(f"the objective pareto-probe needs a probe accuracy, got {probe}")
        return mse, active, probe
    excess = active - sweep.max_active_frac
    trial.set_user_attr(ATTR_CONSTRAINT, excess)
    trial.set_constraint(ATTR_ACTIVE, excess)  # named as the user attribute of the fraction
    return mse


def record_outcome(
    mlflow: MlflowClient, trial: optuna.Trial, run_id: str | None, state: str, reason: str
) -> None:
    """The trial's reason as a user attribute, its state and reason as tags on its run. A store
    that fails here must not hide the trial's own error, so a failure to write is dropped."""
    with contextlib.suppress(Exception):
        if reason:
            trial.set_user_attr(ATTR_FAIL_REASON, redact(reason)[:500])
    if run_id:
        tags = {TAG_TRIAL_STATE: state}
        if reason and state != "COMPLETE":
            tags[TAG_REASON] = redact(reason)[:500]
        if state == "PRUNED":
            with contextlib.suppress(Exception):
                tags[TAG_PRUNED_AT] = str(trial.user_attrs[ATTR_PRUNED_AT])
        with contextlib.suppress(Exception):
            tracking.set_tags(mlflow, run_id, tags)


def announce(log: Callable[[str], None]) -> Callable[[optuna.Study, FrozenTrial], None]:
    """An Optuna callback: one console line for each trial that did not complete."""

    def announce(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state in (TrialState.FAIL, TrialState.PRUNED):
            why = trial.user_attrs.get(ATTR_FAIL_REASON, "no reason recorded")
            log(f"trial {trial.number} {trial.state.name}: {why}")

    return announce
