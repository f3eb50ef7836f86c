"""A built network whose BAM history crosses block boundaries (``space.builder`` threads one
``ops.bam.BamHistory`` through the body) runs through the packed runtime and matches the
PyTorch model: the native convs get the same history from the blocks (their frozen ``pre``)."""
import pytest
import torch
from torch import nn

import ops.native as native
from ops.native import kernels
from ops.native.runtime import NativeBinaryConv2d
from tests.model_helpers import perturb  # noqa: E402

builder = pytest.importorskip("space.builder")
spec_mod = pytest.importorskip("space.spec")
LayerSpec, uniform = spec_mod.LayerSpec, spec_mod.uniform


def _randomized(spec, seed):
    torch.manual_seed(seed)  # build()'s own init too: the model is a function of the seed
    return perturb(builder.build(spec), seed, weight_std=0.1, bn="normal")


SPECS = {
    # every conv accumulates as far back as it may: 0, 1, 2, 3, 3, 3 earlier inputs
    "depth3": uniform(2, 16, 3, LayerSpec(bam_depth=3, threshold="channel", norm="bn",
                                          skip="fp")),
    # mixed depths, block residual, a binary tail with its own (fresh) history
    "mixed": uniform(4, 16, 3, LayerSpec(skip="fp"), LayerSpec(bam_depth=1, skip="fp"),
                     tail="binary_repeat", block_residual=True).replace(layers=(
                         LayerSpec(bam_depth=1, norm="bn", skip="fp"),
                         LayerSpec(bam_depth=2, parts=2, rescale="both", skip="fp"),
                         LayerSpec(bam_depth=3, nonlinearity="rprelu", skip="fp"),
                         LayerSpec(threshold="local_mean", norm="bn", skip="fp"),
                         LayerSpec(bam_depth=2, threshold="channel", norm="bn", skip="fp"),
                         LayerSpec(bam_depth=1, skip="fp", nonlinearity="leaky_relu"))),
}


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("fallback", [False, True], ids=["native", "reference"])
def test_cross_block_bam_network_matches(name, fallback, monkeypatch):
    if not fallback and kernels._ext is None:
        pytest.skip("C++ extension not built")
    if fallback:
        monkeypatch.setattr(kernels, "_ext", None)
        monkeypatch.setattr(kernels, "_warned", True)
        monkeypatch.setattr(kernels, "_resolved", {})
    model = _randomized(SPECS[name], seed=len(name))
    x = torch.rand(2, 3, 7, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(x)
        # block-local wiring (no shared history) gives another result: the test can tell
        local = nn.Sequential(*model.body)
        h = model.head(x - model.rgb_mean)
        other = model.tail(local(h) + h) + model.rgb_mean
    assert not torch.allclose(want, other)
    compiled = native.compile(model)
    got = compiled(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    binary = sum(type(m).__name__ == "BinaryConv2d" for m in model.modules())
    assert sum(isinstance(m, NativeBinaryConv2d) for m in compiled.modules()) == binary


# BAM's input BN(sum beta_i sign(A_i)) is piecewise constant, so Xa - box_mean(Xa) is often an
# exact tie, and F.avg_pool2d rounds a channels-last tensor differently from an NCHW one: the
# compiled runtime (exact=True) takes the box mean of the NCHW tensor, as the model does.
def test_bam_with_local_mean_threshold_matches():
    spec = uniform(2, 16, 2, LayerSpec(bam_depth=2, threshold="local_mean", skip="fp"))
    model = _randomized(spec, seed=3)
    x = torch.rand(2, 3, 7, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(x)
    got = native.compile(model, exact=True)(x)
    assert torch.equal(got, want), f"{int((got != want).sum())} values differ"
