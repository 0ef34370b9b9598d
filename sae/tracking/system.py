"""System metrics (CPU, memory, disk, network, GPU where there is one) on a run, through MLflow's
own monitor: the adapter for runs opened with the client.

MLflow's public switch for system metrics is ``mlflow.start_run(log_system_metrics=True)``, a
fluent-API run; the suite opens every run with the client and an explicit run id, so it drives
the monitor class behind that switch (``SystemMetricsMonitor``) itself, through the adapter for
non-public calls (``sae.internals``). Two things are added to MLflow's behaviour:

- the monitor publishes one sample per ``interval``, and drops what it gathered since the last one
  when it stops, so a run shorter than ``interval`` would show an empty System metrics tab; the
  adapter publishes that last part when the run ends;
- its INFO lines ("Started monitoring system metrics.", ...) are not printed for every run.

Set ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false`` to turn it off; MLflow's
``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` overrides ``INTERVAL_S``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from mlflow.tracking import MlflowClient

from sae import internals

INTERVAL_S = 5.0
"""Seconds between two samples: a 10-epoch trial (about 100 s on 2 CPU cores) gets about 20."""
PREFIX = "system/"
"""MLflow's prefix of the system metrics' keys (``system/cpu_utilization_percentage``)."""
_SWITCH = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
_MONITOR_LOGGER = "mlflow.system_metrics"
_log = logging.getLogger(__name__)


def enabled() -> bool:
    """On unless the user's environment turns MLflow's system metrics off."""
    return os.environ.get(_SWITCH, "true").strip().lower() not in ("false", "0", "no", "off")


@contextlib.contextmanager
def system_metrics(
    client: MlflowClient, run_id: str, interval: float = INTERVAL_S
) -> Iterator[None]:
    """Log system metrics on ``run_id`` while the block runs, then a last sample when it ends.

    A failure of the monitor never fails the run: it is one warning line and the run goes on.
    """
    monitor = _start(client, run_id, interval) if enabled() else None
    try:
        yield
    finally:
        if monitor is not None:
            _finish(monitor)


def _start(client: MlflowClient, run_id: str, interval: float) -> Any:
    logging.getLogger(_MONITOR_LOGGER).setLevel(logging.WARNING)
    try:
        monitor = internals.system_metrics_monitor(run_id, interval, client.tracking_uri)
        monitor.start()
    except Exception as err:  # psutil missing, a store that refuses: the run goes on without
        _log.warning("no system metrics for run %s: %s", run_id, err)
        return None
    return monitor


def _finish(monitor: Any) -> None:
    try:
        monitor.finish()
        internals.publish_last_sample(monitor)  # what the run did since the last sample
    except Exception as err:
        _log.warning("the last system metrics were not logged: %s", err)
