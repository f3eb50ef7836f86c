"""ARI: P parts equal the sum of P manual binary convs; initialisation."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ops import BinaryConv2d
from ops.ari import initial_thresholds


def _sgn(t):
    return torch.where(t >= 0, 1.0, -1.0).to(t.dtype)


@pytest.mark.parametrize("parts", [2, 3, 4])
@pytest.mark.parametrize("threshold", ["zero", "channel", "local_mean"])
def test_parts_equal_sum_of_manual_convs(parts, threshold):
    torch.manual_seed(parts)
    m = BinaryConv2d(3, 5, 3, parts=parts, threshold=threshold, weight_scale="channel_mean").double()
    with torch.no_grad():
        m.ari.tau.add_(torch.randn_like(m.ari.tau) * 0.1)
        m.ari.gamma.copy_(torch.rand_like(m.ari.gamma) + 0.1)
        if threshold == "channel":
            m.threshold.beta.copy_(torch.randn(3) * 0.2)
        m.ari.initialized.fill_(True)  # keep the thresholds set above (no data-dependent init)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    w = m.weight.detach()
    alpha = w.abs().mean(dim=(1, 2, 3))
    if threshold == "local_mean":
        xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
        base = x - F.avg_pool2d(xp, 3, stride=1)
    elif threshold == "channel":
        base = x - m.threshold.beta.detach().view(1, 3, 1, 1)
    else:
        base = x
    ref = 0
    for p in range(parts):
        bp = _sgn(base - m.ari.tau.detach()[p].view(1, 3, 1, 1))
        wb = _sgn(w) * alpha.view(5, 1, 1, 1)
        ref = ref + m.ari.gamma.detach()[p].view(1, 5, 1, 1) * F.conv2d(bp, wb, padding=1)
    torch.testing.assert_close(m(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("parts", [1, 2, 3, 4])
def test_initial_thresholds_symmetric_uniform(parts):
    t = initial_thresholds(parts)
    t0 = (parts - 1) / parts
    np.testing.assert_allclose(t.numpy(), np.linspace(-t0, t0, parts), atol=1e-7)
    np.testing.assert_allclose(t.numpy(), -t.numpy()[::-1], atol=1e-7)


@pytest.mark.parametrize("parts", [2, 3, 4])
def test_initial_code_is_uniform_quantizer(parts):
    """sum_p sign(x - tau_p) / P at init equals the (P+1)-level uniform quantizer of clip(x,-1,1)."""
    m = BinaryConv2d(1, 1, 1, parts=parts).eval()  # eval: construction-time thresholds kept
    with torch.no_grad():
        m.weight.fill_(1.0)
    x = torch.linspace(-1.3, 1.3, 53).view(1, 1, 1, -1) + 1e-4
    levels = torch.round((torch.clamp(x, -1, 1) + 1) * parts / 2) * 2 / parts - 1
    torch.testing.assert_close(m(x), levels, rtol=0, atol=1e-6)
    assert m.ari.tau.shape == (parts, 1) and m.ari.gamma.shape == (parts, 1)


def test_single_part_has_no_parameters():
    m = BinaryConv2d(3, 3, 3, parts=1)
    assert not any(n.startswith("ari.") for n, _ in m.named_parameters())
