"""Head and tail options of the published designs: ``head_act``, ``tail_conv_hr``,
``tail_stages``. Spec fields (defaults left out of the JSON, old ids kept, round trips,
errors naming field / value / allowed), ``tail_conv_count``, and the builder checked against
computations written with ``torch.nn.functional`` from the module's own weights."""
import hashlib
import json

import pytest
import torch
import yaml
from torch.nn import functional as F

from ops import BinaryConv2d
from space.builder import build
from space.spec import (HEAD_ACTS, TAIL_CONV_HRS, TAIL_STAGES, ArchSpec, LayerSpec,
                        tail_conv_count, uniform)

# canonical JSON / id of a spec made before the three fields existed (computed by the older code)
from test_space_image_skip import OLD_ID, OLD_JSON  # noqa: E402

NEW = ("head_act", "tail_conv_hr", "tail_stages")
TL = LayerSpec(skip="fp")


def _spec(scale=2, tail="binary_repeat", **arch):
    return uniform(scale, 4, 1, layer=LayerSpec(skip="fp"), tail=tail, tail_layer=TL, **arch)


def test_old_json_keeps_its_id_and_the_defaults_are_left_out():
    assert hashlib.sha1(OLD_JSON.encode()).hexdigest()[:12] == OLD_ID
    spec = ArchSpec.from_json(OLD_JSON)
    assert (spec.head_act, spec.tail_conv_hr, spec.tail_stages) == ("none", "none", "staged")
    assert spec.canonical_json() == OLD_JSON and spec.id == OLD_ID
    explicit = ArchSpec.from_dict(dict(json.loads(OLD_JSON), head_act="none",
                                       tail_conv_hr="none", tail_stages="staged"))
    assert explicit == spec and explicit.id == OLD_ID
    assert not set(NEW) & set(spec.to_dict())


@pytest.mark.parametrize("act", HEAD_ACTS)
@pytest.mark.parametrize("hr", TAIL_CONV_HRS)
@pytest.mark.parametrize("stages", TAIL_STAGES)
def test_round_trip_and_ids(act, hr, stages):
    spec = _spec(4, head_act=act, tail_conv_hr=hr, tail_stages=stages)
    for again in (ArchSpec.from_json(spec.to_json()), ArchSpec.from_yaml(spec.to_yaml())):
        assert again == spec and again.id == spec.id
    data = spec.to_dict()
    assert ("head_act" in data) == (act != "none")
    assert ("tail_conv_hr" in data) == (hr != "none")
    assert ("tail_stages" in data) == (stages != "staged")


def test_every_combination_has_its_own_id():
    ids = {_spec(4, head_act=a, tail_conv_hr=h, tail_stages=s).id
           for a in HEAD_ACTS for h in TAIL_CONV_HRS for s in TAIL_STAGES}
    assert len(ids) == len(HEAD_ACTS) * len(TAIL_CONV_HRS) * len(TAIL_STAGES)


def test_tail_conv_count():
    # binary_repeat: stages (x4 staged: 2, one: 1; x2, x3: 1) + 1 for a binary conv_hr
    assert [tail_conv_count("binary_repeat", 4, st, hr) for st in TAIL_STAGES
            for hr in TAIL_CONV_HRS] == [2, 2, 3, 1, 1, 2]
    assert tail_conv_count("binary_repeat", 3, "one", "binary") == 2
    assert [tail_conv_count("fp_two_stage", 4, "staged", hr) for hr in TAIL_CONV_HRS] == [0, 0, 1]
    assert tail_conv_count("fp_one_stage", 4) == 0


@pytest.mark.parametrize("field, value, allowed", [
    ("head_act", "relu", "['none', 'leaky_relu']"),
    ("head_act", None, "['none', 'leaky_relu']"),
    ("tail_conv_hr", "binary_fp", "['none', 'fp', 'binary']"),
    ("tail_conv_hr", True, "['none', 'fp', 'binary']"),
    ("tail_stages", "two", "['staged', 'one']"),
    ("tail_stages", 1, "['staged', 'one']"),
])
def test_invalid_values_name_field_value_and_allowed(field, value, allowed):
    with pytest.raises(ValueError) as err:
        _spec(**{field: value})
    msg = str(err.value)
    assert field in msg and repr(value) in msg and allowed in msg
    with pytest.raises(ValueError, match=field):
        ArchSpec.from_dict(dict(json.loads(OLD_JSON), **{field: value}))


@pytest.mark.parametrize("field, value", [("tail_conv_hr", "fp"), ("tail_conv_hr", "binary"),
                                          ("tail_stages", "one")])
def test_options_of_staged_tails_are_rejected_on_the_one_stage_tail(field, value):
    with pytest.raises(ValueError) as err:
        ArchSpec(scale=4, channels=4, blocks=1, body="fp", tail="fp_one_stage", **{field: value})
    msg = str(err.value)
    assert field in msg and repr(value) in msg and "fp_one_stage" in msg
    assert "['fp_two_stage', 'binary_repeat']" in msg


