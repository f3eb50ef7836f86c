"""ConvPlan: run_plan(m.plan(), x, h) equals the eval-mode module for every choice class."""
import pytest
import numpy as np
import torch

from _ops_covering import label, pairwise_structural
from ops import BinaryConv2d
from ops.plan import ConvPlan, run_plan

CLASSES = [
    {},
    {"threshold": "channel"},
    {"threshold": "local_mean", "threshold_kernel": 3},
    {"threshold": "local_mean", "threshold_kernel": 5},
    {"parts": 2}, {"parts": 3}, {"parts": 4},
    {"parts": 3, "threshold": "channel"}, {"parts": 4, "threshold": "local_mean"},
    {"rescale": "channel"}, {"rescale": "spatial"}, {"rescale": "both"},
    {"bam_depth": 1}, {"bam_depth": 2}, {"bam_depth": 3}, {"bam_depth": 3, "threshold": "local_mean"},
    {"skip": "fp"}, {"skip": "fp", "_out": 8}, {"skip": "fp", "_out": 16, "_k": 1},
    {"norm": "bn"}, {"norm": "bn", "rescale": "both", "bias": True},
    {"nonlinearity": "prelu"}, {"nonlinearity": "rprelu"}, {"nonlinearity": "leaky_relu"},
    {"nonlinearity": "prelu", "nonlinearity_at": "before_skip", "skip": "fp"},
    {"nonlinearity": "rprelu", "nonlinearity_at": "before_skip", "skip": "fp", "norm": "bn"},
    {"nonlinearity": "leaky_relu", "nonlinearity_at": "after_skip", "skip": "fp"},
    {"weight_scale": "channel_mean"}, {"weight_scale": "channel_mean", "parts": 2},
    {"bias": True}, {"_k": 1},
    {"act_estimator": "aae", "weight_estimator": "tanh_anneal"},
]


