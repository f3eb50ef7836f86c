"""The published binary-SR designs as fixed ``ArchSpec`` values (plus plain XNOR and full precision).

``get(name, scale=4, channels=64, blocks=16)`` returns the design at the papers' size (64 channels
x 16 residual blocks); smaller ``channels`` / ``blocks`` put the same recipe into a small search
space (``SearchSpace.params_of`` then gives the params to ``study.enqueue_trial``). ``names()``
lists the presets.

Every preset follows ``docs/reference_designs.md`` (what the authors' code does, design by design).
"Verified" below means read in the authors' own code (E2FIF: ``pppLang/E2FIF``; BBCU:
``Zj-BinXia/BBCU``; MSRResNet: ``XPixelGroup/BasicSR``); "reconstructed" means only the abstract
was available and the spec is our reading of it (EBSR/SCALES, LMB, BAM, Rectified-BSR). Every
binary conv of a body is one ``LayerSpec``; ``layers[2b]`` and ``layers[2b + 1]`` are the two
convs of residual block ``b``.

Backbone of the reconstructed methods. The LMB, BAM and Rectified-BSR abstracts do not describe a
backbone we could use, and the EBSR abstract only says it improves on SRResNet-E2FIF. So each of
these presets is **its method on the E2FIF backbone at the authors' input scale** (k = 255 on
``x - DIV2K mean``, FP one-stage tail, FP skip over every conv, BN after bias, ApproxSign): E2FIF is
the only binary SRResNet with per-conv skips whose code we read, EBSR states itself as an E2FIF
improvement, and the E2FIF code shows that k = 255 (not 1) is what makes that backbone train.
The method-specific choice is then the only difference from ``e2fif``, so each paper's ablation is
one field away (``benchmarks/presets.py`` runs those ablations).

Not expressible in the spec (all presets): the authors' Y-channel-only training of E2FIF (our
networks are RGB), BBCU's / MSRResNet's kaiming x 0.1 initialisation of the FP head and tail
convs, and BBCU's detached weight scale alpha (ours is differentiable, ``weight_scale =
channel_mean``).

Renamed: ``ebsr_light`` is now ``ebsr`` (no alias: nothing in the configs names it), ``bbcu`` is
split into ``bbcu_l`` and ``bbcu_m``.
"""
from __future__ import annotations

from typing import Callable, Dict, List

from space.spec import CONVS_PER_BLOCK, ArchSpec, LayerSpec, tail_conv_count

#: E2FIF's input scale (``rgb_range = 255`` with ``MeanShift``) and BBCU's residual alignment
E2FIF_K = 255.0
BBCU_K = 130.0

#: E2FIF's binary conv: Y = BN(sign(W) * sign(X) + b) + X, ApproxSign, identity weight STE,
#: no weight scale, no threshold (the second conv of a block, and the repeat-tail's upsampler)
E2FIF_LAYER = LayerSpec(act_estimator="approx_sign", weight_estimator="identity", bias=True,
                        norm="bn", skip="fp")
#: BBCU's binary conv: Y = RPReLU(alpha sign(W) * sign(X + b_c)) + X, no BN, no bias,
#: ApproxSign, clipped weight STE
BBCU_LAYER = LayerSpec(threshold="channel", weight_scale="channel_mean",
                       act_estimator="approx_sign", weight_estimator="clip",
                       nonlinearity="rprelu", nonlinearity_at="before_skip", skip="fp")


def _first(layer: LayerSpec) -> LayerSpec:
    """E2FIF's first conv of a block: the same conv, then LeakyReLU(0.1) after its skip."""
    return layer.replace(nonlinearity="leaky_relu", nonlinearity_at="after_skip")


def _spec(scale: int, channels: int, blocks: int, first: LayerSpec, second: LayerSpec,
          tail: str, tail_layers=(), **arch) -> ArchSpec:
    """Spec whose every block is (first, second); ``arch`` sets the other ArchSpec fields."""
    assert CONVS_PER_BLOCK == 2
    arch.setdefault("head", "conv3")
    return ArchSpec(scale=scale, channels=channels, blocks=blocks, tail=tail,
                    layers=(first, second) * blocks, tail_layers=tuple(tail_layers), **arch)


