import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from helpers import build_config
from mlflow.tracking import MlflowClient

from sae import metrics as M
from sae import names, signals, tracking
from sae.config import Config, TrackingConfig
from sae.runner import train_run
from sae.tracking import system, tracker
from sae.train import Callback

TRAIN = Path(__file__).resolve().parents[1] / "experiments" / "train.py"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One tiny data set and one SQLite store shared by this module's runs."""
    return tmp_path_factory.mktemp("store")


def _cfg(store, **train):
    cfg = build_config(store, track=True, **train)
    return cfg


def _client(cfg) -> MlflowClient:
    return tracking.client(tracking.load_settings(cfg.tracking.config_file))


def _runs(cfg):
    settings = tracking.load_settings(cfg.tracking.config_file)
    return tracking.client(settings).search_runs(
        [tracking.ensure_experiment(settings, settings.experiment("train"))],
        order_by=["attributes.start_time DESC"],
    )


class RecordLogs(Callback):
    """Keeps what fit() reported every log_every steps: [(step, metrics)]."""

    def __init__(self):
        self.logged = []

    def on_log(self, step, metrics):
        self.logged.append((step, dict(metrics)))


@dataclasses.dataclass
class Finished:
    cfg: Config
    run: mlflow.entities.Run
    history: list[dict[str, float]]
    """FitResult.history: per epoch."""
    logged: list[tuple[int, dict[str, float]]]
    """What on_log received: per log_every steps."""


@pytest.fixture(scope="module")
def finished(store):
    cfg = _cfg(store)
    record = RecordLogs()
    outcome = train_run(cfg, callbacks=[record])
    run = _client(cfg).get_run(outcome.run_id)
    return Finished(cfg, run, outcome.result.history, record.logged)


def test_run__logs_exactly_the_declared_metric_keys(finished):
    run = finished.run
    expected = set(M.TRAIN_STEP_METRICS) | set(M.EPOCH_METRICS) | set(M.EVAL_METRICS)
    ours = {k for k in run.data.metrics if not k.startswith(system.PREFIX)}
    assert ours == expected | set(M.FINAL_METRICS)
    assert run.info.status == "FINISHED"


def test_run__has_system_metrics_even_when_shorter_than_the_sampling_interval(finished):
    """MLflow's monitor samples every 5 s and drops the last partial period when it stops; the
    tiny run takes about a second, so what it shows is the adapter's last sample."""
    keys = {k for k in finished.run.data.metrics if k.startswith(system.PREFIX)}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= keys
    history = _client(finished.cfg).get_metric_history(
        finished.run.info.run_id, "system/cpu_utilization_percentage"
    )
    assert len(history) >= 1 and all(0 <= m.value <= 100 for m in history)


def test_system_metrics__off_by_mlflows_switch_and_a_broken_monitor_never_fails_the_run(
    store, monkeypatch, caplog
):
    cfg = _cfg(store)
    client = _client(cfg)
    experiment_id = tracking.ensure_experiment(
        tracking.load_settings(cfg.tracking.config_file), "sm"
    )
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    off = client.create_run(experiment_id).info.run_id
    with tracking.run_lifecycle(client, off):
        pass
    assert not client.get_run(off).data.metrics
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING")
    import mlflow.system_metrics.system_metrics_monitor as monitor_module

    def broken(*args, **kwargs):
        raise RuntimeError("no psutil here")

    monkeypatch.setattr(monitor_module, "SystemMetricsMonitor", broken)
    run_id = client.create_run(experiment_id).info.run_id
    with caplog.at_level("WARNING"), tracking.run_lifecycle(client, run_id):
        pass
    assert client.get_run(run_id).info.status == "FINISHED"
    assert any("no system metrics" in r.getMessage() for r in caplog.records)


