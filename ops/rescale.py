"""EBSR / SCALES input-dependent re-scaling of a binary conv's output (applied *after* BN).

Reconstructed from the abstracts (EBSR, Wei et al., arXiv 2303.12270 v1: "spatial re-scaling"
and "channel-wise shifting and re-scaling"; SCALES, the journal version v2: "the layer-wise
scaling factor, the spatial re-scaling method, and the channel-wise re-scaling method, capturing
the layer-wise, pixel-wise, and channel-wise variations efficiently in an input-dependent
manner"). No method section or code of the authors was reachable, so the maps below are our
reading; X is the full-precision (FP) input of the binary conv (N, C_in, H, W), Y the conv
output after bias and BN (N, C_out, H, W), ``sigma`` the logistic sigmoid::

    mu[n]                = mean_chw |X|[n]                      (the sample's magnitude)
    spatial  S(X)[n, 0, h, w] = 2 sigma( conv3x3( mean_c |X| / mu )[n, 0, h, w] )      in (0, 2)
    channel  G(X)[n, o]       = 2 sigma( sum_c V[o, c] * mean_hw |X|[n, c] / mu[n] + v[o] )  in (0, 2)
    layer    L(X)[n]          = 2 sigma( a * log mu[n] + b )                          in (0, 2)

    Y_out = Y * L(X) * G(X) * S(X)          (each factor broadcast; absent factors are 1)

* ``mean_c |X|`` is the XNOR-Net activation magnitude K per pixel; the 1 -> 1 3x3 conv has zero
  padding and a bias. ``mean_hw |X|`` / ``mean_chw |X|`` are per-sample pooled magnitudes
  (global average pooling of |X|); ``V`` (C_out x C_in), ``v``, ``a``, ``b`` are the tiny FP maps.
* The spatial and channel maps read magnitudes relative to the sample's own (``/ mu``) and the
  layer map its logarithm, so the maps see inputs of order 1 whatever the network's input scale:
  at E2FIF's k = 255 the FP stream has |X| ~ 40, and with the raw magnitudes one Adam step of
  1e-3 on V moved G's logit by ~0.6 and saturated the sigmoids within a few steps (the ``ebsr``
  preset then trained below its no-rescale ablation: Set5 32.64 vs 32.72 dB, seed 0, x2, 16 x 2,
  500 steps; with the relative magnitudes 32.68 / 33.16 / 33.22 dB on seeds 0 / 1 / 2, against
  32.64 / 33.09 / 33.18 before, AMD Zen 5). ``mu`` is clamped at 1e-12 (an all-zero input).
* Every map is initialised to zero weights and zero bias, so ``S = G = L = 1`` exactly at start
  (identity), and the gradient to the map parameters is nonzero from the first step
  (``d(2 sigma)/dz = 1/2`` at 0).
* The sigmoid bounds every factor to (0, 2): the ranges cannot drift between 48x48 training
  patches and full images (the pooled statistics are means, and the spatial map is bounded
  pixel-wise), unlike the previous unbounded ``conv3x3(mean_c |X|)``.

Placement (``ops.choices``): after the BN of the layer. A factor that is constant per output
channel (the old static ``gamma_c``) placed before a BN is removed by that BN exactly (the
formula sheet, EBSR section: "Any channel scale applied before a BN is cancelled by that BN:
place it where BN cannot undo it"); after BN nothing normalises it away. Without BN the
placement is simply after the bias.

Modes (choice ``rescale``): ``none``; ``channel`` (L and G: the layer-wise factor is the
channel-uniform part of the per-sample channel scaling, so it comes with the channel mode);
``spatial`` (S); ``both`` (L, G and S: all three SCALES scalings). No new choice value was added
(the search-space files list exactly the values of ``ops.choices``). At inference ``L(X) * G(X)`` is one per-sample, per-channel
vector, passed to the kernel epilogue as its channel scale; ``S`` is the epilogue's spatial map.
Extra inference cost: ``|X|``, its channel mean per pixel, a 1-channel 3x3 conv and a sigmoid per
pixel (spatial); a spatial mean per input channel and a C_in x C_out matrix-vector product per
image (channel); one multiply per output element per factor (folded into one in the epilogue).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

RESCALES = ("none", "channel", "spatial", "both")


def bounded(z: torch.Tensor) -> torch.Tensor:
    """``2 * sigmoid(z)``: 1 at 0, range (0, 2)."""
    return 2.0 * torch.sigmoid(z)


def magnitude(x: torch.Tensor) -> torch.Tensor:
    """``mu = mean_chw |x|`` per sample, shape ``(N, 1, 1, 1)``, clamped at 1e-12."""
    return x.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)


def spatial_map(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``S = 2 sigma(conv3x3(mean_c |x| / mu) + bias)`` of shape ``(N, 1, H, W)``."""
    k = x.abs().mean(dim=1, keepdim=True) / magnitude(x)
    return bounded(F.conv2d(k, weight, bias, padding=weight.shape[-1] // 2))


def channel_map(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``G = 2 sigma(V mean_hw|x| / mu + v)`` of shape ``(N, C_out)``."""
    return bounded(F.linear(x.abs().mean(dim=(2, 3)) / magnitude(x)[:, :, 0, 0], weight, bias))


def layer_map(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``L = 2 sigma(a log mu + b)`` of shape ``(N, 1)``."""
    return bounded(torch.log(magnitude(x)[:, :, 0, 0]) * weight + bias)


def channel_factor(x: torch.Tensor, channel=None, layer=None) -> Optional[torch.Tensor]:
    """``L(x) * G(x)`` of shape (N, C_out) or (N, 1); ``channel`` / ``layer`` are
    ``(weight, bias)`` pairs or None. None when both are absent."""
    out = None
    if layer is not None:
        out = layer_map(x, *layer)
    if channel is not None:
        g = channel_map(x, *channel)
        out = g if out is None else out * g
    return out


class Rescale(nn.Module):
    """Holds the maps of one mode; ``forward(y, x)`` returns ``y * L(x) * G(x) * S(x)``."""

    def __init__(self, mode: str, out_ch: int, in_ch: Optional[int] = None):
        super().__init__()
        if mode not in RESCALES:
            raise ValueError(f"invalid value {mode!r} for choice 'rescale'; allowed values: {list(RESCALES)}")
        in_ch = out_ch if in_ch is None else in_ch
        self.mode = mode
        if self.has_channel:
            self.channel_weight = nn.Parameter(torch.zeros(out_ch, in_ch))
            self.channel_bias = nn.Parameter(torch.zeros(out_ch))
        if self.has_spatial:
            self.spatial_weight = nn.Parameter(torch.zeros(1, 1, 3, 3))
            self.spatial_bias = nn.Parameter(torch.zeros(1))
        if self.has_layer:
            self.layer_weight = nn.Parameter(torch.zeros(1))
            self.layer_bias = nn.Parameter(torch.zeros(1))

    @property
    def has_channel(self) -> bool:
        return self.mode in ("channel", "both")

    @property
    def has_spatial(self) -> bool:
        return self.mode in ("spatial", "both")

    @property
    def has_layer(self) -> bool:
        return self.mode in ("channel", "both")

    def channel_params(self):
        return (self.channel_weight, self.channel_bias) if self.has_channel else None

    def layer_params(self):
        return (self.layer_weight, self.layer_bias) if self.has_layer else None

    def spatial(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """``S(x)`` (N, 1, H, W) or None."""
        if not self.has_spatial:
            return None
        return spatial_map(x, self.spatial_weight, self.spatial_bias)

    def channel(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """``L(x) * G(x)`` (N, C_out) or (N, 1), or None."""
        return channel_factor(x, self.channel_params(), self.layer_params())

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.has_spatial:
            y = y * self.spatial(x)
        g = self.channel(x)
        if g is not None:
            y = y * g[:, :, None, None]
        return y

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
