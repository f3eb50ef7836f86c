"""Every distinct latency unit a search space can produce, derived from the space definition.

The units of a network (``latency_keys.decompose``) depend on the architecture only through
channels C, head, body kind, ``block_residual``, tail and the per-conv choices; the number of
blocks and ``global_skip`` only repeat or drop units (the ``add`` key is the same for every
add at one width). So the distinct keys of a space are::

    overhead                                         one (LR size of the space)
    output(mean)        for mean in input_mean (``"mean": false`` only for input_mean none)
    head(h, C, mean)    for h in heads, C in channels, mean in input_mean
    image_skip(mode, at) for mode in image_skip (not none) and every tail (``at`` = pre_shuffle
                        for nearest on fp_one_stage, else output)
    add(C)              for C in channels
    fp_block(C, res)    for C in channels, res in block_residual       (when body fp allowed)
    bconv(C->C, pos, choices)  for C in channels, pos in {0, 1} and every combination of the
                        allowed values of the work-changing layer choices   (body binary)
    per tail: fp_stage(C, r, stage size) + fp_conv | espcn(C, s) |
              bconv(C -> r^2 C, stage size, tail choices) + shuffle + fp_conv

Combinations are enumerated over the allowed values of the choices ``conv_work`` reads
(``latency_keys.READ``); values that do the same work collapse into one key, so the count is
exact and usually far below the raw product. Granularity (layer / block / shared) restricts
which convs share a value, never which values one conv can take, so it does not enter.
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, List, Mapping, Tuple

from evaluators.latency_keys import READ, Key, conv_work, decompose, image_skip_key
from evaluators.latency_store import canonical_key


def _stages(scale: int) -> Tuple[int, ...]:
    return (2, 2) if scale == 4 else (scale,)


def conv_configs(dims: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Every combination of the allowed values of the work-changing choices in ``dims``
    (name -> object with ``.values``) as plain choice dicts."""
    names = sorted(READ)
    value_lists = [tuple(dims[n].values) for n in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*value_lists)]


def _add_unique(out: Dict[str, Key], keys) -> None:
    for k in keys:
        out.setdefault(canonical_key(k), k)


def space_keys(space: Any, input_size: Tuple[int, int, int]) -> List[str]:
    """The canonical keys of every distinct unit of ``space`` (a ``space.SearchSpace``) at LR
    input ``input_size``, sorted."""
    _, H, W = input_size
    s = space.scale
    arch = space.arch
    out: Dict[str, Key] = {}
    means = [{"mean": False} if m == "none" else {} for m in arch.get("input_mean", ("div2k",))]
    _add_unique(out, [{"kind": "overhead", "h": H, "w": W}])
    _add_unique(out, ({"kind": "output", "h": s * H, "w": s * W, **m} for m in means))
    for mode in arch.get("image_skip", ("none",)):
        _add_unique(out, (k for k in (image_skip_key(mode, t, s, H, W) for t in arch["tail"])
                          if k is not None))
    body_convs = conv_configs(space.layer) if "binary" in arch["body"] else []
    tail_convs = conv_configs(space.tail_layer) if "binary_repeat" in arch["tail"] else []
    for C in arch["channels"]:
        _add_unique(out, ({"kind": "head", "head": h, "out": C, "h": H, "w": W, **m}
                          for h in arch["head"] for m in means))
        if any(arch["global_skip"]) or ("binary" in arch["body"] and any(arch["block_residual"])):
            _add_unique(out, [{"kind": "add", "c": C, "h": H, "w": W}])
        if "fp" in arch["body"]:
            _add_unique(out, ({"kind": "fp_block", "c": C, "h": H, "w": W, "residual": r}
                              for r in arch["block_residual"]))
        for layer in body_convs:
            _add_unique(out, (conv_work(layer, C, C, 3, H, W, pos) for pos in (0, 1)))
        for tail in arch["tail"]:
            h, w = H, W
            if tail == "fp_one_stage":
                _add_unique(out, [{"kind": "espcn", "c": C, "s": s, "h": H, "w": W}])
                continue
            for r in _stages(s):
                if tail == "fp_two_stage":
                    _add_unique(out, [{"kind": "fp_stage", "c": C, "r": r, "h": h, "w": w}])
                else:
                    _add_unique(out, (conv_work(layer, C, r * r * C, 3, h, w, 0) for layer in tail_convs))
                    _add_unique(out, [{"kind": "shuffle", "c": C, "r": r, "h": h, "w": w}])
                h, w = h * r, w * r
            _add_unique(out, [{"kind": "fp_conv", "in": C, "out": 3, "k": 3, "h": h, "w": w}])
    return sorted(out)


def spec_keys(specs, input_size: Tuple[int, int, int]) -> List[str]:
    """The distinct canonical keys of a collection of specs (sorted)."""
    out: Dict[str, Key] = {}
    for spec in specs:
        _add_unique(out, decompose(spec, input_size))
    return sorted(out)