def test_run__is_tagged_degenerate_with_its_reason_and_says_so_in_its_description(finished):
    tags = finished.run.data.tags
    # tiny noise images: no run beats the mean image, so this one is degenerate
    assert tags[names.TAG_DEGENERATE] == "true"
    assert "explains" in tags[names.TAG_DEGENERATE_REASON]
    assert tags[names.TAG_DESCRIPTION].startswith("**Degenerate:** the reconstruction explains")


def test_run__metric_steps_are_optimiser_steps_and_epochs(finished):
    run = finished.run
    client = _client(finished.cfg)
    steps = lambda key: [m.step for m in client.get_metric_history(run.info.run_id, key)]  # noqa: E731
    assert steps(M.TRAIN_LOSS) == [2, 4, 6, 8]  # log_every 2, 4 steps an epoch
    assert steps(M.TEST_MSE) == [1, 2]
    assert steps(M.CODE_ACTIVE_FRAC) == [1, 2]


def test_run__logged_metric_values_are_the_runs_own_history(finished):
    """Every logged value of every key, step by step, is exactly what fit() reported: on_log's
    metrics at each optimiser step, FitResult.history at each epoch. The tests above check
    only keys and steps, so a tracker that logged the wrong value (another key's, a stale
    window, a rounded one) would pass them."""
    client, run_id = _client(finished.cfg), finished.run.info.run_id
    assert [step for step, _ in finished.logged] == [2, 4, 6, 8]
    assert len(finished.history) == 2
    for key in finished.run.data.metrics:
        if key.startswith(system.PREFIX):
            continue  # the machine's, not fit()'s
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        if key in M.TRAIN_STEP_METRICS:
            expected = [(step, metrics[key]) for step, metrics in finished.logged]
        else:  # FINAL_METRICS only at the last epoch
            history = enumerate(finished.history, start=1)
            expected = [(epoch, h[key]) for epoch, h in history if key in h]
        assert logged == expected, key
        assert finished.run.data.metrics[key] == expected[-1][1], key


def test_run__logs_defining_params_environment_and_dataset(finished):
    """Params are the dozen fields that define a run (no tracking settings, no constants), with
    the values the run used; the whole config is config.json (checked below)."""
    cfg, run = finished.cfg, finished.run
    flat = cfg.flat()
    keys = {names.param(section, name) for section, name in tracking.RUN_PARAMS}
    assert run.data.params == {k: tracking.param_value(flat[k]) for k in keys}
    assert 10 <= len(keys) <= 14 and not any(k.startswith("tracking.") for k in run.data.params)
    tags = run.data.tags
    for key in (
        names.TAG_GIT_COMMIT,
        names.TAG_TORCH,
        names.TAG_MLFLOW,
        names.TAG_HOST,
        names.TAG_COMMAND,
        names.TAG_DEVICE,
        names.TAG_DATA_DIGEST,
    ):
        assert tags[key]
    assert tags[names.TAG_DEVICE] == "cpu" and tags[names.TAG_KIND] == "train"
    contexts = {
        next(t.value for t in d.tags if t.key == "mlflow.data.context")
        for d in run.inputs.dataset_inputs
    }
    assert contexts == {"train", "test"}


def test_run__image_plot_config_and_model_artifacts_exist(finished, monkeypatch):
    cfg, run = finished.cfg, finished.run
    client = _client(cfg)
    # MLflow's own loaders resolve runs:/ and models:/ URIs through the user's tracking URI
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    run_id = run.info.run_id
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.json", "images", "plots"} <= top
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert plots == {tracking.HISTOGRAMS_FILE, tracking.CURVES_FILE, tracking.DENSITY_FILE}
    images = [a.path for a in client.list_artifacts(run_id, "images")]
    pngs = [p for p in images if p in {tracking.reconstruction_file(e) for e in (1, 2)}]
    assert len(pngs) == 2  # one grid per epoch
    saved = mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json")
    assert saved == cfg.to_dict()

    model = mlflow.pytorch.load_model(run.data.tags[names.TAG_MODEL_URI])
    out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 1, 28, 28)
    info = mlflow.models.get_model_info(run.data.tags[names.TAG_MODEL_URI])
    assert info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 1, 28, 28)


