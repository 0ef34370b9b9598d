"""Everything that talks to MLflow, one job per module: ``settings`` (mlflow.yaml), ``store`` (the
store and its one client), ``lifecycle`` (a run opened and always ended with a status),
``tracker`` (the training callback), ``figures``, ``models``, ``runs`` (parent, benchmark and
report runs), ``checkpoints`` (a run's checkpoint in its artifacts), ``readback`` (the report's
frames and artifacts).

No process-wide MLflow state is used: every call goes through ``client(settings)`` with explicit
run ids. Names of tags live in ``sae.names``; signal handling in ``sae.signals``.
"""

from sae.tracking.artifacts import (
    CONFIG_FILE,
    CURVES_FILE,
    DENSITY_FILE,
    HISTOGRAMS_FILE,
    IMAGES_DIR,
    reconstruction_file,
)
from sae.tracking.checkpoints import (
    CHECKPOINT_DIR,
    CheckpointError,
    load_checkpoint,
    remove_checkpoint,
    save_checkpoint,
)
from sae.tracking.environment import environment_tags
from sae.tracking.figures import (
    activation_histograms,
    learning_curves,
    reconstruction_grid,
)
from sae.tracking.lifecycle import run_lifecycle, tracked_run
from sae.tracking.models import log_model
from sae.tracking.params import RUN_PARAMS, config_params, param_value
from sae.tracking.readback import (
    CURVE_COLUMNS,
    RUN_COLUMNS,
    curves_frame,
    download_artifact,
    experiment_names,
    latest_image,
    runs_frame,
)
from sae.tracking.runs import (
    log_benchmark,
    log_metrics,
    log_report,
    log_summary,
    open_parent_run,
    run_status,
    set_run_status,
    set_tags,
)
from sae.tracking.settings import (
    DEFAULT_SETTINGS_FILE,
    Settings,
    SettingsError,
    check_tracking_uri,
    load_settings,
    sqlite_file,
)
from sae.tracking.store import client, ensure_experiment, ensure_store, require_store
from sae.tracking.tracker import Tracker

__all__ = [
    "CHECKPOINT_DIR",
    "CheckpointError",
    "CONFIG_FILE",
    "CURVES_FILE",
    "DENSITY_FILE",
    "CURVE_COLUMNS",
    "DEFAULT_SETTINGS_FILE",
    "HISTOGRAMS_FILE",
    "IMAGES_DIR",
    "RUN_COLUMNS",
    "Settings",
    "SettingsError",
    "Tracker",
    "activation_histograms",
    "check_tracking_uri",
    "client",
    "curves_frame",
    "download_artifact",
    "ensure_experiment",
    "ensure_store",
    "environment_tags",
    "experiment_names",
    "latest_image",
    "learning_curves",
    "load_checkpoint",
    "load_settings",
    "log_benchmark",
    "log_metrics",
    "log_model",
    "log_report",
    "log_summary",
    "open_parent_run",
    "param_value",
    "RUN_PARAMS",
    "config_params",
    "reconstruction_file",
    "remove_checkpoint",
    "reconstruction_grid",
    "require_store",
    "run_lifecycle",
    "run_status",
    "runs_frame",
    "save_checkpoint",
    "set_run_status",
    "set_tags",
    "sqlite_file",
    "tracked_run",
]
