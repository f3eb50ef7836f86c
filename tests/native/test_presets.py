"""Every published preset (space.presets, built by space.builder) runs through the packed
runtime and matches the PyTorch model in eval mode (float32 rounding of the epilogue only), on
every ISA path this CPU can run, on the first call (each layer packs its input) and on later
calls (linked layers write the next layer's packed bits in their epilogue, buffers reused)."""
import pytest
import torch
from torch import nn

import ops.native as native
from ops.native.runtime import NativeBinaryConv2d, NativePixelShuffle
from tests.native.conftest import isa_params

presets = pytest.importorskip("space.presets")
builder = pytest.importorskip("space.builder")


def _model(name, scale, channels=16, blocks=2):
    g = torch.Generator().manual_seed(scale)
    model = builder.build(presets.get(name, scale=scale, channels=channels, blocks=blocks))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval(), g


@pytest.mark.parametrize("name", presets.names())
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_preset_compiles_and_matches(name, scale):
    model, g = _model(name, scale)
    x = torch.rand(1, 3, 12, 10, generator=g)
    with torch.no_grad():
        want = model(x)
    compiled = native.compile(model)
    got = compiled(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    binary = sum(type(m).__name__ == "BinaryConv2d" for m in model.modules())
    assert sum(isinstance(m, NativeBinaryConv2d) for m in compiled.modules()) == binary
    shuffles = sum(type(m) is nn.PixelShuffle for m in model.modules())
    assert sum(isinstance(m, NativePixelShuffle) for m in compiled.modules()) == shuffles


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("name", presets.names())
def test_preset_matches_on_every_path_and_call(monkeypatch, isa, name):
    """Three calls on one compiled model, the path forced by BSRNAS_ISA: the first packs every
    binary input, the later ones use the bits that the layer before wrote in its epilogue
    (wherever the input of a conv is the output of the conv before it, unchanged)."""
    monkeypatch.setenv("BSRNAS_ISA", isa)
    model, g = _model(name, 2, channels=24, blocks=2)
    compiled = native.compile(model)
    for call in range(3):
        x = torch.rand(1, 3, 9 + call, 11, generator=g)
        with torch.no_grad():
            want = model(x)
        got = compiled(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()),
                                   msg=lambda m: f"call {call}: {m}")
    convs = [m for m in compiled.modules() if isinstance(m, NativeBinaryConv2d)]
    linked = sum(m._consumer is not None for m in convs)
    if name == "e2fif":  # one chain through the body: every conv but the last feeds the next
        assert linked == len([m for m in convs if m.plan.in_ch == m.plan.out_ch]) - 1 > 0