def test_latest_image__is_the_last_epochs_grid_by_its_name(finished, tmp_path):
    """Images are logged at explicit paths (images/epoch_001.png) and read back by that name."""
    settings = tracking.load_settings(finished.cfg.tracking.config_file)
    path = tracking.latest_image(settings, finished.run.info.run_id)
    assert path == "images/epoch_002.png" == tracking.reconstruction_file(2)
    local = tracking.download_artifact(settings, finished.run.info.run_id, path, tmp_path)
    assert local == tmp_path / "epoch_002.png" and local.read_bytes()[:4] == b"\x89PNG"
    other = tracking.Settings(tracking_uri=f"sqlite:///{tmp_path}/empty.db")
    run_id = tracking.client(other).create_run("0").info.run_id
    assert tracking.latest_image(other, run_id) is None


def test_reconstruction_grid__images_over_reconstructions():
    from sae.model import SparseAutoencoder

    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    grid = tracking.reconstruction_grid(SparseAutoencoder(), images)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 30 + 2, 4 * 30 + 2, 3)
    assert np.array_equal(grid[2:30, 2:30, 0], images[0].numpy())


def test_log_model__pt2_loads_without_pickle_and_reconstructs_the_same(store, monkeypatch, caplog):
    """The model is saved with torch.export (MLflow's "pt2" format): no warning that a pickled
    model can run code, loading works with pickle deserialization disallowed, and the loaded
    graph gives the trained module's reconstructions for any batch size."""
    from sae.model import SparseAutoencoder

    cfg = _cfg(store)
    settings = tracking.load_settings(cfg.tracking.config_file)
    client = tracking.client(settings)
    experiment_id = tracking.ensure_experiment(settings, "models")
    run_id = client.create_run(experiment_id).info.run_id
    torch.manual_seed(3)
    model = SparseAutoencoder().eval()
    with caplog.at_level("WARNING", logger="mlflow"):
        uri = tracking.log_model(client, run_id, experiment_id, model, cfg)
    assert not [r for r in caplog.records if "pickle" in r.getMessage().lower()]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    loaded = mlflow.pytorch.load_model(uri)
    assert not isinstance(loaded, SparseAutoencoder)  # a graph: no sae code was unpickled
    for batch in (1, 3, 64):
        images = torch.rand(batch, 1, 28, 28)
        with torch.inference_mode():
            assert torch.equal(loaded(images), model(images)[0])
    local = Path(mlflow.artifacts.download_artifacts(uri))
    assert sorted(p.name for p in (local / "data").iterdir()) == ["model.pt2"]


class Raise(Callback):
    def __init__(self, exc, at_step=3):
        self.exc, self.at_step = exc, at_step

    def on_step(self, step):
        if step == self.at_step:
            raise self.exc


def test_run__failed_status_when_training_raises(store):
    cfg = _cfg(store)
    with pytest.raises(RuntimeError, match="boom"):
        train_run(cfg, callbacks=[Raise(RuntimeError("boom\nsecond line"), at_step=6)])
    run = _runs(cfg)[0]
    assert run.info.status == "FAILED"
    assert run.data.tags[names.TAG_ERROR] == "RuntimeError: boom"
    # the first epoch's metrics and the step metrics before the failure were kept
    assert _client(cfg).get_metric_history(run.info.run_id, M.TRAIN_LOSS)[-1].step == 4
    assert M.TEST_MSE in run.data.metrics


def test_run__killed_status_on_keyboard_interrupt(store):
    cfg = _cfg(store)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, callbacks=[Raise(KeyboardInterrupt())])
    assert _runs(cfg)[0].info.status == "KILLED"


def test_run__killed_status_on_sigterm(store):
    cfg = _cfg(store)

    class Terminate(Callback):
        def on_step(self, step):
            if step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(signals.RunKilled):
        train_run(cfg, callbacks=[Terminate()])
    assert _runs(cfg)[0].info.status == "KILLED"
    assert signal.getsignal(signal.SIGTERM) == before


