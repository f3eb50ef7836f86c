"""Pure numpy/PyTorch reference of every kernel entry point (used by the tests, and as the
fallback, with a warning, when the C++ extension is not built).

Formulas (the contract the C++ kernel must reproduce bit for bit):

* packing: ``d = (x - map) - offsets[p, c]`` in float32 (``map`` = 0 when absent);
  bit ``c % 64`` of word ``c // 64`` of pixel (n, y, x) is SET when ``d < 0`` (value -1,
  sign(0) = +1). Output ``(P, N, H, W, Cw)`` uint64, ``Cw = ceil(C / 64)``, unused bits 0.
* weight packing: bit set when ``w < 0``; output ``(ceil(O/8), k, k, Cw, 8)`` uint64
  (8 output channels side by side, unused channels all zero).
* conv: ``I_p = conv2d(s(b_p), s(W), padding=k//2)`` with ``s(bit) = 1 - 2*bit`` and ordinary
  zero padding (a tap outside the image contributes 0), exact in integers.
* epilogue, float32, in this order::

      z = sum_p part_scale[p] * I_p          # left to right, starting from 0
      z = z + bias
      z = z * norm_scale + norm_bias         # when norm_scale is given
      z = z * spatial                        # (N, 1, H, W) map, when given
      z = z * post_scale + post_bias
      (each ``* s + b`` one fused multiply-add when ``fma``, else a multiply then an add)
      z = act(z)                             # when act_at == 'before_skip'
      z = z + residual[:, o // repeat]       # when given
      z = act(z)                             # when act_at == 'after_skip'
      act(z) = where(t < 0, t * slope, t) + act_bias,  t = z - act_shift   ('prelu'; 'none': z)

  packed output: bit o of pixel (n, y, x) set when ``z - out_threshold[o] < 0``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ops.fma import affine32

OC_TILE = 8


def _words(c: int) -> int:
    return (c + 63) // 64


def _pack_bool_nhwc(bits: np.ndarray) -> np.ndarray:
    """(..., C) bool -> (..., ceil(C/64)) uint64, bit c%64 of word c//64."""
    c = bits.shape[-1]
    cw = _words(c)
    padded = np.zeros(bits.shape[:-1] + (cw * 64,), dtype=bool)
    padded[..., :c] = bits
    by = np.packbits(padded.reshape(-1, cw * 64), axis=-1, bitorder="little")
    return by.view("<u8").astype(np.uint64).reshape(bits.shape[:-1] + (cw,))


def _unpack_bool_nhwc(words: np.ndarray, c: int) -> np.ndarray:
    by = np.ascontiguousarray(words).astype("<u8").view(np.uint8)
    bits = np.unpackbits(by.reshape(words.shape[:-1] + (-1,)), axis=-1, bitorder="little")
    return bits[..., :c].astype(bool)


