import dataclasses
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import build_config

from sae import metrics as M
from sae import splits as splits_module
from sae import steppers
from sae.config import Config, TrainConfig
from sae.model import SparseAutoencoder
from sae.splits import Splits, load_splits, resolve_device
from sae.train import Callback, NonFiniteLossError, alive_seeds, fit


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
    drop = {M.PERF_IMAGES_PER_S, M.PERF_EPOCH_SECONDS, M.PROBE_SECONDS}
    assert [{k: v for k, v in h.items() if k not in drop} for h in first] == [
        {k: v for k, v in h.items() if k not in drop} for h in second
    ]
    (seed,), _ = alive_seeds(1, cfg.model, splits.train, start=2)
    other = fit(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed)), splits)
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
            final = set(M.FINAL_METRICS) if epoch == cfg.train.epochs else set()
            assert set(metrics) == set(M.EPOCH_METRICS) | set(M.EVAL_METRICS) | final

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

    real = steppers.penalty
    monkeypatch.setattr(
        steppers,
        "penalty",
        lambda acts, tc, **kw: real(acts, tc, **kw) * (float("nan") if len(steps) >= 2 else 1.0),
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


# fit() against the seed's objective and optimiser written out by hand. Every setting is far from
# its default and from the others' values, so that fit() ignoring or misreading any one shows.
SEED_STEP = TrainConfig(
    epochs=2,
    batch_size=16,
    log_every=1,
    device="cpu",
    beta=0.05,
    lr=3e-3,
    adam_beta1=0.8,
    adam_beta2=0.99,
    adam_eps=1e-4,
    seed=4,  # alive at init: seeds 2, 3 start with a zero output, and so no gradient from the MSE
)
N_BATCHES = 4  # the train set is exactly this many batches: every step sees a full batch
# Measured on CPU: fit() and the hand-written steps agree to 2e-7 in the logged values (relative)
# and 3e-8 in the parameters (absolute); each mistake below moves both by more than 1e-3.
LOSS_RTOL = 1e-6
PARAM_ATOL = 1e-6


def _seed_images():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N_BATCHES * SEED_STEP.batch_size + 8, 28, 28), generator=gen)
    return images.to(torch.uint8)


def _seed_steps(tc: TrainConfig, images: torch.Tensor, reduction: str = "mean", penalised: int = 6):
    """The seed's loop written out: the same initial weights and batch order as fit(), loss
    MSE + beta * sum over the six activations of mean |a|, plain Adam(lr, betas, eps).
    Returns the model after the last step and (loss, mse, penalty) of every step."""
    torch.manual_seed(tc.seed)
    model = SparseAutoencoder()
    optimizer = torch.optim.Adam(
        model.parameters(), lr=tc.lr, betas=(tc.adam_beta1, tc.adam_beta2), eps=tc.adam_eps
    )
    shuffle = torch.Generator().manual_seed(tc.seed)
    n = images.shape[0]
    steps = []
    for _ in range(tc.epochs):
        order = torch.randperm(n, generator=shuffle)
        for start in range(0, n, tc.batch_size):
            x = images[order[start : start + tc.batch_size]].float().unsqueeze(1) / 255
            recon, acts = model(x)
            mse = F.mse_loss(recon, x, reduction=reduction)
            pen = tc.beta * sum(torch.mean(torch.abs(a)) for a in acts[:penalised])
            loss = mse + pen
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps.append((loss.item(), mse.item(), pen.item()))
    return model, steps


@pytest.fixture(scope="module")
def fitted():
    """fit() on SEED_STEP with tracking off: its model and the on_log metrics of every step."""
    images = _seed_images()
    n = N_BATCHES * SEED_STEP.batch_size
    splits = Splits(train=images[:n], test=images[n:], digest="tiny")
    logged = []

    class Record(Callback):
        def on_log(self, step, metrics):
            logged.append((step, metrics))

    result = fit(Config(train=SEED_STEP), splits, [Record()])
    return result.model, logged, splits.train


