"""Property tests over random shapes and options: packing (each threshold kind) and the fused
conv (float and packed-bits modes) on every runnable ISA path equal the reference bit for bit."""
import numpy as np
import torch
from hypothesis import given, settings, strategies as st

import ops.native as native
from ops.native import reference
from tests.native.conftest import runnable_isas

shapes = st.tuples(st.integers(1, 2), st.integers(1, 150), st.integers(1, 7), st.integers(1, 7))


@settings(max_examples=25, deadline=None)
@given(shape=shapes, parts=st.integers(1, 3), kind=st.sampled_from(["zero", "channel", "local_mean"]),
       channels_last=st.booleans(), seed=st.integers(0, 2**16))
def test_pack_random(shape, parts, kind, channels_last, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    x[x.abs() < 0.1] = 0.0  # plenty of exact zeros
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    offsets = None if kind == "zero" else torch.randn(parts, shape[1], generator=g).round(decimals=1)
    tmap = torch.randn(*shape, generator=g).round(decimals=1) if kind == "local_mean" else None
    off = np.zeros((1, shape[1]), np.float32) if offsets is None else offsets.numpy()
    want = reference.pack_activations(x.numpy(), off, None if tmap is None else tmap.numpy())
    for isa in runnable_isas():
        np.testing.assert_array_equal(native.pack_activations(x, offsets, tmap, isa=isa, threads=2), want)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, o=st.integers(1, 70), k=st.sampled_from([1, 3]), parts=st.integers(1, 3),
       act=st.sampled_from(["none", "prelu"]), act_at=st.sampled_from(["after_skip", "before_skip"]),
       use_spatial=st.booleans(), repeat=st.sampled_from([0, 1, 2, 5]),
       mode=st.sampled_from(["float", "packed"]), layout=st.sampled_from(["nchw", "nhwc"]),
       residual_cl=st.booleans(), seed=st.integers(0, 2**16))
def test_fused_conv_random(shape, o, k, parts, act, act_at, use_spatial, repeat, mode, layout,
                           residual_cl, seed):
    n, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    xb = native.pack_activations(r(n, c, h, w), r(parts, c))
    wb = native.pack_weights(r(o, c, k, k))
    kw = dict(part_scale=r(parts, o), bias=r(o), post_scale=r(o), post_bias=r(o), slope=r(o),
              act_shift=r(o), act_bias=r(o), out_threshold=r(o))
    if use_spatial:
        kw["spatial"] = r(n, 1, h, w)
    if repeat and o % repeat == 0:
        kw["residual"], kw["repeat"] = r(n, o // repeat, h, w), repeat
        if residual_cl:  # channels-last residual: contiguous channels (the runtime's layout)
            kw["residual"] = kw["residual"].contiguous(memory_format=torch.channels_last)
    want = reference.conv2d(xb, wb, c, o, mode=mode, act=act, act_at=act_at,
                            **{key: (v.numpy() if isinstance(v, torch.Tensor) else v) for key, v in kw.items()})
    for isa in runnable_isas():
        got = native.conv2d(xb, wb, c, o, mode=mode, act=act, act_at=act_at, layout=layout,
                            isa=isa, threads=2, **kw)
        np.testing.assert_array_equal(got, want, err_msg=f"isa={isa}")
