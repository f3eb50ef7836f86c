"""Packing of activations and weights: every ISA path against the numpy reference, and the
reference against an independent torch formula (sign(x - t) with sign(0) = +1)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ops.native as native
from ops.native import reference
from tests.native.conftest import isa_params


def signs(x, t):
    """Independent sign: +1 where x - t >= 0 (sign(0) = +1), -1 elsewhere."""
    return torch.where(x - t >= 0, 1.0, -1.0)


def box_mean_replicate(x, k):
    return F.avg_pool2d(F.pad(x, (k // 2,) * 4, mode="replicate"), k, stride=1)


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("channels", [1, 5, 63, 64, 65, 130])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("kind", ["zero", "channel", "parts", "local_mean"])
def test_pack_matches_reference_and_signs(isa, channels, layout, kind):
    g = torch.Generator().manual_seed(channels)
    x = torch.randn(2, channels, 3, 5, generator=g)
    x[0, :, 0, 0] = 0.0  # exact zeros: sign(0) = +1 (bit clear)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    offsets, tmap, thr = None, None, torch.zeros(1, channels, 1, 1)
    if kind == "channel":
        offsets = torch.randn(channels, generator=g)
        thr = offsets.view(1, -1, 1, 1)[None]
    elif kind == "parts":
        offsets = torch.randn(3, channels, generator=g)
        thr = offsets[:, None, :, None, None]
    elif kind == "local_mean":
        tmap = box_mean_replicate(x, 3)
        offsets = torch.randn(2, channels, generator=g)
        thr = offsets[:, None, :, None, None]
    got = native.pack_activations(x, offsets, tmap, isa=isa, threads=2)
    off = np.zeros((1, channels), np.float32) if offsets is None else offsets.numpy()
    want = reference.pack_activations(x.numpy(), off, None if tmap is None else tmap.numpy())
    np.testing.assert_array_equal(got, want)
    base = x if tmap is None else x - tmap
    expect = signs(base[None], thr)  # (P, N, C, H, W); (x - map) - off as the kernel computes
    np.testing.assert_array_equal(reference.unpack_activations(got, channels), expect.numpy())
    # the unused bits of the last word are zero
    if channels % 64:
        assert not (got[..., -1] >> np.uint64(channels % 64)).any()


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 70, 3, 3), (9, 64, 1, 1), (16, 3, 3, 3)])
def test_pack_weights_round_trip(shape):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    w[0, 0, 0, 0] = 0.0
    got = native.pack_weights(w)
    np.testing.assert_array_equal(got, reference.pack_weights(w.numpy()))
    o, c, k, _ = shape
    assert got.shape == ((o + 7) // 8, k, k, (c + 63) // 64, 8)
    np.testing.assert_array_equal(reference.unpack_weights(got, o, c), signs(w, 0).numpy())


def test_pack_threads_agree():
    x = torch.randn(3, 70, 7, 6)
    one = native.pack_activations(x, threads=1)
    for t in (2, 3, 50):
        np.testing.assert_array_equal(native.pack_activations(x, threads=t), one)
