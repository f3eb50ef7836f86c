"""The inference contract of a binary conv: ``ConvPlan`` and its pure-PyTorch interpreter.

``BinaryConv2d.plan()`` (eval mode) freezes a layer into a ``ConvPlan``; the native packed
runtime executes the same arithmetic with xnor-popcount. All tensors are detached float32.
``run_plan(plan, x, history)`` computes, with ``conv_int(b) = conv2d(b, weight_sign,
padding=k//2)`` (exact integers; zero padding in the sign domain)::

    Xa   = pre(x, history)            if pre is not None else x
    C    = Xa - boxmean_k(Xa)         if local_mean_kernel == k else Xa    (replicate padding)
    b_p  = sign(C - threshold_offsets[p])                  p = 0..P-1, sign(0) = +1
    acc  = sum_p part_scale[p] * conv_int(b_p)             (gamma_p * alpha folded)
    y1   = acc + bias
    y1'  = y1 * norm_scale + norm_bias                     (only when norm_scale is given)
    y2   = (y1' * S(x)) * (post_scale * G(x)) + post_bias  (S = 1 when spatial is None,
                                                             G = 1 when channel is None)
    z    = nonlin(y2) + skip(x)      when nonlinearity_at == 'before_skip'
    z    = nonlin(y2 + skip(x))      when nonlinearity_at == 'after_skip'
    skip(x) = x.repeat_interleave(skip_repeat, 1) when skip == 'fp', else 0
    nonlin:  none -> z;  prelu / leaky_relu -> PReLU(z, prelu_weight);
             rprelu -> PReLU(z - rprelu_shift, prelu_weight) + rprelu_bias

``S(x)`` (N, 1, H, W) is the EBSR spatial map and ``G(x)`` (N, out) or (N, 1) the product of the
input-dependent channel and layer factors (``ops.rescale``): a per-sample channel scale, which
the native runtime passes to the kernel epilogue as ``post_scale`` one sample at a time.

Every ``a * s + b`` step above (``norm``, ``post``) is rounded as ``fma`` says: once (a fused
multiply-add) or twice (multiply, then add); every other operation is one float32 operation
in the order written, the order of the module's own eval-mode forward.

BN (eval, running statistics) is ``y * alpha + beta`` with PyTorch's own ``alpha``, ``beta`` and
rounding on this machine (``ops.fma.batch_norm_affine``: ``alpha = (1 / sqrt(var + eps)) * w``,
``beta`` as PyTorch computes it, ``fma`` when its CPU kernel fuses them), so a plan reproduces
the module's BN bit for bit instead of to float32 rounding. The rescale acts after BN,
``Y = BN(acc + bias) * S * G``, in that order of roundings::

    no rescale:   post_scale = alpha,  post_bias = beta           (norm_scale = None)
    rescale:      norm_scale = alpha,  norm_bias = beta,  post_scale = 1,  post_bias = 0
                  (without BN: norm_scale = None, and fma = False)

(``x * 1 + 0`` and ``fma(x, G, 0)`` are exact, so ``post`` then multiplies by ``G`` alone.)

``pre`` (BAM), ``spatial`` and ``channel`` are frozen callables that run exactly the module's own
eval-mode arithmetic, and ``threshold_offsets`` are the very tensors the module computes, so
the binarization decisions of the plan and of the module agree bit for bit.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ops.activations import LEAKY_SLOPE
from ops.fma import affine32, batch_norm_affine
from ops.quantizers import sign
from ops.rescale import channel_factor, spatial_map
from ops.thresholds import box_mean


@dataclass(frozen=True, eq=False)
class ConvPlan:
    """Frozen inference description of one binary conv (see the module docstring).

    Compared and hashed by identity (its fields are tensors and callables)."""

    in_ch: int
    out_ch: int
    kernel_size: int
    weight_sign: torch.Tensor  # (out, in, k, k) of +-1.0
    pre: Optional[Callable[[torch.Tensor, Sequence[torch.Tensor]], torch.Tensor]]
    local_mean_kernel: Optional[int]
    threshold_offsets: torch.Tensor  # (P, in)
    part_scale: torch.Tensor  # (P, out)
    bias: torch.Tensor  # (out,)
    spatial: Optional[Callable[[torch.Tensor], torch.Tensor]]
    channel: Optional[Callable[[torch.Tensor], torch.Tensor]]  # x -> (N, out) or (N, 1)
    post_scale: torch.Tensor  # (out,)
    post_bias: torch.Tensor  # (out,)
    nonlinearity: str
    nonlinearity_at: str
    prelu_weight: Optional[torch.Tensor]  # (out,)
    rprelu_shift: Optional[torch.Tensor]  # (out,)
    rprelu_bias: Optional[torch.Tensor]  # (out,)
    skip: str
    skip_repeat: int
    norm_scale: Optional[torch.Tensor] = None  # (out,) BN before the rescale, or None
    norm_bias: Optional[torch.Tensor] = None   # (out,)
    fma: bool = False  # the norm and post steps are fused multiply-adds (PyTorch's BN here)
    bn_exact: bool = True  # the BN probe matched PyTorch bit for bit (ops.fma)

    @property
    def parts(self) -> int:
        return int(self.threshold_offsets.shape[0])


def _frozen(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).clone()


def make_plan(conv) -> ConvPlan:
    """Freeze an eval-mode ``BinaryConv2d`` into a ``ConvPlan``."""
    if conv.training:
        raise ValueError("invalid mode training=True for plan(); allowed: eval mode (call .eval() first)")
    c = conv.choices
    out_ch = conv.out_ch
    with torch.no_grad():
        weight = _frozen(conv.weight)
        wsign, alpha = conv.weight_binarizer(weight)
        offsets = conv.offsets(weight)
        scale = conv.part_scale(alpha)
        if scale is None:
            scale = torch.ones(1, out_ch)
        bias = _frozen(conv.bias) if conv.bias is not None else torch.zeros(out_ch)

        post_scale = torch.ones(out_ch)
        post_bias = torch.zeros(out_ch)
        norm_scale = norm_bias = None
        fused, bn_exact = False, True
        scale = _frozen(scale)
        if conv.norm is not None:
            bn = batch_norm_affine(conv.norm)  # PyTorch's own alpha, beta and rounding
            fused, bn_exact = bn.fused, bn.exact
            if conv.rescale.mode == "none":
                post_scale, post_bias = bn.alpha, bn.beta
            else:  # rescale after BN: BN first, then the spatial / channel multiplies
                norm_scale, norm_bias = bn.alpha, bn.beta

        spatial = None
        if conv.rescale.has_spatial:
            spatial = functools.partial(
                spatial_map, weight=_frozen(conv.rescale.spatial_weight), bias=_frozen(conv.rescale.spatial_bias)
            )
        channel = None
        if conv.rescale.has_channel or conv.rescale.has_layer:
            frz = lambda pair: None if pair is None else tuple(_frozen(t) for t in pair)  # noqa: E731
            channel = functools.partial(channel_factor, channel=frz(conv.rescale.channel_params()),
                                        layer=frz(conv.rescale.layer_params()))
        pre = conv.bam.frozen() if conv.bam is not None else None

        name = c["nonlinearity"]
        prelu_weight = rprelu_shift = rprelu_bias = None
        if name == "prelu":
            prelu_weight = _frozen(conv.nonlinearity.weight).expand(out_ch).clone()
        elif name == "rprelu":
            prelu_weight = _frozen(conv.nonlinearity.weight)
            rprelu_shift = _frozen(conv.nonlinearity.shift)
            rprelu_bias = _frozen(conv.nonlinearity.bias)
        elif name == "leaky_relu":
            prelu_weight = torch.full((out_ch,), LEAKY_SLOPE)

    return ConvPlan(
        in_ch=conv.in_ch,
        out_ch=out_ch,
        kernel_size=conv.kernel_size,
        weight_sign=_frozen(wsign),
        pre=pre,
        local_mean_kernel=conv.threshold.local_kernel,
        threshold_offsets=_frozen(offsets),
        part_scale=_frozen(scale),
        bias=bias,
        spatial=spatial,
        channel=channel,
        post_scale=post_scale,
        post_bias=post_bias,
        nonlinearity=name,
        nonlinearity_at=c["nonlinearity_at"],
        prelu_weight=prelu_weight,
        rprelu_shift=rprelu_shift,
        rprelu_bias=rprelu_bias,
        skip=c["skip"],
        skip_repeat=conv.skip_repeat,
        norm_scale=norm_scale,
        norm_bias=norm_bias,
        fma=fused,
        bn_exact=bn_exact,
    )


def binarize(plan: ConvPlan, x: torch.Tensor, history: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """The ``P`` bit-planes ``b_p`` of shape (P, N, in, H, W), values +-1.0."""
    xa = plan.pre(x, history) if plan.pre is not None else x
    centred = xa - box_mean(xa, plan.local_mean_kernel) if plan.local_mean_kernel is not None else xa
    return sign(centred.unsqueeze(0) - plan.threshold_offsets[:, None, :, None, None])


def _nonlin(plan: ConvPlan, z: torch.Tensor) -> torch.Tensor:
    if plan.nonlinearity == "none":
        return z
    if plan.nonlinearity == "rprelu":
        return F.prelu(z - plan.rprelu_shift.view(1, -1, 1, 1), plan.prelu_weight) + plan.rprelu_bias.view(1, -1, 1, 1)
    return F.prelu(z, plan.prelu_weight)


def run_plan(plan: ConvPlan, x: torch.Tensor, history: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """Interpret ``plan`` on ``x`` (N, in, H, W) in float32 PyTorch (the reference semantics)."""
    if x.dim() != 4 or x.shape[1] != plan.in_ch:
        raise ValueError(f"invalid input shape {tuple(x.shape)}; allowed: (N, {plan.in_ch}, H, W)")
    x = x.to(torch.float32)
    b = binarize(plan, x, history)
    p, n = b.shape[0], b.shape[1]
    conv = F.conv2d(b.flatten(0, 1), plan.weight_sign, padding=plan.kernel_size // 2).unflatten(0, (p, n))
    acc = (plan.part_scale[:, None, :, None, None] * conv).sum(0)
    y = acc + plan.bias.view(1, -1, 1, 1)
    if plan.norm_scale is not None:
        y = affine32(y, plan.norm_scale.view(1, -1, 1, 1), plan.norm_bias.view(1, -1, 1, 1), plan.fma)
    if plan.spatial is not None:
        y = y * plan.spatial(x)
    scale = plan.post_scale.view(1, -1, 1, 1)
    if plan.channel is not None:
        scale = scale * plan.channel(x)[:, :, None, None]
    y = affine32(y, scale, plan.post_bias.view(1, -1, 1, 1), plan.fma)
    if plan.nonlinearity_at == "before_skip":
        y = _nonlin(plan, y)
    if plan.skip == "fp":
        y = y + (x if plan.skip_repeat == 1 else x.repeat_interleave(plan.skip_repeat, dim=1))
    if plan.nonlinearity_at == "after_skip":
        y = _nonlin(plan, y)
    return y
