"""Instant cost counts of an ``ArchSpec`` (no ``nn.Module`` is built): BOPs, FLOPs, params, bytes.

``cost(spec, input_size=(3, H, W))`` counts the units of ``space.layout.layout(spec, input_size)``
(the network that ``space.builder.build(spec)`` makes), on one LR image of ``H x W`` (batch 1);
``unit_costs`` gives the counts of each unit (``UNIT_COSTS``: one rule per unit kind) and
``cost`` their sums::

    bops                   binary MACs: P * k^2 * C_in * C_out * H * W per binary conv (ARI's P
                           bit-planes each cost one binary conv)
    fp_macs                MACs of the FP convs (head, FP tail, FP body), k^2 * C_in * C_out * H * W
    flops                  fp_macs + FP element-wise work (rules below); a MAC counts 1, an add,
                           multiply or compare counts 1 (BBCU's convention: FLOPs = MACs)
    ops                    bops / 64 + flops (BBCU, Xia et al. ICLR 2023)
    params                 parameter count of the built module, a binary weight counting 1
    binary_params          latent weights of binary convs (stored as 1 bit each at inference)
    model_bytes            ceil(binary_params / 8) + 4 * (params - binary_params)
    peak_activation_bytes  4 * max over conv steps of the elements alive at that step (float32)

Element-wise FLOPs of one binary conv (Ni = C_in H W input elements, No = C_out H W output
elements, HW pixels, P = parts, d' = ``bam_inputs`` = min(bam_depth, bam_position): the earlier
conv inputs its BAM accumulates, ``space.layout``; the body is one history chain, so
bam_position = 2 b + p is the conv's index in the whole body, 0 for a tail / conv_hr conv)::

    bam_depth > 0        (5 d' + 6) Ni   per accumulated input (d' + 1 of them) |A|, its
                                          spatial-mean sum, its sign and the beta multiply (4);
                                          d' adds; BN affine (2)
    threshold local_mean (k_t^2 + 1) Ni  k_t x k_t box mean (k_t^2 - 1 adds + 1 multiply) and the
                                          subtraction; zero / channel thresholds and ARI offsets
                                          fold into the compare
    binarize             P Ni            one compare per bit-plane
    part / weight scale  (2P - 1) No     if P > 1 (gamma_p, alpha folded in); No if P = 1 and
                                          weight_scale = channel_mean; else 0
    bias                 No
    rescale channel      2 Ni + No + C_in C_out + 2 C_in + 6 C_out + 6   (L and G, ops.rescale)
    rescale spatial      2 Ni + 15 HW + No                               (S)
    rescale both         the sum of the two (each map takes its own |X|, as ops.rescale does)
    norm bn              2 No            (scale and shift)
    nonlinearity         prelu, leaky_relu: 2 No (compare, multiply); rprelu: 4 No (shift,
                         compare, multiply, bias)
    skip fp              No              (the channel repeat is a copy: 0)

The re-scaling maps (``ops.rescale``; ``2 sigma(z)`` counts SIGMOID_FLOPS = 4: exp, add, divide,
times 2)::

    channel  |X| and its per-channel spatial sums 2 Ni, the C_in divides (mean_hw |X|) C_in;
             G = 2 sigma(V m + v): C_in C_out MACs + C_out bias + 4 C_out;
             L = 2 sigma(a mean_chw|X| + b): mean of the C_in channel means C_in, a m + b 2,
             sigmoid 4; L * G: C_out; Y * (L G): No
    spatial  |X| and its channel sum per pixel 2 Ni, the divide by C_in HW; the 1 -> 1 3x3 conv
             with bias 10 HW; 2 sigma 4 HW; Y * S: No

Elsewhere: each FP conv adds its bias (1 per output element); ReLU (fp body) 1 and LeakyReLU
(FP upsampler) 2 per element; block residual and global skip 1 add per element; input
normalisation (subtract mean, multiply by k) 2 per input element and the output's inverse
(divide by k, add mean) 2 per output element, 1 and 1 with ``input_mean = "none"`` (no mean).
PixelShuffle and channel repeats move data: 0. Per-channel O(C) work is not counted (BAM's
beta = s * mean, folded BN constants), except in the re-scaling maps above, whose pooled vectors
and tiny maps are the whole operator.

Head and tail options (C channels, s the scale, H x W the LR size, S = s^2 H W the SR pixels):

    head_act leaky_relu     2 C H W FLOPs (compare, multiply), no parameter
    tail_stages one         the stage r = s at H x W instead of the x2 stages at x4:
                            fp_two_stage: 9 C (s^2 C) H W MACs, (9 C + 1) s^2 C H W + 2 s^2 C H W
                            FLOPs (MACs, bias, LeakyReLU), 9 C s^2 C + s^2 C params;
                            binary_repeat: one binary conv C -> s^2 C at H x W (the rules above)
    tail_conv_hr fp         FP conv C -> C at s H x s W: 9 C^2 S MACs, (9 C + 1) C S FLOPs,
                            9 C^2 + C params; then LeakyReLU 2 C S FLOPs
    tail_conv_hr binary     one binary conv C -> C at s H x s W with the last tail LayerSpec
                            (the rules above, bam_position 0: bops 9 P C^2 S); then LeakyReLU
                            2 C S FLOPs
    peak                    the conv_hr step holds its input and output (2 C S) plus the
                            normalised input when an image skip is pending

Image-level skip (``image_skip``), on N_sr = 3 (sH)(sW) = 3 s^2 H W output elements, an
interpolation tap counting one MAC (1 FLOP, the convention above) and the skip add 1 FLOP per
output element; it has no parameters and no MACs of a conv (``fp_macs`` is unchanged)::

    nearest    N_sr            (the copy / channel repeat moves data: 0; the add: N_sr)
    bilinear   (4 + 1) N_sr    (2 x 2 taps per output element, then the add)
    bicubic    (16 + 1) N_sr   (4 x 4 taps per output element, then the add)

Parameters per binary conv: C_out C_in k^2 binary weights; bam (d + 1) C_in + 2 C_in (scales
s_i for every row of the depth d, whatever d' is, and the BN affine); threshold channel C_in;
parts > 1: P C_in + P C_out; aae 1; bias C_out; rescale channel C_in C_out + C_out + 2 (V, v,
a, b), spatial 9 + 1 (the 1 -> 1 3x3 conv and its bias), both the sum; bn 2 C_out; prelu
C_out; rprelu 3 C_out. FP conv: k^2 C_in C_out + C_out.

Peak activations: the network runs as a sequence of conv steps; at each step the live tensors
are the step's input and output plus tensors kept for later (the head output while a global skip
is pending, the block input while a block residual is pending, the earlier body conv inputs
that this or a later BAM conv of the body accumulates, across blocks: ``space.layout.bam_kept``,
the normalised input 3 H W while an image skip is pending).
Element-wise steps run in place; intermediates inside a conv (bit-planes, partial sums, the
spatial map) are not counted; PixelShuffle is a view. The image skip is one more step, after
the tail's last conv: the normalised input, the tail output and the upsampled (or
channel-repeated) image, 3 H W + 2 N_sr.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Sequence, Tuple

from space.layout import HEAD_KERNELS  # noqa: F401  (still importable from here, as before)
from space.layout import (KERNEL, AddUnit, BinaryConvUnit, ESPCNUnit, FPBlockUnit, FPConvUnit,
                          FPStageUnit, HeadUnit, ImageSkipUnit, LeakyReLUUnit, OutputUnit, Unit,
                          bam_kept, layout)
from space.spec import CONVS_PER_BLOCK, ArchSpec, LayerSpec

BYTES_FP32 = 4
#: FLOPs per element of a LeakyReLU (compare, multiply)
LEAKY_RELU_FLOPS = 2
#: FLOPs of one bounded factor 2 sigma(z) (exp, add, divide, times 2)
SIGMOID_FLOPS = 4
#: FLOPs per accumulated BAM input element (|A|, spatial-mean sum, sign, beta multiply)
BAM_FLOPS_PER_INPUT = 4
DEFAULT_INPUT_SIZE = (3, 180, 320)  # BBCU's reporting size (x4 -> 1280 x 720)

#: FLOPs per output element of the image skip (interpolation taps + the add), see above.
IMAGE_SKIP_FLOPS = {"none": 0, "nearest": 1, "bilinear": 4 + 1, "bicubic": 16 + 1}
_NONLIN_FLOPS = {"none": 0, "prelu": 2, "leaky_relu": 2, "rprelu": 4}
_NONLIN_PARAMS = {"none": 0, "prelu": 1, "leaky_relu": 0, "rprelu": 3}


def rescale_channel_flops(cin: int, cout: int, hw: int) -> int:
    """FLOPs of the channel mode of ``ops.rescale`` (L and G) on one image (module doc)."""
    pool = 2 * cin * hw + cin                          # |X|, per-channel sums, divides
    g = cin * cout + cout + SIGMOID_FLOPS * cout       # V m + v, 2 sigma
    lay = cin + 2 + SIGMOID_FLOPS                      # mean of means, a m + b, 2 sigma
    return pool + g + lay + cout + cout * hw           # L * G, Y * (L G)


def rescale_spatial_flops(cin: int, cout: int, hw: int) -> int:
    """FLOPs of the spatial mode of ``ops.rescale`` (S) on one image (module doc)."""
    pool = 2 * cin * hw + hw                           # |X|, channel sums, divide per pixel
    conv = (3 * 3 + 1) * hw                            # 1 -> 1 3x3 conv with bias
    return pool + conv + SIGMOID_FLOPS * hw + cout * hw  # 2 sigma, Y * S


def binary_conv_cost(layer: LayerSpec, cin: int, cout: int, h: int, w: int,
                     position: int = 0, k: int = KERNEL) -> Dict[str, int]:
    """bops, flops, params, binary_params of one binary conv (rules in the module docstring);
    ``position`` is the conv's ``bam_position`` (its index in its BAM history chain:
    ``space.layout``), so it accumulates ``d' = min(bam_depth, position)`` earlier inputs."""
    hw = h * w
    ni, no = cin * hw, cout * hw
    p = layer.parts
    flops = p * ni  # binarize
    params = cout * cin * k * k
    if layer.bam_depth > 0:
        d_eff = min(layer.bam_depth, position)
        # (d' + 1) inputs: |A|, sum, sign, beta multiply each; d' adds; BN affine 2
        flops += (BAM_FLOPS_PER_INPUT * (d_eff + 1) + d_eff + 2) * ni
        params += (layer.bam_depth + 1) * cin + 2 * cin
    if layer.threshold == "local_mean":
        flops += (layer.threshold_kernel ** 2 + 1) * ni
    elif layer.threshold == "channel":
        params += cin
    if p > 1:
        flops += (2 * p - 1) * no
        params += p * cin + p * cout
    elif layer.weight_scale == "channel_mean":
        flops += no
    if layer.act_estimator == "aae":
        params += 1
    if layer.bias:
        flops += no
        params += cout
    if layer.rescale in ("channel", "both"):
        flops += rescale_channel_flops(cin, cout, hw)
        params += cin * cout + cout + 2  # V, v, a, b
    if layer.rescale in ("spatial", "both"):
        flops += rescale_spatial_flops(cin, cout, hw)
        params += 3 * 3 + 1  # the 1 -> 1 3x3 conv and its bias
    if layer.norm == "bn":
        flops += 2 * no
        params += 2 * cout
    flops += _NONLIN_FLOPS[layer.nonlinearity] * no
    params += _NONLIN_PARAMS[layer.nonlinearity] * cout
    if layer.skip == "fp":
        flops += no
    return {"bops": p * k * k * cin * cout * hw, "flops": flops, "params": params,
            "binary_params": cout * cin * k * k}


