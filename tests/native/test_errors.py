"""Bad input raises ValueError naming the argument (never a crash), in the Python wrapper and
in the C++ binding itself; ISA forcing through BSRNAS_ISA; info()."""
import numpy as np
import pytest
import torch

import ops.native as native
from ops.native import kernels
from tests.native.conftest import runnable_isas

ext = kernels._ext
needs_ext = pytest.mark.skipif(ext is None, reason="C++ extension not built")


def good():
    x = torch.randn(1, 10, 4, 4)
    w = torch.randn(8, 10, 3, 3)
    return native.pack_activations(x), native.pack_weights(w)


@pytest.mark.parametrize("bad,match", [
    (lambda: native.pack_activations(torch.randn(1, 4, 3, 3, dtype=torch.float64)), "x: dtype"),
    (lambda: native.pack_activations(torch.randn(4, 3, 3)), "x: shape"),
    (lambda: native.pack_activations(torch.randn(1, 4, 6, 6)[:, :, ::2]), "x: non-contiguous"),
    (lambda: native.pack_activations(torch.randn(1, 4, 3, 3), torch.zeros(5)), "offsets: shape"),
    (lambda: native.pack_activations(torch.randn(1, 4, 3, 3), np.zeros(4)), "offsets: dtype"),
    (lambda: native.pack_activations(torch.randn(1, 4, 3, 3), None, torch.randn(1, 4, 3, 2)),
     "threshold_map: shape"),
    (lambda: native.pack_activations(torch.randn(1, 4, 3, 3), threads=0), "threads"),
    (lambda: native.pack_activations([1.0, 2.0]), "x: list"),
    (lambda: native.pack_weights(torch.randn(4, 4, 5, 5)), "weight: shape"),
    (lambda: native.pack_weights(torch.randn(4, 4, 3, 3).int()), "weight: dtype"),
    (lambda: native.conv2d(good()[0], good()[1], 10, 9), "w_bits: shape"),
    (lambda: native.conv2d(good()[0], good()[1], 70, 8), "channel mismatch"),
    (lambda: native.conv2d(good()[0].astype(np.int64), good()[1], 10, 8), "x_bits: dtype"),
    (lambda: native.conv2d(good()[0][0], good()[1], 10, 8), "x_bits: shape"),
    (lambda: native.conv2d(np.asfortranarray(good()[0]), good()[1], 10, 8), "x_bits: non-contiguous"),
    (lambda: native.conv2d(*good(), 10, 8, mode="half"), "mode"),
    (lambda: native.conv2d(*good(), 10, 8, act="gelu"), "act"),
    (lambda: native.conv2d(*good(), 10, 8, bias=np.zeros(7, np.float32)), "bias"),
    (lambda: native.conv2d(*good(), 10, 8, mode="float", residual=torch.randn(1, 3, 4, 4), repeat=3),
     "residual"),
    (lambda: native.conv2d(*good(), 10, 8, spatial=torch.randn(1, 2, 4, 4)), "spatial"),
    (lambda: native.conv2d(*good(), 10, 8, part_scale=np.ones((2, 8), np.float32)), "part_scale"),
    (lambda: native.conv2d(*good(), 10, 8, isa="sse9"), "isa"),
])
def test_wrapper_value_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


