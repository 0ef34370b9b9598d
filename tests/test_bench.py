import pytest
import torch

from sae import bench
from sae.config import TrainConfig
from sae.model import SparseAutoencoder
from sae.penalties import penalty


def test_core_and_seed_loop__same_loss_on_the_same_batch_and_weights():
    torch.manual_seed(0)
    core = SparseAutoencoder()
    seed = bench.SeedModel()
    seed.load_state_dict(core.state_dict())
    x = torch.rand(100, 1, 28, 28)
    recon, acts = core(x.contiguous(memory_format=torch.channels_last))
    ours = torch.nn.functional.mse_loss(recon, x) + penalty(acts, TrainConfig(beta=1e-4))
    theirs = bench.seed_loss(seed, x, weight=1e-4)
    assert torch.allclose(ours, theirs, rtol=1e-5)


def test_flops_per_image__from_layer_shapes_by_hand():
    flops = bench.flops_per_image()
    assert flops["enc1"] == 16 * 14 * 14 * 1 * 9
    assert flops["enc3"] == 64 * 32 * 49
    assert flops["dec1"] == 64 * 1 * 1 * 32 * 49
    assert flops["dec3"] == 16 * 14 * 14 * 1 * 9
    macs = sum(flops[k] for k in ("enc1", "enc2", "enc3", "dec1", "dec2", "dec3"))
    assert flops["forward_flops"] == 2 * macs
    assert flops["train_flops"] == 2 * macs + 4 * macs - 2 * flops["enc1"]


def test_probe_seconds__measures_the_probe_against_a_ten_epoch_run(tmp_path):
    from helpers import build_config

    from sae.train import load_splits

    cfg = build_config(tmp_path, epochs=1)
    out = bench.probe_seconds(cfg, load_splits(cfg.data, torch.device("cpu")), repeats=1)
    assert out["probe_seconds"] > 0 and out["ten_epoch_run_seconds"] > 0
    total = out["ten_epoch_run_seconds"] + out["probe_seconds"]
    assert out["probe_pct_of_10_epoch_run"] == pytest.approx(100 * out["probe_seconds"] / total)
    assert 0 <= out["probe_accuracy_after_1_epoch"] <= 1