def _e2fif_backbone(scale: int, channels: int, blocks: int, layer: LayerSpec,
                    first: LayerSpec = None) -> ArchSpec:
    """E2FIF's default network with ``layer`` as every body conv (LeakyReLU after the first
    conv's skip): k = 255 on x - DIV2K mean, FP 3x3 head, no block residual, global skip, FP
    one-stage tail conv C -> 3 s^2 + PixelShuffle(s), no image skip."""
    return _spec(scale, channels, blocks, _first(layer) if first is None else first, layer,
                 "fp_one_stage", global_skip=True, block_residual=False,
                 residual_alignment=E2FIF_K, input_mean="div2k", image_skip="none",
                 head_act="none")


def e2fif(scale: int, channels: int, blocks: int) -> ArchSpec:
    """E2FIF: Lang, Zhang & Wei, "E2FIF: Push the Limit of Binarized Deep Imagery Super-Resolution
    Using End-to-End Full-Precision Information Flow", IEEE TIP 2023 (arXiv 2207.06893), the
    authors' default model (``model/edsr_e2fif.py``).

    Verified (authors' code): input 255 (x - DIV2K mean) and /255 + mean at the end
    (``residual_alignment = 255``, ``input_mean = div2k``); FP 3x3 head with bias, no activation;
    every binary conv Y = BN(sign(W) * sign(X) + b) + X (bias, then BN, then the FP skip; no
    weight scale, no threshold shift); block Z = BN(BC1(X)) + X, Z' = LeakyReLU_0.1(Z),
    out = BN(BC2(Z')) + Z' (LeakyReLU after the first conv's skip only, no block residual);
    ApproxSign activation gradient, identity weight STE; EDSR global skip; FP one-stage tail
    conv C -> 3 s^2 + PixelShuffle(s) at every scale (``tail = fp_one_stage``); no image skip.
    Not expressed: the authors train and test on the Y channel only; this preset is RGB.
    sign(0) = 0 there, +1 here (immaterial).
    """
    return _e2fif_backbone(scale, channels, blocks, E2FIF_LAYER)


def e2fif_repeat(scale: int, channels: int, blocks: int) -> ArchSpec:
    """E2FIF, the authors' repeat-tail variant (``model/edsr_repeattail.py``, ``UpSamper``).

    Verified (authors' code): the ``e2fif`` body and input scale, and a binary upsampler of one
    stage at every scale (x4 too: ``tail_stages = one``): binary conv C -> s^2 C with bias, BN over
    s^2 C channels, plus the input repeated s^2 times along channels (``tail = binary_repeat``,
    its conv the body's BC2 recipe: ``skip = fp``, bias, BN, ApproxSign, no nonlinearity), then
    PixelShuffle(s), then an FP 3x3 conv C -> 3 (no ``conv_hr``).
    Not verified: which tail produced each number of the TIP paper (the test script evaluates
    the FP-tail model, ``e2fif``).
    At the ``benchmarks.presets`` budget (16 ch x 2 blocks, x2, 500 proxy steps) it stays just
    short of bicubic - 1 dB on Set5 for seed 0 (32.58 / 32.92 / 32.74 dB, bicubic 33.67): a
    variant (``variants()``), not a preset.
    """
    base = e2fif(scale, channels, blocks)
    n = tail_conv_count("binary_repeat", scale, "one", "none")
    return base.replace(tail="binary_repeat", tail_stages="one", tail_layers=(E2FIF_LAYER,) * n)


