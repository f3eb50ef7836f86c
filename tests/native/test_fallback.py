"""Without the compiled extension every entry point falls back to the pure-Python reference
(with one RuntimeWarning) and gives the same results; info() says it is not built."""
import numpy as np
import pytest
import torch
from torch import nn

import ops.native as native
from ops import BinaryConv2d
from ops.native import kernels


@pytest.fixture
def no_extension(monkeypatch):
    real = kernels._ext
    monkeypatch.setattr(kernels, "_ext", None)
    monkeypatch.setattr(kernels, "_warned", False)
    monkeypatch.setattr(kernels, "_resolved", {})
    monkeypatch.delenv("BSRNAS_ISA", raising=False)
    return real


def test_fallback_matches_extension(no_extension):
    x, w = torch.randn(2, 70, 5, 6), torch.randn(12, 70, 3, 3)
    off = torch.randn(2, 70)
    kw = dict(mode="float", part_scale=torch.rand(2, 12), bias=torch.randn(12), act="prelu",
              slope=torch.full((12,), 0.1), residual=torch.randn(2, 12, 5, 6), layout="nhwc")
    with pytest.warns(RuntimeWarning, match="not built"):
        xb = native.pack_activations(x, off)
    wb = native.pack_weights(w)
    got = native.conv2d(xb, wb, 70, 12, **kw)
    assert got.transpose(0, 2, 3, 1).flags.c_contiguous
    if no_extension is None:
        pytest.skip("extension not built: nothing to compare against")
    kernels._ext = no_extension  # the real kernel, same calls
    kernels._resolved.clear()
    np.testing.assert_array_equal(native.pack_activations(x, off), xb)
    np.testing.assert_array_equal(native.pack_weights(w), wb)
    np.testing.assert_array_equal(native.conv2d(xb, wb, 70, 12, **kw), got)


def test_fallback_info_and_isa(no_extension):
    info = native.info()
    assert info["built"] is False and info["supported"] == ["reference"] and info["isa"] == "reference"
    with pytest.raises(ValueError, match="not built"):
        native.resolve_isa("avx2")


def test_fallback_runtime_matches_model(no_extension):
    conv = BinaryConv2d(8, 8, 3, threshold="channel", skip="fp", nonlinearity="prelu").eval()
    x = torch.randn(1, 8, 5, 4)
    with pytest.warns(RuntimeWarning):
        got = native.compile(nn.Sequential(conv))(x)
    with torch.no_grad():
        torch.testing.assert_close(got, conv(x), rtol=1e-5, atol=1e-4)
