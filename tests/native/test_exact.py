"""The compiled packed runtime computes what the PyTorch model computes, bit for bit
(``compile(exact=True)``, the default): every published preset, every ISA path this CPU can
run, first call (each layer packs its input) and later calls (linked layers, reused buffers).

The reference is always the PyTorch model's own eval-mode forward on NCHW input (how a user
runs it): BN through ``F.batch_norm``, FP convs on NCHW, ``F.interpolate``. Models are randomly
initialised with weights and BN running statistics moved away from their init, so every BN is
a non-trivial affine map and many values sit near the next binarization's threshold."""
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import ops.native as native
from nas import upscale as U
from ops.fma import affine32, batch_norm_affine, fma32
from tests.native.conftest import isa_params
from tests.model_helpers import perturb

presets = pytest.importorskip("space.presets")
builder = pytest.importorskip("space.builder")

#: each preset at one scale (the three scales spread over the presets)
SCALES = {name: (2, 3, 4)[i % 3] for i, name in enumerate(presets.names())}


def _model(name, scale, channels=16, blocks=2, seed=0):
    torch.manual_seed(seed)
    spec = presets.get(name, scale=scale, channels=channels, blocks=blocks)
    return perturb(builder.build(spec), seed=seed + 7, weight_std=0.1, bn="normal")


def _explain(got, want):
    d = (got - want).abs()
    return f"{int((got != want).sum())} of {want.numel()} values differ, max {float(d.max()):.3g}"


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("name", presets.names())
def test_compiled_equals_pytorch_bit_for_bit(monkeypatch, isa, name):
    monkeypatch.setenv("BSRNAS_ISA", isa)
    scale = SCALES[name]
    model = _model(name, scale)
    compiled = native.compile(model, exact=True)
    g = torch.Generator().manual_seed(scale)
    for call, (h, w) in enumerate([(13, 11), (13, 11), (9, 14)]):
        x = torch.rand(1, 3, h, w, generator=g)
        with torch.no_grad():
            want = model(x)
        got = compiled(x)
        assert torch.equal(got, want), f"call {call}: {_explain(got, want)}"
        # and hence the uint8 image nas.upscale writes
        np.testing.assert_array_equal(U.to_uint8(got[0]), U.to_uint8(want[0]))


def test_exact_false_runs_fp_convs_channels_last_within_rounding():
    """``exact=False``: FP convs on channels-last (oneDNN NHWC), the native bilinear skip;
    float results within rounding of the model's (the binarizations can flip)."""
    model = _model("bbcu_l", 2)
    fast = native.compile(model, exact=False)
    exact = native.compile(model, exact=True)
    assert not any(type(m).__name__ == "TorchLayoutConv2d" for m in fast.modules())
    assert any(type(m).__name__ == "TorchLayoutConv2d" for m in exact.modules())
    x = torch.rand(1, 3, 13, 11, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)
    torch.testing.assert_close(fast(x), want, rtol=1e-4, atol=1e-3 * float(want.abs().max()))
    with pytest.raises(ValueError, match="exact"):
        native.compile(model, exact="yes")


def test_fma32_is_correctly_rounded():
    """Against exact rational arithmetic, on values where a double rounding would show."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(3000).astype(np.float32)
    b = rng.standard_normal(3000).astype(np.float32)
    c = (-(a.astype(np.float64) * b) * (1 + rng.standard_normal(3000) * 1e-7)).astype(np.float32)
    c[:1000] = rng.standard_normal(1000).astype(np.float32)
    got = fma32(a, b, c)
    for i in range(len(a)):
        exact = Fraction(float(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i]))
        r = got[i]
        err = abs(Fraction(float(r)) - exact)
        for nb in (np.nextafter(r, np.float32(np.inf)), np.nextafter(r, np.float32(-np.inf))):
            assert err <= abs(Fraction(float(nb)) - exact), (i, a[i], b[i], c[i])


@pytest.mark.parametrize("channels", [1, 8, 64, 67])
def test_batch_norm_affine_reproduces_torch_batch_norm(channels):
    """``alpha``, ``beta`` and the FMA flag reproduce F.batch_norm (eval) on fresh values, NCHW
    and channels-last."""
    g = torch.Generator().manual_seed(channels)
    bn = nn.BatchNorm2d(channels).eval()
    with torch.no_grad():
        bn.weight.copy_(1 + 0.3 * torch.randn(channels, generator=g))
        bn.bias.copy_(0.3 * torch.randn(channels, generator=g))
        bn.running_mean.normal_(0, 0.5, generator=g)
        bn.running_var.uniform_(0.2, 2.0, generator=g)
    ab = batch_norm_affine(bn)
    assert ab.exact
    for fmt in (torch.contiguous_format, torch.channels_last):
        y = (torch.randint(-300, 300, (2, channels, 9, 7), generator=g).float()
             + torch.randn(2, channels, 1, 1, generator=g)).contiguous(memory_format=fmt)
        with torch.no_grad():
            want = bn(y).contiguous()
        got = affine32(y.contiguous(), ab.alpha.view(1, -1, 1, 1), ab.beta.view(1, -1, 1, 1), ab.fused)
        assert torch.equal(got, want), _explain(got, want)


def test_native_epilogue_norm_step_and_fma_match_the_reference():
    """The kernel's norm step (BN before the spatial map) and fused affine steps equal the
    reference formulas (computed with exact fma32), on every path this CPU runs."""
    g = torch.Generator().manual_seed(5)
    n, c, o, h, w = 1, 70, 20, 6, 9
    x = torch.randn(n, c, h, w, generator=g)
    wt = torch.randn(o, c, 3, 3, generator=g)
    xb = native.pack_activations(x, np.zeros((1, c), np.float32))
    wb = native.pack_weights(wt)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    kw = dict(mode="float", bias=r(o), norm_scale=r(o), norm_bias=r(o), spatial=r(n, 1, h, w).abs() + 0.5,
              post_scale=r(o), post_bias=r(o))
    ints = native.conv2d(xb, wb, c, o, mode="int")[0].astype(np.float32)
    f32 = np.float32
    v = lambda k: kw[k].numpy().astype(f32).reshape(1, -1, 1, 1)  # noqa: E731
    for fused in (False, True):
        z = ints + v("bias")
        z = affine32(z, v("norm_scale"), v("norm_bias"), fused)
        z = (z * kw["spatial"].numpy()).astype(f32)
        want = affine32(z, v("post_scale"), v("post_bias"), fused)
        for isa in native.info()["supported"]:
            got = native.conv2d(xb, wb, c, o, isa=isa, fma=fused, **kw)
            np.testing.assert_array_equal(got, want, err_msg=f"{isa} fma={fused}")
