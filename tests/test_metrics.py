import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from sae import metrics as M
from sae.config import TrainConfig
from sae.model import LAYER_NAMES, LAYER_SHAPES, SparseAutoencoder


class FixedModel(nn.Module):
    """Reconstructs every image as zeros; layer activations are fixed per image index.

    Image i (its first pixel holds i / 255) switches on unit 0 of every layer, and unit 1 too
    when i is odd; no other unit is ever on.
    """

    def forward(self, x):
        idx = (x[:, 0, 0, 0] * 255).round().long()
        acts = []
        for layer in LAYER_NAMES:
            c, h, w = LAYER_SHAPES[layer]
            a = torch.zeros(x.shape[0], c, h, w)
            a[:, 0, 0, 0] = 1.0
            if c > 1:
                a[:, 1, 0, 0] = (idx % 2).float() * 3.0
            acts.append(a)
        return torch.zeros_like(x), tuple(acts)


def _images(n):
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    images[:, 0, 0] = torch.arange(n, dtype=torch.uint8)
    images[:, 5, 5] = 200
    return images


def test_evaluate__matches_hand_computed_values():
    n, b = 10, 4  # batches of 4, 4, 2
    images = _images(n)
    cfg = TrainConfig(test_batch_size=b, beta=0.5)
    out = M.evaluate(FixedModel(), images, cfg, torch.Generator().manual_seed(0))

    x = images.double() / 255
    assert out[M.TEST_MSE] == pytest.approx(x.square().mean().item(), rel=1e-6)
    variance = x.var(unbiased=False).item()
    assert out[M.TEST_EXPLAINED_VARIANCE] == pytest.approx(1 - out[M.TEST_MSE] / variance, abs=1e-6)
    # the last shuffled batch holds 2 images; the README figure is 2 * its MSE / 3 batches
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    last = x[order[8:]]
    assert out[M.README_TEST_LOSS] == pytest.approx(2 * last.square().mean().item() / 3, rel=1e-6)

    half_odd = 0.5  # images 0..9: five odd
    for layer in LAYER_NAMES:
        c, h, w = LAYER_SHAPES[layer]
        active = (1 + half_odd) / c if c > 1 else 1.0
        assert out[M.sparsity_key(layer, M.ACTIVE_FRAC)] == pytest.approx(active)
        mean_act = (1 + (3 * half_odd if c > 1 else 0)) / (c * h * w)
        assert out[M.sparsity_key(layer, M.MEAN_ACT)] == pytest.approx(mean_act)
        dead = (c - 2) / c if c > 1 else 0.0
        assert out[M.sparsity_key(layer, M.DEAD_FRAC)] == pytest.approx(dead)
    # l1 penalty per image: sum over layers of mean activation; beta 0.5
    expected_penalty = 0.5 * sum(out[M.sparsity_key(layer, M.MEAN_ACT)] for layer in LAYER_NAMES)
    assert out[M.TEST_PENALTY] == pytest.approx(expected_penalty, rel=1e-6)
    assert out[M.TEST_LOSS] == pytest.approx(out[M.TEST_MSE] + out[M.TEST_PENALTY])


def test_evaluate__hoyer_by_hand():
    # even images: one unit on -> Hoyer 1; odd images: units (1, 3) on, n = c units
    out = M.evaluate(FixedModel(), _images(2), TrainConfig(), torch.Generator().manual_seed(0))
    for layer in ("enc1", "enc3"):
        c = LAYER_SHAPES[layer][0]
        v = torch.zeros(c)
        v[0], v[1] = 1.0, 3.0
        hoyer_odd = (math.sqrt(c) - v.sum() / v.norm()) / (math.sqrt(c) - 1)
        assert out[M.sparsity_key(layer, M.HOYER)] == pytest.approx((1 + hoyer_odd.item()) / 2)
    assert M.sparsity_key("dec3", M.HOYER) not in out


def test_evaluate__returns_exactly_the_declared_keys():
    out = M.evaluate(FixedModel(), _images(3), TrainConfig(), torch.Generator().manual_seed(0))
    assert set(out) == set(M.EVAL_METRICS)


