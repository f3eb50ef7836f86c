"""Packed runtime on specs with the head / tail options (``head_act``, ``tail_conv_hr``,
``tail_stages``): the head LeakyReLU, the FP conv_hr and the shuffles run in PyTorch inside the
compiled model, every binary conv (body, one-stage upsampler, binary conv_hr) natively; the
output matches the PyTorch model in eval mode to float32 rounding (as test_runtime.py)."""
import random
from pathlib import Path

import pytest
import torch
from torch import nn

import ops.native as native
from ops.native.runtime import NativeBinaryConv2d
from space.builder import build
from space.space import SearchSpace
from space.spec import LayerSpec, tail_conv_count
from tests.model_helpers import perturb  # noqa: E402

DEFAULT_SPACE = Path(__file__).resolve().parents[2] / "configs" / "space" / "default.yaml"
BBCU_TAIL = LayerSpec(threshold="channel", act_estimator="approx_sign", skip="fp",
                      nonlinearity="rprelu", nonlinearity_at="before_skip")


def _randomize(model: nn.Module, seed: int) -> nn.Module:
    return perturb(model, seed)


E2FIF = LayerSpec(act_estimator="approx_sign", bias=True, norm="bn", skip="fp")
BODY = (E2FIF.replace(nonlinearity="leaky_relu"), BBCU_TAIL.replace(weight_scale="channel_mean"))


def _spec(seed, scale, tail, hr, stages, head_act):
    """The E2FIF / BBCU recipes (fixed layers, so the test checks the new head / tail parts);
    ``seed`` picks the other arch fields from the default space and seeds the weights."""
    spec = SearchSpace.from_yaml(DEFAULT_SPACE).random(random.Random(seed))
    n = tail_conv_count(tail, scale, stages, hr)
    stage_layers = (E2FIF,) * (n - (hr == "binary"))
    torch.manual_seed(seed)  # build() initialises from the global generator
    return spec.replace(channels=8, blocks=1, layers=BODY, scale=scale, tail=tail,
                        tail_conv_hr=hr, tail_stages=stages, head_act=head_act,
                        input_mean="none", residual_alignment=130.0,
                        tail_layers=stage_layers + (BBCU_TAIL,) * (hr == "binary"))


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("stages", ["staged", "one"])
@pytest.mark.parametrize("hr", ["none", "fp", "binary"])
@pytest.mark.parametrize("tail", ["fp_two_stage", "binary_repeat"])
def test_compiled_matches_pytorch_with_head_and_tail_options(tail, hr, stages, scale):
    seed = scale + 3 * len(hr) + len(stages)
    spec = _spec(seed, scale, tail, hr, stages, "leaky_relu")
    model = _randomize(build(spec), seed)
    assert [m.choices for m in model.tail if type(m).__name__ == "BinaryConv2d"] == [
        layer.to_dict() for layer in spec.tail_layers]
    x = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = model(x)
    compiled = native.compile(model)
    got = compiled(x)
    assert got.shape == want.shape == (1, 3, 5 * scale, 6 * scale)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4 * (float(want.abs().max()) + 1e-6))
    binary = sum(type(m).__name__ == "BinaryConv2d" for m in model.modules())
    assert binary == 2 + tail_conv_count(tail, scale, stages, hr)
    assert sum(isinstance(m, NativeBinaryConv2d) for m in compiled.modules()) == binary


@pytest.mark.parametrize("skip", ["bilinear", "nearest"])
def test_bbcu_m_like_network_in_both_layouts(skip):
    """BBCU-M's shape: LeakyReLU head, binary one-stage x4 upsampler and binary conv_hr, image
    skip; channels-last and NCHW give the same output."""
    spec = _spec(7, 4, "binary_repeat", "binary", "one", "leaky_relu").replace(image_skip=skip)
    model = _randomize(build(spec), 7)
    x = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x)
    for channels_last in (True, False):
        got = native.compile(model, channels_last=channels_last)(x)
        assert got.shape == (2, 3, 16, 20)
        torch.testing.assert_close(got, want, rtol=1e-5,
                                   atol=1e-4 * (float(want.abs().max()) + 1e-6))
