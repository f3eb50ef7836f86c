"""Packed runtime: ``ops.native.compile(model)`` matches the PyTorch model in eval mode.

How closely: binarization decisions and integer convs are bit-identical (the runtime packs with
the plan's own float operations); the float epilogue differs from PyTorch only by float32
rounding order, so outputs agree to rtol 1e-5 / atol 1e-4 of the output scale (checked below
per layer and for whole models)."""
import pytest
import torch
from torch import nn

import ops.native as native
from ops import BinaryBlock, BinaryConv2d, BinaryUpsampler
from ops.native.runtime import NativeBinaryConv2d
from tests.model_helpers import perturb  # noqa: E402


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Move every parameter and BN statistic away from its init so nothing is trivially 1/0."""
    return perturb(model, seed)


def assert_matches(model: nn.Module, x: torch.Tensor, channels_last: bool = True):
    with torch.no_grad():
        want = model(x)
    compiled = native.compile(model, channels_last=channels_last)
    got = compiled(x)
    assert got.shape == want.shape and got.dtype == torch.float32 and got.is_contiguous()
    scale = float(want.abs().max()) + 1e-6
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4 * scale)
    return compiled


LAYERS = {
    "plain": {},
    "channel_threshold": dict(threshold="channel"),
    "local_mean3": dict(threshold="local_mean", threshold_kernel=3),
    "local_mean5_parts2": dict(threshold="local_mean", threshold_kernel=5, parts=2),
    "ari_parts3": dict(parts=3, weight_scale="channel_mean"),
    "ari_parts4_channel": dict(parts=4, threshold="channel"),
    "rescale_channel": dict(rescale="channel", bias=True),
    "rescale_spatial": dict(rescale="spatial", skip="fp"),
    "rescale_both_bn": dict(rescale="both", norm="bn", skip="fp", nonlinearity="prelu"),
    "e2fif": dict(norm="bn", skip="fp", nonlinearity="leaky_relu", nonlinearity_at="after_skip"),
    "bbcu": dict(threshold="channel", weight_scale="channel_mean", skip="fp",
                 nonlinearity="rprelu", nonlinearity_at="before_skip"),
    "prelu_before": dict(nonlinearity="prelu", nonlinearity_at="before_skip", bias=True, norm="bn"),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("channels_last", [True, False])
def test_single_layer_matches(name, channels_last):
    conv = randomize(BinaryConv2d(24, 24, 3, **LAYERS[name]), seed=len(name))
    x = torch.randn(2, 24, 9, 11, generator=torch.Generator().manual_seed(3))
    assert_matches(nn.Sequential(conv), x, channels_last)


@pytest.mark.parametrize("k,cin,cout", [(1, 70, 9), (3, 3, 16), (3, 130, 8), (1, 16, 64)])
def test_bare_layer_shapes(k, cin, cout):
    skip = dict(skip="fp") if cout % cin == 0 else {}
    conv = randomize(BinaryConv2d(cin, cout, k, threshold="channel", **skip), seed=k)
    x = torch.randn(1, cin, 5, 1 if k == 1 else 6)
    compiled = assert_matches(conv, x)
    assert isinstance(compiled.module, NativeBinaryConv2d)


@pytest.mark.parametrize("depths", [(0, 1), (1, 2, 3), (2, 0, 3)])
def test_bam_block_matches(depths):
    layers = [dict(bam_depth=d, threshold="channel", norm="bn", skip="fp") for d in depths]
    block = randomize(BinaryBlock(16, layers, residual=True), seed=sum(depths))
    assert_matches(block, torch.randn(2, 16, 7, 8))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upsampler_matches(scale):
    up = randomize(BinaryUpsampler(8, scale, skip="fp", threshold="channel"), seed=scale)
    assert_matches(up, torch.randn(1, 8, 6, 5))


def test_sr_model_matches_and_model_unchanged():
    """A small SRResNet-style model: FP head, BinaryBlocks (mixed choices), upsampler, FP tail."""
    body = [BinaryBlock(32, [dict(threshold="local_mean", norm="bn", skip="fp"),
                             dict(parts=2, rescale="both", skip="fp", bam_depth=1)]),
            BinaryBlock(32, [dict(threshold="channel", skip="fp", nonlinearity="rprelu",
                                  nonlinearity_at="before_skip")] * 2)]
    model = randomize(nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), *body,
                                    BinaryUpsampler(32, 2, skip="fp"), nn.Conv2d(32, 3, 3, padding=1)))
    x = torch.rand(1, 3, 12, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compiled = assert_matches(model, x)
    assert sum(isinstance(m, NativeBinaryConv2d) for m in compiled.modules()) == 5
    assert not any(isinstance(m, BinaryConv2d) for m in compiled.modules())
    assert sum(isinstance(m, BinaryConv2d) for m in model.modules()) == 5  # original untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.skipif(native.kernels._ext is None, reason="C++ extension not built")
def test_runtime_uses_native_integer_conv(monkeypatch):
    """Every binary conv goes through the extension's compiled layer (its runs counted)."""
    ext = native.kernels._ext
    calls = []
    real = ext.Layer

    class Counting:
        def __init__(self, *a, **k):
            self.inner, self.shape = real(*a, **k), a[1:3]

        def run(self, *a, **k):
            calls.append(self.shape)
            return self.inner.run(*a, **k)

    monkeypatch.setattr(ext, "Layer", Counting)
    block = randomize(BinaryBlock(16, [dict(), dict(skip="fp")]))
    assert_matches(block, torch.randn(1, 16, 5, 5))
    assert calls == [(16, 16), (16, 16)]


def test_compile_errors():
    with pytest.raises(ValueError, match="model"):
        native.compile("not a model")
    with pytest.raises(ValueError, match="threads"):
        native.compile(nn.Sequential(BinaryConv2d(4, 4, 3)), threads=0)
    compiled = native.compile(nn.Sequential(BinaryConv2d(4, 4, 3)))
    with pytest.raises(ValueError, match=r"\(N, 4, H, W\)"):
        compiled(torch.randn(1, 5, 3, 3))
    with pytest.raises(ValueError, match="training=True|eval"):
        NativeBinaryConv2d(BinaryConv2d(4, 4, 3).train())
