"""``space.layout.layout``: the one description of a network. Unit lists written out by hand
for a few specs; shapes with and without an input size; errors; and the builder's modules
agree with the layout unit by unit (module counts per unit kind, and the binary / FP convs
seen by forward hooks, in order, have the layout's shapes and choices)."""
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from ops import BinaryBlock, BinaryConv2d
from space import layout as L
from space.builder import FPBlock, ImageSkip, build
from space.space import SearchSpace
from space.spec import LayerSpec, tail_conv_count, uniform

DEFAULT_SPACE = Path(__file__).resolve().parents[2] / "configs" / "space" / "default.yaml"
A, B, T, R = (LayerSpec(skip="fp"), LayerSpec(parts=2), LayerSpec(skip="fp", bias=True),
              LayerSpec(nonlinearity="rprelu"))


def _kinds(units):
    return [u.kind for u in units]


def test_binary_x4_with_every_head_and_tail_option_written_out():
    spec = uniform(4, 8, 2, A, T, tail="binary_repeat", tail_conv_hr="binary",
                   head_act="leaky_relu", image_skip="bilinear", input_mean="none",
                   residual_alignment=130.0)
    spec = spec.replace(layers=(A, B, B, A), tail_layers=(T, T, R))
    units = L.layout(spec, (3, 5, 7))
    want = [
        L.HeadUnit("conv3", 3, 8, "leaky_relu", False, 130.0, 5, 7),
        L.BinaryConvUnit("body", 0, 8, 8, A, block=0, position=0, h=5, w=7,
                         bam_position=0),
        L.BinaryConvUnit("body", 1, 8, 8, B, block=0, position=1, h=5, w=7,
                         bam_position=1),
        L.AddUnit("block_residual", 8, 0, 5, 7),
        L.BinaryConvUnit("body", 2, 8, 8, B, block=1, position=0, h=5, w=7,
                         bam_position=2),
        L.BinaryConvUnit("body", 3, 8, 8, A, block=1, position=1, h=5, w=7,
                         bam_position=3),
        L.AddUnit("block_residual", 8, 1, 5, 7),
        L.AddUnit("global_skip", 8, None, 5, 7),
        L.BinaryConvUnit("tail", 0, 8, 32, T, h=5, w=7),
        L.ShuffleUnit(2, 8, 5, 7),
        L.BinaryConvUnit("tail", 1, 8, 32, T, h=10, w=14),
        L.ShuffleUnit(2, 8, 10, 14),
        L.BinaryConvUnit("conv_hr", 2, 8, 8, R, h=20, w=28),
        L.LeakyReLUUnit("conv_hr", 8, 0.1, 20, 28),
        L.FPConvUnit("last", 8, 3, 3, 20, 28),
        L.ImageSkipUnit("bilinear", "output", 4, 5, 7),
        L.OutputUnit(False, 130.0, 20, 28),
    ]
    assert list(units) == want


def test_fp_body_one_stage_tails_written_out():
    spec = uniform(4, 6, 2, body="fp", tail="fp_two_stage", tail_stages="one",
                   tail_conv_hr="fp", global_skip=False, head="conv5")
    assert list(L.layout(spec, (3, 4, 3))) == [
        L.HeadUnit("conv5", 5, 6, "none", True, 1.0, 4, 3),
        L.FPBlockUnit(0, 6, True, 4, 3),
        L.FPBlockUnit(1, 6, True, 4, 3),
        L.FPStageUnit(0, 4, 6, 4, 3),
        L.FPConvUnit("conv_hr", 6, 6, 3, 16, 12),
        L.LeakyReLUUnit("conv_hr", 6, 0.1, 16, 12),
        L.FPConvUnit("last", 6, 3, 3, 16, 12),
        L.OutputUnit(True, 1.0, 16, 12),
    ]
    one = uniform(4, 6, 1, A, T, tail="binary_repeat", tail_stages="one", block_residual=False)
    units = L.layout(one, (3, 4, 3))
    assert _kinds(units) == ["head", "bconv", "bconv", "add", "bconv", "shuffle", "fp_conv",
                             "output"]
    assert (units[4].out_ch, units[4].index, units[5].r) == (6 * 16, 0, 4)


def test_espcn_and_pre_shuffle_skip():
    spec = uniform(3, 4, 1, A, tail="fp_one_stage", image_skip="nearest")
    units = L.layout(spec, (3, 2, 2))
    assert units[-3:] == (L.ESPCNUnit(4, 3, 2, 2), L.ImageSkipUnit("nearest", "pre_shuffle", 3, 2, 2),
                          L.OutputUnit(True, 1.0, 6, 6))
    assert L.layout(spec.replace(image_skip="bicubic"))[-2].at == "output"


def test_without_input_size_every_shape_is_none_and_the_rest_equal():
    spec = uniform(4, 8, 1, A, T, tail="binary_repeat", tail_conv_hr="binary")
    sized, bare = L.layout(spec, (3, 6, 6)), L.layout(spec)
    assert len(sized) == len(bare)
    for a, b in zip(sized, bare):
        assert (b.h, b.w) == (None, None)
        assert a.__class__ is b.__class__ and a.kind in L.UNIT_KINDS
        assert a.__class__(**{**a.__dict__, "h": None, "w": None}) == b


