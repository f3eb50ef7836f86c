"""Cost counts read the layout: ``unit_costs`` is one-to-one with ``space.layout.layout``, its
sums are ``cost``; the new head / tail options are counted as written out by hand here; the
parameter count equals the built module's for specs using them."""
import random
from pathlib import Path

import pytest

from evaluators.cost import cost, unit_costs
from space.builder import build
from space.layout import layout
from space.space import SearchSpace
from space.spec import ArchSpec, LayerSpec, tail_conv_count, uniform

DEFAULT_SPACE = Path(__file__).resolve().parents[2] / "configs" / "space" / "default.yaml"
SIZE = (3, 5, 6)  # H W = 30 LR pixels; x4: 480 SR pixels
TL = LayerSpec(skip="fp")


def _random_specs(n, seed):
    rng = random.Random(seed)
    space = SearchSpace.from_yaml(DEFAULT_SPACE)
    out = []
    for _ in range(n):
        s = space.random(rng)
        # rescale left at none: its parameter rules are being changed in ops/ separately
        layers = tuple(layer.replace(rescale="none") for layer in s.layers[:4])
        s = s.replace(channels=4, blocks=2, layers=layers)
        scale = rng.choice([2, 3, 4])
        staged = s.tail != "fp_one_stage"
        hr = rng.choice(["none", "fp", "binary"]) if staged else "none"
        st = rng.choice(["staged", "one"]) if staged else "staged"
        layer = (s.tail_layers[0] if s.tail_layers else TL).replace(rescale="none")
        out.append(s.replace(scale=scale, tail_conv_hr=hr, tail_stages=st,
                             head_act=rng.choice(["none", "leaky_relu"]),
                             tail_layers=(layer,) * tail_conv_count(s.tail, scale, st, hr)))
    return out


@pytest.mark.parametrize("spec", _random_specs(20, 11), ids=lambda s: s.id)
def test_unit_costs_are_one_to_one_with_the_layout_and_sum_to_cost(spec):
    per_unit = unit_costs(spec, SIZE)
    assert [u for u, _ in per_unit] == list(layout(spec, SIZE))
    total = cost(spec, SIZE)
    for name in ("bops", "fp_macs", "flops", "params", "binary_params"):
        assert sum(c[name] for _, c in per_unit) == total[name]
    assert 4 * max(c["live_elements"] for _, c in per_unit) == total["peak_activation_bytes"]
    # only binary conv units have bops; only they have binary parameters
    for u, c in per_unit:
        assert (c["bops"] > 0) == u.binary and (c["binary_params"] > 0) == u.binary


@pytest.mark.parametrize("spec", _random_specs(12, 12), ids=lambda s: s.id)
def test_params_equal_the_built_module_with_head_and_tail_options(spec):
    model = build(spec)
    assert cost(spec, SIZE)["params"] == sum(p.numel() for p in model.parameters())


def _fp_spec(**arch):
    return ArchSpec(scale=4, channels=4, blocks=1, body="fp", block_residual=False,
                    global_skip=False, input_mean="none", **arch)


def test_fp_head_act_one_stage_and_conv_hr_written_out():
    spec = _fp_spec(head_act="leaky_relu", tail="fp_two_stage", tail_stages="one",
                    tail_conv_hr="fp")
    hw, S = 30, 16 * 30
    head = 3 * hw + (9 * 3 * 4 * hw + 4 * hw) + 2 * 4 * hw      # x k, conv + bias, LeakyReLU
    block = 2 * (9 * 16 * hw + 4 * hw) + 4 * hw                   # 2 convs + ReLU
    stage = (9 * 4 * 64 * hw + 64 * hw) + 2 * 64 * hw              # conv 4 -> 64, LeakyReLU
    conv_hr = (9 * 16 * S + 4 * S) + 2 * 4 * S                     # conv 4 -> 4 at SR, LeakyReLU
    last = 9 * 4 * 3 * S + 3 * S
    out = 3 * S                                                    # o / k
    c = cost(spec, SIZE)
    assert c["flops"] == head + block + stage + conv_hr + last + out
    assert c["fp_macs"] == 9 * 3 * 4 * hw + 2 * 9 * 16 * hw + 9 * 4 * 64 * hw + 9 * 16 * S + 9 * 12 * S
    assert c["params"] == (9 * 12 + 4) + 2 * (9 * 16 + 4) + (9 * 4 * 64 + 64) + (9 * 16 + 4) + (9 * 12 + 3)
    assert c["bops"] == 0 and c["binary_params"] == 0
    # the conv_hr step holds its input and output: 2 x 4 x 480 elements, the largest step
    assert c["peak_activation_bytes"] == 4 * (2 * 4 * S)
    # against the same spec without the options: exactly the option terms differ
    plain = cost(_fp_spec(tail="fp_two_stage"), SIZE)
    staged = (9 * 4 * 16 * hw + 16 * hw + 2 * 16 * hw) + (9 * 4 * 16 * 4 * hw + 16 * 4 * hw
                                                          + 2 * 16 * 4 * hw)
    assert c["flops"] - plain["flops"] == 2 * 4 * hw + stage - staged + conv_hr


def test_binary_one_stage_and_binary_conv_hr_written_out():
    spec = _fp_spec(tail="binary_repeat", tail_stages="one", tail_conv_hr="binary",
                    tail_layers=(TL, TL))
    hw, S = 30, 16 * 30
    c = cost(spec, SIZE)
    stage_bops, hr_bops = 9 * 4 * 64 * hw, 9 * 4 * 4 * S
    assert c["bops"] == stage_bops + hr_bops
    assert c["binary_params"] == 9 * 4 * 64 + 9 * 4 * 4
    head = 3 * hw + 9 * 3 * 4 * hw + 4 * hw
    block = 2 * (9 * 16 * hw + 4 * hw) + 4 * hw
    stage = 4 * hw + 64 * hw            # binarize C_in H W, fp skip (repeat) C_out H W
    conv_hr = 4 * S + 4 * S + 2 * 4 * S  # binarize, skip, LeakyReLU
    last = 9 * 4 * 3 * S + 3 * S
    assert c["flops"] == head + block + stage + conv_hr + last + 3 * S
    assert c["params"] - c["binary_params"] == (9 * 12 + 4) + 2 * (9 * 16 + 4) + (9 * 12 + 3)
    assert c["model_bytes"] == -(-(9 * 4 * 64 + 9 * 16) // 8) + 4 * (c["params"] - c["binary_params"])


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("tail", ["fp_two_stage", "binary_repeat"])
def test_one_stage_is_the_staged_network_at_x2_and_x3(scale, tail):
    a = uniform(scale, 4, 1, TL, TL, tail=tail)
    b = uniform(scale, 4, 1, TL, TL, tail=tail, tail_stages="one")
    assert a.id != b.id
    assert cost(a, SIZE) == cost(b, SIZE)
    assert [u for u, _ in unit_costs(a, SIZE)] == [u for u, _ in unit_costs(b, SIZE)]
