"""``layout(spec, input_size=None)``: the network of an ``ArchSpec`` as one list of typed units.

This is the one description of what a spec builds (``docs/design.md``): ``space.builder`` makes
its modules from these units, ``evaluators.cost`` counts each unit, ``evaluators.latency.keys``
turns each unit into one latency key. A new architecture choice is added here (and in the three
per-kind tables of those consumers), not in three separate walks of the spec.

Units, in execution order (N = 1, LR input ``3 x H x W``, C = channels, s = scale; ``h`` / ``w``
are each unit's *input* size, ``None`` when no ``input_size`` is given)::

    HeadUnit         (x - m) * k, FP conv 3 -> C (k x k, 'same'), then LeakyReLU(0.1) if act
    BinaryConvUnit   one binary conv (role body: C -> C in block b at position p; role tail:
                     C -> r^2 C of upsampler stage j; role conv_hr: C -> C at s H x s W);
                     ``bam_position`` / ``bam_inputs``: its BAM history (below)
    FPBlockUnit      one full-precision body block: conv3 - ReLU - conv3 (+ input if residual)
    AddUnit          an add of two C x h x w maps (role block_residual after block b's convs;
                     role global_skip: body output + head output)
    FPStageUnit      FP upsampler stage j: conv C -> r^2 C, PixelShuffle(r), LeakyReLU(0.1)
    ShuffleUnit      PixelShuffle(r) after a binary upsampler conv (r^2 C x h x w -> C x rh x rw)
    FPConvUnit       an FP 3x3 conv (role conv_hr: C -> C at s H x s W; role last: C -> 3)
    LeakyReLUUnit    LeakyReLU(0.1) after the conv_hr stage (fp or binary)
    ESPCNUnit        the one-stage FP tail: conv C -> 3 s^2, PixelShuffle(s)
    ImageSkipUnit    o + up(x), at the tail output or (nearest on fp_one_stage) before its shuffle
    OutputUnit       o / k + m at 3 x sH x sW

Per spec (stages = ``upsample_stages(scale, tail_stages)``)::

    head                 HeadUnit
    body binary          per block b: BinaryConvUnit(body, b, 0), BinaryConvUnit(body, b, 1),
                         AddUnit(block_residual, b) if block_residual
    body fp              per block b: FPBlockUnit(b, residual = block_residual)
    global_skip          AddUnit(global_skip)
    tail fp_two_stage    per stage j: FPStageUnit(j, r_j)
    tail binary_repeat   per stage j: BinaryConvUnit(tail, j, C -> r_j^2 C), ShuffleUnit(r_j)
    (both, then)         tail_conv_hr fp:     FPConvUnit(conv_hr, C -> C), LeakyReLUUnit
                         tail_conv_hr binary: BinaryConvUnit(conv_hr, C -> C), LeakyReLUUnit
                         FPConvUnit(last, C -> 3)
    tail fp_one_stage    ESPCNUnit(s)
    image_skip != none   ImageSkipUnit(mode, at)
    output               OutputUnit

BAM history (``ops.bam``; the rule the builder, the cost count and the latency keys share):
the whole body is ONE history chain, the builder threads one ``ops.bam.BamHistory`` through all
body blocks, so a body conv's ``bam_position`` is its index among the body's binary convs
(``2 b + p``, across block boundaries, as the BAM paper accumulates over the preceding layers:
``/work/shared/docs/seed_methods.md``). Every tail / conv_hr conv has another input shape
(``C x h x w`` at another size, after a PixelShuffle) and starts a fresh history:
``bam_position = 0``. The number of earlier inputs a conv accumulates::

    bam_inputs = min(bam_depth, bam_position)      (0 without BAM; <= ops.bam.MAX_DEPTH)

so its BAM sums ``bam_inputs + 1`` one-bit maps (its own input and the last ``bam_inputs``
inputs of earlier convs of its chain).

Every unit has a ``kind`` (the latency-key kind it stands for) and ``binary`` (True only for
``BinaryConvUnit``). ``BinaryConvUnit.index`` is the index of its ``LayerSpec`` in
``spec.layers`` (body) or ``spec.tail_layers`` (tail stages first, then conv_hr).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence, Tuple, Union

from ops.bam import MAX_DEPTH
from space.spec import CONVS_PER_BLOCK, ArchSpec, LayerSpec, upsample_stages

KERNEL = 3
HEAD_KERNELS = {"conv3": 3, "conv5": 5}
#: slope of every FP LeakyReLU the layout places (head act, upsampler stages, conv_hr)
LEAKY_SLOPE = 0.1

Size = Optional[int]


def _mul(v: Size, r: int) -> Size:
    return None if v is None else v * r


@dataclass(frozen=True)
class HeadUnit:
    kind: ClassVar[str] = "head"
    binary: ClassVar[bool] = False
    head: str
    kernel: int
    out_ch: int
    act: str
    mean: bool
    k: float
    h: Size = None
    w: Size = None
    in_ch: int = 3


@dataclass(frozen=True)
class BinaryConvUnit:
    kind: ClassVar[str] = "bconv"
    binary: ClassVar[bool] = True
    role: str            # body | tail | conv_hr
    index: int           # into spec.layers (body) or spec.tail_layers (tail, conv_hr)
    in_ch: int
    out_ch: int
    layer: LayerSpec
    block: Optional[int] = None   # body block (None outside the body)
    position: int = 0             # index of the conv in its block
    kernel: int = KERNEL
    h: Size = None
    w: Size = None
    bam_position: int = 0         # index in its BAM history chain (body: 2 b + p; tail: 0)

    @property
    def bam_inputs(self) -> int:
        """Earlier conv inputs its BAM accumulates: ``min(bam_depth, bam_position)``."""
        return min(self.layer.bam_depth, self.bam_position)


@dataclass(frozen=True)
class FPBlockUnit:
    kind: ClassVar[str] = "fp_block"
    binary: ClassVar[bool] = False
    block: int
    channels: int
    residual: bool
    h: Size = None
    w: Size = None


@dataclass(frozen=True)
class AddUnit:
    kind: ClassVar[str] = "add"
    binary: ClassVar[bool] = False
    role: str            # block_residual | global_skip
    channels: int
    block: Optional[int] = None
    h: Size = None
    w: Size = None


@dataclass(frozen=True)
class FPStageUnit:
    kind: ClassVar[str] = "fp_stage"
    binary: ClassVar[bool] = False
    index: int
    r: int
    channels: int
    h: Size = None
    w: Size = None


@dataclass(frozen=True)
class ShuffleUnit:
    kind: ClassVar[str] = "shuffle"
    binary: ClassVar[bool] = False
    r: int
    channels: int        # C of the output (the input has r^2 C)
    h: Size = None
    w: Size = None


@dataclass(frozen=True)
class FPConvUnit:
    kind: ClassVar[str] = "fp_conv"
    binary: ClassVar[bool] = False
    role: str            # conv_hr | last
    in_ch: int
    out_ch: int
    kernel: int = KERNEL
    h: Size = None
    w: Size = None


@dataclass(frozen=True)
class LeakyReLUUnit:
    kind: ClassVar[str] = "leaky_relu"
    binary: ClassVar[bool] = False
    role: str            # conv_hr
    channels: int
    slope: float = LEAKY_SLOPE
    h: Size = None
    w: Size = None


@dataclass(frozen=True)
class ESPCNUnit:
    kind: ClassVar[str] = "espcn"
    binary: ClassVar[bool] = False
    channels: int
    s: int
    h: Size = None
    w: Size = None


@dataclass(frozen=True)
class ImageSkipUnit:
    kind: ClassVar[str] = "image_skip"
    binary: ClassVar[bool] = False
    mode: str            # nearest | bilinear | bicubic
    at: str              # output | pre_shuffle
    s: int
    h: Size = None       # LR size of x
    w: Size = None


@dataclass(frozen=True)
class OutputUnit:
    kind: ClassVar[str] = "output"
    binary: ClassVar[bool] = False
    mean: bool
    k: float
    h: Size = None       # SR size (s H x s W)
    w: Size = None


Unit = Union[HeadUnit, BinaryConvUnit, FPBlockUnit, AddUnit, FPStageUnit, ShuffleUnit,
             FPConvUnit, LeakyReLUUnit, ESPCNUnit, ImageSkipUnit, OutputUnit]
#: every unit class, keyed by its kind
UNIT_KINDS = {cls.kind: cls for cls in (HeadUnit, BinaryConvUnit, FPBlockUnit, AddUnit,
                                         FPStageUnit, ShuffleUnit, FPConvUnit, LeakyReLUUnit,
                                         ESPCNUnit, ImageSkipUnit, OutputUnit)}


def image_skip_at(mode: str, tail: str) -> str:
    """Where the image skip is added: ``pre_shuffle`` for nearest on ``fp_one_stage`` (the
    channel-repeated image on the 3 s^2 conv output), else ``output``."""
    return "pre_shuffle" if mode == "nearest" and tail == "fp_one_stage" else "output"


def _check_size(input_size: Sequence[int]) -> Tuple[int, int]:
    ok = (isinstance(input_size, (tuple, list)) and len(input_size) == 3
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in input_size)
          and input_size[0] == 3)
    if not ok:
        raise ValueError(f"invalid input_size {input_size!r}; allowed: (3, H, W) with H, W "
                         f"positive ints (an RGB image)")
    return input_size[1], input_size[2]


def _body(spec: ArchSpec, h: Size, w: Size) -> list:
    c, units = spec.channels, []
    for b in range(spec.blocks):
        if spec.body == "fp":
            units.append(FPBlockUnit(b, c, spec.block_residual, h, w))
            continue
        for pos, layer in enumerate(spec.block_layers(b)):
            n = b * CONVS_PER_BLOCK + pos
            units.append(BinaryConvUnit("body", n, c, c, layer, block=b, position=pos, h=h, w=w,
                                        bam_position=n))
        if spec.block_residual:
            units.append(AddUnit("block_residual", c, b, h, w))
    if spec.global_skip:
        units.append(AddUnit("global_skip", c, None, h, w))
    return units


def _tail(spec: ArchSpec, h: Size, w: Size) -> list:
    c, s = spec.channels, spec.scale
    if spec.tail == "fp_one_stage":
        return [ESPCNUnit(c, s, h, w)]
    units: list = []
    stages = upsample_stages(s, spec.tail_stages)
    for j, r in enumerate(stages):
        if spec.tail == "fp_two_stage":
            units.append(FPStageUnit(j, r, c, h, w))
        else:
            units.append(BinaryConvUnit("tail", j, c, r * r * c, spec.tail_layers[j], h=h, w=w))
            units.append(ShuffleUnit(r, c, h, w))
        h, w = _mul(h, r), _mul(w, r)
    if spec.tail_conv_hr == "fp":
        units.append(FPConvUnit("conv_hr", c, c, KERNEL, h, w))
    elif spec.tail_conv_hr == "binary":
        n = len(stages) if spec.tail == "binary_repeat" else 0
        units.append(BinaryConvUnit("conv_hr", n, c, c, spec.tail_layers[n], h=h, w=w))
    if spec.tail_conv_hr != "none":
        units.append(LeakyReLUUnit("conv_hr", c, LEAKY_SLOPE, h, w))
    units.append(FPConvUnit("last", c, 3, KERNEL, h, w))
    return units


def bam_kept(convs: Sequence[BinaryConvUnit], n: int) -> int:
    """How many inputs of the convs before ``convs[n]`` (one history chain, in order) must
    still be alive when ``convs[n]`` runs: the inputs of convs ``n - kept .. n - 1``, with
    ``kept = max(0, max_{q >= n} (bam_inputs(q) - (q - n)))`` (conv q reads back to q -
    bam_inputs(q))."""
    kept = 0
    for q in range(n, min(len(convs), n + MAX_DEPTH)):  # bam_inputs <= MAX_DEPTH
        kept = max(kept, convs[q].bam_inputs - (q - n))
    return kept


def layout(spec: ArchSpec, input_size: Optional[Sequence[int]] = None) -> Tuple[Unit, ...]:
    """The units of ``spec`` in execution order (see the module docstring); with
    ``input_size = (3, H, W)`` every unit carries its input size, else ``h = w = None``."""
    if not isinstance(spec, ArchSpec):
        raise ValueError(f"invalid spec {type(spec).__name__}; allowed: a space.spec.ArchSpec")
    h: Size
    w: Size
    h, w = (None, None) if input_size is None else _check_size(input_size)
    mean, k, s = spec.input_mean == "div2k", spec.residual_alignment, spec.scale
    units: list = [HeadUnit(spec.head, HEAD_KERNELS[spec.head], spec.channels, spec.head_act,
                            mean, k, h, w)]
    units += _body(spec, h, w)
    units += _tail(spec, h, w)
    if spec.image_skip != "none":
        units.append(ImageSkipUnit(spec.image_skip, image_skip_at(spec.image_skip, spec.tail),
                                   s, h, w))
    units.append(OutputUnit(mean, k, _mul(h, s), _mul(w, s)))
    return tuple(units)
