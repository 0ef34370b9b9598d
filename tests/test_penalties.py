import math

import pytest
import torch

from sae.config import TrainConfig
from sae.model import SparseAutoencoder
from sae.penalties import kl_penalty, l1_penalty, penalty, unit_density


def _acts():
    torch.manual_seed(0)
    return SparseAutoencoder()(torch.rand(8, 1, 28, 28))[1]


def test_l1_penalty__matches_seed_formula():
    """The seed: lambda * sum over all six post-ReLU activations of mean(|a|)."""
    acts = _acts()
    seed = 1e-4 * sum(torch.mean(torch.abs(a)) for a in acts)
    ours = penalty(acts, TrainConfig(beta=1e-4, penalty="l1", penalty_layers="all"))
    assert ours.item() == pytest.approx(seed.item(), rel=1e-6)


def test_l1_penalty__equals_hand_computed_value():
    a = torch.tensor([[[[1.0, 0.0], [3.0, 0.0]]]])  # mean 1
    b = torch.tensor([[[[2.0]], [[4.0]]]])  # mean 3
    acts = [a, b, a, b, a, b]
    assert l1_penalty(acts, "all").item() == pytest.approx(12.0)
    assert l1_penalty(acts, "encoder").item() == pytest.approx(5.0)
    assert l1_penalty(acts, "code").item() == pytest.approx(1.0)


def test_l1_penalty__gradient_equals_the_abs_version():
    """Skipping the abs on non-negative activations changes no parameter's gradient."""

    def grads(penalty_of):
        torch.manual_seed(0)
        model = SparseAutoencoder()
        penalty_of(model(torch.rand(8, 1, 28, 28))[1]).backward()
        return [p.grad for p in model.parameters()]

    ours = grads(l1_penalty)
    seed = grads(lambda acts: sum(a.abs().mean() for a in acts))
    for mine, theirs in zip(ours, seed, strict=True):
        assert torch.allclose(mine, theirs, rtol=1e-5, atol=1e-9)


def test_kl_penalty__equals_hand_computed_value():
    # one unit, two images of one position: squashed values 1 - e^-a
    a = torch.tensor([0.5, 0.0]).reshape(2, 1, 1, 1)
    rho = 0.1
    rho_hat = (1 - math.exp(-0.5) + 0.0) / 2
    kl = rho * math.log(rho / rho_hat) + (1 - rho) * math.log((1 - rho) / (1 - rho_hat))
    acts = [a] * 6
    assert kl_penalty(acts, rho, "code").item() == pytest.approx(kl, rel=1e-5)
    assert kl_penalty(acts, rho, "all").item() == pytest.approx(6 * kl, rel=1e-5)
    cfg = TrainConfig(penalty="kl", rho=rho, beta=0.5, penalty_layers="encoder")
    assert penalty(acts, cfg).item() == pytest.approx(0.5 * 3 * kl, rel=1e-5)


def test_kl_penalty__is_zero_at_the_target_density():
    rho = 0.2
    a = torch.full((4, 3, 2, 2), -math.log(1 - rho))  # s(a) = rho exactly
    assert torch.allclose(unit_density(a), torch.full((3,), rho))
    assert kl_penalty([a] * 6, rho).item() == pytest.approx(0.0, abs=1e-6)


def test_kl_penalty__finite_for_dead_units():
    acts = [torch.zeros(2, 3, 1, 1)] * 6
    assert math.isfinite(kl_penalty(acts, 0.01).item())