def test_run__untracked_run_writes_no_store(tmp_path):
    cfg = build_config(tmp_path, track=False)
    outcome = train_run(cfg)
    assert outcome.run_id is None and len(outcome.result.history) == 2
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tracking_uri: [unclosed\n", "not valid YAML"),
        ("tracking_url: sqlite:///x.db\n", "unknown key 'tracking_url'"),
        ("tracking_uri: 3\n", "key 'tracking_uri' must be a non-empty string"),
        ("experiments: [a, b]\n", "key 'experiments' must map"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_settings__malformed_file_is_one_line_naming_the_key(tmp_path, text, message):
    path = tmp_path / "mlflow.yaml"
    path.write_text(text)
    with pytest.raises(tracking.SettingsError, match=message) as err:
        tracking.load_settings(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_settings__relative_paths_are_relative_to_the_file_and_flags_win(tmp_path, monkeypatch):
    path = tmp_path / "mlflow.yaml"
    path.write_text("tracking_uri: sqlite:///runs.db\nartifact_location: arts\n")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = tracking.load_settings(path)
    assert settings.tracking_uri == f"sqlite:///{tmp_path}/runs.db"
    assert settings.artifact_location == (tmp_path / "arts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/env.db")
    assert tracking.load_settings(path).tracking_uri == "sqlite:////elsewhere/env.db"
    flag = tracking.load_settings(path, tracking_uri="sqlite:////flag.db")
    assert flag.tracking_uri == "sqlite:////flag.db"
    assert dataclasses.asdict(flag)["experiments"]["baseline"] == "sae-baseline"


def test_client__leaves_the_users_environment_as_it_was(tmp_path, monkeypatch):
    """Regression: mlflow.set_tracking_uri writes MLFLOW_TRACKING_URI, which load_settings then
    took for the user's override, so a second sweep in one process used the first one's store.
    The client is now bound to its URI: MLflow's process-wide URI is never set."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = mlflow.get_tracking_uri()
    first = tracking.Settings(tracking_uri=f"sqlite:///{tmp_path}/a.db")
    bound = tracking.client(first)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert bound.tracking_uri == first.tracking_uri and bound is tracking.client(first)
    assert mlflow.get_tracking_uri() == before
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////user/choice.db")
    tracking.client(first)
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:////user/choice.db"


class _Inputs:
    """A client whose ``log_inputs`` is ``action(context)``."""

    def __init__(self, action):
        self.action = action

    def log_inputs(self, run_id, datasets):
        (dataset,) = datasets
        self.action(next(t.value for t in dataset.tags if t.key == "mlflow.data.context"))


def test_log_input__retries_when_a_concurrent_run_registered_the_dataset(monkeypatch):
    """Regression: two sweep workers on a PostgreSQL-backed server inserted the same dataset at
    once; the loser's unique-key violation failed its trial and the worker."""
    calls = []

    def racing(context):
        calls.append(context)
        if len(calls) == 1:
            raise mlflow.exceptions.MlflowException("duplicate key value violates 'dataset_pk'")

    monkeypatch.setattr(tracker.time, "sleep", lambda _s: None)
    dataset = tracker._dataset("abc", "train", 10)
    tracker._log_input(_Inputs(racing), "run", dataset, "train")
    assert calls == ["train", "train"]
    down = _Inputs(lambda context: (_ for _ in ()).throw(mlflow.exceptions.MlflowException("down")))
    with pytest.raises(mlflow.exceptions.MlflowException, match="down"):
        tracker._log_input(down, "run", dataset, "train")


def test_ensure_experiment__marks_new_and_existing_experiments_as_model_training(tmp_path):
    settings = tracking.Settings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "art")
    )
    client = MlflowClient(settings.tracking_uri)
    old = client.create_experiment("made-elsewhere")  # without the tag, as MLflow makes them
    new = tracking.ensure_experiment(settings, "made-here")
    assert tracking.ensure_experiment(settings, "made-elsewhere") == old
    for experiment_id in (old, new):
        tags = client.get_experiment(experiment_id).tags
        assert tags[names.TAG_EXPERIMENT_KIND] == "custom_model_development"


PATH_NAMES = ["../../somewhere", "../up", "/abs/x", "a/b", "..", ".hidden", "a\\b", ""]
"""Experiment names that are paths: each would place the experiment's artifacts outside the
artifact location, or in a hidden or odd folder."""


def test_ensure_experiment__a_name_that_is_a_path_is_refused_and_creates_nothing(tmp_path):
    """Bug fix: ``--experiment '../../somewhere'`` created the experiment with the artifact
    location ``<artifacts>/../../somewhere``, so its runs' artifacts went outside the store."""
    settings = tracking.Settings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_location=(tmp_path / "store" / "art").as_uri(),
    )
    for name in PATH_NAMES:  # one store for all: creating one takes seconds
        with pytest.raises(ValueError, match=r"^experiment name .* is not a plain folder") as e:
            tracking.ensure_experiment(settings, name)
        assert "\n" not in str(e.value)
    made = MlflowClient(settings.tracking_uri).search_experiments()
    assert [experiment.name for experiment in made] == ["Default"]


