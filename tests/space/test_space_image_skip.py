"""Image-level skip and input normalisation: the spec fields (validation, JSON/YAML round trip,
ids of older specs), the builder's formula

    x = (rgb - m) * k,   sr = (tail(...) + up(x)) / k + m,   m = DIV2K mean or 0,

checked against independent computations (``F.interpolate``, a manual pixel repeat, the mean
written out), and the search-space dimensions ``arch.input_mean`` / ``arch.image_skip``."""
import hashlib
import json
import random
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from torch import nn
from torch.nn import functional as F

from space.builder import build
from space.space import SearchSpace
from space.spec import IMAGE_SKIPS, INPUT_MEANS, ArchSpec, LayerSpec, uniform

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "space"
DIV2K_MEAN = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1)  # written out, not imported
TAILS = ("fp_two_stage", "fp_one_stage", "binary_repeat")

optuna.logging.set_verbosity(optuna.logging.WARNING)

# canonical JSON and id of a spec, computed by the code before input_mean / image_skip existed
OLD_JSON = (
    '{"block_residual":true,"blocks":1,"body":"binary","channels":4,"global_skip":true,'
    '"head":"conv3","layers":[{"act_estimator":"ste","bam_depth":0,"bias":false,'
    '"nonlinearity":"none","nonlinearity_at":"after_skip","norm":"none","parts":2,"rescale":"none",'
    '"skip":"fp","threshold":"zero","threshold_kernel":3,"weight_estimator":"identity",'
    '"weight_scale":"none"},{"act_estimator":"ste","bam_depth":0,"bias":false,'
    '"nonlinearity":"none","nonlinearity_at":"after_skip","norm":"none","parts":2,"rescale":"none",'
    '"skip":"fp","threshold":"zero","threshold_kernel":3,"weight_estimator":"identity",'
    '"weight_scale":"none"}],"residual_alignment":130.0,"scale":2,"tail":"binary_repeat",'
    '"tail_layers":[{"act_estimator":"ste","bam_depth":0,"bias":false,"nonlinearity":"none",'
    '"nonlinearity_at":"after_skip","norm":"none","parts":1,"rescale":"none","skip":"fp",'
    '"threshold":"zero","threshold_kernel":3,"weight_estimator":"identity","weight_scale":"none"}]}'
)
OLD_ID = "20972aa4631b"


def _spec(scale=2, tail="fp_two_stage", **arch):
    return uniform(scale, 4, 1, layer=LayerSpec(skip="fp"), tail=tail,
                   tail_layer=LayerSpec(skip="fp"), **arch)


# -- spec fields ---------------------------------------------------------------------------
def test_old_spec_json_loads_with_defaults_and_the_same_id():
    assert hashlib.sha1(OLD_JSON.encode()).hexdigest()[:12] == OLD_ID
    spec = ArchSpec.from_json(OLD_JSON)
    assert spec.input_mean == "div2k" and spec.image_skip == "none"
    assert spec.canonical_json() == OLD_JSON and spec.id == OLD_ID
    # giving the defaults explicitly is the same spec with the same id
    data = json.loads(OLD_JSON)
    explicit = ArchSpec.from_dict(dict(data, input_mean="div2k", image_skip="none"))
    assert explicit == spec and explicit.id == OLD_ID
    assert "input_mean" not in spec.to_dict() and "image_skip" not in spec.to_dict()


@pytest.mark.parametrize("mean", INPUT_MEANS)
@pytest.mark.parametrize("skip", IMAGE_SKIPS)
def test_new_fields_round_trip_json_and_yaml(mean, skip):
    spec = _spec(tail="binary_repeat", input_mean=mean, image_skip=skip, residual_alignment=255)
    for again in (ArchSpec.from_json(spec.to_json()), ArchSpec.from_yaml(spec.to_yaml())):
        assert again == spec and again.id == spec.id
        assert (again.input_mean, again.image_skip) == (mean, skip)
    data = spec.to_dict()
    assert data.get("input_mean", "div2k") == mean and data.get("image_skip", "none") == skip
    assert ("input_mean" in data) == (mean != "div2k")
    assert ("image_skip" in data) == (skip != "none")
    assert yaml.safe_load(spec.to_yaml()) == json.loads(spec.to_json())


def test_new_fields_change_the_id():
    ids = {_spec(input_mean=m, image_skip=s).id for m in INPUT_MEANS for s in IMAGE_SKIPS}
    assert len(ids) == len(INPUT_MEANS) * len(IMAGE_SKIPS)


