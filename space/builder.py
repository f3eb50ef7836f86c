"""``build(spec) -> nn.Module``: the network an ``ArchSpec`` describes.

The model maps an RGB batch ``(N, 3, H, W)`` with values in [0, 1] to ``(N, 3, s H, s W)``::

    m  = MEAN if spec.input_mean == "div2k" else 0
                                     MEAN = DIV2K RGB mean (0.4488, 0.4371, 0.4040) as in EDSR /
                                     BasicSR; k = spec.residual_alignment (the input scale: 1 =
                                     off, E2FIF's code: 255 with m = MEAN, BBCU: 130 with m = 0)
    x  = (rgb - m) * k               (m = 0: x = rgb * k, no subtraction is run)
    h  = head(x)                     FP conv 3 -> C, 3x3 (conv3) or 5x5 (conv5), 'same' padding
    h  = LeakyReLU_0.1(h)            if head_act == "leaky_relu" (module ``model.head_act``)
    y  = body(h)                     `blocks` blocks (binary: ops.BinaryBlock; fp: conv-ReLU-conv),
                                     with ONE ops.bam.BamHistory threaded through all of them
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

BAM history (``space.layout``: ``bam_inputs = min(bam_depth, bam_position)``): the body's
binary convs form one history chain, ``forward`` (``Body``) creates one ``ops.bam.BamHistory`` per
call and passes it to every body block (``block(y, history=h)``), so conv ``n`` of the body (``n = 2 b
+ p``) accumulates the inputs of the ``min(bam_depth, n)`` convs before it, across block
boundaries, as the BAM paper intends. The tail's binary convs (other input shapes, after a
PixelShuffle) are called without a history: each starts a fresh one. **Behaviour change:** up
to this version each block started its own history (conv 0 of every block accumulated
nothing), so a spec with ``bam_depth > 0`` in a block after the first now computes something
else (and costs more: ``evaluators.cost``, ``evaluators.latency.keys``) under the same id and
with the same parameters: its checkpoints still load, but a model trained with the old wiring
should be retrained (or evaluated) with the new one. Specs without BAM are unchanged.

Input normalisation is the model's business, so every caller feeds plain [0, 1] images. With
``k = 130`` (BBCU's residual alignment) the FP residual stream carries values ~130x larger than
a binary conv's output, so the FP paths dominate, as the BBCU paper intends.

Every part is made from the units of ``space.layout.layout(spec)`` (the one description of the
network that ``evaluators.cost`` and ``evaluators.latency.keys`` also read), through
string-keyed factory tables (``HEADS``, ``HEAD_ACTS``, ``TAIL_UNITS`` per tail unit kind,
``TAILS``, timm style): assembling code says which kind, never which class. Module names and
parameter names of specs without the newer fields are those of before (checkpoints load). The
spec is attached as ``model.spec``.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ops import BinaryBlock, BinaryConv2d
from ops.bam import BamHistory
from space import layout as L
from space.spec import ArchSpec

#: DIV2K training-set RGB mean (EDSR, Lim et al. CVPRW 2017; BasicSR's default ``rgb_mean``).
RGB_MEAN = (0.4488, 0.4371, 0.4040)
#: slope of the LeakyReLU after each FP upsampling stage (MSRResNet in BasicSR uses 0.1), after
#: the head (``head_act``) and after ``conv_hr`` (``tail_conv_hr``).
TAIL_LEAKY_SLOPE = L.LEAKY_SLOPE


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


# -- heads: channels -> module 3 -> C ---------------------------------------------------
HEADS: Dict[str, Callable[[int], nn.Module]] = {
    "conv3": lambda c: _conv(3, c, 3),
    "conv5": lambda c: _conv(3, c, 5),
}
#: head activations (``spec.head_act``): None = no module
HEAD_ACTS: Dict[str, Callable[[], "nn.Module | None"]] = {
    "none": lambda: None,
    "leaky_relu": lambda: nn.LeakyReLU(L.LEAKY_SLOPE),
}


# -- bodies -----------------------------------------------------------------------------
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


def _body_modules(units: Sequence[L.Unit]) -> List[nn.Module]:
    """One module per body block, in order: ``FPBlock`` per ``FPBlockUnit``; ``BinaryBlock``
    of the ``BinaryConvUnit``s (role body) of each block, with ``residual`` when an
    ``AddUnit(block_residual)`` of that block follows them."""
    residual = {u.block for u in units if u.kind == "add" and u.role == "block_residual"}
    blocks: Dict[int, List[L.BinaryConvUnit]] = {}
    mods: List[nn.Module] = []
    for u in units:
        if u.kind == "fp_block":
            mods.append(FPBlock(u.channels, u.residual))
        elif u.kind == "bconv" and u.role == "body":
            blocks.setdefault(u.block, []).append(u)
    for b, convs in blocks.items():
        mods.append(BinaryBlock(convs[0].in_ch, [c.layer.to_dict() for c in convs],
                                kernel_size=convs[0].kernel, residual=b in residual))
    return mods


class Body(nn.Sequential):
    """The body blocks in order (an ``nn.Sequential``: module and parameter names as before),
    with ONE ``ops.bam.BamHistory`` per call threaded through every ``BinaryBlock`` (the
    layout's one history chain); FP blocks take no history. ``bam_history`` is the history's
    length, the deepest window a body conv reads (``max bam_inputs``; 0 keeps nothing)."""

    def __init__(self, blocks: Sequence[nn.Module], bam_history: int = 0):
        super().__init__(*blocks)
        self.bam_history = bam_history

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        history = BamHistory(maxlen=self.bam_history)
        for block in self:
            x = block(x, history=history) if isinstance(block, BinaryBlock) else block(x)
        return x

    def extra_repr(self) -> str:
        return f"bam_history={self.bam_history}"


# -- tails: one factory per tail unit kind (unit -> modules, in order) --------------------
def _fp_stage(u: L.FPStageUnit) -> List[nn.Module]:
    c, r = u.channels, u.r
    return [_conv(c, r * r * c, L.KERNEL), nn.PixelShuffle(r), nn.LeakyReLU(L.LEAKY_SLOPE)]


TAIL_UNITS: Dict[str, Callable[[L.Unit], List[nn.Module]]] = {
    "fp_stage": _fp_stage,
    "bconv": lambda u: [BinaryConv2d(u.in_ch, u.out_ch, u.kernel, **u.layer.to_dict())],
    "shuffle": lambda u: [nn.PixelShuffle(u.r)],
    "fp_conv": lambda u: [_conv(u.in_ch, u.out_ch, u.kernel)],
    "leaky_relu": lambda u: [nn.LeakyReLU(u.slope)],
    "espcn": lambda u: [_conv(u.channels, 3 * u.s * u.s, L.KERNEL), nn.PixelShuffle(u.s)],
}
_TAIL_ROLES = ("tail", "conv_hr")


def _is_tail(u: L.Unit) -> bool:
    if u.kind == "bconv":
        return u.role in _TAIL_ROLES
    return u.kind in TAIL_UNITS


def tail_of(spec: ArchSpec) -> nn.Sequential:
    """The tail of ``spec``: the modules of its tail units (``space.layout``) in order::

        fp_two_stage   (conv C -> r^2 C, PixelShuffle(r), LeakyReLU) per stage,
                       [conv_hr C -> C (FP conv or BinaryConv2d), LeakyReLU], conv C -> 3
        fp_one_stage   conv C -> 3 s^2, PixelShuffle(s)                            (ESPCN)
        binary_repeat  (BinaryConv2d C -> r^2 C from tail_layers[j], PixelShuffle(r)) per
                       stage (its fp skip adds the input repeated r^2 times),
                       [conv_hr, LeakyReLU], conv C -> 3                           (E2FIF/BBCU)
    """
    mods: List[nn.Module] = []
    for u in L.layout(spec):
        if _is_tail(u):
            mods += TAIL_UNITS[u.kind](u)
    return nn.Sequential(*mods)


#: tail kind -> factory (every kind reads its units from the layout)
TAILS: Dict[str, Callable[[ArchSpec], nn.Module]] = {
    "fp_two_stage": tail_of,
    "fp_one_stage": tail_of,
    "binary_repeat": tail_of,
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
    units = [u for u in L.layout(spec) if u.kind == "image_skip"]
    return image_skip_module(units[0]) if units else None


def image_skip_module(u: L.ImageSkipUnit) -> ImageSkip:
    """The ``ImageSkip`` module of a layout unit."""
    return ImageSkip(u.mode, u.s, pre_shuffle=u.at == "pre_shuffle")


class SRNetwork(nn.Module):
    """Head, body, optional global skip, tail, with the input normalisation of the module doc;
    every part is made from the units of ``space.layout.layout(spec)``."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        units = L.layout(spec)
        head = units[0]
        assert head.kind == "head" and units[-1].kind == "output"
        self.register_buffer("rgb_mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.subtract_mean = head.mean
        self.residual_alignment = head.k
        self.head = HEADS[head.head](head.out_ch)
        act = HEAD_ACTS[head.act]()
        if act is not None:  # only then an attribute: older models keep their module tree
            self.head_act = act
        body_convs = [u for u in units if u.kind == "bconv" and u.role == "body"]
        self.body = Body(_body_modules(units),
                         bam_history=max((u.bam_inputs for u in body_convs), default=0))
        self.global_skip = any(u.kind == "add" and u.role == "global_skip" for u in units)
        self.tail = TAILS[spec.tail](spec)
        skips = [u for u in units if u.kind == "image_skip"]
        self.image_skip = image_skip_module(skips[0]) if skips else None

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
        if hasattr(self, "head_act"):
            h = self.head_act(h)
        y = self.body(h)
        if self.global_skip:
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
