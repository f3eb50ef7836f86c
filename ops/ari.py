"""Activation-rectified inference (ARI, Rectified-BSR): ``P`` binarizations of one activation.

With ``P = parts`` the binarizer emits ``P`` bit-planes that share the binary weights::

    b_p = sign(Xa - t - tau_p)                  p = 1..P, tau_p learnable per input channel
    Y   = sum_p gamma_p * conv(b_p, sign(W))    gamma_p learnable per output channel

Initialisation: ``tau = linspace(-t0, t0, P)`` per channel with ``t0 = (P - 1) / P`` and
``gamma_p = 1 / P``. These are the decision thresholds of the uniform ``(P + 1)``-level
quantizer of ``[-1, 1]`` (levels ``-1 + 2j/P``, thresholds half-way between them), so at
initialisation ``sum_p b_p / P`` *is* that quantizer of ``clip(Xa - t, -1, 1)``: a thermometer
code with ``P + 1`` levels over the window where the activation estimators pass gradient.
``P = 1`` is the plain binary conv: no tau, no gamma.

Cost: ``P`` times the binary MACs of the plain conv; the combination is ``P`` multiply-adds
per output element (folded with the weight scale ``alpha`` into ``part_scale`` at inference).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

PARTS = (1, 2, 3, 4)


def initial_thresholds(parts: int) -> torch.Tensor:
    """``linspace(-(P-1)/P, (P-1)/P, P)``: the uniform (P+1)-level quantizer thresholds."""
    t0 = (parts - 1) / parts
    return torch.linspace(-t0, t0, parts)


class ActivationParts(nn.Module):
    """The ARI thresholds ``tau`` (P, in) and combination weights ``gamma`` (P, out)."""

    def __init__(self, parts: int, in_ch: int, out_ch: int):
        super().__init__()
        if isinstance(parts, bool) or parts not in PARTS:
            raise ValueError(f"invalid value {parts!r} for choice 'parts'; allowed values: {list(PARTS)}")
        self.parts = parts
        if parts > 1:
            self.tau = nn.Parameter(initial_thresholds(parts)[:, None].repeat(1, in_ch))
            self.gamma = nn.Parameter(torch.full((parts, out_ch), 1.0 / parts))

    def offsets(self, static: Optional[torch.Tensor], in_ch: int, like: torch.Tensor) -> torch.Tensor:
        """Static offsets ``(P, in)``: ``static + tau_p`` (``static`` the per-channel beta or None)."""
        if self.parts == 1:
            if static is None:
                return torch.zeros(1, in_ch, dtype=like.dtype, device=like.device)
            return static.view(1, -1)
        if static is None:
            return self.tau
        return static.view(1, -1) + self.tau

    def weights(self) -> Optional[torch.Tensor]:
        """``gamma`` (P, out), or None for P = 1."""
        return self.gamma if self.parts > 1 else None

    def extra_repr(self) -> str:
        return f"parts={self.parts}"
