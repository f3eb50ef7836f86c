"""BAM accumulation: equals the explicit sum of scaled one-bit values followed by BN; history."""
import numpy as np
import pytest
import torch

from ops import BinaryConv2d
from ops.bam import BitAccumulation


def _np_bam(x, history, scales, bn):
    """Xa = BN(sum_i s_i * mean_hw|A_i| * sign(A_i)) over the last len(inputs) rows of scales."""
    inputs = list(history)[-(scales.shape[0] - 1):] if scales.shape[0] > 1 and history else []
    inputs = inputs + [x]
    rows = scales[scales.shape[0] - len(inputs):]
    total = np.zeros_like(x)
    for s, a in zip(rows, inputs):
        total += s[None, :, None, None] * np.abs(a).mean(axis=(2, 3), keepdims=True) * np.where(a >= 0, 1.0, -1.0)
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


# -- one-bit accumulation: gradient, history object, cross-block wiring -----------------------

from ops import BamHistory, BinaryBlock  # noqa: E402
from ops.bam import accumulate  # noqa: E402
from ops.quantizers import sign_ste  # noqa: E402


def test_accumulation_is_linear_in_magnitude():
    """sum_i beta_i sign(A_i): scaling every A_i by k > 0 scales the sum by k (not k^2)."""
    m = BitAccumulation(4, 2).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    h = [torch.randn(2, 4, 5, 5, dtype=torch.float64) for _ in range(2)]
    a = accumulate(x, h, m.scales)
    torch.testing.assert_close(accumulate(3 * x, [3 * t for t in h], m.scales), 3 * a, rtol=1e-12, atol=1e-12)


def test_accumulation_gradient_analytic():
    """L = sum R * s ⊙ mean_hw|A| ⊙ sign_ste(A); by hand:
    dL/dA[n,c,h,w] = s_c (sign(A)/HW * sum_hw' R sign(A) + mean_hw|A| * R * 1{|A| <= 1})."""
    torch.manual_seed(3)
    s = torch.randn(1, 4, dtype=torch.float64)
    a = (torch.randn(2, 4, 5, 6, dtype=torch.float64) * 1.2).requires_grad_()
    R = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    (accumulate(a, (), s, sign_ste) * R).sum().backward()
    A = a.detach()
    sg = torch.where(A >= 0, 1.0, -1.0).double()
    hw = A.shape[2] * A.shape[3]
    sv = s.view(1, 4, 1, 1)
    want = sv * (sg / hw * (R * sg).sum(dim=(2, 3), keepdim=True)
                 + A.abs().mean(dim=(2, 3), keepdim=True) * R * (A.abs() <= 1).double())
    torch.testing.assert_close(a.grad, want, rtol=1e-10, atol=1e-10)


def test_bam_history_keeps_last_entries():
    h = BamHistory(maxlen=2)
    ts = [torch.full((1, 1, 1, 1), float(i)) for i in range(4)]
    for t in ts:
        h.push(t)
    assert len(h) == 2 and h[0] is ts[2] and h[1] is ts[3] and list(h) == ts[2:]
    h.clear()
    assert len(h) == 0
    with pytest.raises(ValueError, match="maxlen"):
        BamHistory(maxlen=-1)
    with pytest.raises(ValueError, match="history entry"):
        h.push("x")


def _manual_chain(convs, x, residual_blocks, cross):
    """Run blocks of convs by hand with explicit history lists: each block returns convs(x) + x."""
    hist = []
    out = x
    for block in convs:
        if not cross:
            hist = []
        inp_block = out
        for conv in block:
            inp = out
            out = conv(inp, tuple(hist))
            hist.append(inp)
        if residual_blocks:
            out = out + inp_block
    return out


@pytest.mark.parametrize("cross", [False, True])
def test_block_history_local_or_threaded(cross):
    """Without a history BinaryBlock keeps the block-local wiring; with one BamHistory threaded
    through consecutive blocks the first conv of block 2 also accumulates block 1's inputs."""
    torch.manual_seed(5)
    layers = [dict(bam_depth=3, norm="bn", skip="fp"), dict(bam_depth=2, skip="fp")]
    blocks = [BinaryBlock(4, layers).eval(), BinaryBlock(4, layers).eval()]
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        if cross:
            h = BamHistory()
            got = blocks[1](blocks[0](x, history=h), history=h)
            assert len(h) == 3  # maxlen 3 of the 4 conv inputs
        else:
            got = blocks[1](blocks[0](x))
        want = _manual_chain([list(b.convs) for b in blocks], x, True, cross)
    assert torch.equal(got, want)
    if cross:  # and the threaded history changes the result versus block-local
        with torch.no_grad():
            assert not torch.equal(got, blocks[1](blocks[0](x)))


def test_block_rejects_plain_sequence_history():
    b = BinaryBlock(4, [dict(bam_depth=1)])
    with pytest.raises(ValueError, match="history"):
        b(torch.randn(1, 4, 3, 3), history=[torch.randn(1, 4, 3, 3)])
