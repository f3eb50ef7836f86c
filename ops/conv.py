"""``BinaryConv2d``: one binary convolution composed of the per-layer choices of ``ops.choices``.

Forward, in exactly the order documented in ``ops.choices`` (X the FP input, ``history`` the FP
inputs of the earlier binary convs, oldest first: a tuple or an ``ops.bam.BamHistory``)::

    Xa   = BN(sum_i s_i ⊙ mean_hw|A_i| ⊙ sign(A_i))  if bam_depth > 0 else X  (ops.bam)
    C    = Xa - boxmean_k(Xa)        if threshold == local_mean else Xa  (ops.thresholds)
    o_p  = beta + tau_p              static offsets (P, in): channel shift and ARI thresholds
                                     (tau set from the statistics of C - beta on the first
                                     training forward, ops.ari)
    b_p  = sign(C - o_p)             with the act_estimator gradient      (ops.quantizers)
    acc  = sum_p s_p * conv(b_p, sign(W)),  s_p = gamma_p * alpha        (ops.ari, weight_scale)
    Y    = acc + bias                                                     (bias)
    Y    = BN(Y)                                                          (norm)
    Y    = Y * L(X) * G(X) * S(X)    input-dependent, bounded, after BN   (ops.rescale)
    Y    = nonlin(Y) before the skip, or after it                         (ops.activations)
    Y    = Y + X  (X.repeat_interleave(r, 1) when out = r * in)           (skip = fp)

``conv(b, sign(W)) = F.conv2d(b, sign(W), padding=k // 2)`` on exact ``{-1, +1}`` values with
zero padding in the sign domain (the shared padding convention), so with every choice neutral
the layer is exactly ``F.conv2d(sign(x), sign(w), padding=k // 2)``. The ``P`` bit-planes are
convolved as one batch of ``P * N`` images. ``alpha`` (and ``gamma_p``) multiply the integer
conv result per output channel, which equals ``conv(b, sign(W) * alpha)`` since ``alpha`` is
per output channel. The same arithmetic, frozen, is the inference plan (``ops.plan``).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ops.activations import make_nonlinearity
from ops.ari import ActivationParts
from ops.bam import BitAccumulation
from ops.choices import resolve
from ops.quantizers import ActivationBinarizer, WeightBinarizer
from ops.rescale import Rescale
from ops.thresholds import Threshold

KERNEL_SIZES = (1, 3)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"invalid {name} {value!r}; allowed: a positive integer")
    return value


def skip_repeat(in_ch: int, out_ch: int) -> int:
    """``r`` with ``out_ch = r * in_ch`` for the fp skip; raises naming ``skip`` otherwise."""
    if out_ch % in_ch != 0:
        raise ValueError(
            f"invalid value 'fp' for choice 'skip' with in_ch={in_ch}, out_ch={out_ch}: "
            f"allowed only when out_ch is a multiple r*in_ch (r >= 1); use skip='none'"
        )
    return out_ch // in_ch


class BinaryConv2d(nn.Module):
    """Binary ``kernel_size x kernel_size`` convolution ``in_ch -> out_ch`` with the given choices.

    Latent FP weights live in ``.weight`` (out, in, k, k); the resolved choices in ``.choices``.
    ``forward(x, history=())``; ``plan()`` freezes an eval-mode layer into an ``ops.plan.ConvPlan``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, **choices: Any):
        super().__init__()
        self.in_ch = _positive_int("in_ch", in_ch)
        self.out_ch = _positive_int("out_ch", out_ch)
        if isinstance(kernel_size, bool) or kernel_size not in KERNEL_SIZES:
            raise ValueError(f"invalid kernel_size {kernel_size!r}; allowed values: {list(KERNEL_SIZES)}")
        self.kernel_size = kernel_size
        self.choices = resolve(choices)
        c = self.choices
        self.skip_repeat = skip_repeat(in_ch, out_ch) if c["skip"] == "fp" else 1

        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default init
        self.bam = BitAccumulation(in_ch, c["bam_depth"]) if c["bam_depth"] > 0 else None
        self.threshold = Threshold(c["threshold"], in_ch, c["threshold_kernel"])
        self.ari = ActivationParts(c["parts"], in_ch, out_ch)
        self.act_binarizer = ActivationBinarizer(c["act_estimator"])
        self.weight_binarizer = WeightBinarizer(c["weight_estimator"], c["weight_scale"])
        if c["bias"]:
            self.bias = nn.Parameter(torch.zeros(out_ch))
        else:
            self.register_parameter("bias", None)
        self.rescale = Rescale(c["rescale"], out_ch, in_ch)
        self.norm = nn.BatchNorm2d(out_ch) if c["norm"] == "bn" else None
        self.nonlinearity = make_nonlinearity(c["nonlinearity"], out_ch)

    # -- pieces shared with the inference plan -------------------------------------------
    def binarizer_input(self, x: torch.Tensor, history: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """``Xa``: the BAM accumulation of ``x`` and ``history``, or ``x`` itself."""
        return self.bam(x, history, self.act_binarizer) if self.bam is not None else x

    def offsets(self, like: torch.Tensor) -> torch.Tensor:
        """Static offsets ``(P, in)``: ``beta_c + tau_p`` (zeros when neither exists)."""
        return self.ari.offsets(self.threshold.static(), self.in_ch, like)

    def part_scale(self, alpha=None):
        """``gamma_p * alpha`` of shape (P, out), or None when both are absent (scale 1)."""
        gamma = self.ari.weights()
        if gamma is None:
            return None if alpha is None else alpha.view(1, -1)
        return gamma if alpha is None else gamma * alpha.view(1, -1)

    # -- forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, history: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"invalid input shape {tuple(x.shape)}; allowed: (N, {self.in_ch}, H, W)")
        xa = self.binarizer_input(x, history)
        centred = self.threshold.centred(xa)
        if self.ari.needs_init():  # ARI data-dependent initialisation (first training forward)
            static = self.threshold.static()
            self.ari.initialize(centred if static is None else centred - static.view(1, -1, 1, 1))
        offsets = self.offsets(centred)
        parts, n = offsets.shape[0], x.shape[0]
        b = self.act_binarizer(centred.unsqueeze(0) - offsets[:, None, :, None, None])
        wb, alpha = self.weight_binarizer(self.weight)
        conv = F.conv2d(b.flatten(0, 1), wb.to(b.dtype), padding=self.kernel_size // 2)
        conv = conv.unflatten(0, (parts, n))
        scale = self.part_scale(alpha)
        y = conv.sum(0) if scale is None else (scale[:, None, :, None, None] * conv).sum(0)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        if self.norm is not None:
            y = self.norm(y)
        y = self.rescale(y, x)
        at = self.choices["nonlinearity_at"]
        if at == "before_skip":
            y = self.nonlinearity(y)
        if self.choices["skip"] == "fp":
            y = y + (x if self.skip_repeat == 1 else x.repeat_interleave(self.skip_repeat, dim=1))
        if at == "after_skip":
            y = self.nonlinearity(y)
        return y

    def plan(self):
        """Freeze this eval-mode layer into an ``ops.plan.ConvPlan`` (see ``ops.plan``)."""
        from ops.plan import make_plan

        return make_plan(self)

    def extra_repr(self) -> str:
        changed = {k: v for k, v in self.choices.items() if v != resolve({})[k]}
        return f"{self.in_ch}, {self.out_ch}, kernel_size={self.kernel_size}, choices={changed}"