@pytest.mark.parametrize("size", [(1, 4, 4), (3, 0, 4), (3, 4), "3x4x4", (3, 4.0, 4)])
def test_bad_input_size_and_spec_are_rejected(size):
    spec = uniform(2, 4, 1)
    with pytest.raises(ValueError, match=r"input_size .*allowed: \(3, H, W\)"):
        L.layout(spec, size)
    with pytest.raises(ValueError, match="ArchSpec"):
        L.layout({"scale": 2})


# -- the builder agrees with the layout ------------------------------------------------------
def _specs(n, seed):
    """Random small specs of the default space, with random head / tail options."""
    rng = random.Random(seed)
    space = SearchSpace.from_yaml(DEFAULT_SPACE)
    out = []
    for _ in range(n):
        s = space.random(rng)
        body = rng.choice(["binary", "binary", "fp"])
        s = s.replace(channels=4, blocks=2, body=body,
                      layers=s.layers[:4] if body == "binary" else ())
        scale = rng.choice([2, 3, 4])
        staged = s.tail != "fp_one_stage"
        hr = rng.choice(["none", "fp", "binary"]) if staged else "none"
        stages = rng.choice(["staged", "one"]) if staged else "staged"
        layer = s.tail_layers[0] if s.tail_layers else LayerSpec(skip="fp")
        out.append(s.replace(scale=scale, tail_conv_hr=hr, tail_stages=stages,
                             head_act=rng.choice(["none", "leaky_relu"]),
                             tail_layers=(layer,) * tail_conv_count(s.tail, scale, stages, hr)))
    return out


def _modules(module):
    """Every module of ``module``, not looking inside a BinaryConv2d (its own activations)."""
    yield module
    if not isinstance(module, BinaryConv2d):
        for child in module.children():
            yield from _modules(child)


def _count(model, cls, exact=False):
    return sum((type(m) is cls) if exact else isinstance(m, cls) for m in _modules(model))


@pytest.mark.parametrize("spec", _specs(24, seed=3), ids=lambda s: s.id)
def test_builder_modules_per_unit_kind_equal_the_layout(spec):
    units = L.layout(spec)
    n = {kind: sum(u.kind == kind for u in units) for kind in L.UNIT_KINDS}
    model = build(spec)
    assert _count(model, BinaryConv2d) == n["bconv"]
    assert _count(model, BinaryBlock) == (spec.blocks if spec.body == "binary" else 0)
    assert _count(model, FPBlock) == n["fp_block"]
    assert _count(model, nn.PixelShuffle) == n["shuffle"] + n["fp_stage"] + n["espcn"]
    head_act = sum(u.kind == "head" and u.act == "leaky_relu" for u in units)
    assert _count(model, nn.LeakyReLU) == n["fp_stage"] + n["leaky_relu"] + head_act
    fp_convs = 1 + n["fp_stage"] + n["fp_conv"] + n["espcn"] + 2 * n["fp_block"]
    assert _count(model, nn.Conv2d, exact=True) == fp_convs
    assert _count(model, ImageSkip) == n["image_skip"]
    residual = [b.residual for b in model.modules() if isinstance(b, BinaryBlock)]
    assert sum(residual) == sum(u.kind == "add" and u.role == "block_residual" for u in units)
    assert model.global_skip == any(u.kind == "add" and u.role == "global_skip" for u in units)


@pytest.mark.parametrize("spec", _specs(12, seed=5), ids=lambda s: s.id)
def test_convs_seen_in_forward_have_the_layout_shapes_and_choices(spec):
    size = (3, 5, 4)
    model = build(spec).eval()
    seen = []
    for m in model.modules():
        if isinstance(m, BinaryConv2d) or type(m) is nn.Conv2d:
            m.register_forward_hook(lambda mod, inp, out: seen.append(
                (type(mod) is not nn.Conv2d, inp[0].shape[1], out.shape[1], inp[0].shape[2],
                 inp[0].shape[3], getattr(mod, "choices", None))))
    with torch.no_grad():
        model(torch.rand(1, *size))
    want = []
    for u in L.layout(spec, size):
        if u.kind == "bconv":
            want.append((True, u.in_ch, u.out_ch, u.h, u.w, u.layer.to_dict()))
        elif u.kind == "head":
            want.append((False, 3, u.out_ch, u.h, u.w, None))
        elif u.kind == "fp_block":
            want += [(False, u.channels, u.channels, u.h, u.w, None)] * 2
        elif u.kind == "fp_stage":
            want.append((False, u.channels, u.r ** 2 * u.channels, u.h, u.w, None))
        elif u.kind == "fp_conv":
            want.append((False, u.in_ch, u.out_ch, u.h, u.w, None))
        elif u.kind == "espcn":
            want.append((False, u.channels, 3 * u.s ** 2, u.h, u.w, None))
    assert seen == want
