"""ARI thresholds: data-dependent initialisation on the first training forward (ops.ari)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ops import BinaryConv2d


def _np_tau(d, parts):
    """tau[p, c] = r_c * (-t0 + 2 t0 p / (P - 1)), r_c = RMS of channel c (loops; 1 if r_c = 0)."""
    n, c, h, w = d.shape
    t0 = (parts - 1) / parts
    out = np.zeros((parts, c))
    for ci in range(c):
        acc = 0.0
        for ni in range(n):
            for yi in range(h):
                for xi in range(w):
                    acc += float(d[ni, ci, yi, xi]) ** 2
        r = (acc / (n * h * w)) ** 0.5
        r = r if r > 0 else 1.0
        for p in range(parts):
            out[p, ci] = r * (-t0 + 2 * t0 * p / (parts - 1))
    return out


def _known_input():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64)
    x = x * torch.tensor([0.2, 1.0, 3.0, 7.0], dtype=torch.float64).view(1, 4, 1, 1) + 0.5
    return x


@pytest.mark.parametrize("parts", [2, 3, 4])
@pytest.mark.parametrize("threshold", ["zero", "channel", "local_mean"])
def test_first_training_forward_sets_tau(parts, threshold):
    m = BinaryConv2d(4, 3, 3, parts=parts, threshold=threshold).double()
    beta = torch.tensor([0.3, -0.1, 0.0, 2.0], dtype=torch.float64)
    if threshold == "channel":
        with torch.no_grad():
            m.threshold.beta.copy_(beta)
    x = _known_input()
    assert not bool(m.ari.initialized)
    y = m(x)
    assert bool(m.ari.initialized)
    xn = x.numpy()
    if threshold == "channel":
        d = xn - beta.numpy()[None, :, None, None]
    elif threshold == "local_mean":
        d = xn - F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1).numpy()
    else:
        d = xn
    tau = _np_tau(d, parts)
    np.testing.assert_allclose(m.ari.tau.detach().numpy(), tau, rtol=1e-10, atol=1e-12)
    # the first forward already binarizes with the new thresholds
    w = torch.where(m.weight >= 0, 1.0, -1.0).double()
    ref = 0
    for p in range(parts):
        b = torch.where(torch.tensor(d) - torch.tensor(tau[p]).view(1, 4, 1, 1) >= 0, 1.0, -1.0).double()
        ref = ref + m.ari.gamma.detach()[p].view(1, 3, 1, 1) * F.conv2d(b, w, padding=1)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


def test_only_first_training_forward_and_not_eval():
    m = BinaryConv2d(4, 4, 3, parts=3).eval()
    before = m.ari.tau.detach().clone()
    m(_known_input().float())
    assert torch.equal(m.ari.tau.detach(), before) and not bool(m.ari.initialized)  # eval: no init
    m.train()
    m(_known_input().float())
    first = m.ari.tau.detach().clone()
    assert not torch.equal(first, before)
    m(_known_input().float() * 10)
    assert torch.equal(m.ari.tau.detach(), first)  # second forward: no re-init


def test_zero_channel_falls_back_to_unit_scale():
    m = BinaryConv2d(2, 2, 1, parts=2)
    x = torch.randn(2, 2, 3, 3)
    x[:, 1] = 0
    m(x)
    torch.testing.assert_close(m.ari.tau.detach()[:, 1], torch.tensor([-0.5, 0.5]))


def test_unit_rms_reproduces_fixed_init():
    """For an input whose channels have RMS 1, the rule gives tau = linspace(-(P-1)/P, (P-1)/P, P)."""
    m = BinaryConv2d(3, 3, 1, parts=4)
    x = torch.randn(2, 3, 8, 8)
    x = x / x.pow(2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
    m(x)
    want = torch.linspace(-0.75, 0.75, 4)[:, None].expand(4, 3)
    torch.testing.assert_close(m.ari.tau.detach(), want, rtol=1e-5, atol=1e-6)


def test_state_dict_round_trip_keeps_thresholds():
    m = BinaryConv2d(4, 4, 3, parts=3, threshold="channel")
    m(_known_input().float())
    sd = m.state_dict()
    assert "ari.initialized" in sd and bool(sd["ari.initialized"])
    fresh = BinaryConv2d(4, 4, 3, parts=3, threshold="channel")
    fresh.load_state_dict(sd)
    assert bool(fresh.ari.initialized)
    fresh(torch.randn(2, 4, 5, 5) * 5)  # training forward after loading: no re-init
    assert torch.equal(fresh.ari.tau.detach(), m.ari.tau.detach())


def test_old_checkpoint_without_flag_loads_as_initialized():
    m = BinaryConv2d(4, 4, 3, parts=2)
    with torch.no_grad():
        m.ari.tau.add_(0.123)
    sd = {k: v for k, v in m.state_dict().items() if k != "ari.initialized"}
    fresh = BinaryConv2d(4, 4, 3, parts=2)
    fresh.load_state_dict(sd)  # strict: the missing flag is supplied
    assert bool(fresh.ari.initialized)
    fresh(torch.randn(1, 4, 5, 5))
    assert torch.equal(fresh.ari.tau.detach(), m.ari.tau.detach())


def test_parts_one_has_no_flag():
    assert "ari.initialized" not in BinaryConv2d(4, 4, 3).state_dict()