def _differences(fitted, reference):
    """(largest relative difference of a logged loss, mse or penalty; largest absolute
    difference of a parameter) between fit() and the hand-written steps."""
    model, logged, _ = fitted
    ref_model, ref_steps = reference
    assert [step for step, _ in logged] == list(range(1, len(ref_steps) + 1))
    losses = max(
        abs(metrics[key] - value) / abs(value)
        for (_, metrics), ref in zip(logged, ref_steps, strict=True)
        for key, value in zip(M.TRAIN_STEP_METRICS, ref, strict=True)
    )
    ours, theirs = dict(model.named_parameters()), dict(ref_model.named_parameters())
    assert set(ours) == set(theirs)
    params = max((ours[k].detach() - theirs[k].detach()).abs().max().item() for k in ours)
    return losses, params


def test_fit__steps_equal_the_seed_objective_and_adam_written_out(fitted):
    """Pins fit()'s objective and optimiser, which the other tests only compare with themselves:
    2 epochs of 4 batches, every logged train/loss, train/mse and train/penalty and every
    parameter after the 8 steps equal the hand-written seed loop's within LOSS_RTOL, PARAM_ATOL."""
    torch.manual_seed(SEED_STEP.seed)
    recon, _ = SparseAutoencoder()(fitted[2].float().unsqueeze(1) / 255)
    assert (recon > 0).float().mean() > 0.5  # the MSE's gradient reaches every layer
    losses, params = _differences(fitted, _seed_steps(SEED_STEP, fitted[2]))
    assert losses <= LOSS_RTOL and params <= PARAM_ATOL, (losses, params)


@pytest.mark.parametrize(
    ("mistake", "loop"),
    [
        ({"beta": 2 * SEED_STEP.beta}, {}),
        ({}, {"reduction": "sum"}),
        ({}, {"penalised": 5}),
        ({"adam_eps": 1e-8}, {}),
        ({"adam_beta1": 0.9, "adam_beta2": 0.999}, {}),
        ({"lr": 1e-3}, {}),
    ],
    ids=["doubled beta", "summed mse", "five layers", "default eps", "default betas", "default lr"],
)
def test_fit__seed_step_comparison_catches_a_wrong_objective_or_adam(fitted, mistake, loop):
    """The comparison above would fail for a fit() that doubled beta, summed the MSE, penalised
    five layers or ignored a configured Adam setting: the hand-written loop making that mistake
    differs from fit() far beyond the tolerances (the same whichever side makes the mistake)."""
    tc = dataclasses.replace(SEED_STEP, **mistake)
    losses, params = _differences(fitted, _seed_steps(tc, fitted[2], **loop))
    assert losses > 100 * LOSS_RTOL or params > 100 * PARAM_ATOL, (losses, params)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ({"train_size": 201}, "train_size 201 is more than the 200 training images of the data"),
        ({"test_size": 121}, "test_size 121 is more than the 120 test images of the data"),
    ],
)
def test_load_splits__refuses_a_size_beyond_its_split(tmp_path, size, message):
    """Regression: --train-size 70000 was logged as 70000 and trained on the 60,000 images there
    are (a slice past the end); a size the data cannot honour is now refused, naming it."""
    cfg = build_config(tmp_path)
    with pytest.raises(ValueError, match=message):
        load_splits(dataclasses.replace(cfg.data, **size), torch.device("cpu"))
    assert splits_module.split_sizes(cfg.data) == (200, 120)
    whole = dataclasses.replace(cfg.data, train_size=200, test_size=120)
    assert len(load_splits(whole, torch.device("cpu")).train) == 200


@pytest.mark.parametrize("script", ["train.py", "baseline.py", "sweep.py"])
@pytest.mark.parametrize("flag", ["--train-size", "--test-size"])
def test_entry_points__refuse_a_data_size_beyond_the_data_in_one_line_writing_nothing(
    tmp_path, monkeypatch, capsys, script, flag
):
    """Regression: train, baseline and sweep logged a size beyond the data and trained on less;
    each now ends in one line naming the field, exit 1, before any store is written."""
    cfg = build_config(tmp_path / "given")
    work = tmp_path / "work"
    work.mkdir()
    (work / "mlflow.yaml").write_text(
        "tracking_uri: sqlite:///mlflow.db\nartifact_location: mlartifacts\n"
        "optuna_storage: optuna.journal\n"
    )
    path = Path(__file__).resolve().parents[1] / "experiments" / script
    argv = ["--root", cfg.data.root, "--manifest", cfg.data.manifest, flag, "100000"]
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(path), run_name="__main__")
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1, err
    assert f"error: {flag[2:].replace('-', '_')} 100000 is more than the" in err, err
    assert sorted(p.name for p in work.iterdir()) == ["mlflow.yaml"]
