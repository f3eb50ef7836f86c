"""Keys of the latency table: what work each part of a network does, from the spec alone.

A key is a plain dict of JSON scalars (``{"kind": "bconv", "in": 64, ...}``); its canonical
string (``canonical_key``) is ``json.dumps(key, sort_keys=True, separators=(",", ":"))``:
stable across processes, Python versions and JSON round trips, and readable in error messages
(``key_dict(string)`` inverts it). ``family(key)`` sorts units into the two families the
measurement rotates apart: ``bconv`` (binary convs) and ``fp`` (everything else).

``decompose(spec, input_size)`` lists, in execution order, the call overhead and then one key
dict per unit of ``space.layout.layout(spec, input_size)`` (``unit_key``), the units of the
network that ``space.builder.build(spec)`` makes (N = 1, LR input ``3 x H x W``, output
``3 x sH x sW``). The latency of the network is predicted as the sum of these units::

    overhead   calling the compiled network once (input/output handling of the runtime)
    head       input normalisation (x - mean) * k  and the FP head conv 3 -> C     at H x W
               (the builder multiplies by k even when k = 1, so k is not part of any key;
               with ``input_mean = "none"`` the key holds ``"mean": false``: x * k only;
               with ``head_act = "leaky_relu"`` it holds ``"act": "leaky_relu"``)
    bconv      one binary conv through the packed runtime (body and binary tail)   at its input
    add        an elementwise add of two C x H x W maps (block residual, global skip)
    fp_block   one full-precision body block (fp body): conv3-ReLU-conv3 (+ input)
    fp_stage   one SRResNet upsampler stage: FP conv C -> r^2 C, PixelShuffle(r), LeakyReLU
    shuffle    PixelShuffle(r) of a binary upsampler stage (r^2 C x h x w -> C x rh x rw)
    fp_conv    an FP conv (the last conv C -> 3 of the staged tails; the FP ``conv_hr`` C -> C
               at the SR size)
    leaky_relu LeakyReLU(0.1) of a C x h x w map (after ``conv_hr``, FP or binary)
    espcn      the one-stage tail: FP conv C -> 3 s^2 and PixelShuffle(s)
    image_skip the image-level skip  o + up(x): ``mode`` (nearest | bilinear | bicubic), ``s``,
               LR ``h``, ``w``, and ``at``: ``output`` (added to the tail's 3 x sH x sW output,
               up = F.interpolate) or ``pre_shuffle`` (nearest on the one-stage tail: the
               3 s^2 x H x W conv output + x repeated s^2 times along channels; the espcn unit
               holds the conv and the shuffle)
    output     de-normalisation  o / k + mean  at 3 x sH x sW (``"mean": false``: o / k only)

Keys of specs without the newer fields (``input_mean = "div2k"``, ``image_skip = "none"``,
``head_act``, ``tail_conv_hr``, ``tail_stages`` at their defaults) are exactly the keys of
before, so a stored table stays valid for them. ``tail_stages = "one"`` needs no new kind: its
stage is an ``fp_stage`` / ``bconv`` + ``shuffle`` with ``r = s``; a binary ``conv_hr`` is a
``bconv`` C -> C at the SR size.

A ``bconv`` key holds only what changes the work of the packed runtime (``conv_work``):

    in, out, k, h, w   shapes (the fp skip's repeat r = out / in follows from them)
    threshold  'static' for zero and channel (both pack against a per-channel threshold vector,
               zero being the vector 0) | 'local_mean', with lm_k its box size (0 when static)
    parts      P bit planes, P xnor-popcount convs
    bam        number of maps the BAM binarizer input sums: 0 (no BAM) else 1 + bam_inputs,
               bam_inputs = min(d, bam_position) from ``space.layout`` (the body is one history
               chain across blocks: bam_position = 2 b + p; tail / conv_hr convs: 0); its BN is
               a per-channel affine that runs in any case when bam > 0
    spatial    EBSR spatial re-scaling S(x) (rescale spatial/both); the channel part folds
    skip       fp skip add (with repeat when out = r in)
    nonlin     'none' | 'prelu' (prelu and leaky_relu: the same PReLU with a slope vector) |
               'rprelu' (PReLU plus shift and bias)
    nonlin_at  'before_skip' only when it differs from 'after_skip' (a nonlinearity and a skip)

Left out because they never change the work: ``act_estimator`` and ``weight_estimator``
(training only, ``ops.choices.TRAINING_ONLY``), ``weight_scale`` (alpha folds into the per-part
scale), ``bias`` and ``norm`` (fold into the epilogue's scale and bias), and the channel part of
``rescale`` (folds into the epilogue's scale).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Mapping, Tuple

from ops.choices import TRAINING_ONLY
from space.layout import image_skip_at, layout

#: choices that only change the folded constants of the packed runtime's epilogue.
FOLDED = frozenset({"weight_scale", "bias", "norm"})
#: every choice name the key function reads or deliberately drops (checked by the tests).
READ = frozenset({"threshold", "threshold_kernel", "parts", "rescale", "bam_depth", "skip",
                  "nonlinearity", "nonlinearity_at"})
DROPPED = TRAINING_ONLY | FOLDED

Key = Dict[str, Any]


def canonical_key(key: Mapping[str, Any]) -> str:
    """The canonical string of a key dict (sorted keys, no whitespace)."""
    for name, value in key.items():
        if not isinstance(name, str) or not (value is None or isinstance(value, (str, int, float, bool))):
            raise ValueError(f"latency key field {name!r}={value!r} must be a str name with a JSON scalar value")
    return json.dumps(dict(key), sort_keys=True, separators=(",", ":"))


def key_dict(key: str) -> Dict[str, Any]:
    """Inverse of :func:`canonical_key`."""
    try:
        data = json.loads(key)
    except json.JSONDecodeError:
        raise ValueError(f"latency key {key!r} is not a canonical JSON key") from None
    if not isinstance(data, dict) or "kind" not in data:
        raise ValueError(f"latency key {key!r} must be a JSON object with a 'kind' field")
    return data


def family(key: str) -> str:
    """``bconv`` for a binary conv's canonical key, ``fp`` for every other unit."""
    return "bconv" if key_dict(key)["kind"] == "bconv" else "fp"