def ebsr(scale: int, channels: int, blocks: int) -> ArchSpec:
    """EBSR / SCALES: Wei, Zhang, Liu, Li, Fan, Wang & Huang, "EBSR: Enhanced Binary Neural Network
    for Image Super-Resolution", arXiv 2303.12270 v1, 2023; v2 (2025, Wei, Liu, Fan, Wang, Huang &
    Li): "SCALES: Boost Binary Neural Network for Image Super-Resolution with Efficient Scalings".

    Reconstructed (abstracts only; no method section or code was reachable): on every body conv of
    the E2FIF backbone, channel-wise shifting of the binarizer (``threshold = channel``:
    sign(X - beta_c)) and the three input-dependent re-scalings of SCALES, applied after BN so BN
    cannot cancel them (``rescale = both``: layer-wise L(X), channel-wise G(X), spatial S(X), see
    ``ops.rescale``). The backbone (``e2fif`` at k = 255 with its FP one-stage tail) is an
    assumption: the abstract compares EBSR-light with SRResNet-E2FIF, which suggests but does not
    state it. Replaces the former ``ebsr_light`` preset (no alias kept).
    At the ``benchmarks.presets`` budget (16 ch x 2 blocks, x2, 500 proxy steps): Set5 32.68 /
    33.16 / 33.22 dB on seeds 0 / 1 / 2 with the relative-magnitude maps of ``ops.rescale``
    (32.64 / 33.09 / 33.18 with raw magnitudes; bicubic 33.67).
    """
    return _e2fif_backbone(scale, channels, blocks,
                           E2FIF_LAYER.replace(threshold="channel", rescale="both"))


def lmb(scale: int, channels: int, blocks: int) -> ArchSpec:
    """LMB: "Local Means Binary Networks for Image Super-Resolution" (title from a bibliographic
    listing that carries the seed abstract; authors and venue unconfirmed).

    Reconstructed (abstract only; no code found): every activation binarized against the mean of
    its 3x3 neighbourhood in the same channel (``threshold = local_mean``, ``threshold_kernel =
    3``; the box size and replicate padding are our reading of "the surroundings"); the
    "gradient approximator ... for updating binary weights" as the IR-Net-style k tanh(t w)
    surrogate with t annealed (``weight_estimator = tanh_anneal``, our reading of "adaptively").
    The abstract reports tests on VDSR and SRResNet but describes no backbone: we put LMB on the
    E2FIF backbone at k = 255 (module docstring); the per-conv FP skip, BN, bias, k and the FP
    one-stage tail are E2FIF's, not LMB's stated design.
    """
    return _e2fif_backbone(scale, channels, blocks,
                           E2FIF_LAYER.replace(threshold="local_mean", threshold_kernel=3,
                                               weight_estimator="tanh_anneal"))


def bam(scale: int, channels: int, blocks: int) -> ArchSpec:
    """BAM: Xin, Wang, Jiang, Li, Huang & Gao, "Binarized Neural Network for Single Image Super
    Resolution", ECCV 2020 (doi 10.1007/978-3-030-58548-8_6).

    Reconstructed (abstract only; no equations or code found): the binarizer of every body conv
    sees BN(sum_i beta_i sign(A_i)), the accumulated scaled one-bit values of its own input and of
    the previous binary conv's input (``bam_depth = 1`` on every body conv; ``ops.bam``); depth 1
    is our choice (the abstract says "multi-layer"). Whether the history crosses block boundaries
    is the builder's wiring (with a block-local history the first conv of a block accumulates
    only its own input). The weight accumulation (training-time only) and the paper's "efficient
    model structure based on the BAM" are not represented; the backbone is E2FIF's at k = 255
    (module docstring), not the BAM paper's.
    """
    return _e2fif_backbone(scale, channels, blocks, E2FIF_LAYER.replace(bam_depth=1))


def ari(scale: int, channels: int, blocks: int) -> ArchSpec:
    """Rectified-BSR: "Rectified Binary Network for Single Image Super Resolution" (title of the
    authors' otherwise empty repository ``jwxintt/Rectified-BSR``; authors, venue and doi
    unconfirmed).

    Reconstructed (abstract only): activation-rectified inference with P = 3 parts on every body
    conv (b_p = sign(X - t - tau_p), Y = sum_p gamma_p (sign(W) * b_p), ``parts = 3``), thresholds
    tau initialised from the activation statistics of the first training batch (``ops.ari``:
    tau[:, c] = RMS_c * linspace(-2/3, 2/3, 3)), and the adaptive approximation estimator
    (``act_estimator = aae``). P = 3, the tau rule and the AAE window start are ours; the backbone
    is E2FIF's at k = 255 (module docstring).
    """
    return _e2fif_backbone(scale, channels, blocks,
                           E2FIF_LAYER.replace(parts=3, act_estimator="aae"))


