"""The published binary-SR designs as fixed ``ArchSpec`` values (plus plain XNOR and full precision).

``get(name, scale=4, channels=64, blocks=16)`` returns the design on the papers' SRResNet backbone
(64 channels x 16 residual blocks, FP 3x3 head, global skip); smaller ``channels`` / ``blocks`` put
the same per-layer recipe into a small search space (``SearchSpace.params_of`` then gives the params
to ``study.enqueue_trial``). ``names()`` lists the presets.

"Verified" below means checked against the authors' code or equations (see
``docs/seed_methods.md``); "reconstructed" means only the abstract was available and the spec is
the natural reading of it. Every binary conv of a body is one ``LayerSpec``; ``layers[2b]`` and
``layers[2b + 1]`` are the two convs of residual block ``b``.
"""
from __future__ import annotations

from typing import Callable, Dict, List

from space.spec import CONVS_PER_BLOCK, ArchSpec, LayerSpec, tail_conv_count


def _spec(scale: int, channels: int, blocks: int, first: LayerSpec, second: LayerSpec,
          tail: str, tail_layer: LayerSpec = LayerSpec(), block_residual: bool = False,
          **arch) -> ArchSpec:
    """SRResNet-shaped spec: every block is (first, second); binary tail convs use tail_layer.
    The block-level residual is off unless asked for: the designs put an FP skip on every conv."""
    assert CONVS_PER_BLOCK == 2
    return ArchSpec(scale=scale, channels=channels, blocks=blocks, head="conv3", tail=tail,
                    global_skip=True, block_residual=block_residual,
                    layers=(first, second) * blocks,
                    tail_layers=(tail_layer,) * tail_conv_count(tail, scale), **arch)


def e2fif(scale: int, channels: int, blocks: int) -> ArchSpec:
    """E2FIF: Lang, Zhang & Wei, "E2FIF: Push the Limit of Binarized Deep Imagery Super-Resolution
    Using End-to-End Full-Precision Information Flow", IEEE TIP 2023 (arXiv 2207.06893, 2022).

    Verified (authors' code): every binary conv is Y = BN(sign(W) * sign(X) + b) + X with no weight
    scale and no threshold shift; block: Z = BN(BC1(X)) + X, Z' = LeakyReLU_0.1(Z),
    out = BN(BC2(Z')) + Z' (so the LeakyReLU sits after the skip of the first conv only); ApproxSign
    activation gradient, identity weight STE; global long skip; binary upsampler with the
    repeat-channel FP skip (``tail = binary_repeat``, its convs configured like BC2).
    Reconstructed: BN + bias in the upsampler convs (we give them the body's BC2 recipe).
    """
    second = LayerSpec(act_estimator="approx_sign", bias=True, norm="bn", skip="fp")
    first = second.replace(nonlinearity="leaky_relu", nonlinearity_at="after_skip")
    return _spec(scale, channels, blocks, first, second, "binary_repeat", second)


def ebsr_light(scale: int, channels: int, blocks: int) -> ArchSpec:
    """EBSR-light: Wei, Zhang, Liu, Li, Fan, Wang & Huang, "EBSR: Enhanced Binary Neural Network
    for Image Super-Resolution", arXiv 2303.12270, 2023 (later titled SCALES).

    Reconstructed (abstract): the E2FIF unit plus channel-wise shifting of the binarizer
    (``threshold = channel``: sign(X - beta_c)) and both re-scalings after the conv (``rescale =
    both``: a learnable per-channel gamma and an input-dependent spatial map). The light model is the
    SRResNet-E2FIF backbone; the upsampler is E2FIF's binary one.
    """
    base = e2fif(scale, channels, blocks)
    upd = dict(threshold="channel", rescale="both")
    return base.replace(layers=tuple(layer.replace(**upd) for layer in base.layers),
                        tail_layers=tuple(layer.replace(**upd) for layer in base.tail_layers))


def lmb(scale: int, channels: int, blocks: int) -> ArchSpec:
    """LMB, "local mean binarization" for binary SR networks (tested by its authors on VDSR and
    SRResNet). Citation: the project's sources (``docs/seed_methods.md``) give the method from its
    abstract only, without authors or venue, and we could not confirm them, so none is given here.

    Reconstructed: every activation is binarized against the mean of its 3x3 neighbourhood in the
    same channel (``threshold = local_mean``, ``threshold_kernel = 3``); weight gradient through the
    IR-Net-style k*tanh(t*w) surrogate with t annealed (``weight_estimator = tanh_anneal``); the
    rest is the binary SRResNet of the comparisons (per-channel weight scale, BN, FP skip over each
    conv, FP upsampler).
    """
    layer = LayerSpec(threshold="local_mean", threshold_kernel=3, weight_estimator="tanh_anneal",
                      weight_scale="channel_mean", norm="bn", skip="fp")
    return _spec(scale, channels, blocks, layer.replace(nonlinearity="leaky_relu"), layer,
                 "fp_two_stage")