def _get(layer: Any, name: str) -> Any:
    return layer[name] if isinstance(layer, Mapping) else getattr(layer, name)


def conv_work(layer: Any, in_ch: int, out_ch: int, kernel: int, h: int, w: int, pos: int) -> Key:
    """The ``bconv`` key of one binary conv with choices ``layer`` (a LayerSpec or mapping);
    ``pos`` is its ``bam_position`` (``space.layout``: earlier inputs in its BAM history)."""
    threshold = _get(layer, "threshold")
    local = threshold == "local_mean"
    depth = _get(layer, "bam_depth")
    nonlin = _get(layer, "nonlinearity")
    skip = _get(layer, "skip") == "fp"
    nonlin_kind = {"none": "none", "prelu": "prelu", "leaky_relu": "prelu", "rprelu": "rprelu"}[nonlin]
    at = _get(layer, "nonlinearity_at")
    if nonlin_kind == "none" or not skip:
        at = "after_skip"
    return {
        "kind": "bconv", "in": in_ch, "out": out_ch, "k": kernel, "h": h, "w": w,
        "threshold": "local_mean" if local else "static",
        "lm_k": _get(layer, "threshold_kernel") if local else 0,
        "parts": _get(layer, "parts"),
        "bam": 0 if depth == 0 else 1 + min(depth, pos),
        "spatial": _get(layer, "rescale") in ("spatial", "both"),
        "skip": skip,
        "nonlin": nonlin_kind,
        "nonlin_at": at,
    }


def conv_choices(key: Mapping[str, Any]) -> Tuple[Dict[str, Any], int]:
    """A choice dict that does exactly the work of a ``bconv`` key, and the history length
    to feed it (inverse of :func:`conv_work` up to work-equivalent choices)."""
    bam = key["bam"]
    choices: Dict[str, Any] = {
        "threshold": "local_mean" if key["threshold"] == "local_mean" else "channel",
        "parts": key["parts"],
        "rescale": "spatial" if key["spatial"] else "none",
        "bam_depth": 0 if bam == 0 else max(1, bam - 1),
        "skip": "fp" if key["skip"] else "none",
        "nonlinearity": key["nonlin"],
        "nonlinearity_at": key["nonlin_at"],
    }
    if key["threshold"] == "local_mean":
        choices["threshold_kernel"] = key["lm_k"]
    history = 0 if bam == 0 else bam - 1
    return choices, history


def _head(u: Any) -> Key:
    key = {"kind": "head", "head": u.head, "out": u.out_ch, "h": u.h, "w": u.w}
    if not u.mean:
        key["mean"] = False
    if u.act != "none":
        key["act"] = u.act
    return key


def _output(u: Any) -> Key:
    return {"kind": "output", "h": u.h, "w": u.w, **({} if u.mean else {"mean": False})}


#: unit kind (``space.layout.UNIT_KINDS``) -> its key
UNIT_KEYS: Dict[str, Callable[[Any], Key]] = {
    "head": _head,
    "bconv": lambda u: conv_work(u.layer, u.in_ch, u.out_ch, u.kernel, u.h, u.w, u.bam_position),
    "fp_block": lambda u: {"kind": "fp_block", "c": u.channels, "h": u.h, "w": u.w,
                           "residual": u.residual},
    "add": lambda u: {"kind": "add", "c": u.channels, "h": u.h, "w": u.w},
    "fp_stage": lambda u: {"kind": "fp_stage", "c": u.channels, "r": u.r, "h": u.h, "w": u.w},
    "shuffle": lambda u: {"kind": "shuffle", "c": u.channels, "r": u.r, "h": u.h, "w": u.w},
    "fp_conv": lambda u: {"kind": "fp_conv", "in": u.in_ch, "out": u.out_ch, "k": u.kernel,
                          "h": u.h, "w": u.w},
    "leaky_relu": lambda u: {"kind": "leaky_relu", "c": u.channels, "h": u.h, "w": u.w},
    "espcn": lambda u: {"kind": "espcn", "c": u.channels, "s": u.s, "h": u.h, "w": u.w},
    "image_skip": lambda u: {"kind": "image_skip", "mode": u.mode, "at": u.at, "s": u.s,
                             "h": u.h, "w": u.w},
    "output": _output,
}


def unit_key(unit: Any) -> Key:
    """The key of one unit of ``space.layout.layout(spec, input_size)``."""
    return UNIT_KEYS[unit.kind](unit)


def decompose(spec: Any, input_size: Tuple[int, int, int]) -> List[Key]:
    """The key dicts of every timed unit of ``spec`` at LR input ``input_size`` (see above):
    the ``overhead`` of one call, then one key per unit of ``space.layout.layout``."""
    _, H, W = input_size
    return [{"kind": "overhead", "h": H, "w": W}] + [unit_key(u) for u in layout(spec, input_size)]


def image_skip_key(mode: str, tail: str, scale: int, h: int, w: int) -> "Key | None":
    """The ``image_skip`` key of ``mode`` on ``tail`` at LR ``h x w`` (None for mode none)."""
    if mode == "none":
        return None
    return {"kind": "image_skip", "mode": mode, "at": image_skip_at(mode, tail), "s": scale,
            "h": h, "w": w}
