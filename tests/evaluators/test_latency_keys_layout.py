"""Latency keys read the layout: ``decompose`` is the overhead then one key per unit of
``space.layout.layout``; the keys of the head / tail options written out; their probes run
the builder's modules; ``space_keys`` enumerates exactly the keys specs with the options need."""
from __future__ import annotations

import random

import pytest
import torch

from evaluators.latency.enumeration import space_keys, spec_keys
from evaluators.latency.keys import decompose, unit_key
from evaluators.latency.probes import make_probe
from space.layout import layout
from space.space import SearchSpace
from space.spec import ArchSpec, LayerSpec, tail_conv_count, uniform

TINY = (3, 3, 2)
TL = LayerSpec(skip="fp")


def _spec(**arch):
    arch.setdefault("tail", "binary_repeat")
    return uniform(4, 4, 1, LayerSpec(skip="fp"), TL, **arch)


@pytest.mark.parametrize("arch", [
    {}, {"head_act": "leaky_relu"}, {"tail_conv_hr": "fp"}, {"tail_conv_hr": "binary"},
    {"tail_stages": "one", "tail_conv_hr": "binary", "image_skip": "nearest"},
    {"tail": "fp_two_stage", "tail_stages": "one", "tail_conv_hr": "fp", "input_mean": "none"},
    {"tail": "fp_one_stage", "head_act": "leaky_relu", "image_skip": "nearest"},
])
def test_decompose_is_overhead_then_one_key_per_layout_unit(arch):
    spec = _spec(**arch)
    keys = decompose(spec, TINY)
    units = layout(spec, TINY)
    assert keys[0] == {"kind": "overhead", "h": 3, "w": 2}
    assert len(keys) == len(units) + 1
    assert [k["kind"] for k in keys[1:]] == [u.kind for u in units]
    assert keys[1:] == [unit_key(u) for u in units]


def test_keys_of_every_option_written_out():
    spec = _spec(head_act="leaky_relu", tail_stages="one", tail_conv_hr="binary",
                 block_residual=False, global_skip=False)
    bconv = {"kind": "bconv", "k": 3, "threshold": "static", "lm_k": 0, "parts": 1, "bam": 0,
             "spatial": False, "skip": True, "nonlin": "none", "nonlin_at": "after_skip"}
    assert decompose(spec, TINY) == [
        {"kind": "overhead", "h": 3, "w": 2},
        {"kind": "head", "head": "conv3", "out": 4, "h": 3, "w": 2, "act": "leaky_relu"},
        {**bconv, "in": 4, "out": 4, "h": 3, "w": 2},
        {**bconv, "in": 4, "out": 4, "h": 3, "w": 2},
        {**bconv, "in": 4, "out": 64, "h": 3, "w": 2},               # one stage C -> 16 C
        {"kind": "shuffle", "c": 4, "r": 4, "h": 3, "w": 2},
        {**bconv, "in": 4, "out": 4, "h": 12, "w": 8},               # binary conv_hr at SR
        {"kind": "leaky_relu", "c": 4, "h": 12, "w": 8},
        {"kind": "fp_conv", "in": 4, "out": 3, "k": 3, "h": 12, "w": 8},
        {"kind": "output", "h": 12, "w": 8},
    ]
    fp = uniform(4, 4, 1, body="fp", tail="fp_two_stage", tail_stages="one", tail_conv_hr="fp")
    tail = decompose(fp, TINY)[-5:-1]
    assert tail == [
        {"kind": "fp_stage", "c": 4, "r": 4, "h": 3, "w": 2},
        {"kind": "fp_conv", "in": 4, "out": 4, "k": 3, "h": 12, "w": 8},
        {"kind": "leaky_relu", "c": 4, "h": 12, "w": 8},
        {"kind": "fp_conv", "in": 4, "out": 3, "k": 3, "h": 12, "w": 8},
    ]


def test_specs_without_the_options_have_no_new_key():
    for tail in ("fp_two_stage", "fp_one_stage", "binary_repeat"):
        keys = decompose(uniform(4, 4, 1, TL, TL, tail=tail), TINY)
        assert all(k["kind"] != "leaky_relu" and "act" not in k for k in keys)