def _bbcu(scale: int, channels: int, blocks: int, **tail) -> ArchSpec:
    return _spec(scale, channels, blocks, BBCU_LAYER, BBCU_LAYER, head="conv3",
                 head_act="leaky_relu", global_skip=False, block_residual=False,
                 residual_alignment=BBCU_K, input_mean="none", image_skip="bilinear", **tail)


def bbcu_l(scale: int, channels: int, blocks: int) -> ArchSpec:
    """BBCU-L: Xia, Zhang, Wang, Tian, Yang, Timofte & Van Gool, "Basic Binary Convolution Unit for
    Binarized Image Restoration Network", ICLR 2023 (``BBCU-SR/bbcu/archs/bbcul_arch.py``).

    Verified (authors' code): raw RGB times k = 130, no mean (``residual_alignment = 130``,
    ``input_mean = none``); FP 3x3 head + LeakyReLU(0.1) (``head_act = leaky_relu``); every body
    conv Y = RPReLU(alpha sign(W) * sign(X + b_c)) + X: learnable channel shift initialised 0
    (``threshold = channel``), alpha = mean|W_o| (``weight_scale = channel_mean``), no bias, no
    BN, RPReLU before the skip, ApproxSign, clipped weight STE (``weight_estimator = clip``); two
    such convs per block, no block residual; no feature-level global skip
    (``global_skip = False``); MSRResNet's FP upsampler (conv C -> r^2 C, PixelShuffle, LeakyReLU
    per stage; x4 = two x2 stages: ``tail = fp_two_stage``) then FP ``conv_hr`` C -> C + LeakyReLU
    (``tail_conv_hr = fp``) then FP conv C -> 3; sr = (tail + bilinear(k x)) / k
    (``image_skip = bilinear``).
    Not expressed: alpha is detached in the authors' code (ours is differentiable); kaiming x 0.1
    init of head and tail convs.
    """
    return _bbcu(scale, channels, blocks, tail="fp_two_stage", tail_conv_hr="fp")


def bbcu_m(scale: int, channels: int, blocks: int) -> ArchSpec:
    """BBCU-M: the binary-upsampler model of the BBCU paper (``bbcum_arch.py``).

    Verified (authors' code): the ``bbcu_l`` head, body, input scale and bilinear image skip; the
    upsampler is binary (``BinaryUpConv2d``: shift, sign, alpha sign(W) conv C -> r^2 C, RPReLU,
    PixelShuffle(r) plus nearest upsampling of the stage input; ``tail = binary_repeat`` with the
    BBCU conv, whose repeat-channel skip before PixelShuffle is the nearest upsampling), x2/x3 one
    stage, x4 two x2 stages (``tail_stages = staged``); ``conv_hr`` is a binary BBCU conv C -> C
    with its own skip and RPReLU (``tail_conv_hr = binary``), then LeakyReLU, then FP conv C -> 3.
    Not expressed: detached alpha; kaiming x 0.1 init (the authors' init also reaches the binary
    upsampler convs and ``conv_hr``).
    """
    n = tail_conv_count("binary_repeat", scale, "staged", "binary")
    return _bbcu(scale, channels, blocks, tail="binary_repeat", tail_conv_hr="binary",
                 tail_layers=(BBCU_LAYER,) * n)


