"""Packed runtime on specs with an image-level skip and either input normalisation: the FP head,
tail, normalisation and skip run in PyTorch inside the compiled model (the model's own forward),
every binary conv natively; the output matches the PyTorch model in eval mode to the float32
rounding of the epilogue (rtol 1e-5 / atol 1e-4 of the output scale, as test_runtime.py)."""
import random
from pathlib import Path

import pytest
import torch
from torch import nn

import ops.native as native
from ops.native.runtime import NativeBinaryConv2d
from space.builder import build
from space.space import SearchSpace
from space.spec import IMAGE_SKIPS, LayerSpec, tail_conv_count
from tests.model_helpers import perturb  # noqa: E402

DEFAULT_SPACE = Path(__file__).resolve().parents[2] / "configs" / "space" / "default.yaml"
TAILS = ("fp_two_stage", "fp_one_stage", "binary_repeat")
NORMALISATIONS = [("div2k", 255.0), ("none", 130.0), ("div2k", 1.0)]


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    return perturb(model, seed)


def _with_tail(spec, tail: str, scale: int):
    """``spec`` at ``scale`` with ``tail``; binary tail convs reuse a sampled tail conv."""
    layer = spec.tail_layers[0] if spec.tail_layers else LayerSpec(skip="fp", parts=2)
    # the sampled conv_hr / staging stay where the new tail allows them (staged tails only)
    staged = tail != "fp_one_stage"
    hr = spec.tail_conv_hr if staged else "none"
    stages = spec.tail_stages if staged else "staged"
    return spec.replace(scale=scale, tail=tail, tail_conv_hr=hr, tail_stages=stages,
                        tail_layers=(layer,) * tail_conv_count(tail, scale, stages, hr))


def _random_spec(seed: int, skip: str, mean: str, k: float, scale: int = 2):
    spec = SearchSpace.from_yaml(DEFAULT_SPACE).random(random.Random(seed))
    spec = spec.replace(channels=8, blocks=1, layers=spec.layers[:2])
    spec = _with_tail(spec, TAILS[seed % 3], scale)
    return spec.replace(image_skip=skip, input_mean=mean, residual_alignment=k)


@pytest.mark.parametrize("skip", IMAGE_SKIPS)
@pytest.mark.parametrize("mean, k", NORMALISATIONS)
@pytest.mark.parametrize("seed", range(3))  # seed % 3 picks the tail: every tail with every skip
def test_compiled_matches_pytorch_with_image_skip(skip, mean, k, seed):
    spec = _random_spec(seed, skip, mean, k)
    assert (spec.image_skip, spec.input_mean, spec.residual_alignment) == (skip, mean, k)
    torch.manual_seed(seed)  # build()'s own init, so the whole model is a function of the seed
    model = _randomize(build(spec), seed)
    x = torch.rand(1, 3, 7, 6, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = model(x)
    compiled = native.compile(model)
    got = compiled(x)
    assert got.shape == want.shape == (1, 3, 7 * spec.scale, 6 * spec.scale)
    assert got.is_contiguous()
    scale = float(want.abs().max()) + 1e-6
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4 * scale)
    binary = sum(type(m).__name__ == "BinaryConv2d" for m in model.modules())
    assert sum(isinstance(m, NativeBinaryConv2d) for m in compiled.modules()) == binary


@pytest.mark.parametrize("skip", ["nearest", "bilinear"])
@pytest.mark.parametrize("tail", TAILS)
def test_compiled_matches_in_both_layouts_at_x4(skip, tail):
    spec = _with_tail(_random_spec(5, skip, "none", 130.0), tail, 4)
    torch.manual_seed(5)
    model = _randomize(build(spec), 5)
    x = torch.rand(2, 3, 5, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(x)
    for channels_last in (True, False):
        got = native.compile(model, channels_last=channels_last)(x)
        assert got.shape == (2, 3, 20, 16)
        torch.testing.assert_close(got, want, rtol=1e-5,
                                   atol=1e-4 * (float(want.abs().max()) + 1e-6))
