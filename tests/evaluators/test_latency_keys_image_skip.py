"""Latency keys of the image-level skip and of the normalisation without mean: the units listed
by ``decompose`` mirror the built model (forward hooks), keys of older specs are unchanged, every
new key has a probe that runs, ``space_keys`` enumerates exactly what specs need, and
``LatencyTable.predict`` works for such specs (tiny input, few repeats; no timing asserted)."""
from __future__ import annotations

import random

import pytest
import torch

from evaluators.latency import context, keys as K, store
from evaluators.latency.enumeration import space_keys, spec_keys
from evaluators.latency.keys import decompose
from evaluators.latency.probes import make_probe
from space.builder import ImageSkip, build
from space.space import SearchSpace
from space.spec import IMAGE_SKIPS, LayerSpec, uniform

TINY = (3, 6, 5)
TAILS = ("fp_two_stage", "fp_one_stage", "binary_repeat")


def _spec(scale=2, tail="binary_repeat", **arch):
    return uniform(scale, 4, 1, layer=LayerSpec(skip="fp"), tail=tail,
                   tail_layer=LayerSpec(skip="fp"), **arch)


def _skip_calls(spec, size):
    """(mode, pre_shuffle, o shape, x shape) of every ImageSkip call of the built model."""
    model = build(spec).eval()
    calls = []
    for m in model.modules():
        if isinstance(m, ImageSkip):
            m.register_forward_hook(lambda mod, inp, out: calls.append(
                (mod.mode, mod.pre_shuffle, tuple(inp[0].shape), tuple(inp[1].shape))))
    with torch.no_grad():
        model(torch.rand(1, *size))
    return calls


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("skip", IMAGE_SKIPS)
def test_image_skip_unit_mirrors_the_built_model(tail, scale, skip):
    spec = _spec(scale, tail, image_skip=skip)
    keys = decompose(spec, TINY)
    units = [k for k in keys if k["kind"] == "image_skip"]
    calls = _skip_calls(spec, TINY)
    assert len(units) == len(calls) == (skip != "none")
    _, h, w = TINY
    for key, (mode, pre, o_shape, x_shape) in zip(units, calls):
        assert key == {"kind": "image_skip", "mode": skip, "at": "pre_shuffle" if pre else "output",
                       "s": scale, "h": h, "w": w}
        assert mode == skip and x_shape == (1, 3, h, w)
        assert pre == (skip == "nearest" and tail == "fp_one_stage")
        assert o_shape == ((1, 3 * scale ** 2, h, w) if pre else (1, 3, scale * h, scale * w))
    # the skip runs after the tail's units and before the output
    assert keys[-1]["kind"] == "output"
    if units:
        assert keys[-2] == units[0]


@pytest.mark.parametrize("tail", TAILS)
def test_keys_of_specs_with_the_old_defaults_are_unchanged(tail):
    spec = _spec(2, tail)
    keys = decompose(spec, TINY)
    assert keys == decompose(_spec(2, tail, input_mean="div2k", image_skip="none"), TINY)
    assert not any(k["kind"] == "image_skip" or "mean" in k for k in keys)
    strings = [K.canonical_key(k) for k in keys]
    assert strings[1] == '{"h":6,"head":"conv3","kind":"head","out":4,"w":5}'
    assert strings[-1] == '{"h":12,"kind":"output","w":10}'


def test_no_mean_marks_the_head_and_the_output_keys():
    keys = decompose(_spec(input_mean="none", residual_alignment=130), TINY)
    marked = [k["kind"] for k in keys if "mean" in k]
    assert marked == ["head", "output"] and all(k["mean"] is False for k in keys if "mean" in k)
    # everything else is the key of the default spec
    plain = decompose(_spec(), TINY)
    assert [{n: v for n, v in k.items() if n != "mean"} for k in keys] == plain


@pytest.mark.parametrize("key, out_shape", [
    ({"kind": "image_skip", "mode": "nearest", "at": "pre_shuffle", "s": 3, "h": 4, "w": 5},
     (1, 27, 4, 5)),
    ({"kind": "image_skip", "mode": "nearest", "at": "output", "s": 2, "h": 4, "w": 5},
     (1, 3, 8, 10)),
    ({"kind": "image_skip", "mode": "bilinear", "at": "output", "s": 4, "h": 4, "w": 5},
     (1, 3, 16, 20)),
    ({"kind": "image_skip", "mode": "bicubic", "at": "output", "s": 2, "h": 4, "w": 5},
     (1, 3, 8, 10)),
    ({"kind": "head", "head": "conv5", "out": 4, "h": 4, "w": 5, "mean": False}, (1, 4, 4, 5)),
    ({"kind": "output", "h": 8, "w": 10, "mean": False}, (1, 3, 8, 10)),
])
def test_new_keys_have_probes_that_run(key, out_shape):
    probe = make_probe(key, threads=1)
    probe.prepare()
    assert tuple(probe().shape) == out_shape


def test_image_skip_probe_computes_the_skip():
    key = {"kind": "image_skip", "mode": "bicubic", "at": "output", "s": 2, "h": 4, "w": 5}
    probe = make_probe(key, threads=1)
    o, x = probe.inputs
    want = o + torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic",
                                               align_corners=False)
    torch.testing.assert_close(probe(), want)


def test_space_keys_cover_exactly_what_specs_with_image_skips_need():
    space = SearchSpace.from_dict({
        "scale": 2,
        "arch": {"channels": [4], "blocks": [1], "tail": list(TAILS),
                 "input_mean": ["div2k", "none"], "image_skip": list(IMAGE_SKIPS)},
        "layer": {"parts": [1, 2]},
        "tail_layer": {"skip": ["fp"]},
    })
    size = (3, 4, 4)
    want = set(space_keys(space, size))
    rng = random.Random(0)
    got = set(spec_keys((space.random(rng) for _ in range(2000)), size))
    assert got == want
    kinds = [K.key_dict(k) for k in want if K.key_dict(k)["kind"] == "image_skip"]
    # 3 modes on the output of each tail (nearest there only for the staged tails) + pre_shuffle
    assert sorted((k["mode"], k["at"]) for k in kinds) == sorted(
        [("nearest", "output"), ("nearest", "pre_shuffle"), ("bilinear", "output"),
         ("bicubic", "output")])


def _table(tmp_path):
    from evaluators.latency import LatencyTable

    return LatencyTable(TINY, path=tmp_path / "lut.json", threads=1, warmup=1, repeats=3,
                        calibrate=False, retries=0)


def test_predict_works_for_specs_with_image_skips(tmp_path):
    table = _table(tmp_path)
    specs = [_spec(2, "binary_repeat", image_skip="bilinear", input_mean="none",
                   residual_alignment=130),
             _spec(2, "fp_one_stage", image_skip="nearest"),
             _spec(2, "fp_two_stage", image_skip="bicubic", input_mean="none")]
    for spec in specs:
        predicted = table.predict(spec)
        keys = table.entries(spec)
        skip_key = [k for k in keys if K.key_dict(k)["kind"] == "image_skip"]
        assert len(skip_key) == 1 and skip_key[0] in table
        assert predicted > 0
        assert predicted == sum(table.stats(k).min_ms for k in keys)
    # saved and reloaded with every entry, including the new kinds
    from evaluators.latency import LatencyTable

    again = LatencyTable(TINY, path=tmp_path / "lut.json", threads=1, strict=True)
    assert all(again.predict(s) == table.predict(s) for s in specs)
    assert again.summary()["kinds"]["image_skip"] == 3
