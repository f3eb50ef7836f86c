"""Packed runtime agreement for the authors' operators: SCALES input-dependent re-scaling after BN
(per-sample channel scale), BAM one-bit accumulation with a history threaded across blocks, and
ARI thresholds after their data-dependent initialisation. Same tolerance as test_runtime.py:
rtol 1e-5, atol 1e-4 of the output scale."""
import pytest
import torch
from torch import nn

import ops.native as native
from ops import BamHistory, BinaryBlock, BinaryConv2d
from ops.native import kernels
from ops.native.runtime import NativeBinaryConv2d
from tests.model_helpers import perturb  # noqa: E402


def randomize(model, seed=0):
    return perturb(model, seed, weight_std=0.3)


def assert_matches(model, x, channels_last=True):
    with torch.no_grad():
        want = model(x)
    got = native.compile(model, channels_last=channels_last)(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4 * (float(want.abs().max()) + 1e-6))
    return got


RESCALE_LAYERS = {
    "channel_bn": dict(rescale="channel", norm="bn", bias=True),
    "spatial_bn_skip": dict(rescale="spatial", norm="bn", skip="fp"),
    "both_bn_prelu_after": dict(rescale="both", norm="bn", skip="fp", nonlinearity="prelu"),
    "both_bn_rprelu_before": dict(rescale="both", norm="bn", skip="fp", nonlinearity="rprelu",
                                  nonlinearity_at="before_skip", threshold="channel"),
    "both_nobn_parts2": dict(rescale="both", parts=2, weight_scale="channel_mean"),
}


@pytest.mark.parametrize("name", sorted(RESCALE_LAYERS))
@pytest.mark.parametrize("channels_last", [True, False])
def test_rescale_layers_match_per_sample(name, channels_last):
    conv = randomize(BinaryConv2d(16, 16, 3, **RESCALE_LAYERS[name]), seed=len(name))
    # three samples of different magnitude: the channel / layer factors differ per sample
    x = torch.randn(3, 16, 7, 9, generator=torch.Generator().manual_seed(1))
    x = x * torch.tensor([0.5, 1.0, 3.0]).view(3, 1, 1, 1)
    g = conv.rescale.channel(x)
    if g is not None:
        assert not torch.allclose(g[0], g[2])
    assert_matches(nn.Sequential(conv), x, channels_last)


def test_rescale_upsampler_repeat_skip():
    conv = randomize(BinaryConv2d(8, 32, 3, rescale="both", norm="bn", skip="fp"), seed=3)
    assert_matches(conv, torch.randn(2, 8, 5, 6))


class ThreadedBody(nn.Module):
    """What a builder does to let BAM cross block boundaries: one BamHistory for the body."""

    def __init__(self, blocks):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x):
        history = BamHistory()
        for block in self.blocks:
            x = block(x, history=history)
        return x


def test_bam_history_across_blocks_matches():
    layers = [dict(bam_depth=3, threshold="channel", norm="bn", skip="fp"),
              dict(bam_depth=2, norm="bn", skip="fp", nonlinearity="leaky_relu")]
    body = randomize(ThreadedBody([BinaryBlock(16, layers), BinaryBlock(16, layers),
                                   BinaryBlock(16, layers)]), seed=4)
    x = torch.randn(2, 16, 6, 7)
    got = assert_matches(body, x)
    # the threaded history matters (block-local wiring gives another result)
    with torch.no_grad():
        local = body.blocks[2](body.blocks[1](body.blocks[0](x)))
    assert not torch.allclose(got, local)


def test_ari_after_data_init_matches():
    model = nn.Sequential(BinaryConv2d(16, 16, 3, parts=3, threshold="channel", norm="bn", skip="fp"),
                          BinaryConv2d(16, 16, 3, parts=4, weight_scale="channel_mean", skip="fp"))
    x = torch.randn(4, 16, 6, 6) * 2.5
    model.train()
    model(x)  # first training forward: data-dependent tau
    assert all(bool(m.ari.initialized) for m in model)
    model.eval()
    assert_matches(model, torch.randn(2, 16, 6, 6) * 2.5)


def test_fallback_per_sample_channel_scale(monkeypatch):
    conv = randomize(BinaryConv2d(8, 8, 3, rescale="both", norm="bn", skip="fp"), seed=9)
    x = torch.randn(3, 8, 5, 5)
    with torch.no_grad():
        want = conv(x)
    monkeypatch.setattr(kernels, "_ext", None)
    monkeypatch.setattr(kernels, "_warned", True)
    monkeypatch.setattr(kernels, "_resolved", {})
    nat = NativeBinaryConv2d(conv)
    got = nat(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4 * float(want.abs().max()))