@needs_ext
@pytest.mark.parametrize("call,match", [
    (lambda: ext.pack_activations(np.zeros((1, 4, 2, 2)), np.zeros((1, 4), np.float32)), "x: dtype"),
    (lambda: ext.pack_activations(np.zeros((1, 4, 2, 2), np.float32), np.zeros((1, 3), np.float32)),
     "offsets"),
    (lambda: ext.pack_activations(np.zeros((4, 2, 2), np.float32), np.zeros((1, 4), np.float32)), "x:"),
    (lambda: ext.pack_weights(np.zeros((4, 4, 2, 2), np.float32)), "weight"),
    (lambda: ext.conv(good()[0], good()[1], 10, 8, np.zeros((1, 1, 8, 4, 4), np.float32), "int"), "out: dtype"),
    (lambda: ext.conv(good()[0], good()[1], 10, 8, np.zeros((1, 1, 8, 4, 3), np.int32), "int"), "out: shape"),
    (lambda: ext.conv(good()[0], good()[1], 130, 8, np.zeros((1, 1, 8, 4, 4), np.int32), "int"), "in_ch"),
    (lambda: ext.conv(good()[0][:, :, ::2].copy(), good()[1], 10, 8,
                      np.zeros((1, 1, 8, 4, 4), np.int32), "int"), "out: shape"),
    (lambda: ext.conv(np.asfortranarray(good()[0]), good()[1], 10, 8,
                      np.zeros((1, 1, 8, 4, 4), np.int32), "int"), "non-contiguous"),
    (lambda: ext.conv(*good(), 10, 8, np.zeros((1, 8, 4, 4), np.float32), "float", threads=0), "threads"),
    (lambda: ext.conv(*good(), 10, 8, np.zeros((1, 8, 4, 4), np.float32), "float", act="elu"), "act"),
    (lambda: ext.conv(*good(), 10, 8, np.zeros((1, 8, 4, 4), np.float32), "float", isa="avx9"), "isa"),
    (lambda: ext.conv(*good(), 10, 8, "not an array", "float"), "out"),
])
def test_binding_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@needs_ext
def test_read_only_output_rejected():
    out = np.zeros((1, 1, 8, 4, 4), np.int32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        ext.conv(*good(), 10, 8, out, "int")


def test_info_reports_build_and_path(monkeypatch):
    monkeypatch.delenv("BSRNAS_ISA", raising=False)
    info = native.info()
    assert info["built"] is (ext is not None)
    assert info["forced"] is None
    assert info["threads"] == max(1, torch.get_num_threads())
    if ext is not None:
        assert info["isa"] == info["supported"][0]
        assert info["compiled"] == ["amx", "avx512", "avx2", "popcnt", "scalar"]
        assert "scalar" in info["supported"]
        cpu = info["cpu"]
        assert ("avx512" in info["supported"]) == (cpu["avx512f"] and cpu["avx512vpopcntdq"]
                                                   and cpu["avx512bw"] and cpu["avx512vl"])
        assert ("avx2" in info["supported"]) == cpu["avx2"]
        assert ("amx" in info["supported"]) == ("avx512" in info["supported"] and cpu["amx_tile"]
                                                and cpu["amx_int8"] and cpu["amx_os"])


@pytest.mark.parametrize("isa", ["amx", "avx512", "avx2", "popcnt", "scalar"])
def test_forcing_isa_by_environment(monkeypatch, isa):
    monkeypatch.setenv("BSRNAS_ISA", isa)
    x, w = torch.randn(1, 10, 4, 4), torch.randn(8, 10, 3, 3)
    if isa in runnable_isas():
        assert native.info()["isa"] == isa
        out = native.conv2d(native.pack_activations(x), native.pack_weights(w), 10, 8)
        want = torch.nn.functional.conv2d(torch.where(x >= 0, 1.0, -1.0), torch.where(w >= 0, 1.0, -1.0),
                                          padding=1)
        np.testing.assert_array_equal(out[0], want.int().numpy())
    else:  # a path the CPU lacks: a clear error, never an illegal instruction
        assert native.info()["isa"].startswith("error:")
        with pytest.raises(ValueError, match=f"BSRNAS_ISA={isa}.*not supported by this CPU"):
            native.pack_activations(x)


def test_unknown_isa_in_environment(monkeypatch):
    monkeypatch.setenv("BSRNAS_ISA", "neon")
    with pytest.raises(ValueError, match="BSRNAS_ISA: unknown value 'neon'"):
        native.resolve_isa()