def _trained(choices, out_ch, k, steps=3, seed=0):
    """A layer after a few SGD steps (BN running stats and every parameter moved), in eval."""
    torch.manual_seed(seed)
    m = BinaryConv2d(4, out_ch, k, **choices)
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    for _ in range(steps):
        x = torch.randn(3, 4, 7, 7) * 1.5 + 0.2
        hist = tuple(torch.randn(3, 4, 7, 7) for _ in range(3))
        loss = (m(x, hist) - torch.randn(3, out_ch, 7, 7)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def _check(choices, out_ch=4, k=3, n_hist=3):
    m = _trained(choices, out_ch, k)
    x = torch.randn(2, 4, 9, 8)
    hist = tuple(torch.randn(2, 4, 9, 8) for _ in range(n_hist))
    with torch.no_grad():
        ref = m(x, hist)
        plan = m.plan()
        got = run_plan(plan, x, hist)
    # the plan performs the module's float operations in the module's order: bit for bit
    assert torch.equal(got, ref), f"{int((got != ref).sum())} values differ, max {float((got - ref).abs().max()):.3g}"
    return m, plan


@pytest.mark.parametrize("spec", CLASSES, ids=[label({k: v for k, v in c.items() if not k.startswith("_")}) + f"-o{c.get('_out', 4)}k{c.get('_k', 3)}" for c in CLASSES])
def test_plan_matches_module(spec):
    choices = {k: v for k, v in spec.items() if not k.startswith("_")}
    _check(choices, spec.get("_out", 4), spec.get("_k", 3))


@pytest.mark.parametrize("n_hist", [0, 1, 2])
def test_plan_matches_module_short_history(n_hist):
    _check({"bam_depth": 3, "parts": 2}, n_hist=n_hist)


COVER = pairwise_structural(seed=5)


@pytest.mark.parametrize("combo", COVER, ids=[label(c) for c in COVER])
def test_plan_matches_module_covering(combo):
    out = 8 if combo["skip"] == "fp" else 4
    _check(combo, out_ch=out)


def test_plan_fields():
    m, plan = _check({"parts": 3, "weight_scale": "channel_mean", "threshold": "channel", "norm": "bn",
                      "rescale": "both", "nonlinearity": "leaky_relu", "skip": "fp"}, out_ch=8)
    assert isinstance(plan, ConvPlan)
    assert (plan.in_ch, plan.out_ch, plan.kernel_size, plan.parts) == (4, 8, 3, 3)
    assert plan.weight_sign.shape == (8, 4, 3, 3) and set(plan.weight_sign.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(plan.weight_sign, torch.where(m.weight >= 0, 1.0, -1.0))
    for t in (plan.weight_sign, plan.threshold_offsets, plan.part_scale, plan.bias, plan.post_scale,
              plan.post_bias, plan.prelu_weight):
        assert t.dtype == torch.float32 and not t.requires_grad
    assert plan.threshold_offsets.shape == (3, 4) and plan.part_scale.shape == (3, 8)
    # offsets = beta + tau; part_scale = gamma * alpha; rescale after BN: BN (PyTorch's alpha,
    # beta) is the norm step before the rescale; post_scale 1, post_bias 0; G(x) from plan.channel
    torch.testing.assert_close(plan.threshold_offsets, m.threshold.beta.detach()[None] + m.ari.tau.detach())
    alpha = m.weight.detach().abs().mean(dim=(1, 2, 3))
    bn = m.norm
    inv = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(plan.part_scale, m.ari.gamma.detach() * alpha[None])
    assert torch.equal(plan.bias, torch.zeros(8))
    torch.testing.assert_close(plan.norm_scale, inv)
    torch.testing.assert_close(plan.norm_bias, bn.bias.detach() - bn.running_mean * inv)
    # alpha = (1 / sqrt(var + eps)) * w in IEEE float32 (numpy), as PyTorch's batch_norm kernel
    # computes it; not torch's vectorized 1 / tensor, which is one ulp off on some CPUs (Zen 5)
    var32 = bn.running_var.detach().numpy().astype(np.float32)
    want = (np.float32(1) / np.sqrt(var32 + np.float32(bn.eps))) * bn.weight.detach().numpy()
    assert torch.equal(plan.norm_scale, torch.from_numpy(want.astype(np.float32)))
    assert plan.bn_exact and isinstance(plan.fma, bool)
    assert torch.equal(plan.post_scale, torch.ones(8)) and torch.equal(plan.post_bias, torch.zeros(8))
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(plan.channel(x), m.rescale.channel(x).detach())
    assert plan.prelu_weight.tolist() == pytest.approx([0.1] * 8)
    assert plan.skip == "fp" and plan.skip_repeat == 2 and plan.spatial is not None and plan.pre is None
    assert plan.local_mean_kernel is None and plan.nonlinearity == "leaky_relu"
    with pytest.raises(Exception):
        plan.bias = torch.zeros(8)  # frozen


def test_neutral_plan_is_plain_xnor():
    plan = BinaryConv2d(4, 4, 3).eval().plan()
    assert plan.pre is None and plan.spatial is None and plan.local_mean_kernel is None
    assert plan.channel is None
    assert torch.equal(plan.threshold_offsets, torch.zeros(1, 4))
    assert torch.equal(plan.part_scale, torch.ones(1, 4))
    assert torch.equal(plan.post_scale, torch.ones(4)) and torch.equal(plan.post_bias, torch.zeros(4))
    assert plan.prelu_weight is None and plan.skip == "none" and plan.skip_repeat == 1


def test_plan_requires_eval_mode():
    with pytest.raises(ValueError, match="training"):
        BinaryConv2d(4, 4, 3).plan()


def test_run_plan_bad_input():
    plan = BinaryConv2d(4, 4, 3).eval().plan()
    with pytest.raises(ValueError, match="input shape"):
        run_plan(plan, torch.randn(1, 3, 5, 5))


@pytest.mark.parametrize("threshold", ["channel", "local_mean"])
def test_exact_ties_binarize_to_plus_one_in_module_and_plan(threshold):
    """Binarizer inputs exactly on the threshold give +1 (sign(0) = +1) in both paths."""
    m = BinaryConv2d(2, 3, 3, threshold=threshold).eval()
    if threshold == "channel":
        with torch.no_grad():
            m.threshold.beta.copy_(torch.tensor([0.5, -0.25]))
        x = torch.tensor([0.5, -0.25]).view(1, 2, 1, 1).expand(1, 2, 4, 5).clone()
    else:
        x = torch.full((1, 2, 4, 5), 0.5)  # box mean of a constant 0.5 is exactly 0.5
    ref = torch.nn.functional.conv2d(torch.ones_like(x), torch.where(m.weight >= 0, 1.0, -1.0), padding=1)
    with torch.no_grad():
        assert torch.equal(m(x), ref)
        assert torch.equal(run_plan(m.plan(), x), ref)


try:
    from hypothesis import given, settings, strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test extra
    given = None

if given is not None:
    from ops.choices import CHOICES

    _choice_strategy = st.fixed_dictionaries({n: st.sampled_from(v) for n, (_, v) in CHOICES.items()})

    @settings(max_examples=15, deadline=None, derandomize=True)
    @given(choices=_choice_strategy, k=st.sampled_from([1, 3]), repeat=st.sampled_from([1, 2, 4]))
    def test_plan_matches_module_random_choices(choices, k, repeat):
        out = 4 * repeat if choices["skip"] == "fp" else 4 + repeat
        m = _trained(choices, out, k, steps=2)
        x = torch.randn(2, 4, 6, 5)
        hist = tuple(torch.randn(2, 4, 6, 5) for _ in range(2))
        with torch.no_grad():
            ref = m(x, hist)
            got = run_plan(m.plan(), x, hist)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()) + 1e-6)
