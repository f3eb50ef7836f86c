"""Kernel variants (tile shapes / loop orders, ops.native.tune), the fused packed output of the
epilogue, the frozen C++ layer, the native FP data movement (depth-to-space, image skip), the
measured ceilings and the naive-loop baseline: every variant of every ISA path this CPU runs is
bit-exact against the reference."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ops.native as native
from ops.native import kernels, reference, tune
from tests.native.conftest import isa_params

ext = kernels._ext
needs_ext = pytest.mark.skipif(ext is None, reason="C++ extension not built")

SHAPES = [(64, 64, 3, 5, 37), (128, 16, 3, 7, 21), (96, 9, 1, 5, 4), (3, 8, 3, 1, 1),
          (70, 24, 3, 9, 1), (200, 40, 3, 2, 33), (32, 40, 3, 3, 30), (17, 16, 3, 5, 5),
          (64, 256, 3, 3, 18), (64, 12, 1, 4, 50)]


def _case(c, o, k, h, w, n=2, parts=1, seed=0):
    g = torch.Generator().manual_seed(seed + c * 7 + o)
    x = torch.randn(n, c, h, w, generator=g)
    wt = torch.randn(o, c, k, k, generator=g)
    off = 0.3 * torch.randn(parts, c, generator=g)
    return x, wt, off, g


@needs_ext
@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("c,o,k,h,w", SHAPES)
def test_every_variant_is_bit_exact(isa, c, o, k, h, w):
    x, wt, off, g = _case(c, o, k, h, w, parts=2)
    xb, wb = native.pack_activations(x, off), native.pack_weights(wt)
    want = reference.conv_int(xb, wb, c, o)
    ps = torch.rand(2, o, generator=g).numpy()
    want_f = reference.conv2d(xb, wb, c, o, mode="float", part_scale=ps, bias=np.ones(o, np.float32))
    names = ext.conv_variants(isa)
    assert len(names) >= 2 and len(set(names)) == len(names)
    for v in range(len(names)):
        got = native.conv2d(xb, wb, c, o, mode="int", threads=2, isa=isa, variant=v)
        np.testing.assert_array_equal(got, want, err_msg=f"{isa} variant {v} ({names[v]})")
        got_f = native.conv2d(xb, wb, c, o, mode="float", part_scale=ps, bias=np.ones(o, np.float32),
                              threads=3, isa=isa, variant=v, layout="nhwc")
        np.testing.assert_allclose(got_f, want_f, rtol=1e-5, atol=1e-4, err_msg=f"{isa} variant {v}")
    with pytest.raises(ValueError, match="variant"):
        native.conv2d(xb, wb, c, o, isa=isa, variant=len(names))


@needs_ext
@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("planes", [1, 2, 4])
@pytest.mark.parametrize("o", [8, 13, 64, 70, 130])
def test_epilogue_writes_the_next_layers_bits(isa, planes, o):
    """Float output and, in the same pass, the packed bits of it for 1-4 threshold planes:
    equal to packing the float output (every variant, every residual/activation layout)."""
    c, h, w = 40, 6, 19
    x, wt, _, g = _case(c, o, 3, h, w, n=2)
    xb, wb = native.pack_activations(x), native.pack_weights(wt)
    res = torch.randn(2, o, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    nxt = (0.5 * torch.randn(planes, o, generator=g)).numpy()
    kw = dict(mode="float", post_scale=torch.rand(o, generator=g) + 0.5, post_bias=torch.randn(o, generator=g),
              act="prelu", slope=np.full(o, 0.1, np.float32), residual=res, layout="nhwc")
    for v in range(len(ext.conv_variants(isa))):
        bits = np.full((planes, 2, h, w, (o + 63) // 64), 0xAAAA, np.uint64)  # overwritten whole
        out = native.conv2d(xb, wb, c, o, isa=isa, variant=v, threads=2, out_bits=bits,
                            bits_offsets=nxt, **kw)
        np.testing.assert_array_equal(out, native.conv2d(xb, wb, c, o, isa=isa, variant=v, **kw))
        np.testing.assert_array_equal(bits, native.pack_activations(out, nxt), err_msg=f"{isa} v{v}")


@needs_ext
def test_out_bits_errors():
    xb = native.pack_activations(torch.randn(1, 8, 3, 3))
    wb = native.pack_weights(torch.randn(8, 8, 3, 3))
    with pytest.raises(ValueError, match="out_bits"):
        native.conv2d(xb, wb, 8, 8, mode="int", out_bits=np.zeros((1, 1, 3, 3, 1), np.uint64),
                      bits_offsets=np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError, match="out_bits"):
        native.conv2d(xb, wb, 8, 8, mode="float", out_bits=np.zeros((5, 1, 3, 3, 1), np.uint64),
                      bits_offsets=np.zeros((5, 8), np.float32))
    with pytest.raises(ValueError, match="out_bits"):
        native.conv2d(xb, wb, 8, 8, mode="float", out_bits=np.zeros((1, 1, 3, 4, 1), np.uint64),
                      bits_offsets=np.zeros((1, 8), np.float32))


@needs_ext
@pytest.mark.parametrize("isa", isa_params())
def test_layer_equals_conv(isa):
    c, o, h, w = 70, 24, 5, 11
    x, wt, off, g = _case(c, o, 3, h, w, n=1, parts=3)
    xb, wb = native.pack_activations(x, off), native.pack_weights(wt)
    ps = torch.rand(3, o, generator=g).numpy()
    vec = lambda: torch.randn(o, generator=g).numpy()  # noqa: E731
    e = dict(bias=vec(), post_scale=vec(), post_bias=vec(), slope=vec(), act_shift=vec(), act_bias=vec())
    res = torch.randn(1, o // 2, h, w, generator=g).numpy()
    sp = torch.rand(1, 1, h, w, generator=g).numpy()
    nxt = torch.randn(2, o, generator=g).numpy()
    layer = ext.Layer(wb, c, o, part_scale=ps, act="prelu", act_after_skip=False, repeat=2, parts=3,
                      bits_offsets=nxt, isa=isa, **e)
    assert layer.isa == isa and layer.planes == 2
    want = native.conv2d(xb, wb, c, o, mode="float", part_scale=ps, act="prelu", act_at="before_skip",
                         residual=res, repeat=2, spatial=sp, isa=isa, **e)
    for v in range(len(ext.conv_variants(isa))):
        out = np.empty((1, h, w, o), np.float32).transpose(0, 3, 1, 2)
        bits = np.empty((2, 1, h, w, 1), np.uint64)
        layer.run(xb, out, res, sp[:, 0], None, bits, 2, v)
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(bits, native.pack_activations(out, nxt))
    # a per-call post scale (the input-dependent channel factor) replaces the layer's
    ps2 = vec()
    out = np.empty((1, o, h, w), np.float32)
    layer.run(xb, out, res, sp[:, 0], ps2, None, 1, 0)
    np.testing.assert_array_equal(out, native.conv2d(
        xb, wb, c, o, mode="float", part_scale=ps, act="prelu", act_at="before_skip", residual=res,
        repeat=2, spatial=sp, isa=isa, **dict(e, post_scale=ps2)))
    with pytest.raises(ValueError, match="x_bits"):
        layer.run(native.pack_activations(x), out, res, sp[:, 0], None, None, 1, 0)


@needs_ext
@pytest.mark.parametrize("r", [2, 3])
def test_depth_to_space_equals_pixel_shuffle(r):
    x = torch.randn(2, 5 * r * r, 4, 7).contiguous(memory_format=torch.channels_last)
    out = torch.empty(2, 5, 4 * r, 7 * r).contiguous(memory_format=torch.channels_last)
    ext.depth_to_space(x.numpy(), out.numpy(), r, 2)
    assert torch.equal(out, F.pixel_shuffle(x, r))
    with pytest.raises(ValueError, match="channels-last"):
        ext.depth_to_space(x.contiguous().numpy(), out.numpy(), r, 1)


@needs_ext
@pytest.mark.parametrize("s", [2, 3, 4])
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "repeat"])
def test_image_skip_equals_torch(mode, s):
    g = torch.Generator().manual_seed(s)
    x = torch.randn(2, 3, 5, 7, generator=g).contiguous(memory_format=torch.channels_last)
    co, ho, wo = (3 * s * s, 5, 7) if mode == "repeat" else (3, 5 * s, 7 * s)
    o = torch.randn(2, co, ho, wo, generator=g).contiguous(memory_format=torch.channels_last)
    if mode == "repeat":
        want = o + x.repeat_interleave(s * s, dim=1)
    elif mode == "nearest":
        want = o + F.interpolate(x, scale_factor=s, mode="nearest")
    else:
        want = o + F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
    out = torch.empty_like(o)
    ext.image_skip(o.numpy(), x.numpy(), out.numpy(), s, mode, 2)
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)


@needs_ext
@pytest.mark.parametrize("isa", isa_params())
def test_peak_loop_counts_its_macs(isa):
    per_iter = {"amx": 4 * 16384, "avx512": 12 * 512, "avx2": 6 * 256, "popcnt": 8 * 64, "scalar": 8 * 64}
    macs = ext.peak(isa, 31 * 10, 2)
    assert macs == 2 * 31 * 10 * per_iter[isa]


@needs_ext
@pytest.mark.parametrize("isa", [p for p in isa_params() if p.values[0] in ("avx512", "avx2")])
@pytest.mark.parametrize("cw,o", [(1, 64), (2, 32), (1, 8)])
def test_naive_loop_sums_popcounts(isa, cw, o):
    rng = np.random.default_rng(cw * o)
    h, w = 4, 9
    xp = np.zeros((h + 2, w + 2, cw), np.uint64)
    xp[1:-1, 1:-1] = rng.integers(0, 2**63, size=(h, w, cw), dtype=np.uint64)
    wn = rng.integers(0, 2**63, size=(3, 3, cw, o), dtype=np.uint64)
    out = np.empty((h, w, o), np.int32)
    ext.naive_conv(xp, wn, out, 2, isa)
    pc = np.vectorize(lambda v: bin(int(v)).count("1"))
    want = np.zeros((h, w, o), np.int64)
    for ky in range(3):
        for kx in range(3):
            win = xp[ky:ky + h, kx:kx + w]  # (h, w, cw)
            want += pc(win[:, :, :, None] ^ wn[ky, kx][None, None]).sum(2)
    np.testing.assert_array_equal(out, want)


@needs_ext
def test_tune_measures_caches_and_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv("BSRNAS_CACHE", str(tmp_path))
    monkeypatch.setattr(tune, "MIN_MACS", 0.0)
    monkeypatch.setattr(tune, "RUNS", 1)
    tune.clear(memory_only=True)
    isa = native.resolve_isa()
    v = tune.variant(isa, 64, 16, 3, 1, 8, 40, 1)
    assert 0 <= v < len(ext.conv_variants(isa))
    data = json.loads(tune.cache_path().read_text())
    assert data["cpu"] == tune.cpu_model() and data["build"] == tune.build_id()
    assert list(data["choices"].values()) == [v]
    # a new process (memory cleared) reads the file instead of measuring again
    tune.clear(memory_only=True)
    monkeypatch.setattr(tune, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert tune.variant(isa, 64, 16, 3, 1, 8, 40, 1) == v
    monkeypatch.setenv("BSRNAS_TUNE", "0")
    assert tune.variant(isa, 64, 32, 3, 1, 8, 40, 1) == 0
    tune.clear()
    assert not tune.cache_path().exists()


@needs_ext
@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("c,o,w", [(64, 64, 37), (40, 13, 19), (130, 70, 9)])
def test_folded_epilogue_within_rounding_of_the_unfolded_order(isa, c, o, w):
    """Layer(fold=True) (what compile(exact=False) builds): part scale, bias and post affine in
    one step, I * (s * p) + (b * p + q), within float32 rounding of the unfolded order for every
    variant, with the residual, activation and next-layer bits; its bits equal packing its own
    output. A per-call post scale, a spatial map or several parts take the unfolded order
    unchanged (bit-equal)."""
    h = 5
    x, wt, off, g = _case(c, o, 3, h, w, n=2)
    xb, wb = native.pack_activations(x), native.pack_weights(wt)
    vec = lambda: torch.randn(o, generator=g).numpy()  # noqa: E731
    e = dict(part_scale=(torch.rand(1, o, generator=g) + 0.5).numpy(), bias=vec(), post_scale=vec(),
             post_bias=vec(), slope=vec(), act_shift=vec(), act_bias=vec(), act="prelu", fma=True)
    res = torch.randn(2, o, h, w, generator=g).numpy()
    nxt = torch.randn(1, o, generator=g).numpy()
    folded = ext.Layer(wb, c, o, bits_offsets=nxt, isa=isa, fold=True, **e)
    plain = ext.Layer(wb, c, o, bits_offsets=nxt, isa=isa, **e)
    # independent of both layers: the integers, then the unfolded float64 formula
    i = reference.conv_int(xb, wb, c, o)[0].astype(np.float64)
    z = i * e["part_scale"][0][None, :, None, None] + e["bias"][None, :, None, None]
    z = z * e["post_scale"][None, :, None, None] + e["post_bias"][None, :, None, None]
    t = z + res - e["act_shift"][None, :, None, None]  # activation after the skip (the default)
    z = np.where(t < 0, t * e["slope"][None, :, None, None], t) + e["act_bias"][None, :, None, None]
    scale = np.abs(z).max()
    differs = False
    for v in range(len(ext.conv_variants(isa))):
        outs = []
        for layer in (folded, plain):
            out = np.empty((2, h, w, o), np.float32).transpose(0, 3, 1, 2)
            bits = np.empty((1, 2, h, w, (o + 63) // 64), np.uint64)
            layer.run(xb, out, res, None, None, bits, 2, v)
            np.testing.assert_array_equal(bits, native.pack_activations(out, nxt), err_msg=f"{isa} v{v}")
            np.testing.assert_allclose(out, z, rtol=0, atol=1e-5 * scale, err_msg=f"{isa} v{v}")
            outs.append(out)
        differs = differs or not np.array_equal(outs[0], outs[1])
        # the per-call post scale: unfolded in both
        ps2 = vec()
        a, b = (np.empty((2, o, h, w), np.float32) for _ in range(2))
        folded.run(xb, a, res, None, ps2, None, 1, v)
        plain.run(xb, b, res, None, ps2, None, 1, v)
        np.testing.assert_array_equal(a, b)
    sp = torch.rand(2, h, w, generator=g).numpy()
    a, b = (np.empty((2, o, h, w), np.float32) for _ in range(2))
    folded.run(xb, a, res, sp, None, None, 1, 0)
    plain.run(xb, b, res, sp, None, None, 1, 0)
    np.testing.assert_array_equal(a, b)
    assert differs, "fold=True gave the unfolded order's values bit for bit: the fold is not taken"


@needs_ext
@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("c,o,h,w", [(64, 64, 5, 37), (64, 16, 3, 7), (128, 48, 4, 13), (64, 80, 1, 2),
                                     (192, 32, 2, 1), (64, 64, 6, 128)])
@pytest.mark.parametrize("act_at", ["none", "before_skip", "after_skip"])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("planes", [0, 1, 2])
def test_register_tail_equals_the_buffered_epilogue(isa, c, o, h, w, act_at, residual, planes):
    """The layers the direct variants finish in their register tail (fold=True, one part, C a
    multiple of 64, O of 16, channels-last float output, channels-last residual, next-layer
    bits): every variant gives variant 0's values and bits bit for bit (variant 0 runs the
    buffered row epilogue), the bits equal packing the output, and the values match the float64
    formula to float32 rounding."""
    x, wt, _, g = _case(c, o, 3, h, w, n=2)
    xb, wb = native.pack_activations(x), native.pack_weights(wt)
    vec = lambda: torch.randn(o, generator=g).numpy()  # noqa: E731
    e = dict(part_scale=(torch.rand(1, o, generator=g) + 0.5).numpy(), bias=vec(), post_scale=vec(),
             post_bias=vec(), fma=True)
    if act_at != "none":
        e.update(act="prelu", slope=vec(), act_shift=vec(), act_bias=vec(), act_after_skip=act_at == "after_skip")
    res = torch.randn(2, o, h, w, generator=g).contiguous(memory_format=torch.channels_last).numpy() \
        if residual else None
    nxt = torch.randn(planes, o, generator=g).numpy() if planes else None
    layer = ext.Layer(wb, c, o, bits_offsets=nxt, isa=isa, fold=True, **e)
    i = reference.conv_int(xb, wb, c, o)[0].astype(np.float64)
    z = i * e["part_scale"][0][None, :, None, None] + e["bias"][None, :, None, None]
    z = z * e["post_scale"][None, :, None, None] + e["post_bias"][None, :, None, None]
    col = lambda k: e[k][None, :, None, None]  # noqa: E731
    act = lambda t: np.where(t - col("act_shift") < 0, (t - col("act_shift")) * col("slope"),  # noqa: E731
                             t - col("act_shift")) + col("act_bias")
    if act_at == "before_skip":
        z = act(z)
    if residual:
        z = z + res
    if act_at == "after_skip":
        z = act(z)
    first = None
    for v in range(len(ext.conv_variants(isa))):
        out = np.empty((2, h, w, o), np.float32).transpose(0, 3, 1, 2)
        bits = np.full((planes, 2, h, w, (o + 63) // 64), 0xA5A5A5A5A5A5A5A5, np.uint64) if planes else None
        layer.run(xb, out, res, None, None, bits, 2, v)
        np.testing.assert_allclose(out, z, rtol=0, atol=1e-5 * np.abs(z).max(), err_msg=f"{isa} v{v}")
        if planes:
            np.testing.assert_array_equal(bits, native.pack_activations(out, nxt), err_msg=f"{isa} v{v}")
        if first is None:
            first = (out.copy(), None if bits is None else bits.copy())
        else:
            np.testing.assert_array_equal(out, first[0], err_msg=f"{isa} v{v} vs v0")
            if planes:
                np.testing.assert_array_equal(bits, first[1], err_msg=f"{isa} v{v} vs v0")


def _pool_case():
    x, wt, _, g = _case(64, 64, 3, 9, 23, n=2)
    xb, wb = native.pack_activations(x), native.pack_weights(wt)
    e = dict(part_scale=(torch.rand(1, 64, generator=g) + 0.5).numpy(),
             post_scale=torch.randn(64, generator=g).numpy(), fma=True)
    return xb, wb, e


def _pool_run(xb, wb, e, threads):
    layer = ext.Layer(wb, 64, 64, fold=True, **e)
    out = np.empty((2, 9, 23, 64), np.float32).transpose(0, 3, 1, 2)
    layer.run(xb, out, None, None, None, None, threads, 5)
    return out.copy(), native.conv2d(xb, wb, 64, 64, mode="int", threads=threads)


@needs_ext
def test_openmp_team_and_own_pool_give_the_same_results():
    """The kernels on torch's OpenMP team (the default where torch has GNU libgomp) and on the
    extension's own pool: the same values at 1-3 threads (3 > the cores here: a team of 3)."""
    if kernels.POOL != "openmp":
        pytest.skip(f"kernels not on torch's OpenMP team here: {kernels.POOL_NOTE}")
    xb, wb, e = _pool_case()
    want = reference.conv_int(xb, wb, 64, 64)
    for threads in (1, 2, 3):
        omp = _pool_run(xb, wb, e, threads)
        ext.detach_openmp()
        try:
            assert ext.pool_backend() == "own"
            own = _pool_run(xb, wb, e, threads)
        finally:
            assert ext.attach_openmp(kernels._loaded_libgomp()) == ""
        assert ext.pool_backend() == "openmp"
        np.testing.assert_array_equal(omp[0], own[0])
        np.testing.assert_array_equal(omp[1], want)
        np.testing.assert_array_equal(own[1], want)


def _child_conv(_):
    xb, wb, e = _pool_case()
    return ext.pool_backend(), _pool_run(xb, wb, e, 2)[1]


@needs_ext
def test_a_forked_child_computes_on_its_own_pool():
    """After fork the parent's OpenMP team does not exist in the child: the child's calls take
    the extension's pool (rebuilt there) and give the same integers, without hanging."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    xb, wb, _ = _pool_case()
    native.conv2d(xb, wb, 64, 64, mode="int", threads=2)  # the parent's team / pool exists
    with mp.get_context("fork").Pool(1) as pool:
        backend, got = pool.apply_async(_child_conv, (0,)).get(timeout=120)
    assert backend == "own"
    np.testing.assert_array_equal(got, reference.conv_int(xb, wb, 64, 64))