def test_to_float__matches_torchvision_to_tensor():
    from torchvision.transforms.functional import to_tensor

    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    expected = torch.stack([to_tensor(img.numpy()) for img in images])
    assert torch.equal(M.to_float(images), expected)


def test_evaluate__code_l0_dense_informative_and_fvu_by_hand():
    images = _images(10)
    out = M.evaluate(FixedModel(), images, TrainConfig(test_batch_size=4), torch.Generator())
    # code unit 0 is on (at 1.0) on every image: counted in L0 and dense, but constant, so not
    # informative; unit 1 is on (3.0) on the 5 odd images: in L0, varies, not dense (half only)
    assert out[M.CODE_L0] == pytest.approx(1.5)
    assert out[M.CODE_DENSE_FRAC] == pytest.approx(1 / 64)
    assert out[M.CODE_INFORMATIVE_FRAC] == pytest.approx(1 / 64)
    x = images.double().reshape(10, -1) / 255
    pixel_variance = x.var(dim=0, unbiased=False).mean().item()
    assert out[M.TEST_FVU] == pytest.approx(x.square().mean().item() / pixel_variance, rel=1e-6)
    # zeros for every image explain nothing: degenerate
    assert out[M.DEGENERATE] == 1.0
    assert "explains 0.0%" in M.degenerate_reason(out)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({M.sparsity_key("enc2", M.DEAD_FRAC): 1.0}, "layer enc2 is dead"),
        ({M.CODE_INFORMATIVE_FRAC: 0.0}, "the code is constant"),
        ({M.TEST_FVU: 0.97}, "explains 3.0% of the test variance"),
        ({M.TEST_FVU: math.nan}, "explains"),
        ({}, None),
    ],
)
def test_degenerate_reason__names_the_first_rule_broken(change, why):
    healthy = {
        **{M.sparsity_key(layer, M.DEAD_FRAC): 0.2 for layer in LAYER_NAMES},
        M.CODE_INFORMATIVE_FRAC: 0.5,
        M.TEST_FVU: 0.1,
    }
    reason = M.degenerate_reason({**healthy, **change})
    assert (reason is None) if why is None else (why in reason)


def test_evaluate_many__equals_one_evaluate_per_model_each_in_its_own_order():
    # batches of 16, 16, 16, 2; image i is about 5 i bright, so the last batch's MSE tells which
    noise = torch.randint(
        0, 10, (50, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    images = noise + 5 * torch.arange(50, dtype=torch.uint8)[:, None, None]
    cfgs = [
        TrainConfig(test_batch_size=16, beta=0.1),
        TrainConfig(test_batch_size=16, beta=0.02, penalty="kl", rho=0.1),
        TrainConfig(test_batch_size=16, beta=1e-3, penalty_layers="code"),
    ]
    models = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        models.append(SparseAutoencoder().to(memory_format=torch.channels_last))
    orders = [torch.randperm(50, generator=torch.Generator().manual_seed(s)) for s in (4, 5, 6)]
    params, buffers = stack_module_state(models)
    base = SparseAutoencoder().to("meta")

    def forward(x):  # (3, B, 1, 28, 28), as the population trainer runs its members
        return vmap(lambda p, b, xk: functional_call(base, (p, b), (xk,)))(params, buffers, x)

    together = M.evaluate_many(forward, images, cfgs, orders)
    alone = [M.evaluate(m, images, c, o) for m, c, o in zip(models, cfgs, orders, strict=True)]
    for got, want in zip(together, alone, strict=True):
        assert set(got) == set(want) == set(M.EVAL_METRICS)
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-12), key
    # each model's README figure is its own order's: another's last batch would change it
    swapped = M.evaluate(models[0], images, cfgs[0], orders[1])[M.README_TEST_LOSS]
    assert swapped != pytest.approx(together[0][M.README_TEST_LOSS], rel=1e-3)
    assert len({round(out[M.TEST_PENALTY], 12) for out in together}) == 3  # each its own penalty