@pytest.mark.parametrize("field, value, allowed", [
    ("image_skip", "lanczos", "['none', 'nearest', 'bilinear', 'bicubic']"),
    ("image_skip", None, "['none', 'nearest', 'bilinear', 'bicubic']"),
    ("image_skip", True, "['none', 'nearest', 'bilinear', 'bicubic']"),
    ("input_mean", "imagenet", "['div2k', 'none']"),
    ("input_mean", 0.5, "['div2k', 'none']"),
])
def test_invalid_values_name_the_field_the_value_and_the_allowed_values(field, value, allowed):
    with pytest.raises(ValueError) as err:
        _spec(**{field: value})
    msg = str(err.value)
    assert field in msg and repr(value) in msg and allowed in msg
    data = dict(json.loads(OLD_JSON), **{field: value})
    with pytest.raises(ValueError, match=field):
        ArchSpec.from_dict(data)


# -- builder: zero tail gives the chosen interpolation of the LR image ---------------------
def _zero_tail(model):
    with torch.no_grad():
        for p in model.tail.parameters():
            p.zero_()
    return model.eval()


def _nearest_by_repeat(rgb, s):
    """Each LR pixel copied into its s x s block (no interpolation routine involved)."""
    return rgb.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)


def _expected_up(rgb, mode, s):
    if mode == "nearest":
        return _nearest_by_repeat(rgb, s)
    return F.interpolate(rgb, size=(s * rgb.shape[2], s * rgb.shape[3]), mode=mode,
                         align_corners=False)


@pytest.mark.parametrize("tail", TAILS)
@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize("mean, k", [("div2k", 1.0), ("div2k", 255.0), ("none", 130.0)])
def test_zero_tail_returns_the_interpolated_lr(tail, mode, mean, k):
    for scale in (2, 3, 4):
        model = _zero_tail(build(_spec(scale, tail, image_skip=mode, input_mean=mean,
                                       residual_alignment=k)))
        rgb = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(scale))
        with torch.no_grad():
            sr = model(rgb)
        want = _expected_up(rgb, mode, scale)
        assert sr.shape == want.shape == (2, 3, 5 * scale, 7 * scale)
        torch.testing.assert_close(sr, want, rtol=0, atol=2e-6 * max(1.0, k / 100))


def test_nearest_by_repeat_is_interpolate_nearest():
    rgb = torch.rand(1, 3, 4, 6)
    for s in (2, 3, 4):
        assert torch.equal(_nearest_by_repeat(rgb, s), F.interpolate(rgb, scale_factor=s))


@pytest.mark.parametrize("tail", TAILS)
def test_zero_tail_without_skip_returns_the_mean(tail):
    for mean, want_mean in (("div2k", DIV2K_MEAN), ("none", torch.zeros(1, 3, 1, 1))):
        model = _zero_tail(build(_spec(2, tail, input_mean=mean, residual_alignment=130)))
        with torch.no_grad():
            sr = model(torch.rand(1, 3, 4, 5))
        torch.testing.assert_close(sr, want_mean.expand(1, 3, 8, 10), rtol=0, atol=1e-7)


def test_fp_one_stage_nearest_is_added_before_the_pixel_shuffle():
    """The anchor: the pre-shuffle tensor gets x repeated s^2 times (PixelShuffle's order)."""
    s = 3
    model = _zero_tail(build(_spec(s, "fp_one_stage", image_skip="nearest")))
    seen = []
    model.tail[1].register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    rgb = torch.rand(1, 3, 4, 5)
    with torch.no_grad():
        model(rgb)
    x = rgb - DIV2K_MEAN
    pre = seen[0]
    assert pre.shape == (1, 3 * s * s, 4, 5)
    for c in range(3):
        for i in range(s):
            for j in range(s):
                torch.testing.assert_close(pre[:, c * s * s + i * s + j], x[:, c], rtol=0, atol=1e-7)


# -- builder: the two published normalisations ----------------------------------------------
def _identity_like(spec, tail_bias):
    """channels 3, fp body with zeroed convs (each block is the identity through its residual),
    head = identity 3x3 conv, one-stage tail that copies channel c to all s^2 sub-pixels plus a
    bias: tail(y) = nearest(y) + tail_bias."""
    model = build(spec)
    s = spec.scale
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for c in range(3):
            model.head.weight[c, c, 1, 1] = 1.0
            for j in range(s * s):
                model.tail[0].weight[c * s * s + j, c, 1, 1] = 1.0
                model.tail[0].bias[c * s * s + j] = tail_bias
    return model.eval()


