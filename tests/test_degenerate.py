"""Collapsed and dead networks, the linear probe, and the seed script's data order."""

import dataclasses

import pytest
import torch
from helpers import build_config
from torch.utils.data import DataLoader

from sae import metrics as M
from sae.config import ModelConfig
from sae.model import SparseAutoencoder
from sae.order import ScriptOrder, make_order
from sae.probe import probe_accuracy
from sae.splits import load_splits
from sae.train import Callback, DeadNetworkError, alive_seeds, dead_at_init, dead_layer, fit


def _splits(cfg):
    return load_splits(cfg.data, torch.device("cpu"))


def _dead_seed(images):
    return next(s for s in range(1, 100) if dead_at_init(ModelConfig(), s, images))


def test_fit__a_network_built_dead_stops_before_its_first_step(tmp_path):
    cfg = build_config(tmp_path, epochs=10)
    splits = _splits(cfg)
    seed = _dead_seed(splits.train)
    steps = []

    class Count(Callback):
        def on_step(self, step):
            steps.append(step)

    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))
    with pytest.raises(DeadNetworkError, match="dead at initialisation: the output is zero"):
        fit(cfg, splits, [Count()])
    assert steps == []


def test_dead_at_init__a_layer_zero_on_every_image_is_dead_and_checked_on_all_of_them():
    images = torch.zeros(1500, 28, 28, dtype=torch.uint8)
    images[1200, 10:20, 10:20] = 255  # only one image, past the first 1000, has any ink

    torch.manual_seed(0)
    model = SparseAutoencoder(ModelConfig(output_activation="sigmoid"))
    with torch.no_grad():
        model.enc1.bias.fill_(-1.0)  # blank images give zero; the inked one does not
        model.enc1.weight.fill_(0.5)
        for layer in (model.enc2, model.enc3, model.dec1, model.dec2):
            layer.bias.fill_(1.0)  # every later layer is on whatever it gets

    assert dead_layer(model, images) is None  # alive thanks to image 1200
    assert "layer enc1 is zero on every one of the 1,000" in dead_layer(model, images[:1000])


def test_alive_seeds__skips_the_dead_ones_with_their_reason(tmp_path):
    cfg = build_config(tmp_path)
    images = _splits(cfg).train
    alive, skipped = alive_seeds(3, ModelConfig(), images)
    assert len(alive) == 3 and not set(alive) & set(skipped)
    assert all(dead_at_init(ModelConfig(), s, images) is None for s in alive)
    assert all("zero on every one" in why for why in skipped.values())
    assert sorted([*alive, *skipped]) == list(range(1, max(alive) + 1))


def test_probe__a_code_that_encodes_the_label_is_read_and_a_constant_code_is_chance():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (3000,), generator=g)
    noise = torch.rand(3000, 64, generator=g)
    codes = noise.clone()
    codes[:, :10] += 2 * torch.nn.functional.one_hot(labels, 10)
    assert probe_accuracy(codes[:2000], labels[:2000], codes[2000:], labels[2000:]) > 0.95
    constant = torch.ones(3000, 64)
    chance = probe_accuracy(constant[:2000], labels[:2000], constant[2000:], labels[2000:])
    majority = torch.bincount(labels[2000:], minlength=10).max().item() / 1000
    assert chance <= majority + 1e-9 and chance < 0.2


def test_fit__logs_the_probe_once_at_the_last_epoch(tmp_path):
    cfg = build_config(tmp_path, epochs=2)
    history = fit(cfg, _splits(cfg)).history
    assert M.PROBE_ACCURACY not in history[0]
    assert 0 <= history[-1][M.PROBE_ACCURACY] <= 1 and history[-1][M.PROBE_SECONDS] > 0
    off = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, probe=False))
    assert M.PROBE_ACCURACY not in fit(off, _splits(cfg)).final


@pytest.mark.parametrize("seed", [1, 5])
def test_script_order__is_the_index_sequence_of_dataloader_shuffle_after_manual_seed(seed):
    n_train, n_test = 230, 70

    def loader(n, b):
        return DataLoader(range(n), batch_size=b, shuffle=True)

    torch.manual_seed(seed)
    SparseAutoencoder()  # the script builds its model first
    train, test = loader(n_train, 100), loader(n_test, 600)
    expected = []
    for _epoch in range(3):
        expected += [torch.cat(list(train)), torch.cat(list(test))]

    torch.manual_seed(seed)
    SparseAutoencoder()
    order = ScriptOrder()
    torch.rand(5)  # anything else drawing from the global generator does not shift our order
    ours = []
    for _epoch in range(3):
        ours += [order.train(n_train), order.test(n_test)]
    assert all(torch.equal(a, b) for a, b in zip(expected, ours, strict=True))


def test_fit__the_script_order_changes_only_the_order(tmp_path):
    cfg = build_config(tmp_path)
    splits = _splits(cfg)
    script = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, data_order="script"))
    a, b = fit(cfg, splits).final, fit(script, splits).final
    assert a[M.TEST_MSE] != b[M.TEST_MSE]
    assert fit(script, splits).final[M.TEST_MSE] == b[M.TEST_MSE]
    assert isinstance(make_order("seeded", 1).train(5), torch.Tensor)


def test_compare__no_spread_on_one_side_gives_a_verdict_and_no_warning():
    import warnings

    from sae import stats

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = stats.compare([1.0, 1.0, 1.0], [0.90, 0.92, 0.91, 0.93])
    assert stats.verdict(c, lower_is_better=False) == "better"
    assert stats.verdict(stats.compare([0.9], [0.8, 0.85])).startswith("not distinguishable")


def test_importance_caveat__below_twenty_complete_trials_only():
    from sae import stats

    assert stats.importance_caveat(6) == "from 6 trials: indicative only, fewer than 20"
    assert stats.importance_caveat(stats.IMPORTANCE_TRIALS) == ""