class _Tally:
    """Sums of one unit (or of the network) and the peak of live activation elements."""

    def __init__(self) -> None:
        self.bops = self.fp_macs = self.flops = self.params = self.binary_params = 0
        self.peak = 0

    def fp_conv(self, cin: int, cout: int, k: int, h: int, w: int) -> None:
        macs = k * k * cin * cout * h * w
        self.fp_macs += macs
        self.flops += macs + cout * h * w
        self.params += k * k * cin * cout + cout

    def binary_conv(self, layer: LayerSpec, cin: int, cout: int, h: int, w: int,
                    position: int, k: int = KERNEL) -> None:
        c = binary_conv_cost(layer, cin, cout, h, w, position, k)
        self.bops += c["bops"]
        self.flops += c["flops"]
        self.params += c["params"]
        self.binary_params += c["binary_params"]

    def live(self, tensors: Dict[str, int]) -> None:
        """``tensors``: name -> elements of every distinct tensor alive at a conv step."""
        self.peak = max(self.peak, sum(tensors.values()))

    def counts(self) -> Dict[str, int]:
        return {"bops": self.bops, "fp_macs": self.fp_macs, "flops": self.flops,
                "params": self.params, "binary_params": self.binary_params,
                "live_elements": self.peak}


class _Context:
    """What the units of one layout keep alive for later units (read once from the layout):
    the normalised input while an image skip is pending, the head output while a global skip
    is pending, a block's input while its residual is pending, and the body's binary convs in
    order (its one BAM history chain: ``space.layout.bam_kept``)."""

    def __init__(self, units: Sequence[Unit]):
        head = units[0]
        self.px = head.h * head.w
        self.image_skip = any(u.kind == "image_skip" for u in units)
        self.global_skip = any(u.kind == "add" and u.role == "global_skip" for u in units)
        self.residual = {u.block for u in units if u.kind == "add" and u.role == "block_residual"}
        self.body_convs: List[BinaryConvUnit] = [
            u for u in units if u.kind == "bconv" and u.role == "body"]
        assert all(u.bam_position == n for n, u in enumerate(self.body_convs))

    def kept(self, in_body: bool, channels: int = 0) -> Dict[str, int]:
        out = {"x": 3 * self.px} if self.image_skip else {}
        if in_body and self.global_skip:
            out["h"] = channels * self.px
        return out


