"""EBSR / SCALES re-scaling (ops.rescale): formulas, placement after BN, gradients, bounds."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ops import BinaryConv2d, sign
from ops.rescale import Rescale, channel_map, layer_map, spatial_map


def _sig2(z):
    return 2.0 / (1.0 + np.exp(-z))


def _np_conv3(k, w, b):
    """Direct-loop 1 -> 1 3x3 conv with zero padding (float64)."""
    n, _, h, wd = k.shape
    kp = np.zeros((n, 1, h + 2, wd + 2))
    kp[:, :, 1:-1, 1:-1] = k
    out = np.full((n, 1, h, wd), float(b))
    for i in range(3):
        for j in range(3):
            out += w[i, j] * kp[:, :, i:i + h, j:j + wd]
    return out


def test_maps_equal_explicit_formulas():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 6, 7, generator=g, dtype=torch.float64) * 2
    cw, cb = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    sw, sb = torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64), torch.randn(1, generator=g, dtype=torch.float64)
    lw, lb = torch.tensor([0.3], dtype=torch.float64), torch.tensor([-0.2], dtype=torch.float64)
    xn = x.numpy()
    mu = [np.abs(xn[n]).mean() for n in range(3)]  # the sample's magnitude
    # channel: G[n, o] = 2 sigma(sum_c V[o, c] mean_hw|x|[n, c] / mu[n] + v[o])
    want_g = np.zeros((3, 4))
    for n in range(3):
        for o in range(4):
            z = cb[o].item() + sum(cw[o, c].item() * np.abs(xn[n, c]).mean() / mu[n] for c in range(5))
            want_g[n, o] = _sig2(z)
    np.testing.assert_allclose(channel_map(x, cw, cb).numpy(), want_g, rtol=1e-12)
    # layer: L[n] = 2 sigma(a log mu[n] + b)
    want_l = np.array([[_sig2(0.3 * np.log(mu[n]) - 0.2)] for n in range(3)])
    np.testing.assert_allclose(layer_map(x, lw, lb).numpy(), want_l, rtol=1e-12)
    # spatial: S = 2 sigma(conv3x3(mean_c|x| / mu) + b)
    k = np.abs(xn).mean(1, keepdims=True) / np.array(mu)[:, None, None, None]
    want_s = _sig2(_np_conv3(k, sw[0, 0].numpy(), sb.item()))
    np.testing.assert_allclose(spatial_map(x, sw, sb).numpy(), want_s, rtol=1e-12)
    # the maps do not depend on the input's scale (k = 1 or 255 alike), except L through log mu
    torch.testing.assert_close(channel_map(255 * x, cw, cb), channel_map(x, cw, cb), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(spatial_map(255 * x, sw, sb), spatial_map(x, sw, sb), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["channel", "spatial", "both"])
def test_module_factors(mode):
    r = Rescale(mode, 4, 5).double()
    assert r.has_channel == (mode != "spatial") and r.has_layer == (mode != "spatial")
    assert r.has_spatial == (mode != "channel")
    with torch.no_grad():
        for p in r.parameters():
            p.normal_()
    x = torch.randn(2, 5, 4, 4, dtype=torch.float64)
    y = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    want = y.clone()
    if r.has_spatial:
        want = want * spatial_map(x, r.spatial_weight, r.spatial_bias)
    if r.has_channel:
        want = want * channel_map(x, r.channel_weight, r.channel_bias)[:, :, None, None]
        want = want * layer_map(x, r.layer_weight, r.layer_bias)[:, :, None, None]
    torch.testing.assert_close(r(y, x), want, rtol=1e-12, atol=1e-12)


def test_factors_bounded_and_patch_invariant():
    """Every factor lies in (0, 2) even for huge inputs; the pooled channel / layer factors of an
    image tiled 2 x 2 from a patch equal those of the patch (means are size-invariant)."""
    r = Rescale("both", 3, 3)
    with torch.no_grad():
        for p in r.parameters():
            p.normal_(0, 3)
    big = torch.randn(2, 3, 8, 8) * 1e4
    for f in (r.spatial(big), r.channel(big)):
        assert (f >= 0).all() and (f <= 4).all()  # L * G in (0, 4), S in (0, 2)
    assert (r.spatial(big) <= 2).all()
    patch = torch.randn(2, 3, 6, 6)
    full = patch.repeat(1, 1, 2, 2)
    torch.testing.assert_close(r.channel(full), r.channel(patch), rtol=1e-6, atol=1e-6)


def test_initialised_to_one():
    r = Rescale("both", 4, 6)
    x = torch.randn(2, 6, 5, 5) * 3
    assert torch.equal(r.spatial(x), torch.ones(2, 1, 5, 5))
    assert torch.equal(r.channel(x), torch.ones(2, 4))


def _bn_train(y):
    mu = y.mean(dim=(0, 2, 3), keepdim=True)
    var = y.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (y - mu) / torch.sqrt(var + 1e-5)


def test_channel_rescale_after_bn_gets_gradient_analytic():
    """With BN (training mode) the rescale sits after BN: at init (all maps 0, factors 1),
    Y = BN(y) and dL/dv_o = 1/2 sum_{n,h,w} R BN(y)_o, dL/dV[o, c] = 1/2 sum_n p[n, c] sum_hw R BN(y)_o
    (p = mean_hw|X| / mean_chw|X|), dL/db (layer) = 1/2 sum R BN(y), dL/db (spatial) = 1/2 sum R BN(y):
    2 sigma'(0) = 1/2. The old gamma before BN had gradient ~1e-6 (cancelled by BN)."""
    torch.manual_seed(0)
    m = BinaryConv2d(4, 4, 3, norm="bn", rescale="both").double()
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64) + 0.3
    R = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    (m(x) * R).sum().backward()
    y = F.conv2d(sign(x), sign(m.weight.detach()), padding=1)
    q = (R * _bn_train(y)).sum(dim=(2, 3))  # (N, O)
    p = x.abs().mean(dim=(2, 3)) / x.abs().mean(dim=(1, 2, 3))[:, None]  # (N, C): relative magnitudes
    r = m.rescale
    torch.testing.assert_close(r.channel_bias.grad, 0.5 * q.sum(0), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(r.channel_weight.grad, 0.5 * q.t() @ p, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(r.layer_bias.grad, 0.5 * q.sum().view(1), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(r.spatial_bias.grad, 0.5 * q.sum().view(1), rtol=1e-9, atol=1e-9)
    assert r.channel_bias.grad.abs().max() > 1e-2  # not cancelled


def test_rescale_is_after_bn_not_before():
    """A channel factor that a BN would cancel is visible in the output: changing v changes Y
    even with a training-mode BN (it would not if the factor came before BN)."""
    torch.manual_seed(1)
    m = BinaryConv2d(4, 4, 3, norm="bn", rescale="channel")
    x = torch.randn(2, 4, 5, 5)
    y0 = m(x)
    with torch.no_grad():
        m.rescale.channel_bias.fill_(1.0)
    y1 = m(x)
    torch.testing.assert_close(y1, y0 * 2 * torch.sigmoid(torch.tensor(1.0)), rtol=1e-5, atol=1e-5)
