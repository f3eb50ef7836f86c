"""Activation-rectified inference (ARI, Rectified-BSR): ``P`` binarizations of one activation.

With ``P = parts`` the binarizer emits ``P`` bit-planes that share the binary weights::

    b_p = sign(Xa - t - tau_p)                  p = 1..P, tau_p learnable per input channel
    Y   = sum_p gamma_p * conv(b_p, sign(W))    gamma_p learnable per output channel

Initialisation (the formula sheet: "tau_p per channel, learnable, initialised symmetric around 0
(e.g. tau = linspace(-t, t, P) with t from the activation statistics)"; the rule below is ours,
the Rectified-BSR abstract gives none). At construction ``tau = linspace(-t0, t0, P)`` per
channel with ``t0 = (P - 1) / P`` and ``gamma_p = 1 / P``: the decision thresholds of the uniform
``(P + 1)``-level quantizer of ``[-1, 1]`` (levels ``-1 + 2j/P``, thresholds half-way between
them), so ``sum_p b_p / P`` *is* that quantizer of ``clip(Xa - t, -1, 1)``. Then, on the
**first forward in training mode**, the thresholds are re-initialised from the statistics of
that batch (data-dependent initialisation; the buffer ``initialized`` records that it happened
and travels in the ``state_dict``, so a checkpoint round trip never re-initialises)::

    D    = C - beta                         the values the binarizer compares with tau
                                            (C = Xa or Xa - boxmean_k(Xa), beta the channel shift)
    r_c  = sqrt( mean_{n,h,w} D[n, c, h, w]^2 )     RMS of channel c (1 where r_c = 0)
    tau_{p,c} = r_c * (-t0 + 2 t0 (p - 1) / (P - 1)),  t0 = (P - 1) / P,   p = 1..P

i.e. ``tau[:, c] = r_c * linspace(-t0, t0, P)``: the uniform ``(P + 1)``-level quantizer of
``[-r_c, r_c]``, symmetric around 0. For a zero-mean Gaussian channel these thresholds split it
into ``P + 1`` bins of almost equal population (P = 3: 25.2 / 24.8 / 24.8 / 25.2 %; P = 4:
22.7 / 17.4 / 19.7 / 17.4 / 22.7 %), and for unit-RMS inputs (e.g. after a BN) they equal the
construction-time values. ``gamma_p`` stays ``1 / P``. An eval-mode forward never initialises.
A ``state_dict`` without ``initialized`` (saved before this rule existed) loads as
initialised, so trained thresholds are kept. ``P = 1`` is the plain binary conv: no tau,
no gamma, no buffer.

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


def data_thresholds(d: torch.Tensor, parts: int) -> torch.Tensor:
    """``tau[:, c] = r_c * initial_thresholds(P)``, ``r_c`` the RMS of channel ``c`` of ``d``
    (N, C, H, W) over (N, H, W), 1 where it is 0 or not finite. Shape (P, C), float of ``d``."""
    r = d.detach().pow(2).mean(dim=(0, 2, 3)).sqrt()
    r = torch.where(torch.isfinite(r) & (r > 0), r, torch.ones_like(r))
    t0 = (parts - 1) / parts
    return torch.linspace(-t0, t0, parts, dtype=r.dtype, device=r.device)[:, None] * r[None, :]


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
            self.register_buffer("initialized", torch.tensor(False))

    def needs_init(self) -> bool:
        """True when P > 1, in training mode, and the thresholds were not initialised yet."""
        return self.parts > 1 and self.training and not bool(self.initialized)

    @torch.no_grad()
    def initialize(self, d: torch.Tensor) -> None:
        """Set ``tau`` from ``d`` (the binarizer's values before tau: ``data_thresholds``) and
        mark the layer initialised."""
        if self.parts == 1:
            return
        self.tau.copy_(data_thresholds(d, self.parts).to(self.tau))
        self.initialized.fill_(True)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "initialized"
        if self.parts > 1 and key not in state_dict and prefix + "tau" in state_dict:
            state_dict[key] = torch.tensor(True)  # older checkpoint: its tau are trained, keep them
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

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