def test_wrong_number_of_tail_layers_names_the_options():
    with pytest.raises(ValueError, match=r"tail_layers: 2 .*tail_stages='one'.*needs exactly 1"):
        ArchSpec(scale=4, channels=4, blocks=1, body="fp", tail="binary_repeat",
                 tail_stages="one", tail_layers=(TL, TL))
    with pytest.raises(ValueError, match=r"tail_layers: 0 .*tail_conv_hr='binary'.*needs exactly 1"):
        ArchSpec(scale=2, channels=4, blocks=1, body="fp", tail="fp_two_stage",
                 tail_conv_hr="binary")


# -- builder --------------------------------------------------------------------------------
def _fp_body(scale, tail, **arch):
    n = tail_conv_count(tail, scale, arch.get("tail_stages", "staged"),
                        arch.get("tail_conv_hr", "none"))
    return ArchSpec(scale=scale, channels=4, blocks=1, body="fp", tail=tail,
                    tail_layers=(TL,) * n, **arch)


def test_head_act_is_leaky_relu_of_the_head_conv():
    spec = _fp_body(2, "fp_two_stage", head_act="leaky_relu", input_mean="none")
    model = build(spec).eval()
    seen = []
    model.body.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    rgb = torch.rand(1, 3, 5, 6) - 0.5  # negative values: the slope shows
    with torch.no_grad():
        model(rgb)
    conv = F.conv2d(rgb, model.head.weight, model.head.bias, padding=1)
    want = torch.where(conv >= 0, conv, 0.1 * conv)
    torch.testing.assert_close(seen[0], want, rtol=1e-6, atol=1e-6)
    assert (want < 0).any()
    assert not hasattr(build(spec.replace(head_act="none")), "head_act")


def _run_tail(model, y):
    with torch.no_grad():
        return model.tail(y)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fp_conv_hr_and_one_stage_tail_follow_the_formula(scale):
    spec = _fp_body(scale, "fp_two_stage", tail_conv_hr="fp", tail_stages="one")
    model = build(spec).eval()
    t = model.tail
    y = torch.randn(1, 4, 3, 5)
    z = F.pixel_shuffle(F.conv2d(y, t[0].weight, t[0].bias, padding=1), scale)  # one stage
    z = F.leaky_relu(z, 0.1)
    z = F.leaky_relu(F.conv2d(z, t[3].weight, t[3].bias, padding=1), 0.1)       # conv_hr
    z = F.conv2d(z, t[5].weight, t[5].bias, padding=1)                          # C -> 3
    assert t[0].weight.shape == (4 * scale ** 2, 4, 3, 3) and t[3].weight.shape == (4, 4, 3, 3)
    assert t[5].weight.shape == (3, 4, 3, 3) and len(t) == 6
    torch.testing.assert_close(_run_tail(model, y), z, rtol=1e-5, atol=1e-5)


def test_binary_one_stage_tail_at_x4_is_one_conv_to_16c():
    spec = _fp_body(4, "binary_repeat", tail_stages="one")
    model = build(spec).eval()
    convs = [m for m in model.tail if isinstance(m, BinaryConv2d)]
    assert [(c.in_ch, c.out_ch) for c in convs] == [(4, 64)]
    y = torch.randn(1, 4, 3, 2)
    t = model.tail
    with torch.no_grad():
        want = F.conv2d(F.pixel_shuffle(t[0](y), 4), t[2].weight, t[2].bias, padding=1)
    torch.testing.assert_close(_run_tail(model, y), want)
    assert _run_tail(model, y).shape == (1, 3, 12, 8)


def test_binary_conv_hr_uses_the_last_tail_layer():
    hr = LayerSpec(skip="fp", nonlinearity="rprelu", nonlinearity_at="before_skip", parts=2)
    spec = _fp_body(4, "binary_repeat", tail_conv_hr="binary")
    spec = spec.replace(tail_layers=(TL, TL, hr))
    model = build(spec).eval()
    convs = [m for m in model.tail if isinstance(m, BinaryConv2d)]
    assert [(c.in_ch, c.out_ch) for c in convs] == [(4, 16), (4, 16), (4, 4)]
    assert [c.choices for c in convs] == [TL.to_dict(), TL.to_dict(), hr.to_dict()]
    t = model.tail
    y = torch.randn(1, 4, 2, 3)
    with torch.no_grad():
        z = F.pixel_shuffle(t[2](F.pixel_shuffle(t[0](y), 2)), 2)
        want = F.conv2d(F.leaky_relu(t[4](z), 0.1), t[6].weight, t[6].bias, padding=1)
    torch.testing.assert_close(_run_tail(model, y), want)


@pytest.mark.parametrize("tail", ["fp_two_stage", "binary_repeat"])
@pytest.mark.parametrize("hr", TAIL_CONV_HRS)
def test_every_option_trains_and_keeps_its_shape(tail, hr):
    spec = uniform(4, 4, 1, LayerSpec(skip="fp"), TL, tail=tail, tail_conv_hr=hr,
                   tail_stages="one", head_act="leaky_relu", image_skip="bilinear")
    model = build(spec).train()
    y = model(torch.rand(2, 3, 5, 4))
    assert y.shape == (2, 3, 20, 16) and torch.isfinite(y).all()
    y.abs().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_yaml_shows_only_the_options_given():
    spec = _spec(2, tail_conv_hr="fp")
    data = yaml.safe_load(spec.to_yaml())
    assert data["tail_conv_hr"] == "fp" and "head_act" not in data and "tail_stages" not in data
