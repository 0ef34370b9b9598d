"""A run's life: opened, its config and environment logged, and always ended with a status."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mlflow.entities import RunStatus, RunTag
from mlflow.tracking import MlflowClient

from sae.config import Config
from sae.errors import one_line
from sae.faults import is_passing_fault
from sae.names import TAG_ERROR, TAG_KIND, TAG_PARENT_RUN
from sae.redact import redact_values
from sae.signals import interrupts_deferred
from sae.tracking.artifacts import CONFIG_FILE
from sae.tracking.environment import environment_tags
from sae.tracking.params import config_params, log_params
from sae.tracking.settings import Settings
from sae.tracking.store import client, ensure_experiment
from sae.tracking.system import system_metrics
from sae.tracking.tracker import Tracker, mark_degenerate
from sae.train import DeadNetworkError


@contextlib.contextmanager
def run_lifecycle(
    client: MlflowClient, run_id: str, *, finish_on: tuple[type[BaseException], ...] = ()
) -> Iterator[str]:
    """End run ``run_id`` with the status its block earned, the one place run status is decided.

    FINISHED on success; KILLED on Ctrl-C or SIGTERM (``RunKilled``) and on a passing fault of
    the stores or the machine (``sae.faults``); FINISHED too for the
    exceptions in ``finish_on`` (an early stop such as a pruned trial); FAILED on any other
    exception, with its one-line message as the ``error`` tag. The exception is re-raised; the
    run is always terminated, never left RUNNING. System metrics are logged on the run while
    the block runs (``sae.tracking.system``). Yields the run id.
    """
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        with system_metrics(client, run_id):
            yield run_id
        status = RunStatus.to_string(RunStatus.FINISHED)
    except KeyboardInterrupt:  # RunKilled included
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    except finish_on:
        status = RunStatus.to_string(RunStatus.FINISHED)
        raise
    except BaseException as err:
        if is_passing_fault(err):  # a lock, a full disk, a lost connection: not the run's doing
            status = RunStatus.to_string(RunStatus.KILLED)
        client.set_tag(run_id, TAG_ERROR, one_line(err))
        if isinstance(err, DeadNetworkError):
            mark_degenerate(client, run_id, str(err))
        raise
    finally:
        client.set_terminated(run_id, status=status)


@contextlib.contextmanager
def tracked_run(
    cfg: Config,
    settings: Settings,
    *,
    kind: str = "train",
    experiment: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    finish_on: tuple[type[BaseException], ...] = (),
    run_id: str | None = None,
    resumable: bool = False,
) -> Iterator[Tracker]:
    """Open a run, log the config and environment, and always close it with a final status
    (``run_lifecycle``): FINISHED on success or for the exceptions in ``finish_on``, KILLED on
    Ctrl-C or SIGTERM, FAILED with the error as a tag otherwise; the exception is re-raised. The
    experiment is ``experiment``, else the config's, else the one mlflow.yaml names for ``kind``.

    With ``run_id`` the run is that one, continued (a resumed trial): RUNNING again, named and
    tagged anew, its params logged again (the same values). With ``resumable`` (a run that keeps
    checkpoints), an interruption or a passing fault drops the metrics of the epoch in progress,
    since the run that resumes trains that epoch again and logs them.
    """
    name = experiment or cfg.tracking.experiment or settings.experiment(kind)
    experiment_id = ensure_experiment(settings, name)
    mlflow_client = client(settings)
    run_tags = {**environment_tags(), TAG_KIND: kind, **(tags or {})}
    if parent_run_id:
        run_tags[TAG_PARENT_RUN] = parent_run_id
    if run_id is None:
        run_id = mlflow_client.create_run(experiment_id, run_name=run_name, tags=run_tags)
        run_id = run_id.info.run_id
    else:
        experiment_id = _reopen(mlflow_client, run_id, run_name, run_tags)
    tracker = Tracker(mlflow_client, run_id, experiment_id)
    with run_lifecycle(mlflow_client, run_id, finish_on=finish_on):
        try:
            with interrupts_deferred():
                log_params(mlflow_client, tracker.run_id, config_params(cfg))
                mlflow_client.log_dict(tracker.run_id, redact_values(cfg.to_dict()), CONFIG_FILE)
                yield tracker
        except BaseException as err:
            if resumable and (isinstance(err, KeyboardInterrupt) or is_passing_fault(err)):
                tracker.discard()
            raise
        finally:
            tracker.flush()


def _reopen(
    mlflow_client: MlflowClient, run_id: str, run_name: str | None, tags: dict[str, str]
) -> str:
    """Set run ``run_id`` RUNNING again, with ``run_name`` and ``tags``; its experiment's id."""
    mlflow_client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING), name=run_name)
    mlflow_client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    return mlflow_client.get_run(run_id).info.experiment_id
