"""Nonlinearities of a binary conv's output (``nonlinearity`` choice).

* ``none``: identity.
* ``prelu``: ``PReLU_c(z) = max(z, 0) + w_c * min(z, 0)``, one slope per channel, init 0.25.
* ``rprelu``: BBCU / ReActNet RPReLU, ``RPReLU(z) = PReLU_c(z - shift_c) + bias_c``; shift and
  bias learnable per channel (init 0), slope init 0.25 (Liu et al. ECCV 2020; Xia et al. ICLR
  2023). We write the shift with a minus sign; BBCU's ``z + gamma`` is the same with
  ``gamma = -shift``.
* ``leaky_relu``: fixed slope 0.1 (E2FIF).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NONLINEARITIES = ("none", "prelu", "rprelu", "leaky_relu")
LEAKY_SLOPE = 0.1
PRELU_INIT = 0.25


class RPReLU(nn.Module):
    """``PReLU_c(z - shift_c) + bias_c``."""

    def __init__(self, channels: int):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(channels))
        self.weight = nn.Parameter(torch.full((channels,), PRELU_INIT))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.prelu(z - self.shift.view(1, -1, 1, 1), self.weight) + self.bias.view(1, -1, 1, 1)


def make_nonlinearity(name: str, channels: int) -> nn.Module:
    """The module for nonlinearity ``name`` over ``channels`` channels."""
    if name == "none":
        return nn.Identity()
    if name == "prelu":
        return nn.PReLU(channels, init=PRELU_INIT)
    if name == "rprelu":
        return RPReLU(channels)
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    raise ValueError(f"invalid value {name!r} for choice 'nonlinearity'; allowed values: {list(NONLINEARITIES)}")
