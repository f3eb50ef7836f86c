"""BAM accumulation: equals the explicit weighted sum followed by BN; history handling."""
import numpy as np
import pytest
import torch

from ops import BinaryConv2d
from ops.bam import BitAccumulation


def _np_bam(x, history, scales, bn):
    """Xa = BN(sum_i s_i * mean_hw|A_i| * A_i) over the last len(inputs) rows of scales."""
    inputs = list(history)[-(scales.shape[0] - 1):] if scales.shape[0] > 1 and history else []
    inputs = inputs + [x]
    rows = scales[scales.shape[0] - len(inputs):]
    total = np.zeros_like(x)
    for s, a in zip(rows, inputs):
        total += s[None, :, None, None] * np.abs(a).mean(axis=(2, 3), keepdims=True) * a
    mean, var, w, b, eps = bn
    return (total - mean[None, :, None, None]) / np.sqrt(var + eps)[None, :, None, None] * w[None, :, None, None] + b[None, :, None, None]


def _set(m, rng):
    with torch.no_grad():
        m.scales.copy_(torch.tensor(rng.normal(size=m.scales.shape)))
        m.norm.running_mean.copy_(torch.tensor(rng.normal(size=4)))
        m.norm.running_var.copy_(torch.tensor(rng.uniform(0.5, 2.0, size=4)))
        m.norm.weight.copy_(torch.tensor(rng.normal(size=4)))
        m.norm.bias.copy_(torch.tensor(rng.normal(size=4)))
    bn = m.norm
    return (bn.running_mean.numpy(), bn.running_var.numpy(), bn.weight.detach().numpy(), bn.bias.detach().numpy(), bn.eps)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("n_hist", [0, 1, 2, 3, 5])
def test_accumulation_equals_explicit_sum(depth, n_hist):
    rng = np.random.default_rng(depth * 10 + n_hist)
    m = BitAccumulation(4, depth).double().eval()
    bn = _set(m, rng)
    x = rng.normal(size=(2, 4, 5, 6))
    hist = [rng.normal(size=(2, 4, 5, 6)) for _ in range(n_hist)]
    got = m(torch.tensor(x), [torch.tensor(h) for h in hist]).detach().numpy()
    used = hist[len(hist) - min(depth, len(hist)):]
    np.testing.assert_allclose(got, _np_bam(x, used, m.scales.detach().numpy(), bn), rtol=1e-10, atol=1e-10)


def test_only_last_depth_entries_matter():
    m = BitAccumulation(4, 2).eval()
    x = torch.randn(1, 4, 5, 5)
    h = [torch.randn(1, 4, 5, 5) for _ in range(3)]
    other = [torch.randn(1, 4, 5, 5)] + h[1:]  # oldest replaced: outside the window of 2
    assert torch.equal(m(x, h), m(x, other))
    assert not torch.equal(m(x, h), m(x, h[:2] + [torch.randn(1, 4, 5, 5)]))


def test_conv_binarizes_accumulated_input():
    rng = np.random.default_rng(7)
    m = BinaryConv2d(4, 3, 3, bam_depth=1).double().eval()
    bn = _set(m.bam, rng)
    x = rng.normal(size=(1, 4, 5, 5))
    h = rng.normal(size=(1, 4, 5, 5))
    xa = _np_bam(x, [h], m.bam.scales.detach().numpy(), bn)
    ref = torch.nn.functional.conv2d(torch.tensor(np.where(xa >= 0, 1.0, -1.0)),
                                     torch.where(m.weight >= 0, 1.0, -1.0).double(), padding=1)
    assert torch.equal(m(torch.tensor(x), [torch.tensor(h)]), ref)
    # bam_depth = 0 ignores the history
    m0 = BinaryConv2d(4, 3, 3)
    xt = torch.tensor(x).float()
    assert torch.equal(m0(xt, [torch.randn(1, 4, 5, 5)]), m0(xt))


def test_training_mode_updates_running_stats_and_gradients():
    m = BitAccumulation(4, 2)
    x = torch.randn(3, 4, 5, 5, requires_grad=True)
    h = [torch.randn(3, 4, 5, 5, requires_grad=True) for _ in range(2)]
    before = m.norm.running_mean.clone()
    (m(x, h) * torch.randn(3, 4, 5, 5)).sum().backward()
    assert not torch.equal(before, m.norm.running_mean)
    assert m.scales.grad.abs().min() > 0
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in h + [x])


def test_bad_history_raises():
    m = BitAccumulation(4, 1)
    with pytest.raises(ValueError, match="history"):
        m(torch.randn(1, 4, 5, 5), [torch.randn(1, 3, 5, 5)])


def test_invalid_depth():
    with pytest.raises(ValueError, match="'bam_depth'"):
        BitAccumulation(4, 4)
