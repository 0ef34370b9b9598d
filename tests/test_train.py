import dataclasses

import pytest
import torch
from helpers import build_config

from sae import metrics as M
from sae import train as train_module
from sae.train import Callback, NonFiniteLossError, fit, load_splits, resolve_device


def _splits(cfg):
    return load_splits(cfg.data, torch.device("cpu"))


def test_fit__lowers_the_mse_on_a_small_set(tmp_path):
    cfg = build_config(tmp_path, epochs=4, lr=3e-3)
    history = fit(cfg, _splits(cfg)).history
    assert len(history) == 4
    assert history[-1][M.TEST_MSE] < 0.8 * history[0][M.TEST_MSE]
    assert history[-1][M.EPOCH_MSE] < history[0][M.EPOCH_MSE]


def test_fit__same_seed_same_metrics(tmp_path):
    cfg = build_config(tmp_path)
    splits = _splits(cfg)
    first, second = fit(cfg, splits).history, fit(cfg, splits).history
    drop = {M.PERF_IMAGES_PER_S, M.PERF_EPOCH_SECONDS}
    assert [{k: v for k, v in h.items() if k not in drop} for h in first] == [
        {k: v for k, v in h.items() if k not in drop} for h in second
    ]
    other = fit(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=2)), splits)
    assert other.history[-1][M.TEST_MSE] != first[-1][M.TEST_MSE]


def test_fit__epoch_loss_is_mean_of_batch_losses(tmp_path):
    cfg = build_config(tmp_path, epochs=1, log_every=1)
    logged = []

    class Record(Callback):
        def on_log(self, step, metrics):
            logged.append(metrics)

    record = fit(cfg, _splits(cfg), [Record()]).history[0]
    assert len(logged) == 4  # 200 images / batch 50
    mean = sum(m[M.TRAIN_LOSS] for m in logged) / len(logged)
    assert record[M.EPOCH_LOSS] == pytest.approx(mean, rel=1e-5)
    for m in logged:
        assert m[M.TRAIN_LOSS] == pytest.approx(m[M.TRAIN_MSE] + m[M.TRAIN_PENALTY], rel=1e-5)


def test_fit__reports_every_declared_metric_to_callbacks_in_order(tmp_path):
    cfg = build_config(tmp_path)
    calls = []

    class Record(Callback):
        def on_fit_start(self, model, cfg, splits):
            calls.append("start")

        def on_epoch_end(self, epoch, step, metrics, model):
            calls.append(("epoch", epoch, step))
            assert set(metrics) == set(M.EPOCH_METRICS) | set(M.EVAL_METRICS)

        def on_fit_end(self, model, history):
            calls.append("end")

    fit(cfg, _splits(cfg), [Record()])
    assert calls == ["start", ("epoch", 1, 4), ("epoch", 2, 8), "end"]


def test_fit__non_finite_loss_stops_at_once(tmp_path, monkeypatch):
    cfg = build_config(tmp_path, epochs=3)
    steps = []

    class Count(Callback):
        def on_step(self, step):
            steps.append(step)

    real = train_module.penalty
    monkeypatch.setattr(
        train_module,
        "penalty",
        lambda acts, tc: real(acts, tc) * (float("nan") if len(steps) >= 2 else 1.0),
    )
    with pytest.raises(NonFiniteLossError, match="training loss became nan at epoch 1, step 3"):
        fit(cfg, _splits(cfg), [Count()])
    assert steps == [1, 2]


def test_load_splits__subsets_take_the_first_images(tmp_path):
    cfg = build_config(tmp_path)
    full = _splits(cfg)
    sub = load_splits(
        dataclasses.replace(cfg.data, train_size=30, test_size=7), torch.device("cpu")
    )
    assert torch.equal(sub.train, full.train[:30]) and torch.equal(sub.test, full.test[:7])
    assert full.train.dtype == torch.uint8 and full.train.shape == (200, 28, 28)


def test_resolve_device__cuda_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA device is available"):
        resolve_device("cuda")


def test_fit__amp_on_cpu_is_refused_with_a_clear_message(tmp_path):
    cfg = build_config(tmp_path, amp=True)
    with pytest.raises(ValueError, match="--amp needs a CUDA device; this run is on cpu"):
        fit(cfg, _splits(cfg))