def _input_name(n: int) -> str:
    """Name of the input of body conv ``n`` (``2 b + i``): block 0's conv 0 reads ``h``, conv 0
    of block b the output of block b - 1, conv i > 0 the output of conv i - 1."""
    b, i = divmod(n, CONVS_PER_BLOCK)
    if i == 0:
        return "h" if b == 0 else f"b{b - 1}.out"
    return f"b{b}.c{i - 1}"


def _output_name(n: int) -> str:
    b, i = divmod(n, CONVS_PER_BLOCK)
    return f"b{b}.out" if i == CONVS_PER_BLOCK - 1 else f"b{b}.c{i}"


def _head(u: HeadUnit, t: _Tally, ctx: _Context) -> None:
    hw = u.h * u.w
    t.flops += (2 if u.mean else 1) * 3 * hw  # (x - mean) * k, or x * k
    t.fp_conv(u.in_ch, u.out_ch, u.kernel, u.h, u.w)
    if u.act == "leaky_relu":
        t.flops += LEAKY_RELU_FLOPS * u.out_ch * hw
    t.live({"x": 3 * hw, "h": u.out_ch * hw})


def _body_conv(u: Unit, t: _Tally, ctx: _Context, position: int, block: int, c: int) -> None:
    """Liveness of conv ``position`` of body block ``block`` (binary or FP): its input and
    output, what is kept (``_Context.kept``), the block input while its residual is pending and
    the inputs of the ``bam_kept`` body convs before it (BAM, across blocks)."""
    n = block * CONVS_PER_BLOCK + position
    tensors = ctx.kept(True, c)
    if block in ctx.residual:
        tensors[_input_name(block * CONVS_PER_BLOCK)] = c * ctx.px
    for j in range(n - bam_kept(ctx.body_convs, n), n):
        tensors[_input_name(j)] = c * ctx.px
    tensors[_input_name(n)] = c * ctx.px
    tensors[_output_name(n)] = c * ctx.px
    t.live(tensors)


