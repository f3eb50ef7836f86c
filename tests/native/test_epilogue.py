"""Fused epilogue (part scales, bias, spatial map, scale/bias, PReLU family, residual with
repeat) and the packed-bits output mode: every runnable path equals the numpy reference bit for
bit (same float32 operation order), and the reference equals an independent torch formula."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ops.native as native
from ops.native import reference
from tests.native.conftest import isa_params


def sign(t):
    return torch.where(t >= 0, 1.0, -1.0)


def make_case(seed, c=37, o=24, k=3, n=2, h=6, w=7, parts=2, repeat=3):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    case = dict(
        x=r(n, c, h, w), wt=r(o, c, k, k), offsets=r(parts, c) * 0.3,
        part_scale=r(parts, o).abs(), bias=r(o), spatial=r(n, 1, h, w).abs() + 0.5,
        post_scale=r(o), post_bias=r(o), slope=r(o) * 0.2, act_shift=r(o), act_bias=r(o),
        residual=r(n, o // repeat, h, w), repeat=repeat, out_threshold=r(o))
    return case


def torch_epilogue(case, act_at):
    """Independent formula in float64 torch (tolerance comparison)."""
    x, wt = case["x"].double(), case["wt"].double()
    acc = 0
    for p in range(case["offsets"].shape[0]):
        b = sign(x - case["offsets"][p].double().view(1, -1, 1, 1))
        conv = F.conv2d(b, sign(wt), padding=wt.shape[-1] // 2)
        acc = acc + case["part_scale"][p].double().view(1, -1, 1, 1) * conv
    v = lambda name: case[name].double().view(1, -1, 1, 1)  # noqa: E731
    z = (acc + v("bias")) * case["spatial"].double() * v("post_scale") + v("post_bias")

    def act(z):
        t = z - v("act_shift")
        return torch.where(t < 0, t * v("slope"), t) + v("act_bias")

    if act_at == "before_skip":
        z = act(z)
    z = z + case["residual"].double().repeat_interleave(case["repeat"], dim=1)
    if act_at == "after_skip":
        z = act(z)
    return z


def run(case, isa, mode, act_at, layout="nchw", residual_cl=False, threads=2):
    xb = native.pack_activations(case["x"], case["offsets"])
    wb = native.pack_weights(case["wt"])
    c, o = case["x"].shape[1], case["wt"].shape[0]
    res = case["residual"].contiguous(memory_format=torch.channels_last) if residual_cl else case["residual"]
    kw = {k: case[k] for k in ("part_scale", "bias", "spatial", "post_scale", "post_bias", "slope",
                               "act_shift", "act_bias", "repeat", "out_threshold")}
    got = native.conv2d(xb, wb, c, o, mode=mode, act="prelu", act_at=act_at, residual=res,
                        layout=layout, isa=isa, threads=threads, **kw)
    want = reference.conv2d(xb, wb, c, o, mode=mode, act="prelu", act_at=act_at,
                            residual=case["residual"].numpy(),
                            **{k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()})
    return got, want


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("act_at", ["after_skip", "before_skip"])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_float_epilogue_exact_vs_reference(isa, act_at, layout):
    case = make_case(1)
    got, want = run(case, isa, "float", act_at, layout=layout, residual_cl=layout == "nhwc")
    np.testing.assert_array_equal(got, want)
    if layout == "nhwc":
        assert got.transpose(0, 2, 3, 1).flags.c_contiguous
    np.testing.assert_allclose(want, torch_epilogue(case, act_at).numpy(), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("isa", isa_params())
def test_packed_output_mode(isa):
    case = make_case(2, o=70, repeat=7)
    got, want = run(case, isa, "packed", "after_skip")
    np.testing.assert_array_equal(got, want)
    # independent: packing the float output with the thresholds gives the same bits
    fl, _ = run(case, isa, "float", "after_skip")
    bits = native.pack_activations(np.ascontiguousarray(fl), case["out_threshold"])[0]
    np.testing.assert_array_equal(got, bits)


@pytest.mark.parametrize("isa", isa_params())
def test_plain_float_mode_is_the_integer_conv(isa):
    """No epilogue arguments: the float output is the integer conv, converted."""
    x, wt = torch.randn(1, 65, 4, 5), torch.randn(10, 65, 1, 1)
    xb, wb = native.pack_activations(x), native.pack_weights(wt)
    fl = native.conv2d(xb, wb, 65, 10, mode="float", isa=isa)
    np.testing.assert_array_equal(fl, native.conv2d(xb, wb, 65, 10, isa=isa)[0].astype(np.float32))


def test_threads_and_paths_agree_on_float():
    case = make_case(3, c=130, o=17, repeat=1)
    results = [run(case, isa, "float", "after_skip", threads=t)[0]
               for isa in native.kernels._ext.supported_isas() for t in (1, 3)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
