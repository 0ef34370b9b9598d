"""The only calls into MLflow's and Optuna's non-public APIs, each where no public one does the job.

Everything else in the suite uses public APIs. Each call here has a test
(``tests/test_internals.py``) that fails loudly when a release of the library moves it.

- MLflow's SQL store answers one query per metric for many runs (``get_metric_history_bulk``);
  the public client reads one history per (run, metric), which is what we fall back to.
- Optuna has no public way to set a user attribute on a trial of another process (a worker that
  died) before failing it with the public ``study.tell``: its storage methods do that.
- Optuna's RDB storage keeps a trial alive by its heartbeat, which ``study.optimize`` records
  from a thread for its one trial; a population's trials are asked and told by hand
  (``study.ask``/``study.tell``), so ``trial_heartbeats`` records them the same way, through
  the storage's ``record_heartbeat``.
- MLflow logs system metrics publicly only on a fluent-API run
  (``mlflow.start_run(log_system_metrics=True)``); the suite's runs are opened with the client,
  so ``system_metrics_monitor`` builds the monitor behind that switch for a run id, and
  ``publish_last_sample`` logs what it gathered after its last sample (``sae.tracking.system``).
- MLflow's client logs and downloads a run's artifacts but has no call to delete one; each
  artifact repository has ``delete_artifacts``, which ``delete_run_artifacts`` calls for the
  repository behind a run's artifact URI (a trial's checkpoint is removed when the trial ends).
- optuna-dashboard (0.21) has no public way to say which trials are a study's best: its study
  page computes the Pareto front over every COMPLETE trial (the best value, for one objective)
  and reads constraints only from Optuna's older ``constraints`` system attribute, while
  ``Trial.set_constraint`` writes ``constraints:<key>``. ``dashboard_front`` replaces both in
  the dashboard's serializer of the study page, for the requests of the app it wraps.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # reading MLflow runs back needs no Optuna
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import FrozenTrial

_IDS_PER_QUERY = 500
_NO_LIMIT = 10**9


def bulk_history_reader(client: MlflowClient) -> Any:
    """The store's bulk metric-history call, or None when the store has none (a tracking server,
    a file store): ``reader(run_ids, key, max_results)``."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return getattr(store, "get_metric_history_bulk", None)


def metric_histories(
    client: MlflowClient, run_ids: Sequence[str], key: str
) -> Iterator[tuple[str, int, float, int]]:
    """Every logged value of metric ``key`` of the runs: (run_id, step, value, timestamp)."""
    bulk = bulk_history_reader(client)
    if bulk is None:
        for run_id in run_ids:
            for m in client.get_metric_history(run_id, key):
                yield run_id, m.step, m.value, m.timestamp
        return
    for start in range(0, len(run_ids), _IDS_PER_QUERY):
        chunk = list(run_ids[start : start + _IDS_PER_QUERY])
        for m in bulk(chunk, key, _NO_LIMIT):
            yield m.run_id, m.step, m.value, m.timestamp


def set_trial_user_attr(
    storage: optuna.storages.BaseStorage, study_name: str, number: int, key: str, value: Any
) -> None:
    """Set a user attribute on trial ``number`` of the study, which may belong to another process
    (``optuna.Trial.set_user_attr`` needs the trial's own handle)."""
    study_id = storage.get_study_id_from_name(study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    storage.set_trial_user_attr(trial_id, key, value)


@contextlib.contextmanager
def trial_heartbeats(
    storage: optuna.storages.BaseStorage, study_name: str, numbers: Sequence[int]
) -> Iterator[None]:
    """Within the block, record the heartbeat of the study's trials ``numbers`` every interval,
    as ``study.optimize`` does for its one trial, so that ``fail_stale_trials`` (in this or any
    other process) leaves them running. Nothing for a storage without heartbeats (a journal)."""
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if not interval or not numbers:
        yield
        return
    study_id = storage.get_study_id_from_name(study_name)
    ids = [storage.get_trial_id_from_study_id_trial_number(study_id, n) for n in numbers]
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in ids:
                with contextlib.suppress(Exception):  # a finished trial takes no heartbeat
                    storage.record_heartbeat(trial_id)
            if stop.wait(timeout=interval):
                return

    thread = threading.Thread(target=beat, name="sae-trial-heartbeats", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def system_metrics_monitor(run_id: str, interval: float, tracking_uri: str) -> Any:
    """MLflow's system-metrics monitor for run ``run_id`` (not started), continuing the run's
    steps when it has system metrics already (a resumed run)."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    return SystemMetricsMonitor(
        run_id, sampling_interval=interval, resume_logging=True, tracking_uri=tracking_uri
    )


def publish_last_sample(monitor: Any) -> None:
    """After ``monitor.finish()``: one more sample, averaged with what the monitor gathered since
    it last published (it drops that part when it stops), logged at the next step."""
    monitor.collect_metrics()
    monitor.publish_metrics(monitor.aggregate_metrics())
    monitor.mlflow_logger.flush()


def delete_run_artifacts(client: MlflowClient, run_id: str, path: str) -> None:
    """Delete the artifact file or folder ``path`` of run ``run_id``; nothing when it has none."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    uri = client.get_run(run_id).info.artifact_uri
    get_artifact_repository(uri, tracking_uri=client.tracking_uri).delete_artifacts(path)


_DASHBOARD_FRONT: contextvars.ContextVar[tuple[Callable[..., Any], Callable[..., Any]] | None] = (
    contextvars.ContextVar("sae_dashboard_front", default=None)
)


def dashboard_front(
    app: Callable[..., Any],
    best: Callable[[str], list[FrozenTrial]],
    constraints: Callable[[FrozenTrial], list[float]],
) -> Callable[..., Any]:
    """optuna-dashboard's WSGI ``app`` (``optuna_dashboard.wsgi``) whose study page
    (``/api/studies/<id>``) lists ``best(study_name)`` as the study's best trials, and
    ``constraints(trial)`` as each trial's constraint values, which its plots and lists read to
    draw a trial infeasible (any value > 0). A preferential study keeps the dashboard's own
    choice; another app of the same process (none here) is left as it is."""
    from optuna_dashboard import _app

    original = _app.serialize_study_detail
    if not getattr(original, "sae_front", False):

        def study_detail(study: Any, best: Any, trials: Any, *rest: Any, **named: Any) -> Any:
            detail = original(study, best, trials, *rest, **named)
            chosen = _DASHBOARD_FRONT.get()
            if chosen is None or detail.get("is_preferential"):
                return detail
            front, limits = chosen
            fronted = front(study.study_name)
            detail["best_trials"] = original(study, fronted, [], *rest, **named)["best_trials"]
            by_number = {t.number: t for t in [*trials, *fronted]}
            for shown in (*detail["trials"], *detail["best_trials"]):
                shown["constraints"] = limits(by_number[shown["number"]])
            return detail

        study_detail.sae_front = True  # type: ignore[attr-defined]
        _app.serialize_study_detail = study_detail

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        token = _DASHBOARD_FRONT.set((best, constraints))
        try:  # Bottle renders the whole body within the call
            return app(environ, start_response)
        finally:
            _DASHBOARD_FRONT.reset(token)

    return application
