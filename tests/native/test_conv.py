"""The xnor-popcount conv: every runnable ISA path is bit-exact with the reference and with
``conv2d(sign(x), sign(w), padding=k//2)`` computed by PyTorch from the float tensors."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import ops.native as native
from ops.native import reference
from tests.native.conftest import isa_params, runnable_isas


def sign(t):
    return torch.where(t >= 0, 1.0, -1.0)


def torch_binary_conv(x, w):
    """Independent ground truth: float64 conv of the signs, zero padding."""
    return F.conv2d(sign(x).double(), sign(w).double(), padding=w.shape[-1] // 2).round().int()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 200), o=st.integers(1, 20), k=st.sampled_from([1, 3]),
       h=st.integers(1, 9), w=st.integers(1, 9), threads=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_conv_int_random_shapes(n, c, o, k, h, w, threads, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    wt = torch.randn(o, c, k, k, generator=g)
    xb = native.pack_activations(x)
    wb = native.pack_weights(wt)
    truth = torch_binary_conv(x, wt).numpy()[None]
    np.testing.assert_array_equal(reference.conv_int(xb, wb, c, o), truth)
    for isa in runnable_isas():
        got = native.conv2d(xb, wb, c, o, mode="int", threads=threads, isa=isa)
        np.testing.assert_array_equal(got, truth, err_msg=f"isa={isa}")


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("c,o,k,h,w", [(64, 64, 3, 12, 13), (128, 16, 3, 7, 21), (96, 9, 1, 5, 4),
                                       (3, 8, 3, 1, 1), (70, 24, 3, 1, 9), (70, 24, 3, 9, 1),
                                       (200, 8, 3, 2, 2), (64, 8, 1, 1, 1)])
def test_conv_int_fixed_shapes(isa, c, o, k, h, w):
    """Shapes that hit every border case (1x1 images, single rows/columns, the interior tile
    path with its remainder, several words per pixel, more than 31 words per reduction)."""
    g = torch.Generator().manual_seed(c * o + h)
    x = torch.randn(2, c, h, w, generator=g)
    wt = torch.randn(o, c, k, k, generator=g)
    got = native.conv2d(native.pack_activations(x), native.pack_weights(wt), c, o, isa=isa, threads=2)
    np.testing.assert_array_equal(got[0], torch_binary_conv(x, wt).numpy())


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("c,o,k,h,w", [(32, 32, 3, 3, 37), (20, 8, 3, 4, 19), (1, 9, 3, 2, 26),
                                       (31, 24, 1, 2, 17), (32, 40, 3, 1, 30), (17, 16, 3, 5, 5)])
def test_conv_narrow_channels_wide_rows(isa, c, o, k, h, w):
    """At most 32 channels (the avx512 path's 32-bit lanes, two tiles of 8 output channels per
    register, an odd tile count pairing with zero weights), rows long enough for several full
    register tiles plus a remainder, in every output mode, against the float conv of the signs."""
    g = torch.Generator().manual_seed(c * 100 + o)
    x = torch.randn(2, c, h, w, generator=g)
    wt = torch.randn(o, c, k, k, generator=g)
    offsets = torch.randn(2, c, generator=g).round(decimals=1)
    xb, wb = native.pack_activations(x, offsets), native.pack_weights(wt)
    ints = native.conv2d(xb, wb, c, o, mode="int", isa=isa, threads=2)
    for p in range(2):
        np.testing.assert_array_equal(ints[p], torch_binary_conv(x - offsets[p].view(1, -1, 1, 1), wt).numpy())
    kw = dict(part_scale=torch.randn(2, o, generator=g), bias=torch.randn(o, generator=g),
              out_threshold=torch.randn(o, generator=g))
    for mode in ("float", "packed"):
        want = reference.conv2d(xb, wb, c, o, mode=mode, **{n: v.numpy() for n, v in kw.items()})
        np.testing.assert_array_equal(native.conv2d(xb, wb, c, o, mode=mode, isa=isa, threads=2, **kw),
                                      want, err_msg=mode)


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("c", [70, 20, 32])
def test_conv_masks_unused_channel_bits(isa, c):
    """Garbage in the bits past the last channel must not change the result."""
    o = 16
    x = torch.randn(1, c, 6, 21)
    wt = torch.randn(o, c, 3, 3)
    xb = native.pack_activations(x)
    dirty = xb | (np.uint64(0xFFFFFFFFFFFFFFFF) << np.uint64(c % 64)) * (np.arange(xb.shape[-1]) == xb.shape[-1] - 1)
    assert (dirty != xb).any()
    wb = native.pack_weights(wt)
    np.testing.assert_array_equal(native.conv2d(dirty, wb, c, o, isa=isa)[0],
                                  torch_binary_conv(x, wt).numpy())


@pytest.mark.parametrize("isa", isa_params())
def test_conv_parts_are_independent(isa):
    """P packed parts (ARI) give P independent integer convs."""
    c, o = 40, 12
    x = torch.randn(2, c, 5, 6)
    offsets = torch.tensor([[-0.5] * c, [0.0] * c, [0.7] * c])
    wt = torch.randn(o, c, 3, 3)
    got = native.conv2d(native.pack_activations(x, offsets), native.pack_weights(wt), c, o, isa=isa)
    for p in range(3):
        np.testing.assert_array_equal(got[p], torch_binary_conv(x - offsets[p].view(1, -1, 1, 1), wt).numpy())


def test_all_paths_identical_large():
    """Large channel counts and images: every runnable path gives the same integers."""
    c, o = 256, 32
    x = torch.randn(1, c, 17, 19)
    wt = torch.randn(o, c, 3, 3)
    xb, wb = native.pack_activations(x), native.pack_weights(wt)
    outs = {isa: native.conv2d(xb, wb, c, o, isa=isa, threads=2) for isa in runnable_isas()}
    truth = torch_binary_conv(x, wt).numpy()
    for isa, out in outs.items():
        np.testing.assert_array_equal(out[0], truth, err_msg=isa)
