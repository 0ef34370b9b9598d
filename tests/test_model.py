import torch

from sae.config import ModelConfig
from sae.model import LAYER_NAMES, LAYER_SHAPES, Reconstructor, SparseAutoencoder


def test_model__shapes_match_the_seed_architecture():
    model = SparseAutoencoder()
    recon, acts = model(torch.rand(5, 1, 28, 28))
    assert recon.shape == (5, 1, 28, 28)
    assert [tuple(a.shape[1:]) for a in acts] == [LAYER_SHAPES[name] for name in LAYER_NAMES]
    assert recon is acts[-1]


def test_model__parameter_count_is_the_seeds():
    # conv weights + biases of the six layers, computed from their shapes by hand
    expected = (
        (1 * 16 * 9 + 16)
        + (16 * 32 * 9 + 32)
        + (32 * 64 * 49 + 64)
        + (64 * 32 * 49 + 32)
        + (32 * 16 * 9 + 16)
        + (16 * 1 * 9 + 1)
    )
    assert sum(p.numel() for p in SparseAutoencoder().parameters()) == expected


def test_model__relu_output_is_non_negative_and_sigmoid_is_in_unit_interval():
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(0)
    relu_out, relu_acts = SparseAutoencoder(ModelConfig(output_activation="relu"))(x)
    torch.manual_seed(0)
    sig_out, _ = SparseAutoencoder(ModelConfig(output_activation="sigmoid"))(x)
    assert (relu_out >= 0).all() and all((a >= 0).all() for a in relu_acts)
    assert ((sig_out > 0) & (sig_out < 1)).all()


def test_reconstructor__returns_only_the_reconstruction():
    model = SparseAutoencoder()
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(Reconstructor(model)(x), model(x)[0])
