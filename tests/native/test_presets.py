"""Every published preset (space.presets, built by space.builder) runs through the packed
runtime and matches the PyTorch model in eval mode (float32 rounding of the epilogue only)."""
import pytest
import torch
from torch import nn

import ops.native as native
from ops.native.runtime import NativeBinaryConv2d

presets = pytest.importorskip("space.presets")
builder = pytest.importorskip("space.builder")


@pytest.mark.parametrize("name", presets.names())
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_preset_compiles_and_matches(name, scale):
    g = torch.Generator().manual_seed(scale)
    model = builder.build(presets.get(name, scale=scale, channels=16, blocks=2))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    model.eval()
    x = torch.rand(1, 3, 12, 10, generator=g)
    with torch.no_grad():
        want = model(x)
    compiled = native.compile(model)
    got = compiled(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    binary = sum(type(m).__name__ == "BinaryConv2d" for m in model.modules())
    assert sum(isinstance(m, NativeBinaryConv2d) for m in compiled.modules()) == binary
