"""Thresholds: zero, channel and local_mean (box mean against numpy loops), gradients."""
import numpy as np
import pytest
import torch

from ops import BinaryConv2d
from ops.thresholds import Threshold, box_mean


def _np_box_mean(x, k):
    """Loop reference: mean over the k x k window, indices clamped to the image (replicate)."""
    n, c, h, w = x.shape
    p = k // 2
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(h):
        for j in range(w):
            acc = np.zeros((n, c))
            for u in range(-p, p + 1):
                for v in range(-p, p + 1):
                    acc += x[:, :, min(max(i + u, 0), h - 1), min(max(j + v, 0), w - 1)]
            out[:, :, i, j] = acc / (k * k)
    return out


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("hw", [(6, 7), (2, 3), (1, 1)])
def test_box_mean_matches_loops(k, hw):
    x = np.random.default_rng(k).normal(size=(2, 3) + hw)
    got = box_mean(torch.tensor(x), k).numpy()
    np.testing.assert_allclose(got, _np_box_mean(x, k), rtol=1e-12, atol=1e-12)


def test_zero_threshold():
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(Threshold("zero", 3)(x), torch.zeros_like(x))
    assert torch.equal(Threshold("zero", 3).centred(x), x)
    assert Threshold("zero", 3).static() is None


def test_channel_threshold_values():
    t = Threshold("channel", 3)
    assert torch.equal(t.beta.detach(), torch.zeros(3))
    with torch.no_grad():
        t.beta.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(t(x)[1, :, 2, 3], torch.tensor([0.5, -1.0, 2.0]))


@pytest.mark.parametrize("k", [3, 5])
def test_local_mean_threshold_values(k):
    x = np.random.default_rng(0).normal(size=(1, 2, 6, 5)).astype(np.float32)
    t = Threshold("local_mean", 2, k)
    np.testing.assert_allclose(t(torch.tensor(x)).numpy(), _np_box_mean(x, k), rtol=1e-5, atol=1e-6)
    assert t.local_kernel == k and t.static() is None


@pytest.mark.parametrize("k", [3, 5])
def test_local_mean_gradient_through_both_paths(k):
    """d/dx sum(G * (x - boxmean(x))) = G - boxmean^T(G): check by finite differences and
    by the explicit adjoint built from the numpy loop reference."""
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    t = Threshold("local_mean", 2, k)
    assert torch.autograd.gradcheck(t.centred, (x,))
    g = np.random.default_rng(1).normal(size=(1, 2, 5, 6))
    (t.centred(x) * torch.tensor(g)).sum().backward()
    # explicit adjoint: column e_ij of the box operator applied to g
    adj = np.zeros_like(g)
    for i in range(5):
        for j in range(6):
            e = np.zeros_like(g)
            e[:, :, i, j] = 1.0
            adj[:, :, i, j] = (_np_box_mean(e, k) * g).sum(axis=(2, 3))[:, :]
    np.testing.assert_allclose(x.grad.numpy(), g - adj, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [3, 5])
def test_conv_binarizes_against_local_mean(k):
    m = BinaryConv2d(3, 2, 3, threshold="local_mean", threshold_kernel=k)
    x = np.random.default_rng(2).normal(size=(1, 3, 6, 6))
    b = np.where(x - _np_box_mean(x, k) >= 0, 1.0, -1.0)
    ref = torch.nn.functional.conv2d(torch.tensor(b), torch.where(m.weight >= 0, 1.0, -1.0).double(), padding=1)
    got = m.double()(torch.tensor(x))
    assert torch.equal(got, ref)


def test_threshold_gradients_to_beta():
    m = BinaryConv2d(3, 2, 3, threshold="channel", act_estimator="ste")
    x = torch.randn(2, 3, 5, 5) * 0.5
    m(x).sum().backward()
    # d sign(x - beta)/d beta = -1{|x - beta| <= 1} * (upstream): nonzero and negative-signed sum
    assert m.threshold.beta.grad.abs().sum() > 0


def test_invalid_threshold_arguments():
    with pytest.raises(ValueError, match="'box'.*'threshold'.*local_mean"):
        Threshold("box", 3)
    with pytest.raises(ValueError, match="4.*'threshold_kernel'"):
        box_mean(torch.zeros(1, 1, 3, 3), 4)
