"""Instant cost counts of an ``ArchSpec`` (no ``nn.Module`` is built): BOPs, FLOPs, params, bytes.

``cost(spec, input_size=(3, H, W))`` walks the network that ``space.builder.build(spec)`` makes, on
one LR image of ``H x W`` (batch 1), and returns::

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
elements, HW pixels, P = parts, d' = min(bam_depth, position of the conv in its block)):

    bam_depth > 0        (4 d' + 5) Ni   per accumulated input |A|, its spatial-mean sum and the
                                          scale multiply (3), d' adds, BN affine (2)
    threshold local_mean (k_t^2 + 1) Ni  k_t x k_t box mean (k_t^2 - 1 adds + 1 multiply) and the
                                          subtraction; zero / channel thresholds and ARI offsets
                                          fold into the compare
    binarize             P Ni            one compare per bit-plane
    part / weight scale  (2P - 1) No     if P > 1 (gamma_p, alpha folded in); No if P = 1 and
                                          weight_scale = channel_mean; else 0
    bias                 No
    rescale              channel: No;  spatial: 2 Ni + 11 HW + No (|X| and its channel sum, the
                         mean's divide and the 1->1 3x3 conv with bias, the multiply); both: sum
    norm bn              2 No            (scale and shift)
    nonlinearity         prelu, leaky_relu: 2 No (compare, multiply); rprelu: 4 No (shift,
                         compare, multiply, bias)
    skip fp              No              (the channel repeat is a copy: 0)

Elsewhere: each FP conv adds its bias (1 per output element); ReLU (fp body) 1 and LeakyReLU
(FP upsampler) 2 per element; block residual and global skip 1 add per element; input
normalisation (subtract mean, multiply by k) 2 per input element and the output's inverse
(divide by k, add mean) 2 per output element, 1 and 1 with ``input_mean = "none"`` (no mean).
PixelShuffle and channel repeats move data: 0. Per-channel O(C) work is not counted.

Image-level skip (``image_skip``), on N_sr = 3 (sH)(sW) = 3 s^2 H W output elements, an
interpolation tap counting one MAC (1 FLOP, the convention above) and the skip add 1 FLOP per
output element; it has no parameters and no MACs of a conv (``fp_macs`` is unchanged)::

    nearest    N_sr            (the copy / channel repeat moves data: 0; the add: N_sr)
    bilinear   (4 + 1) N_sr    (2 x 2 taps per output element, then the add)
    bicubic    (16 + 1) N_sr   (4 x 4 taps per output element, then the add)

Parameters per binary conv: C_out C_in k^2 binary weights; bam (d + 1) C_in + 2 C_in;
threshold channel C_in; parts > 1: P C_in + P C_out; aae 1; bias C_out; rescale channel C_out,
spatial 10; bn 2 C_out; prelu C_out; rprelu 3 C_out. FP conv: k^2 C_in C_out + C_out.

Peak activations: the network runs as a sequence of conv steps; at each step the live tensors
are the step's input and output plus tensors kept for later (the head output while a global skip
is pending, the block input while a block residual is pending, earlier conv inputs a later BAM
conv of the block accumulates, the normalised input 3 H W while an image skip is pending).
Element-wise steps run in place; intermediates inside a conv (bit-planes, partial sums, the
spatial map) are not counted; PixelShuffle is a view. The image skip is one more step, after
the tail's last conv: the normalised input, the tail output and the upsampled (or
channel-repeated) image, 3 H W + 2 N_sr.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

from space.spec import CONVS_PER_BLOCK, ArchSpec, LayerSpec, upsample_stages

KERNEL = 3
HEAD_KERNELS = {"conv3": 3, "conv5": 5}
BYTES_FP32 = 4
DEFAULT_INPUT_SIZE = (3, 180, 320)  # BBCU's reporting size (x4 -> 1280 x 720)

#: FLOPs per output element of the image skip (interpolation taps + the add), see above.
IMAGE_SKIP_FLOPS = {"none": 0, "nearest": 1, "bilinear": 4 + 1, "bicubic": 16 + 1}
_NONLIN_FLOPS = {"none": 0, "prelu": 2, "leaky_relu": 2, "rprelu": 4}
_NONLIN_PARAMS = {"none": 0, "prelu": 1, "leaky_relu": 0, "rprelu": 3}


def _check_input_size(input_size: Sequence[int]) -> Tuple[int, int, int]:
    ok = (isinstance(input_size, (tuple, list)) and len(input_size) == 3
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in input_size)
          and input_size[0] == 3)
    if not ok:
        raise ValueError(f"invalid input_size {input_size!r}; allowed: (3, H, W) with H, W "
                         f"positive ints (an RGB image)")
    return tuple(input_size)  # type: ignore[return-value]


def binary_conv_cost(layer: LayerSpec, cin: int, cout: int, h: int, w: int,
                     position: int = 0, k: int = KERNEL) -> Dict[str, int]:
    """bops, flops, params, binary_params of one binary conv (rules in the module docstring);
    ``position`` is the conv's index in its block (it bounds the BAM window)."""
    hw = h * w
    ni, no = cin * hw, cout * hw
    p = layer.parts
    flops = p * ni  # binarize
    params = cout * cin * k * k
    if layer.bam_depth > 0:
        d_eff = min(layer.bam_depth, position)
        flops += (4 * d_eff + 5) * ni
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
        flops += no
        params += cout
    if layer.rescale in ("spatial", "both"):
        flops += 2 * ni + 11 * hw + no
        params += 10
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
    """Running sums and the peak of live activation elements."""

    def __init__(self) -> None:
        self.bops = self.fp_macs = self.flops = self.params = self.binary_params = 0
        self.peak = 0
        self.kept: Dict[str, int] = {}  # tensors alive at every later step (the image skip's x)

    def fp_conv(self, cin: int, cout: int, k: int, h: int, w: int) -> None:
        macs = k * k * cin * cout * h * w
        self.fp_macs += macs
        self.flops += macs + cout * h * w
        self.params += k * k * cin * cout + cout

    def binary_conv(self, layer: LayerSpec, cin: int, cout: int, h: int, w: int,
                    position: int) -> None:
        c = binary_conv_cost(layer, cin, cout, h, w, position)
        self.bops += c["bops"]
        self.flops += c["flops"]
        self.params += c["params"]
        self.binary_params += c["binary_params"]

    def live(self, tensors: Dict[str, int]) -> None:
        """``tensors``: name -> elements of every distinct tensor alive at a conv step."""
        self.peak = max(self.peak, sum({**self.kept, **tensors}.values()))


