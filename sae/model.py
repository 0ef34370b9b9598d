"""The seed's convolutional autoencoder: three conv layers down to a 64-unit code, three up."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sae.config import ModelConfig

LAYER_SHAPES: dict[str, tuple[int, int, int]] = {
    "enc1": (16, 14, 14),
    "enc2": (32, 7, 7),
    "enc3": (64, 1, 1),
    "dec1": (32, 7, 7),
    "dec2": (16, 14, 14),
    "dec3": (1, 28, 28),
}
"""Each layer's output shape (C, H, W) for one image, in forward order; ``enc3`` is the code."""
LAYER_NAMES: tuple[str, ...] = tuple(LAYER_SHAPES)

CODE_LAYER = "enc3"


class SparseAutoencoder(nn.Module):
    """Exactly the seed architecture; every layer is followed by its activation.

    ``forward`` returns the reconstruction and the six post-activation tensors, so penalties and
    sparsity metrics see what the seed's penalty saw.
    """

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ModelConfig()
        self.enc1 = nn.Conv2d(1, 16, 3, stride=2, padding=1)  # -> (B, 16, 14, 14)
        self.enc2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)  # -> (B, 32, 7, 7)
        self.enc3 = nn.Conv2d(32, 64, 7)  # -> (B, 64, 1, 1) the code
        self.dec1 = nn.ConvTranspose2d(64, 32, 7)  # -> (B, 32, 7, 7)
        self.dec2 = nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1)
        self.dec3 = nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1)
        self.output_activation = cfg.output_activation
        self.topk = cfg.topk

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """(B, 1, 28, 28) -> reconstruction (B, 1, 28, 28) and the six activations."""
        a1 = torch.relu(self.enc1(x))
        a2 = torch.relu(self.enc2(a1))
        a3 = self._code(a2)
        a4 = torch.relu(_full_deconv(self.dec1, a3))
        a5 = torch.relu(self.dec2(a4))
        out = self.dec3(a5)
        a6 = torch.relu(out) if self.output_activation == "relu" else torch.sigmoid(out)
        return a6, (a1, a2, a3, a4, a5, a6)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) -> the code (B, 64): the encoder alone, as ``forward`` computes it."""
        a2 = torch.relu(self.enc2(torch.relu(self.enc1(x))))
        return self._code(a2).flatten(1)

    def _code(self, a2: torch.Tensor) -> torch.Tensor:
        """The code (B, 64, 1, 1): ReLU, then each image's ``topk`` largest kept when set."""
        code = torch.relu(_full_conv(self.enc3, a2))
        return code if self.topk is None else keep_topk(code, self.topk)


def keep_topk(code: torch.Tensor, k: int) -> torch.Tensor:
    """``code`` (B, C, 1, 1) with each image's ``k`` largest units kept and the rest zeroed.

    Applied after the ReLU, as in Gao et al. (2024): a kept unit is never negative, so an image
    with fewer than ``k`` positive units has fewer than ``k`` active. The gradient reaches the
    kept units only (the others are constants, zero).
    """
    flat = code.flatten(1)
    values, index = flat.topk(k, dim=1, sorted=False)
    return torch.zeros_like(flat).scatter(1, index, values).view_as(code)


# enc3 covers its whole 7x7 input and dec1 spreads a 1x1 input over its whole 7x7 output, so each
# is one matrix product over the same weights: the same function, without the convolution
# library's per-call set-up that dominated these two layers on a CPU (about 20% of a training step).
# The positions are flattened channels-last, (h, w, c), which is a view of a channels-last tensor.


def _full_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a kernel the size of the input: (B, C, k, k) -> (B, C_out, 1, 1)."""
    weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1)
    flat = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    return F.linear(flat, weight, conv.bias)[:, :, None, None]


def _full_deconv(deconv: nn.ConvTranspose2d, code: torch.Tensor) -> torch.Tensor:
    """``deconv(code)`` for a 1x1 input: (B, C, 1, 1) -> (B, C_out, k, k), channels-last."""
    c_in, c_out, kh, kw = deconv.weight.shape
    weight = deconv.weight.permute(0, 2, 3, 1).reshape(c_in, -1)
    bias = deconv.bias.repeat(kh * kw)
    flat = torch.addmm(bias, code.reshape(code.shape[0], c_in), weight)
    return flat.reshape(-1, kh, kw, c_out).permute(0, 3, 1, 2)


class Reconstructor(nn.Module):
    """The autoencoder with a single-tensor output, the form that is logged as an MLflow model."""

    def __init__(self, sae: SparseAutoencoder) -> None:
        super().__init__()
        self.sae = sae

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sae(x)[0]
