"""Is the code useful? A linear probe: multinomial logistic regression from the 64-unit code to
the digit label, fitted on the training split's codes, scored on the test split's.

The features are standardised with the training codes' mean and sd (a unit constant over the
training set becomes 0, so a constant code predicts the most common digit: chance). The fit is
full-batch L-BFGS on ``torch.nn.Linear`` with a small L2 penalty, from zero weights: deterministic,
and a second or two on a CPU for 60,000 codes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from sae import metrics as M
from sae.model import SparseAutoencoder

L2 = 1e-4
"""Weight decay of the probe (on the weights, not the bias), for a unique optimum."""
MAX_ITER = 100


Encoder = Callable[[torch.Tensor], torch.Tensor]
"""K models' encoders at once: images (B, 1, 28, 28), the same for all -> the codes (K, B, 64)."""


def as_encoder(model: SparseAutoencoder) -> Encoder:
    """One model's encoder as an Encoder over K = 1."""
    return lambda x: model.encode(x)[None]


def encode(model: SparseAutoencoder, images: torch.Tensor, batch: int = 4000) -> torch.Tensor:
    """The codes (N, 64) of uint8 ``images`` (N, 28, 28), float32 on their device:
    ``encode_many`` with K = 1."""
    was_training = model.training
    model.eval()
    try:
        return encode_many(as_encoder(model), images, batch)[0]
    finally:
        model.train(was_training)


@torch.no_grad()
def encode_many(encoder: Encoder, images: torch.Tensor, batch: int = 4000) -> torch.Tensor:
    """The codes (K, N, 64) that K models give uint8 ``images`` (N, 28, 28), float32 on their
    device, in one pass over the images."""
    codes = torch.cat(
        [encoder(M.to_float(images[i : i + batch])) for i in range(0, len(images), batch)], dim=1
    )
    return codes.float()


def probe_accuracy(
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    test_codes: torch.Tensor,
    test_labels: torch.Tensor,
    classes: int = 10,
) -> float:
    """Test accuracy of the logistic regression fitted on the training codes (N, 64).

    One model's codes at a time: L-BFGS steps all its parameters by one line search on one loss,
    so fitting K probes together would share their step lengths and stopping test, and each
    probe would no longer be the one fitted alone.
    """
    mean = train_codes.mean(dim=0)
    sd = train_codes.std(dim=0)
    scale = torch.where(sd > 1e-8, 1 / sd.clamp_min(1e-8), torch.zeros_like(sd))
    x_train = (train_codes - mean) * scale
    x_test = (test_codes - mean) * scale
    linear = torch.nn.Linear(train_codes.shape[1], classes, device=train_codes.device)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(
        linear.parameters(), lr=1, max_iter=MAX_ITER, history_size=10, line_search_fn="strong_wolfe"
    )
    y = train_labels.to(train_codes.device)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(x_train), y) + L2 * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predicted = linear(x_test).argmax(dim=1)
    return (predicted == test_labels.to(predicted.device)).double().mean().item()
