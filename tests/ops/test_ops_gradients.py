"""Gradients reach every parameter of a BinaryConv2d under a covering set of choices, no NaN."""
import math

import pytest
import torch

from _ops_covering import each_value, label, pairwise_structural
from ops import BinaryConv2d
from ops.choices import CHOICES

COMBOS = pairwise_structural() + each_value()


def test_covering_set_is_complete():
    seen = {(n, v) for c in COMBOS for n, v in c.items()}
    for name, (_, values) in CHOICES.items():
        for v in values:
            assert (name, v) in seen
    import itertools
    from _ops_covering import STRUCTURAL
    pairs = {(a, c[a], b, c[b]) for c in COMBOS for a, b in itertools.combinations(STRUCTURAL, 2)}
    for a, b in itertools.combinations(STRUCTURAL, 2):
        for va in CHOICES[a][1]:
            for vb in CHOICES[b][1]:
                assert (a, va, b, vb) in pairs


def _may_vanish(name, c):
    """Parameters whose gradient is zero up to rounding by an exact invariance."""
    if c["norm"] == "bn" and name == "bias":
        return True  # a per-channel constant before a training-mode BN
    if c["threshold"] == "local_mean" and name == "bam.norm.bias":
        return True  # a per-channel constant removed by Xa - boxmean(Xa)
    return False


@pytest.mark.parametrize("combo", COMBOS, ids=[label(c) for c in COMBOS])
def test_gradient_reaches_every_parameter(combo):
    torch.manual_seed(0)
    out_ch = 8 if combo["skip"] == "fp" and combo["parts"] % 2 == 0 else 4  # also the repeat skip
    m = BinaryConv2d(4, out_ch, 3, **combo)
    m.weight_binarizer.set_progress(0.3)
    x = (torch.randn(2, 4, 6, 6) * 0.8).requires_grad_()
    history = tuple(torch.randn(2, 4, 6, 6) * 0.8 for _ in range(3))
    y = m(x, history)
    assert y.shape == (2, out_ch, 6, 6)
    assert torch.isfinite(y).all()
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in m.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient in {name}"
        if not _may_vanish(name, m.choices):
            assert p.grad.abs().sum() > 0, f"zero gradient in {name}"


def test_expected_parameters_exist():
    m = BinaryConv2d(4, 4, 3, threshold="channel", parts=3, act_estimator="aae", rescale="both",
                     bam_depth=2, norm="bn", nonlinearity="rprelu", bias=True)
    names = {n for n, _ in m.named_parameters()}
    assert {"weight", "bias", "threshold.beta", "ari.tau", "ari.gamma", "act_binarizer.theta",
            "rescale.channel_weight", "rescale.channel_bias", "rescale.layer_weight",
            "rescale.layer_bias", "rescale.spatial_weight", "rescale.spatial_bias", "bam.scales",
            "norm.weight", "nonlinearity.shift", "nonlinearity.bias", "nonlinearity.weight"} <= names
    assert {n for n, _ in BinaryConv2d(4, 4, 3).named_parameters()} == {"weight"}
    assert math.isclose(float(torch.nn.functional.softplus(m.act_binarizer.theta.detach())), 1.0, rel_tol=1e-6)