def _bconv(u: BinaryConvUnit, t: _Tally, ctx: _Context) -> None:
    t.binary_conv(u.layer, u.in_ch, u.out_ch, u.h, u.w, u.bam_position, u.kernel)
    if u.role == "body":
        _body_conv(u, t, ctx, u.position, u.block, u.in_ch)
    else:
        _step(t, ctx, u.in_ch * u.h * u.w, u.out_ch * u.h * u.w)


def _fp_block(u: FPBlockUnit, t: _Tally, ctx: _Context) -> None:
    c, px = u.channels, u.h * u.w
    for i in range(CONVS_PER_BLOCK):
        t.fp_conv(c, c, KERNEL, u.h, u.w)
        if i == 0:
            t.flops += c * px  # ReLU between the two convs
        _body_conv(u, t, ctx, i, u.block, c)
    if u.residual:
        t.flops += c * px


def _step(t: _Tally, ctx: _Context, n_in: int, n_out: int) -> None:
    """A tail conv step: its input and output plus what is kept (the image skip's x)."""
    t.live({**ctx.kept(False), "in": n_in, "out": n_out})


def _fp_stage(u: FPStageUnit, t: _Tally, ctx: _Context) -> None:
    c, r, hw = u.channels, u.r, u.h * u.w
    t.fp_conv(c, r * r * c, KERNEL, u.h, u.w)
    t.flops += LEAKY_RELU_FLOPS * r * r * c * hw  # LeakyReLU after the shuffle
    _step(t, ctx, c * hw, r * r * c * hw)