@pytest.mark.parametrize("mean, k", [("div2k", 255.0), ("none", 130.0)])
def test_e2fif_and_bbcu_normalisations_follow_the_formula(mean, k):
    s, b = 2, 0.7
    spec = ArchSpec(scale=s, channels=3, blocks=1, body="fp", tail="fp_one_stage",
                    global_skip=False, block_residual=True, input_mean=mean, residual_alignment=k)
    model = _identity_like(spec, b)
    heads = []
    model.head.register_forward_hook(lambda mod, inp, out: heads.append(inp[0]))
    rgb = torch.rand(1, 3, 4, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        sr = model(rgb)
    m = DIV2K_MEAN if mean == "div2k" else torch.zeros(1, 3, 1, 1)
    # head input: E2FIF 255 (x - mean), BBCU 130 x (no mean subtraction)
    torch.testing.assert_close(heads[0], (rgb - m) * k, rtol=1e-6, atol=1e-5)
    # sr = tail(x) / k + m = (nearest((rgb - m) k) + b) / k + m = nearest(rgb) + b / k
    torch.testing.assert_close(sr, _nearest_by_repeat(rgb, s) + b / k, rtol=0, atol=1e-5)


# -- search space --------------------------------------------------------------------------
SPACE = {
    "scale": 2,
    "arch": {"channels": [4], "blocks": [1], "tail": ["fp_one_stage", "binary_repeat"],
             "input_mean": ["div2k", "none"], "image_skip": list(IMAGE_SKIPS)},
    "tail_layer": {"skip": "fp"},
}


def test_space_samples_every_image_skip_and_input_mean_and_inverts():
    space = SearchSpace.from_dict(SPACE)
    # 2 tails x 2 means x 4 skips (the single-valued dims are constants)
    assert space.size() == 2 * 2 * 4
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        spec = space.sample(trial)
        study.tell(trial, 0.0)
        seen.add((spec.input_mean, spec.image_skip))
        assert trial.params["arch.image_skip"] == spec.image_skip
        assert trial.params["arch.input_mean"] == spec.input_mean
        params = space.params_of(spec)
        assert params == trial.params and space.contains(spec)
        assert space.sample(optuna.trial.FixedTrial(params)) == spec
    assert seen == {(m, s) for m in INPUT_MEANS for s in IMAGE_SKIPS}


def test_space_rejects_specs_and_values_outside_it():
    space = SearchSpace.from_dict(dict(SPACE, arch=dict(SPACE["arch"], image_skip=["none", "bicubic"],
                                                        input_mean=["div2k"])))
    inside = space.random(random.Random(0))
    assert not space.contains(inside.replace(image_skip="nearest"))
    with pytest.raises(ValueError, match=r"spec.image_skip = 'nearest'.*allowed: \['none', 'bicubic'\]"):
        space.params_of(inside.replace(image_skip="nearest"))
    with pytest.raises(ValueError, match=r"spec.input_mean = 'none'.*allowed: \['div2k'\]"):
        space.params_of(inside.replace(input_mean="none"))
    with pytest.raises(ValueError, match=r"arch.image_skip\[1\]: invalid value 'cubic'.*bicubic"):
        SearchSpace.from_dict(dict(SPACE, arch={"image_skip": ["none", "cubic"]}))
    with pytest.raises(ValueError, match=r"arch.input_mean\[0\]: invalid value 'mean'.*div2k"):
        SearchSpace.from_dict(dict(SPACE, arch={"input_mean": ["mean"]}))


@pytest.mark.parametrize("name", ["default.yaml", "quickstart.yaml"])
def test_shipped_spaces_search_the_image_skip(name):
    space = SearchSpace.from_yaml(CONFIGS / name)
    assert set(space.arch["image_skip"]) >= {"none", "nearest", "bicubic"}
    rng = random.Random(4)
    seen = set()
    for _ in range(80):
        spec = space.random(rng)
        seen.add(spec.image_skip)
        if spec.image_skip != "none":
            assert space.params_of(spec)["arch.image_skip"] == spec.image_skip
    assert seen == set(space.arch["image_skip"])
    # the new dimensions multiply the size
    one = SearchSpace(space.scale, dict(space.arch, image_skip=("none",), input_mean=("div2k",)),
                      space.layer, space.tail_layer)
    assert space.size() == one.size() * len(space.arch["image_skip"]) * len(space.arch["input_mean"])


def test_model_with_image_skip_trains_its_parameters():
    """The skip adds no parameter and keeps every parameter in the graph."""
    model = build(_spec(2, "binary_repeat", image_skip="bicubic", input_mean="none",
                        residual_alignment=130)).train()
    plain = build(_spec(2, "binary_repeat"))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters())
    model(torch.rand(1, 3, 6, 6)).abs().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert isinstance(model, nn.Module) and model.image_skip is not None