def _bam_window(layers: Sequence[LayerSpec], i: int) -> int:
    """How far back the convs ``i..`` of a block reach: inputs of convs >= i - this are kept."""
    reach = 0
    for m in range(i, len(layers)):
        d_eff = min(layers[m].bam_depth, m)
        reach = max(reach, d_eff - (m - i))
    return reach


def _body(spec: ArchSpec, t: _Tally, h: int, w: int) -> None:
    c, px = spec.channels, h * w
    kept_global = {"h": c * px} if spec.global_skip else {}
    prev = "h"
    for b in range(spec.blocks):
        block_in = prev
        layers = spec.block_layers(b)
        n_convs = CONVS_PER_BLOCK
        inputs = [block_in] + [f"b{b}.c{i}" for i in range(n_convs - 1)]
        for i in range(n_convs):
            out = f"b{b}.c{i}" if i < n_convs - 1 else f"b{b}.out"
            tensors = dict(kept_global)
            if spec.block_residual:
                tensors[block_in] = c * px
            if spec.body == "binary":
                for j in range(max(0, i - _bam_window(layers, i)), i):
                    tensors[inputs[j]] = c * px
                t.binary_conv(layers[i], c, c, h, w, position=i)
            else:
                t.fp_conv(c, c, KERNEL, h, w)
                if i == 0:
                    t.flops += c * px  # ReLU between the two convs
            tensors[inputs[i]] = c * px
            tensors[out] = c * px
            t.live(tensors)
        if spec.block_residual:
            t.flops += c * px
        prev = f"b{b}.out"
    if spec.global_skip:
        t.flops += c * px


def _tail(spec: ArchSpec, t: _Tally, h: int, w: int) -> None:
    c = spec.channels
    if spec.tail == "fp_one_stage":
        s = spec.scale
        t.fp_conv(c, 3 * s * s, KERNEL, h, w)
        t.live({"in": c * h * w, "out": 3 * s * s * h * w})
        return
    for j, r in enumerate(upsample_stages(spec.scale)):
        if spec.tail == "fp_two_stage":
            t.fp_conv(c, r * r * c, KERNEL, h, w)
            t.flops += 2 * r * r * c * h * w  # LeakyReLU after the shuffle
        else:
            t.binary_conv(spec.tail_layers[j], c, r * r * c, h, w, position=0)
        t.live({"in": c * h * w, "out": r * r * c * h * w})
        h, w = h * r, w * r
    t.fp_conv(c, 3, KERNEL, h, w)
    t.live({"in": c * h * w, "out": 3 * h * w})


def cost(spec: ArchSpec, input_size: Sequence[int] = DEFAULT_INPUT_SIZE) -> Dict[str, int]:
    """All counts of ``spec`` on one LR image of ``input_size = (3, H, W)`` (see module doc)."""
    if not isinstance(spec, ArchSpec):
        raise ValueError(f"invalid spec {type(spec).__name__}; allowed: a space.spec.ArchSpec")
    _, h, w = _check_input_size(input_size)
    t = _Tally()
    s = spec.scale
    n_sr = 3 * (s * h) * (s * w)
    per_element = 2 if spec.input_mean == "div2k" else 1  # (x - mean) * k, or x * k
    t.flops += per_element * (3 * h * w + n_sr)  # the normalisation and its inverse
    t.fp_conv(3, spec.channels, HEAD_KERNELS[spec.head], h, w)
    t.live({"x": 3 * h * w, "h": spec.channels * h * w})
    if spec.image_skip != "none":
        t.kept = {"x": 3 * h * w}
    _body(spec, t, h, w)
    _tail(spec, t, h, w)
    if spec.image_skip != "none":
        t.flops += IMAGE_SKIP_FLOPS[spec.image_skip] * n_sr
        t.live({"o": n_sr, "up": n_sr})
    model_bytes = math.ceil(t.binary_params / 8) + BYTES_FP32 * (t.params - t.binary_params)
    return {
        "bops": t.bops,
        "fp_macs": t.fp_macs,
        "flops": t.flops,
        "ops": t.bops / 64 + t.flops,
        "params": t.params,
        "binary_params": t.binary_params,
        "model_bytes": model_bytes,
        "peak_activation_bytes": BYTES_FP32 * t.peak,
    }

