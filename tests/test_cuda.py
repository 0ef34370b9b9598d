"""The CUDA path of the training core. These run on a GPU machine (`experiments/cuda_check.sh`);
on a machine without CUDA they skip, and the CPU side of the same code (device selection, the
AMP flag refused on a CPU) is tested in test_train.py."""

import dataclasses
import warnings

import pytest
import torch
from helpers import build_config

from sae import bench
from sae import metrics as M
from sae.config import TrainConfig
from sae.model import SparseAutoencoder
from sae.penalties import penalty
from sae.population import Member, fastest_size, fit_population
from sae.splits import load_splits
from sae.train import fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


def _cuda_config(tmp_path, **train):
    return build_config(tmp_path, device="cuda", lr=3e-3, **train)


@pytest.mark.parametrize("amp", [False, True])
def test_fit_on_cuda__trains_with_the_data_and_model_on_the_gpu(tmp_path, amp):
    cfg = _cuda_config(tmp_path, epochs=4, amp=amp)
    splits = load_splits(cfg.data, CUDA)
    assert splits.train.is_cuda and splits.test.is_cuda
    result = fit(cfg, splits)
    assert all(p.is_cuda for p in result.model.parameters())
    history = result.history
    assert history[-1][M.TEST_MSE] < 0.8 * history[0][M.TEST_MSE]
    assert all(torch.isfinite(torch.tensor(h[M.EPOCH_LOSS])) for h in history)


def test_fit_on_cuda__amp_and_float32_reach_about_the_same_loss(tmp_path):
    cfg = _cuda_config(tmp_path, epochs=3)
    splits = load_splits(cfg.data, CUDA)
    full = fit(cfg, splits).final[M.TEST_MSE]
    amp = fit(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, amp=True)), splits)
    assert amp.final[M.TEST_MSE] == pytest.approx(full, rel=0.1)


def _host_syncs(cfg, splits) -> int:
    """How many times fit() makes the host wait for the GPU (CUDA's sync debug mode warns)."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(cfg, splits)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("amp", [False, True])
def test_fit_on_cuda__no_host_round_trip_per_step(tmp_path, amp):
    # Twice the steps between reports must not add a single synchronisation: the loop's syncs are
    # per report and per epoch (evaluation), never per step (AMP included: fused Adam takes the
    # scaler's inf check on the device).
    cfg = _cuda_config(tmp_path, epochs=1, amp=amp, log_every=10_000)
    splits = load_splits(cfg.data, CUDA)
    few = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=50))
    many = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=25))
    fit(few, splits)  # warm up: first-call allocations and library loads
    assert _host_syncs(many, splits) == _host_syncs(few, splits)


def test_core_and_seed_loop_on_cuda__same_loss_on_the_same_batch_and_weights():
    torch.manual_seed(0)
    core = SparseAutoencoder().to(CUDA, memory_format=torch.channels_last)
    seed = bench.SeedModel().to(CUDA)
    seed.load_state_dict(core.state_dict())
    x = torch.rand(100, 1, 28, 28, device=CUDA)
    torch.backends.cudnn.allow_tf32 = False  # compare in full float32
    try:
        recon, acts = core(x.contiguous(memory_format=torch.channels_last))
        ours = torch.nn.functional.mse_loss(recon, x) + penalty(acts, TrainConfig(beta=1e-4))
        theirs = bench.seed_loss(seed, x, weight=1e-4)
    finally:
        torch.backends.cudnn.allow_tf32 = True
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)


def test_population_on_cuda__members_train_as_fit_trains_them_and_a_size_is_chosen(tmp_path):
    """Three members on the GPU against three solo runs there (TF32 and cuDNN's own choice of
    kernels make the GPU's rounding looser than the CPU's), and the size the sweep would pick."""
    base = _cuda_config(tmp_path, epochs=2, batch_size=8, probe=False)
    splits = load_splits(base.data, CUDA)
    cfgs = [
        dataclasses.replace(base, train=dataclasses.replace(base.train, lr=lr, beta=beta, seed=s))
        for lr, beta, s in ((1e-3, 1e-4, 1), (3e-3, 1e-2, 4), (5e-4, 1e-3, 5))
    ]
    outcomes = fit_population([Member(c) for c in cfgs], splits)
    for cfg, outcome in zip(cfgs, outcomes, strict=True):
        assert outcome.error is None
        solo = fit(cfg, splits)
        assert outcome.result.final[M.TEST_MSE] == pytest.approx(solo.final[M.TEST_MSE], rel=1e-2)
    size, rates = fastest_size(base, splits, sizes=(1, 2, 4), steps=10)
    assert size in rates and all(rate > 0 for rate in rates.values())