@pytest.mark.parametrize("name", PATH_NAMES)
def test_tracking_config__an_experiment_name_that_is_a_path_is_refused(name):
    """Bug fix: the path was accepted and trained before its experiment was created outside."""
    with pytest.raises(ValueError, match=r"^experiment name .* is not a plain folder name"):
        TrackingConfig(experiment=name)


def test_settings__an_experiment_name_that_is_a_path_is_one_line_naming_the_key(tmp_path):
    """Bug fix: mlflow.yaml's experiment names became artifact folders unchecked."""
    path = tmp_path / "mlflow.yaml"
    path.write_text("experiments:\n  sweep: ../../somewhere\n")
    with pytest.raises(tracking.SettingsError) as err:
        tracking.load_settings(path)
    assert str(err.value).startswith(
        f"{path}: key 'experiments': experiment name '../../somewhere' is not a plain folder name"
    )


def test_train_cli__an_experiment_that_is_a_path_is_one_line_and_writes_nothing(tmp_path):
    """Bug fix: ``train.py --experiment '../../somewhere'`` trained and logged its artifacts in
    ``somewhere`` two folders above the artifact location."""
    (tmp_path / "mlflow.yaml").write_text("tracking_uri: sqlite:///mlflow.db\n")
    done = subprocess.run(
        [sys.executable, str(TRAIN), "--experiment", "../../somewhere", "--epochs", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: experiment name '../../somewhere' is not a plain ")
    assert done.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.yaml"]


def test_interrupts__a_signal_during_a_gc_callback_is_not_lost():
    """Regression: SIGTERM raised straight from the signal handler landed in a garbage-collection
    callback (SQLAlchemy's weakref cleanup), where Python drops exceptions: the sweep trained on.
    Now the handler only notes the signal, and the next safe point raises it."""
    import gc
    import weakref

    class Thing:
        pass

    with signals.interrupts_deferred():
        thing = Thing()
        weakref.finalize(thing, os.kill, os.getpid(), signal.SIGTERM)
        del thing
        gc.collect()
        time.sleep(0.05)  # the handler runs between bytecodes of the main thread
        with pytest.raises(signals.RunKilled, match="received signal 15"):
            signals.check_interrupted()
    signals.check_interrupted()  # the block is left: nothing pending any more


def test_config_params__kl_penalty_logs_rho_and_amp_is_logged_when_on(store):
    cfg = _cfg(store)
    assert "train.rho" not in tracking.config_params(cfg)
    train = dataclasses.replace(cfg.train, penalty="kl", rho=0.05, amp=True)
    params = tracking.config_params(dataclasses.replace(cfg, train=train))
    assert params["train.rho"] == "0.05" and params["train.amp"] == "True"
