"""evaluators.cost of the image-level skip and of the input normalisation without mean.

Stated rules (evaluators/cost.py), N_sr = 3 (sH)(sW) output elements: nearest N_sr FLOPs (the
add; the copy is free), bilinear (4 + 1) N_sr, bicubic (16 + 1) N_sr; no parameters, no conv
MACs; normalisation 2 + 2 FLOPs per input / output element with the mean, 1 + 1 without."""
import random
from pathlib import Path

import pytest

from evaluators.cost import cost
from space.builder import build
from space.space import SearchSpace
from space.spec import ArchSpec, LayerSpec

ROOT = Path(__file__).resolve().parents[2]

# the hand-counted spec of test_cost.py: x2, 4 channels, 1 block, one-stage tail
SPEC_A = ArchSpec(
    scale=2, channels=4, blocks=1, head="conv3", tail="fp_one_stage", global_skip=True,
    block_residual=False,
    layers=(LayerSpec(parts=2, threshold="channel", bias=True, norm="bn", skip="fp"),
            LayerSpec(weight_scale="channel_mean", nonlinearity="rprelu", rescale="spatial")),
)
FLOPS_A = 20310  # test_cost.py's hand count (normalisation with mean: 900 of it)


@pytest.mark.parametrize("skip, taps_plus_add", [("none", 0), ("nearest", 1), ("bilinear", 5),
                                                 ("bicubic", 17)])
@pytest.mark.parametrize("mean, norm_flops", [("div2k", 2 * 90 + 2 * 360), ("none", 90 + 360)])
def test_hand_counts_of_the_skip_and_the_normalisation(skip, taps_plus_add, mean, norm_flops):
    # input 3 x 5 x 6: 90 LR elements; output 3 x 10 x 12: N_sr = 360
    c = cost(SPEC_A.replace(image_skip=skip, input_mean=mean), input_size=(3, 5, 6))
    assert c["flops"] == FLOPS_A - 900 + norm_flops + taps_plus_add * 360
    assert c["fp_macs"] == 16200 and c["bops"] == 12960
    assert c["params"] == 898 and c["binary_params"] == 288 and c["model_bytes"] == 2476
    assert c["ops"] == c["bops"] / 64 + c["flops"]
    if skip == "none":
        assert c["peak_activation_bytes"] == 4 * 480  # tail step: 120 in + 360 out
    else:
        # x (90 floats) is kept to the end; the skip step holds x, the tail output and up(x)
        assert c["peak_activation_bytes"] == 4 * (90 + 360 + 360)


def test_skip_flops_follow_the_formula_on_random_specs():
    space = SearchSpace.from_yaml(ROOT / "configs" / "space" / "default.yaml")
    rng = random.Random(11)
    per_element = {"nearest": 1, "bilinear": 5, "bicubic": 17}
    for _ in range(20):
        spec = space.random(rng)
        h, w = rng.randint(3, 9), rng.randint(3, 9)
        n_sr = 3 * spec.scale ** 2 * h * w
        base = cost(spec.replace(image_skip="none"), (3, h, w))
        for mode, f in per_element.items():
            c = cost(spec.replace(image_skip=mode), (3, h, w))
            assert c["flops"] - base["flops"] == f * n_sr
            assert {k: c[k] for k in ("bops", "fp_macs", "params", "binary_params", "model_bytes")} \
                == {k: base[k] for k in ("bops", "fp_macs", "params", "binary_params", "model_bytes")}
            assert c["peak_activation_bytes"] >= base["peak_activation_bytes"]
        no_mean = cost(spec.replace(input_mean="none"), (3, h, w))
        with_mean = cost(spec.replace(input_mean="div2k"), (3, h, w))
        assert with_mean["flops"] - no_mean["flops"] == 3 * h * w + n_sr


def test_params_still_equal_the_built_module():
    for skip in ("nearest", "bilinear", "bicubic"):
        for tail in ("fp_two_stage", "fp_one_stage", "binary_repeat"):
            n_tail = 1 if tail == "binary_repeat" else 0
            spec = SPEC_A.replace(image_skip=skip, input_mean="none", tail=tail,
                                  tail_layers=(LayerSpec(skip="fp"),) * n_tail)
            assert cost(spec, (3, 6, 6))["params"] == sum(
                p.numel() for p in build(spec).parameters())
