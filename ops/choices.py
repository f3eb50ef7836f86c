"""The per-layer choices of a binary convolution: names, allowed values, neutral defaults.

This table is the single contract shared by ``ops`` (what a choice computes), ``space``
(``LayerSpec`` has exactly these fields, the YAML space lists subsets of these values),
``ops.native`` (which choices the packed runtime folds where) and the latency table
(which choices change the work). Every other package reads the names from here.

Order of operations inside ``BinaryConv2d`` (X is the FP input, history the FP inputs of
the earlier binary convs -- within a block, or across blocks when a caller threads one
``ops.bam.BamHistory`` through the body -- W the latent weights)::

    Xa  = bam(X, history)                    # bam_depth > 0: BN(sum_i beta_i * sign(A_i))  (BAM)
    t   = threshold(Xa)                      # zero: 0 | channel: beta_c | local_mean: boxmean_k(Xa)
    b_p = sign(Xa - t - tau_p)               # p = 1..parts (tau_1 = 0 and no tau when parts == 1;
                                             # tau set from the first training batch, ops.ari)
    Wb  = sign(W) * alpha                    # weight_scale: none -> 1 | channel_mean -> mean|W_o|
    Y   = sum_p gamma_p * conv(b_p, Wb)      # ARI; gamma only when parts > 1
    Y   = Y + bias                           # bias
    Y   = BN(Y)                              # norm
    Y   = Y * L(X) * G(X) * S(X)             # rescale (EBSR/SCALES, input-dependent, after BN so
                                             # BN cannot cancel it): channel -> L and G (layer-
                                             # wise and channel-wise), spatial -> S, both -> all
                                             # three (ops.rescale)
    Y   = nonlin(Y)                          # when nonlinearity_at == 'before_skip' (BBCU)
    Y   = Y + skip(X)                        # skip: fp -> X, or X repeated r times when out = r*in
    Y   = nonlin(Y)                          # when nonlinearity_at == 'after_skip'  (E2FIF)

Padding convention (shared with the native kernel): 'same' padding with zeros *in the sign
domain*. ``conv(b, Wb)`` is ``torch.nn.functional.conv2d(b, sign(W), padding=k // 2)`` where
``b`` is in {-1, +1}: a tap that falls outside the image contributes 0, exactly as in a float
conv of sign(x) with ordinary zero padding. The native kernel reproduces this by counting only
the taps inside the image (``valid_bits - 2 * popcount(x xor w)`` over those taps).
sign(0) = +1 everywhere.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

#: name -> (neutral default, allowed values). The default of every choice is its neutral
#: value, so ``BinaryConv2d(c, c, 3)`` is the plain XNOR conv ``conv2d(sign(x), sign(w))``.
CHOICES: Dict[str, Tuple[Any, Tuple[Any, ...]]] = {
    # activation binarization
    "threshold": ("zero", ("zero", "channel", "local_mean")),
    "threshold_kernel": (3, (3, 5)),  # box size k of the local_mean threshold (LMB)
    "parts": (1, (1, 2, 3, 4)),  # ARI interval count P (Rectified-BSR)
    "act_estimator": ("ste", ("ste", "approx_sign", "aae")),
    # weight binarization
    "weight_scale": ("none", ("none", "channel_mean")),
    "weight_estimator": ("identity", ("identity", "clip", "tanh_anneal")),
    # around the conv
    # EBSR / SCALES input-dependent re-scaling after BN: channel -> L(X) G(X), spatial -> S(X)
    "rescale": ("none", ("none", "channel", "spatial", "both")),
    "bam_depth": (0, (0, 1, 2, 3)),  # BAM activation accumulation depth
    "skip": ("none", ("none", "fp")),  # E2FIF full-precision skip (repeat-channel when out = r*in)
    "norm": ("none", ("none", "bn")),
    "nonlinearity": ("none", ("none", "prelu", "rprelu", "leaky_relu")),
    "nonlinearity_at": ("after_skip", ("after_skip", "before_skip")),
    "bias": (False, (False, True)),
}

#: choices that only change training (gradients), never the inference work.
TRAINING_ONLY = frozenset({"act_estimator", "weight_estimator"})


def defaults() -> Dict[str, Any]:
    """Every choice at its neutral value."""
    return {name: default for name, (default, _) in CHOICES.items()}


def validate_choice(name: str, value: Any) -> Any:
    """Return ``value`` if it is allowed for choice ``name``; else raise ``ValueError``
    naming the argument, the value and the allowed values."""
    if name not in CHOICES:
        raise ValueError(
            f"unknown choice {name!r} (value {value!r}); allowed choices: {sorted(CHOICES)}"
        )
    allowed = CHOICES[name][1]
    # bool is a subclass of int: 1 must not pass for True, nor True for 1.
    ok = any(value == a and type(value) is type(a) for a in allowed)
    if not ok:
        raise ValueError(
            f"invalid value {value!r} for choice {name!r}; allowed values: {list(allowed)}"
        )
    return value


def resolve(choices: Mapping[str, Any]) -> Dict[str, Any]:
    """Fill the neutral defaults in and validate every given choice."""
    out = defaults()
    for name, value in choices.items():
        out[name] = validate_choice(name, value)
    return out
