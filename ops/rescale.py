"""EBSR re-scaling of a binary conv's output: ``Y * gamma_c * S(X)``.

* ``channel`` -- ``gamma_c``, one learnable factor per output channel, initialised to 1.
* ``spatial`` -- ``S(X) = conv3x3(mean_c |X|)``: a one-channel map computed from the
  *full-precision input* ``X`` of the conv (its mean absolute value over channels, the
  XNOR-Net activation scale ``K``), passed through a learnable 1->1 3x3 convolution with zero
  padding and a bias, broadcast over the output channels. Initialised with zero weights and
  bias 1 so that ``S = 1`` exactly at start.
* ``both`` -- the two together; ``none`` -- identity.

(EBSR, "Enhanced Binary Neural Network for Image Super-Resolution", Wei et al., 2023:
spatial re-scaling plus channel-wise shifting and re-scaling; reconstructed from the abstract.)
Extra inference cost: one channel mean of ``|X|`` per pixel, a 3x3 single-channel conv and two
multiplies per output element.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

RESCALES = ("none", "channel", "spatial", "both")


def spatial_map(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``S = conv3x3(mean_c |x|) + bias`` of shape ``(N, 1, H, W)``."""
    return F.conv2d(x.abs().mean(dim=1, keepdim=True), weight, bias, padding=weight.shape[-1] // 2)


class Rescale(nn.Module):
    """Holds ``gamma_c`` and/or the spatial conv; ``forward(y, x)`` returns ``y * S(x) * gamma``."""

    def __init__(self, mode: str, out_ch: int):
        super().__init__()
        if mode not in RESCALES:
            raise ValueError(f"invalid value {mode!r} for choice 'rescale'; allowed values: {list(RESCALES)}")
        self.mode = mode
        if mode in ("channel", "both"):
            self.gamma = nn.Parameter(torch.ones(out_ch))
        if mode in ("spatial", "both"):
            self.spatial_weight = nn.Parameter(torch.zeros(1, 1, 3, 3))
            self.spatial_bias = nn.Parameter(torch.ones(1))

    @property
    def has_channel(self) -> bool:
        return self.mode in ("channel", "both")

    @property
    def has_spatial(self) -> bool:
        return self.mode in ("spatial", "both")

    def spatial(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        if not self.has_spatial:
            return None
        return spatial_map(x, self.spatial_weight, self.spatial_bias)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.has_spatial:
            y = y * self.spatial(x)
        if self.has_channel:
            y = y * self.gamma.view(1, -1, 1, 1)
        return y

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