def xnor(scale: int, channels: int, blocks: int) -> ArchSpec:
    """Plain BNN: XNOR-Net convs (Rastegari, Ordonez, Redmon & Farhadi, ECCV 2016) in the body of
    SRResNet (Ledig et al., CVPR 2017), as the "plain BNN" row of the BAM paper.

    Y = alpha_o (sign(W) * sign(X)) followed by BN (``weight_scale = channel_mean``, ``norm = bn``);
    no FP skip around a conv: the SRResNet block residual (``block_residual = True``) and the
    global skip are the only FP paths; STE gradients; FP SRResNet upsampler (``fp_two_stage``);
    the first conv of a block ends with a LeakyReLU(0.1). No authors' code (it is a baseline
    row): the block structure and the tail are our assumptions, and so is the input scale
    ``255 x (x - DIV2K mean)``: the pixel range of EDSR's code (``rgb_range = 255``), which the
    binary-SR work of that time builds on (E2FIF's code, verified, uses it). At k = 1 the BN
    outputs of the binary convs (unit scale) swamp a residual stream of RMS ~0.3: at the
    ``benchmarks.presets`` budget (16 ch x 2 blocks, x2, 500 proxy steps) that preset reached
    Set5 30.02 / 29.28 / 30.58 dB for seeds 0/1/2, this one 33.48 / 33.79 / 33.75 (bicubic 33.67).
    """
    layer = LayerSpec(weight_scale="channel_mean", norm="bn")
    return _spec(scale, channels, blocks, layer.replace(nonlinearity="leaky_relu"), layer,
                 "fp_two_stage", global_skip=True, block_residual=True).replace(residual_alignment=255.0)


def fp(scale: int, channels: int, blocks: int) -> ArchSpec:
    """Full-precision reference of the same size: BasicSR's MSRResNet (Wang et al., ESRGAN ECCVW
    2018; ``XPixelGroup/BasicSR`` ``srresnet_arch.py``), the FP network BBCU-L binarises.

    Verified (BasicSR code): raw RGB in [0, 1], no mean, no scale (``input_mean = none``, k = 1);
    FP 3x3 head + LeakyReLU(0.1); ``blocks`` residual blocks conv3-ReLU-conv3 + x (``body = fp``,
    ``block_residual = True``); no feature-level global skip; upsampler stages conv C -> r^2 C,
    PixelShuffle, LeakyReLU (x4 two x2 stages), ``conv_hr`` + LeakyReLU, conv C -> 3; plus
    bilinear(x). Not expressed: the kaiming x 0.1 init of its convs. Which FP SRResNet produced
    the BAM paper's FP row is not known.
    """
    return ArchSpec(scale=scale, channels=channels, blocks=blocks, head="conv3",
                    head_act="leaky_relu", tail="fp_two_stage", tail_conv_hr="fp",
                    global_skip=False, block_residual=True, body="fp", residual_alignment=1.0,
                    input_mean="none", image_skip="bilinear")


_PRESETS: Dict[str, Callable[[int, int, int], ArchSpec]] = {
    "e2fif": e2fif, "ebsr": ebsr, "lmb": lmb, "bam": bam,
    "ari": ari, "bbcu_l": bbcu_l, "bbcu_m": bbcu_m, "xnor": xnor, "fp": fp,
}
#: designs of the authors' repositories that are not the published models: ``get`` builds them,
#: ``names`` (the presets a search is read against, enqueued and benchmarked) leaves them out.
#: ``e2fif_repeat``: E2FIF's repeat-tail file; the TIP paper's test script evaluates the FP-tail
#: model (``e2fif``), and at the ``benchmarks.presets`` budget the binary tail stays below
#: bicubic - 1 dB on Set5 for one seed of three (32.58 dB, bicubic 33.67).
_VARIANTS: Dict[str, Callable[[int, int, int], ArchSpec]] = {"e2fif_repeat": e2fif_repeat}


def names() -> List[str]:
    """The preset names (the published designs), in a fixed order."""
    return list(_PRESETS)


def variants() -> List[str]:
    """The names of the authors' other designs that ``get`` builds (not presets)."""
    return list(_VARIANTS)


def get(name: str, scale: int = 4, channels: int = 64, blocks: int = 16) -> ArchSpec:
    """The preset (or variant) ``name`` at the given scale and size (defaults: the papers' 64 x 16)."""
    fn = _PRESETS.get(name) or _VARIANTS.get(name)
    if fn is None:
        raise ValueError(f"unknown preset {name!r}; allowed presets: {names()}, variants: {variants()}")
    return fn(scale, channels, blocks)