def _fp_conv(u: FPConvUnit, t: _Tally, ctx: _Context) -> None:
    t.fp_conv(u.in_ch, u.out_ch, u.kernel, u.h, u.w)
    _step(t, ctx, u.in_ch * u.h * u.w, u.out_ch * u.h * u.w)


def _leaky_relu(u: LeakyReLUUnit, t: _Tally, ctx: _Context) -> None:
    t.flops += LEAKY_RELU_FLOPS * u.channels * u.h * u.w


def _espcn(u: ESPCNUnit, t: _Tally, ctx: _Context) -> None:
    s, hw = u.s, u.h * u.w
    t.fp_conv(u.channels, 3 * s * s, KERNEL, u.h, u.w)
    _step(t, ctx, u.channels * hw, 3 * s * s * hw)


def _image_skip(u: ImageSkipUnit, t: _Tally, ctx: _Context) -> None:
    n_sr = 3 * (u.s * u.h) * (u.s * u.w)
    t.flops += IMAGE_SKIP_FLOPS[u.mode] * n_sr
    t.live({**ctx.kept(False), "o": n_sr, "up": n_sr})


def _add(u: AddUnit, t: _Tally, ctx: _Context) -> None:
    t.flops += u.channels * u.h * u.w


def _output(u: OutputUnit, t: _Tally, ctx: _Context) -> None:
    t.flops += (2 if u.mean else 1) * 3 * u.h * u.w  # o / k + mean, or o / k


#: unit kind -> its count (every kind of ``space.layout.UNIT_KINDS``)
UNIT_COSTS: Dict[str, Callable[[Any, _Tally, _Context], None]] = {
    "head": _head, "bconv": _bconv, "fp_block": _fp_block, "add": _add, "fp_stage": _fp_stage,
    "shuffle": lambda u, t, ctx: None,  # PixelShuffle moves data: 0
    "fp_conv": _fp_conv, "leaky_relu": _leaky_relu, "espcn": _espcn,
    "image_skip": _image_skip, "output": _output,
}


def unit_costs(spec: ArchSpec, input_size: Sequence[int] = DEFAULT_INPUT_SIZE
               ) -> List[Tuple[Unit, Dict[str, int]]]:
    """``(unit, counts)`` for every unit of ``space.layout.layout(spec, input_size)``, in
    order; counts: bops, fp_macs, flops, params, binary_params, live_elements (the most
    elements alive at one of the unit's conv steps, 0 for a unit without one). ``cost`` is
    their sum (the peak: their max)."""
    if not isinstance(spec, ArchSpec):
        raise ValueError(f"invalid spec {type(spec).__name__}; allowed: a space.spec.ArchSpec")
    units = layout(spec, input_size)  # layout checks the size (ValueError naming it)
    ctx = _Context(units)
    out = []
    for u in units:
        t = _Tally()
        UNIT_COSTS[u.kind](u, t, ctx)
        out.append((u, t.counts()))
    return out


def cost(spec: ArchSpec, input_size: Sequence[int] = DEFAULT_INPUT_SIZE) -> Dict[str, int]:
    """All counts of ``spec`` on one LR image of ``input_size = (3, H, W)`` (see module doc)."""
    per_unit = unit_costs(spec, input_size)
    total = {k: sum(c[k] for _, c in per_unit)
             for k in ("bops", "fp_macs", "flops", "params", "binary_params")}
    peak = max(c["live_elements"] for _, c in per_unit)
    model_bytes = math.ceil(total["binary_params"] / 8) + BYTES_FP32 * (
        total["params"] - total["binary_params"])
    return {
        "bops": total["bops"],
        "fp_macs": total["fp_macs"],
        "flops": total["flops"],
        "ops": total["bops"] / 64 + total["flops"],
        "params": total["params"],
        "binary_params": total["binary_params"],
        "model_bytes": model_bytes,
        "peak_activation_bytes": BYTES_FP32 * peak,
    }
