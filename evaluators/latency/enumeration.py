"""Every distinct latency unit a search space can produce, derived from the space definition.

The units of a network are those of ``space.layout.layout`` (``keys.decompose``); they
depend on the architecture only through the fields of ``KEY_FIELDS`` (channels C, head,
head_act, input_mean, body kind, block_residual, global_skip, tail, tail_stages, tail_conv_hr,
image_skip) and the per-conv choices; the number of blocks only repeats units (every block
has the same units at one width, except for the BAM history a body conv sees, which grows
with its position ``2 b + p`` up to ``ops.bam.MAX_DEPTH``: ``BAM_BLOCKS`` blocks show every
position) and ``residual_alignment`` is in no key. So the distinct keys
of a space are::

    overhead                                    one (LR size of the space)
    every FP unit of layout(one-block spec)     for every allowed combination of KEY_FIELDS
    bconv(shape, pos, choices)                  for every binary conv unit of those layouts
                                                (body C -> C at bam_position 0 .. MAX_DEPTH,
                                                as far as the space's largest ``blocks``
                                                reaches: the body is one BAM history chain
                                                and a conv sees min(bam_depth, pos) earlier
                                                inputs; tail C -> r^2 C;
                                                conv_hr C -> C at the SR size) and every
                                                combination of the allowed values of the
                                                work-changing choices of ``layer`` (body) or
                                                ``tail_layer`` (tail, conv_hr)

A new architecture choice therefore enters here by its name in ``KEY_FIELDS`` only.
Combinations are enumerated over the allowed values of the choices ``conv_work`` reads
(``keys.READ``); values that do the same work collapse into one key, so the count is
exact and usually far below the raw product. Granularity (layer / block / shared) restricts
which convs share a value, never which values one conv can take, so it does not enter.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Dict, List, Mapping, Tuple

from evaluators.latency.keys import READ, Key, canonical_key, conv_work, decompose, unit_key
from ops.bam import MAX_DEPTH
from space.layout import layout
from space.spec import CONVS_PER_BLOCK, STAGED_TAILS, ArchSpec, uniform


def conv_configs(dims: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Every combination of the allowed values of the work-changing choices in ``dims``
    (name -> object with ``.values``) as plain choice dicts."""
    names = sorted(READ)
    value_lists = [tuple(dims[n].values) for n in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*value_lists)]


def _add_unique(out: Dict[str, Key], keys) -> None:
    for k in keys:
        out.setdefault(canonical_key(k), k)


#: the architecture fields that change which units a network has or their keys (``blocks``
#: only repeats units; ``residual_alignment`` is in no key)
KEY_FIELDS = ("channels", "head", "head_act", "input_mean", "body", "block_residual",
              "global_skip", "tail", "tail_stages", "tail_conv_hr", "image_skip")
_ARCH_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ArchSpec)}
#: blocks of a spec whose body convs reach every BAM position 0 .. MAX_DEPTH
BAM_BLOCKS = -(-(MAX_DEPTH + 1) // CONVS_PER_BLOCK)


def _arch_values(arch: Mapping[str, Any], name: str) -> Tuple[Any, ...]:
    return tuple(arch.get(name, (_ARCH_DEFAULTS[name],)))


def space_keys(space: Any, input_size: Tuple[int, int, int]) -> List[str]:
    """The canonical keys of every distinct unit of ``space`` (a ``space.SearchSpace``) at LR
    input ``input_size``, sorted: the units of ``space.layout.layout`` of a one-block spec for
    every combination of the ``KEY_FIELDS`` values the space allows (``tail_conv_hr`` /
    ``tail_stages`` at their defaults under a non-staged tail, as ``space.space`` samples them;
    combinations that ``ArchSpec`` rejects are skipped), with every binary conv unit expanded over the
    work-changing choices of ``space.layer`` (body) or ``space.tail_layer`` (tail, conv_hr)."""
    _, H, W = input_size
    out: Dict[str, Key] = {}
    _add_unique(out, [{"kind": "overhead", "h": H, "w": W}])
    names = [n for n in KEY_FIELDS]
    # enough blocks to show every BAM position the space's largest network reaches
    blocks = min(max(space.arch["blocks"]), BAM_BLOCKS)
    convs: Dict[Tuple[Any, ...], None] = {}
    for combo in itertools.product(*(_arch_values(space.arch, n) for n in names)):
        arch = dict(zip(names, combo))
        if arch["tail"] not in STAGED_TAILS:  # conditional dimensions (space.space)
            arch.update(tail_conv_hr="none", tail_stages="staged")
        channels = arch.pop("channels")
        try:
            spec = uniform(space.scale, channels, blocks, **arch)
        except ValueError:
            continue
        for unit in layout(spec, input_size):
            if unit.binary:
                convs[(unit.role == "body", unit.in_ch, unit.out_ch, unit.kernel, unit.h,
                       unit.w, min(unit.bam_position, MAX_DEPTH))] = None
            else:
                _add_unique(out, [unit_key(unit)])
    layer_configs: Dict[bool, List[Dict[str, Any]]] = {}
    for body, cin, cout, k, h, w, pos in convs:
        if body not in layer_configs:
            layer_configs[body] = conv_configs(space.layer if body else space.tail_layer)
        _add_unique(out, (conv_work(layer, cin, cout, k, h, w, pos)
                          for layer in layer_configs[body]))
    return sorted(out)


def spec_keys(specs, input_size: Tuple[int, int, int]) -> List[str]:
    """The distinct canonical keys of a collection of specs (sorted)."""
    out: Dict[str, Key] = {}
    for spec in specs:
        _add_unique(out, decompose(spec, input_size))
    return sorted(out)
