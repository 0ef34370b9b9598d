"""The objective: one tracked training run per trial, its outcome recorded in both stores, pruning
from per-epoch test MSE, and one console line for each trial that did not complete.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from sae import metrics as M
from sae import tracking
from sae.config import Config
from sae.errors import one_line
from sae.names import (
    ATTR_ACTIVE,
    ATTR_CONSTRAINT,
    ATTR_DEGENERATE,
    ATTR_FAIL_REASON,
    ATTR_FAILED,
    ATTR_L0,
    ATTR_NON_FINITE,
    ATTR_PROBE,
    ATTR_RUN_ID,
    ATTR_TEST_MSE,
    ATTR_WORKER,
    REASON_INTERRUPTED,
    TAG_DESCRIPTION,
    TAG_REASON,
    TAG_STUDY,
    TAG_TRIAL_NUMBER,
    TAG_TRIAL_STATE,
)
from sae.redact import redact
from sae.runner import train_run
from sae.sweep.config import SweepConfig
from sae.sweep.notes import link_trial
from sae.sweep.recovery import worker_id
from sae.sweep.space import build_space, suggest
from sae.train import Callback, DeadNetworkError, NonFiniteLossError, Splits


class _Report(Callback):
    """Reports each epoch's test MSE to the trial and prunes when the pruner says so."""

    def __init__(self, trial: optuna.Trial, prune: bool) -> None:
        self.trial, self.prune = trial, prune

    def on_epoch_end(self, epoch, step, metrics, model) -> None:  # noqa: ANN001
        if not self.prune:
            return
        self.trial.report(metrics[M.TEST_MSE], epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")


def make_objective(
    base: Config,
    sweep: SweepConfig,
    parent_run_id: str,
    splits: Splits,
    mlflow: MlflowClient,
    callbacks: Callable[[], list[Callback]] = list,
) -> Callable[[optuna.Trial], Any]:
    """The objective: one tracked training run per trial, nested under ``parent_run_id`` (runs
    in ``mlflow``). Whatever goes wrong inside the trial ends that trial FAIL with its reason (a
    user attribute, and tags on its FAILED run) and is raised for Optuna to record; the sweep
    catches it and goes on."""
    space = build_space(sweep)
    prune = sweep.objective == "constrained"

    def objective(trial: optuna.Trial) -> Any:
        run_id: list[str] = []
        run_name = f"trial-{trial.number:03d}"

        def started(rid: str) -> None:
            run_id.append(rid)
            trial.set_user_attr(ATTR_RUN_ID, rid)
            # now, while the trial runs: a finished trial takes no attribute and no note
            experiment_id = mlflow.get_run(rid).info.experiment_id
            link_trial(trial, mlflow.tracking_uri, experiment_id, rid, run_name)

        state, reason = "FAIL", ""
        try:
            params = suggest(trial, space)
            trial.set_user_attr(ATTR_WORKER, worker_id())
            cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, **params))
            outcome = train_run(
                cfg,
                kind="sweep",
                run_name=run_name,
                tags={
                    TAG_STUDY: sweep.study_name,
                    TAG_TRIAL_NUMBER: str(trial.number),
                    TAG_DESCRIPTION: _describe_trial(trial.number, sweep, params),
                },
                parent_run_id=parent_run_id,
                callbacks=[_Report(trial, prune), *callbacks()],
                splits=splits,
                on_run_start=started,
                finish_on=(optuna.TrialPruned,),
            )
            values = _objective_values(sweep, trial, outcome.result.final)
            state = "COMPLETE"
            return values
        except optuna.TrialPruned as err:
            state, reason = "PRUNED", str(err)
            raise
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (signals.RunKilled): retried on resume
            reason = REASON_INTERRUPTED
            raise
        except NonFiniteLossError as err:
            reason = str(err)
            trial.set_user_attr(ATTR_NON_FINITE, True)
            raise
        except DeadNetworkError as err:  # decided by the seed and model before any step
            reason = str(err)
            trial.set_user_attr(ATTR_FAILED, True)
            trial.set_user_attr(ATTR_DEGENERATE, reason)
            raise
        except Exception as err:
            reason = one_line(err)
            trial.set_user_attr(ATTR_FAILED, True)
            raise
        finally:
            _record_outcome(mlflow, trial, run_id, state, reason)

    return objective


def _describe_trial(number: int, sweep: SweepConfig, params: dict[str, Any]) -> str:
    """The trial run's description in the MLflow UI: where it belongs and what it tried."""
    tried = ", ".join(f"{name} {value:.3g}" for name, value in params.items())
    return f"Trial {number} of study `{sweep.study_name}`: {tried}."


def _objective_values(sweep: SweepConfig, trial: optuna.Trial, final: dict[str, float]) -> Any:
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


def _record_outcome(
    mlflow: MlflowClient, trial: optuna.Trial, run_id: list[str], state: str, reason: str
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
        with contextlib.suppress(Exception):
            tracking.set_tags(mlflow, run_id[0], tags)


def announce(log: Callable[[str], None]) -> Callable[[optuna.Study, FrozenTrial], None]:
    """An Optuna callback: one console line for each trial that did not complete."""

    def announce(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state in (TrialState.FAIL, TrialState.PRUNED):
            why = trial.user_attrs.get(ATTR_FAIL_REASON, "no reason recorded")
            log(f"trial {trial.number} {trial.state.name}: {why}")

    return announce