def bam(scale: int, channels: int, blocks: int) -> ArchSpec:
    """BAM: Xin, Wang, Jiang, Li, Huang & Gao, "Binarized Neural Network for Single Image Super
    Resolution", ECCV 2020.

    Verified (paper's equations): the binarizer of conv n sees BN(sum_{i=n-d..n} beta_i A_i), a
    learnable weighted running sum of the FP inputs of the earlier convs of the same block
    (``bam_depth = 1`` on the second conv of each block, which accumulates the first conv's input;
    the first conv has no earlier conv in its block, so ``bam_depth = 0`` there); per-channel
    weight scale; BN.
    Reconstructed: the weight accumulation (training-time reparametrisation, no inference cost) is
    left out; FP skip over each conv and the FP SRResNet upsampler.
    """
    second = LayerSpec(bam_depth=1, weight_scale="channel_mean", norm="bn", skip="fp")
    first = second.replace(bam_depth=0, nonlinearity="leaky_relu")
    return _spec(scale, channels, blocks, first, second, "fp_two_stage")


def ari(scale: int, channels: int, blocks: int) -> ArchSpec:
    """Rectified-BSR: Xin, Wang, Jiang, Li, Wang & Gao, "Rectified Binary Network for Single-Image
    Super-Resolution", IEEE TNNLS 2024 (doi 10.1109/TNNLS.2024.3438432).

    Reconstructed (abstract): activation-rectified inference with P = 3 parts (b_p = sign(X - tau_p),
    Y = sum_p gamma_p (sign(W) * b_p), ``parts = 3``: a 4-level thermometer activation at 3x the
    BOPs) and the adaptive approximation estimator (``act_estimator = aae``); BN, FP skip over each
    conv and the FP SRResNet upsampler as in the binary SRResNet it is compared with.
    """
    layer = LayerSpec(parts=3, act_estimator="aae", weight_scale="channel_mean", norm="bn",
                      skip="fp")
    return _spec(scale, channels, blocks, layer.replace(nonlinearity="leaky_relu"), layer,
                 "fp_two_stage")


def bbcu(scale: int, channels: int, blocks: int) -> ArchSpec:
    """BBCU: Xia, Zhang, Wang, Tian, Yang, Timofte & Van Gool, "Basic Binary Convolution Unit for
    Binarized Image Restoration Network", ICLR 2023.

    Verified (authors' code): Y = RPReLU(alpha sign(W) * sign(X + beta_c)) + X with no BN
    (``threshold = channel``, ``weight_scale = channel_mean``, ``nonlinearity = rprelu`` placed
    ``before_skip``, ``skip = fp``); residual alignment: the image is scaled by k = 130 before the
    network and back after (``residual_alignment = 130``); ApproxSign activation gradient.
    Reconstructed: the binary upsampler uses the same unit with the repeat-channel skip
    (``tail = binary_repeat``).
    """
    layer = LayerSpec(threshold="channel", weight_scale="channel_mean", act_estimator="approx_sign",
                      nonlinearity="rprelu", nonlinearity_at="before_skip", skip="fp")
    return _spec(scale, channels, blocks, layer, layer, "binary_repeat", layer,
                 residual_alignment=130.0)


def xnor(scale: int, channels: int, blocks: int) -> ArchSpec:
    """Plain BNN: XNOR-Net convs (Rastegari, Ordonez, Redmon & Farhadi, "XNOR-Net: ImageNet
    Classification Using Binary Convolutional Neural Networks", ECCV 2016) in the body of
    SRResNet (Ledig et al., CVPR 2017), as the "plain BNN" row of the BAM paper.

    Y = alpha_o (sign(W) * sign(X)) followed by BN (``weight_scale = channel_mean``, ``norm = bn``);
    no FP skip around a conv: the SRResNet block residual (``block_residual = True``) and the
    global skip are the only FP paths; STE gradients; FP SRResNet upsampler. The first conv of a
    block ends with a LeakyReLU(0.1).
    """
    layer = LayerSpec(weight_scale="channel_mean", norm="bn")
    return _spec(scale, channels, blocks, layer.replace(nonlinearity="leaky_relu"), layer,
                 "fp_two_stage", block_residual=True)


def fp(scale: int, channels: int, blocks: int) -> ArchSpec:
    """Full-precision reference of the same size: SRResNet without BN (as MSRResNet, Wang et al.,
    ESRGAN ECCVW 2018; SRResNet: Ledig et al., CVPR 2017): FP head, ``blocks`` residual blocks
    conv3-ReLU-conv3 + x (``body = fp``, ``block_residual = True``, so ``layers`` is empty), global skip, FP SRResNet
    upsampler. Verified: this is the backbone the published FP numbers use."""
    return ArchSpec(scale=scale, channels=channels, blocks=blocks, head="conv3",
                    tail="fp_two_stage", global_skip=True, block_residual=True, body="fp")


_PRESETS: Dict[str, Callable[[int, int, int], ArchSpec]] = {
    "e2fif": e2fif, "ebsr_light": ebsr_light, "lmb": lmb, "bam": bam, "ari": ari, "bbcu": bbcu,
    "xnor": xnor, "fp": fp,
}


def names() -> List[str]:
    """The preset names, in a fixed order."""
    return list(_PRESETS)


def get(name: str, scale: int = 4, channels: int = 64, blocks: int = 16) -> ArchSpec:
    """The preset ``name`` at the given scale and size (defaults: the papers' 64 x 16 SRResNet)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown preset {name!r}; allowed presets: {names()}")
    return _PRESETS[name](scale, channels, blocks)