def pack_activations(x: np.ndarray, offsets: np.ndarray,
                     threshold_map: Optional[np.ndarray] = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    offsets = np.asarray(offsets, dtype=np.float32).reshape(-1, x.shape[1])
    base = x if threshold_map is None else x - np.asarray(threshold_map, dtype=np.float32)
    d = base[None] - offsets[:, None, :, None, None]  # (P, N, C, H, W) float32
    return _pack_bool_nhwc((d < 0).transpose(0, 1, 3, 4, 2))


def unpack_activations(bits: np.ndarray, channels: int) -> np.ndarray:
    """(P, N, H, W, Cw) -> (P, N, C, H, W) of +-1.0 (float32)."""
    b = _unpack_bool_nhwc(bits, channels)
    return (1.0 - 2.0 * b.transpose(0, 1, 4, 2, 3)).astype(np.float32)


def pack_weights(weight: np.ndarray) -> np.ndarray:
    w = np.asarray(weight, dtype=np.float32)
    o, c, k, _ = w.shape
    ot = (o + OC_TILE - 1) // OC_TILE
    bits = np.zeros((ot * OC_TILE, k, k, c), dtype=bool)
    bits[:o] = (w < 0).transpose(0, 2, 3, 1)
    words = _pack_bool_nhwc(bits)  # (Ot*8, k, k, Cw)
    return np.ascontiguousarray(words.reshape(ot, OC_TILE, k, k, -1).transpose(0, 2, 3, 4, 1))


def unpack_weights(w_bits: np.ndarray, out_ch: int, in_ch: int) -> np.ndarray:
    """(Ot, k, k, Cw, 8) -> (O, C, k, k) of +-1.0 (float32)."""
    ot, k, _, cw, t = w_bits.shape
    words = w_bits.transpose(0, 4, 1, 2, 3).reshape(ot * t, k, k, cw)
    b = _unpack_bool_nhwc(words, in_ch)[:out_ch]
    return (1.0 - 2.0 * b.transpose(0, 3, 1, 2)).astype(np.float32)


def conv_int(x_bits: np.ndarray, w_bits: np.ndarray, in_ch: int, out_ch: int) -> np.ndarray:
    """(P, N, O, H, W) int32 by a float64 PyTorch conv of the unpacked signs (exact)."""
    xs = unpack_activations(x_bits, in_ch)
    ws = unpack_weights(w_bits, out_ch, in_ch)
    k = ws.shape[-1]
    p, n = xs.shape[:2]
    xt = torch.from_numpy(xs.reshape((p * n,) + xs.shape[2:])).double()
    y = F.conv2d(xt, torch.from_numpy(ws).double(), padding=k // 2)
    return y.round().to(torch.int32).numpy().reshape((p, n) + tuple(y.shape[1:]))


def _act(z, act, slope, shift, abias):
    if act == "none":
        return z
    t = z - shift
    return np.where(t < 0, t * slope, t).astype(np.float32) + abias


def conv2d(x_bits, w_bits, in_ch: int, out_ch: int, *, mode: str = "int", part_scale=None,
           bias=None, spatial=None, post_scale=None, post_bias=None, act: str = "none",
           act_at: str = "after_skip", slope=None, act_shift=None, act_bias=None, residual=None,
           repeat: int = 1, out_threshold=None, norm_scale=None, norm_bias=None,
           fma: bool = False) -> np.ndarray:
    """Reference of ``ops.native.conv2d`` (same arguments; int: (P, N, O, H, W) int32,
    float: (N, O, H, W) float32, packed: (N, H, W, ceil(O/64)) uint64)."""
    ints = conv_int(x_bits, w_bits, in_ch, out_ch)
    if mode == "int":
        return ints
    f32 = np.float32

    def vec(v, fill):
        a = np.full(out_ch, fill, f32) if v is None else np.asarray(v, f32).reshape(out_ch)
        return a[None, :, None, None]

    p = ints.shape[0]
    scales = np.ones((p, out_ch), f32) if part_scale is None else np.asarray(part_scale, f32)
    z = np.zeros(ints.shape[1:], f32)
    for i in range(p):
        z = z + scales[i][None, :, None, None] * ints[i].astype(f32)
    z = z + vec(bias, 0.0)
    if norm_scale is not None or norm_bias is not None:
        z = affine32(z, vec(norm_scale, 1.0), vec(norm_bias, 0.0), fma)
    if spatial is not None:
        z = z * np.asarray(spatial, f32).reshape(z.shape[0], 1, z.shape[2], z.shape[3])
    z = affine32(z, vec(post_scale, 1.0), vec(post_bias, 0.0), fma)
    args = (act, vec(slope, 1.0), vec(act_shift, 0.0), vec(act_bias, 0.0))
    if act_at == "before_skip":
        z = _act(z, *args)
    if residual is not None:
        z = z + np.repeat(np.asarray(residual, f32), repeat, axis=1)
    if act_at == "after_skip":
        z = _act(z, *args)
    z = z.astype(f32)
    if mode == "float":
        return z
    bits = (z - vec(out_threshold, 0.0)) < 0
    return _pack_bool_nhwc(bits.transpose(0, 2, 3, 1))
