"""``build(spec) -> nn.Module``: the network an ``ArchSpec`` describes.

The model maps an RGB batch ``(N, 3, H, W)`` with values in [0, 1] to ``(N, 3, s H, s W)``::

    m  = MEAN if spec.input_mean == "div2k" else 0
                                     MEAN = DIV2K RGB mean (0.4488, 0.4371, 0.4040) as in EDSR /
                                     BasicSR; k = spec.residual_alignment (the input scale: 1 =
                                     off, E2FIF's code: 255 with m = MEAN, BBCU: 130 with m = 0)
    x  = (rgb - m) * k               (m = 0: x = rgb * k, no subtraction is run)
    h  = head(x)                     FP conv 3 -> C, 3x3 (conv3) or 5x5 (conv5), 'same' padding
    y  = body(h)                     `blocks` blocks (binary: ops.BinaryBlock; fp: conv-ReLU-conv)
    y  = y + h       if global_skip
    o  = tail(y)                     see TAILS
    o  = o + up(x)   if image_skip != "none"   (``ImageSkip``; x is the normalised input)
    sr = o / k + m

``up`` (s = spec.scale): ``nearest`` / ``bilinear`` / ``bicubic`` are
``F.interpolate(x, scale_factor=s, mode=..., align_corners=False)`` (no ``align_corners`` for
nearest), added to the tail's output. For ``nearest`` with the ``fp_one_stage`` tail the skip is
added before the tail's PixelShuffle instead, to the conv output C -> 3 s^2, as
``x.repeat_interleave(s * s, dim=1)`` (the mobile-SR anchor); PixelShuffle(s) of that is exactly
nearest upsampling, so the values are the same. With a tail that outputs 0 the model returns
``up(x) / k + m = up(rgb)`` (to float rounding): every interpolation is linear with weights that
sum to 1.

Input normalisation is the model's business, so every caller feeds plain [0, 1] images. With
``k = 130`` (BBCU's residual alignment) the FP residual stream carries values ~130x larger than
a binary conv's output, so the FP paths dominate, as the BBCU paper intends.

Heads, bodies and tails are built from string-keyed factory tables (``HEADS``, ``BODIES``,
``TAILS``, timm style): assembling code says which kind, never which class. The spec is
attached as ``model.spec``.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch
from torch import nn
from torch.nn import functional as F

from ops import BinaryBlock, BinaryConv2d
from space.spec import ArchSpec, upsample_stages

#: DIV2K training-set RGB mean (EDSR, Lim et al. CVPRW 2017; BasicSR's default ``rgb_mean``).
RGB_MEAN = (0.4488, 0.4371, 0.4040)
#: slope of the LeakyReLU after each FP upsampling stage (MSRResNet in BasicSR uses 0.1).
TAIL_LEAKY_SLOPE = 0.1


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


# -- heads: channels -> module 3 -> C ---------------------------------------------------
HEADS: Dict[str, Callable[[int], nn.Module]] = {
    "conv3": lambda c: _conv(3, c, 3),
    "conv5": lambda c: _conv(3, c, 5),
}


# -- bodies: spec -> module C -> C ------------------------------------------------------
class FPBlock(nn.Module):
    """MSRResNet block: conv3 -> ReLU -> conv3 (+ x when ``residual``)."""

    def __init__(self, channels: int, residual: bool):
        super().__init__()
        self.conv1 = _conv(channels, channels, 3)
        self.conv2 = _conv(channels, channels, 3)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(torch.relu(self.conv1(x)))
        return out + x if self.residual else out


def _binary_body(spec: ArchSpec) -> nn.Module:
    return nn.Sequential(*(
        BinaryBlock(spec.channels, [layer.to_dict() for layer in spec.block_layers(b)],
                    kernel_size=3, residual=spec.block_residual)
        for b in range(spec.blocks)
    ))


def _fp_body(spec: ArchSpec) -> nn.Module:
    return nn.Sequential(*(FPBlock(spec.channels, spec.block_residual)
                           for _ in range(spec.blocks)))


BODIES: Dict[str, Callable[[ArchSpec], nn.Module]] = {"binary": _binary_body, "fp": _fp_body}


# -- tails: spec -> module C x H x W -> 3 x sH x sW -------------------------------------
def _fp_two_stage(spec: ArchSpec) -> nn.Module:
    """SRResNet upsampler: (conv C -> r^2 C, PixelShuffle(r), LeakyReLU) per stage, conv C -> 3."""
    c, mods = spec.channels, []
    for r in upsample_stages(spec.scale):
        mods += [_conv(c, r * r * c, 3), nn.PixelShuffle(r), nn.LeakyReLU(TAIL_LEAKY_SLOPE)]
    mods.append(_conv(c, 3, 3))
    return nn.Sequential(*mods)


def _fp_one_stage(spec: ArchSpec) -> nn.Module:
    """ESPCN upsampler: conv C -> 3 s^2, PixelShuffle(s)."""
    s = spec.scale
    return nn.Sequential(_conv(spec.channels, 3 * s * s, 3), nn.PixelShuffle(s))


def _binary_repeat(spec: ArchSpec) -> nn.Module:
    """E2FIF/BBCU upsampler: (binary conv C -> r^2 C from tail_layers[j], PixelShuffle(r)) per
    stage (its fp skip adds the input repeated r^2 times), then an FP conv C -> 3."""
    c, mods = spec.channels, []
    for layer, r in zip(spec.tail_layers, upsample_stages(spec.scale)):
        mods += [BinaryConv2d(c, r * r * c, 3, **layer.to_dict()), nn.PixelShuffle(r)]
    mods.append(_conv(c, 3, 3))
    return nn.Sequential(*mods)


TAILS: Dict[str, Callable[[ArchSpec], nn.Module]] = {
    "fp_two_stage": _fp_two_stage,
    "fp_one_stage": _fp_one_stage,
    "binary_repeat": _binary_repeat,
}


def upsample_image(x: torch.Tensor, mode: str, scale: int) -> torch.Tensor:
    """``x`` upsampled ``scale`` times by ``F.interpolate`` (``mode``: nearest, bilinear, bicubic;
    ``align_corners=False`` for the last two)."""
    if mode == "nearest":
        return F.interpolate(x, scale_factor=scale, mode="nearest")
    return F.interpolate(x, scale_factor=scale, mode=mode, align_corners=False)


class ImageSkip(nn.Module):
    """The image-level skip: ``forward(o, x) = o + up(x)``. With ``pre_shuffle`` (nearest on the
    one-stage tail) ``o`` is the pre-shuffle tensor ``3 s^2 x H x W`` and the skip adds
    ``x.repeat_interleave(s * s, dim=1)`` (channel c s^2 + i s + j = image channel c, which
    PixelShuffle(s) moves to pixel (s y + i, s x + j) of channel c: nearest upsampling)."""

    def __init__(self, mode: str, scale: int, pre_shuffle: bool = False):
        super().__init__()
        if mode not in ("nearest", "bilinear", "bicubic"):
            raise ValueError(f"invalid image_skip {mode!r}; allowed: "
                             f"['nearest', 'bilinear', 'bicubic']")
        if pre_shuffle and mode != "nearest":
            raise ValueError(f"invalid pre_shuffle image skip for mode {mode!r}; allowed: "
                             f"only mode 'nearest'")
        self.mode, self.scale, self.pre_shuffle = mode, scale, pre_shuffle

    def forward(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.pre_shuffle:
            return o + x.repeat_interleave(self.scale * self.scale, dim=1)
        return o + upsample_image(x, self.mode, self.scale)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, scale={self.scale}, pre_shuffle={self.pre_shuffle}"


def image_skip_of(spec: ArchSpec) -> "ImageSkip | None":
    """The ``ImageSkip`` of ``spec`` (None for ``image_skip = "none"``)."""
    if spec.image_skip == "none":
        return None
    pre = spec.image_skip == "nearest" and spec.tail == "fp_one_stage"
    return ImageSkip(spec.image_skip, spec.scale, pre_shuffle=pre)


class SRNetwork(nn.Module):
    """Head, body, optional global skip, tail, with the input normalisation of the module doc."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        self.register_buffer("rgb_mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.subtract_mean = spec.input_mean == "div2k"
        self.residual_alignment = spec.residual_alignment
        self.head = HEADS[spec.head](spec.channels)
        self.body = BODIES[spec.body](spec)
        self.tail = TAILS[spec.tail](spec)
        self.image_skip = image_skip_of(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"invalid input shape {tuple(x.shape)}; allowed: (N, 3, H, W) RGB")
        k = self.residual_alignment
        if self.subtract_mean:
            mean = self.rgb_mean.to(x.dtype)
            x = (x - mean) * k
        else:
            x = x * k
        h = self.head(x)
        y = self.body(h)
        if self.spec.global_skip:
            y = y + h
        skip = self.image_skip
        if skip is None:
            o = self.tail(y)
        elif skip.pre_shuffle:  # fp_one_stage = (conv C -> 3 s^2, PixelShuffle(s))
            conv, shuffle = self.tail
            o = shuffle(skip(conv(y), x))
        else:
            o = skip(self.tail(y), x)
        if self.subtract_mean:
            return o / k + mean
        return o / k

    def extra_repr(self) -> str:
        return f"spec_id={self.spec.id!r}, scale={self.spec.scale}"


def build(spec: ArchSpec) -> SRNetwork:
    """The ``nn.Module`` of ``spec`` (``model.spec`` is ``spec``)."""
    if not isinstance(spec, ArchSpec):
        raise ValueError(f"invalid spec {type(spec).__name__}; allowed: a space.spec.ArchSpec")
    return SRNetwork(spec)
