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


def _layer_by_layer(model: SparseAutoencoder, x: torch.Tensor) -> list[torch.Tensor]:
    """The plain forward the seed writes: each layer called as its own convolution module."""
    acts = []
    for name in LAYER_NAMES:
        x = torch.relu(getattr(model, name)(x))
        acts.append(x)
    return acts


def test_model__matrix_product_layers_compute_the_convolutions_and_their_gradients():
    # enc3 and dec1 run as matrix products; values and every parameter gradient must match the
    # convolution modules, for both memory formats and with a channel/position-asymmetric input.
    for memory_format in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(1)
        model = SparseAutoencoder().to(memory_format=memory_format)
        x = torch.rand(6, 1, 28, 28).contiguous(memory_format=memory_format)
        _, ours = model(x)
        weights = [torch.rand_like(a) for a in ours]
        sum((a * w).sum() for a, w in zip(ours, weights, strict=True)).backward()
        ours_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        theirs = _layer_by_layer(model, x)
        sum((a * w).sum() for a, w in zip(theirs, weights, strict=True)).backward()
        for a, b in zip(ours, theirs, strict=True):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        for g, p in zip(ours_grads, model.parameters(), strict=True):
            torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)