@pytest.mark.parametrize("key, out_shape", [
    ({"kind": "head", "head": "conv5", "out": 4, "h": 3, "w": 2, "act": "leaky_relu"}, (1, 4, 3, 2)),
    ({"kind": "leaky_relu", "c": 4, "h": 6, "w": 4}, (1, 4, 6, 4)),
    ({"kind": "fp_stage", "c": 4, "r": 4, "h": 3, "w": 2}, (1, 4, 12, 8)),
    ({"kind": "fp_stage", "c": 4, "r": 2, "h": 3, "w": 2}, (1, 4, 6, 4)),
    ({"kind": "fp_conv", "in": 4, "out": 4, "k": 3, "h": 6, "w": 4}, (1, 4, 6, 4)),
])
def test_probes_of_the_new_keys_run_the_builders_modules(key, out_shape):
    probe = make_probe(key, threads=1)
    probe.prepare()
    out = probe()
    assert tuple(out.shape) == out_shape


def test_head_probe_applies_the_leaky_relu():
    from evaluators.latency.probes import _Head

    for mean in (True, False):
        head = _Head("conv3", 4, mean, "leaky_relu").eval()
        x = torch.rand(1, 3, 3, 2)
        m = head.mean if mean else 0.0
        with torch.no_grad():
            conv = head.head((x - m) * 1.0)
            assert torch.equal(head(x), torch.where(conv >= 0, conv, 0.1 * conv))
    assert _Head("conv3", 4, True).act is None  # the probe of the keys of before


def test_bconv_probe_of_a_binary_conv_hr_runs():
    spec = _spec(tail_conv_hr="binary")
    key = [k for k in decompose(spec, TINY) if k["kind"] == "bconv"][-1]
    assert (key["in"], key["out"], key["h"], key["w"]) == (4, 4, 12, 8)
    probe = make_probe(key, threads=1)
    probe.prepare()
    assert tuple(probe().shape) == (1, 4, 12, 8)


# -- enumeration -------------------------------------------------------------------------
OPTIONS = {"head_act": ("none", "leaky_relu"), "tail_conv_hr": ("none", "fp", "binary"),
           "tail_stages": ("staged", "one")}


def _space():
    base = SearchSpace.from_dict({
        "scale": 4,
        "arch": {"channels": [4], "blocks": [1], "body": ["binary", "fp"],
                 "tail": ["fp_two_stage", "fp_one_stage", "binary_repeat"],
                 "image_skip": ["none", "nearest"], "input_mean": ["div2k", "none"]},
        "layer": {"parts": [1, 2]},
        "tail_layer": {"threshold": ["zero", "local_mean"], "skip": ["none", "fp"]},
    })
    return SearchSpace(base.scale, dict(base.arch, **OPTIONS), base.layer, base.tail_layer)


def _random_spec(space, rng):
    """A spec drawn per dimension of ``space`` (arch and every layer choice); None when the
    drawn combination is one ArchSpec rejects (an option of the staged tails on fp_one_stage)."""
    a = {name: rng.choice(values) for name, values in space.arch.items()}

    def layer(dims):
        return LayerSpec(**{n: rng.choice(d.values) for n, d in dims.items()})

    n_body = 2 * a["blocks"] if a["body"] == "binary" else 0
    try:
        n_tail = tail_conv_count(a["tail"], space.scale, a["tail_stages"], a["tail_conv_hr"])
        return ArchSpec(scale=space.scale, layers=tuple(layer(space.layer) for _ in range(n_body)),
                        tail_layers=tuple(layer(space.tail_layer) for _ in range(n_tail)), **a)
    except ValueError:
        return None


def test_space_keys_cover_exactly_what_specs_with_the_options_need():
    space = _space()
    rng = random.Random(0)
    specs = [s for s in (_random_spec(space, rng) for _ in range(4000)) if s is not None]
    assert {(s.tail, s.tail_conv_hr, s.tail_stages) for s in specs} >= {
        ("binary_repeat", "binary", "one"), ("fp_two_stage", "fp", "staged")}
    assert set(spec_keys(specs, TINY)) == set(space_keys(space, TINY))
