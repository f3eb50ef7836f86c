"""Float32 arithmetic as PyTorch's CPU kernels round it, for the inference plan and the native
reference.

``fma32(a, b, c)``: ``a * b + c`` rounded once to float32 (a fused multiply-add), computed
exactly in numpy: the product of two float32 values is exact in float64, the sum is rounded to
float64 *to odd* (TwoSum gives its exact error; an inexact sum with an even last bit is moved
one float64 ulp towards the exact value), and rounding a round-to-odd float64 (53 bits >= 24 + 2)
to float32 gives the correctly rounded result (no double rounding).

``affine32(z, s, b, fused)``: ``fma32(z, s, b)`` when ``fused``, else ``z * s`` rounded, then
``+ b`` rounded (two float32 roundings). numpy arrays or tensors in, float32 of the same kind out.

``batch_norm_affine(bn)``: the per-channel ``(alpha, beta, fused)`` with which PyTorch's CPU
``batch_norm`` in eval mode computes ``y = x * alpha + beta`` on this machine
(``aten/src/ATen/native/cpu/batch_norm_kernel.cpp``: ``invstd = 1 / sqrt(var + eps)``,
``alpha = invstd * weight``, ``beta = bias - mean * alpha``, then ``x * alpha + beta`` per
element; its per-CPU-capability builds (AVX2, AVX512) contract the multiply-adds into FMAs, the
DEFAULT one does not). ``beta`` is read from PyTorch itself (``batch_norm`` of zeros is exactly
``beta``, with or without FMA), ``alpha`` is computed with the same float32 operations, and
``fused`` is found by running ``batch_norm`` on probe values and comparing with both roundings;
``exact`` says whether one of them reproduced PyTorch bit for bit.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F


def fma32(a, b, c):
    """``a * b + c`` with one rounding to float32 (broadcasting; numpy in, numpy out)."""
    a, b, c = (np.asarray(v, np.float32).astype(np.float64) for v in (a, b, c))
    p = a * b  # exact: 24 + 24 significant bits
    with np.errstate(invalid="ignore", over="ignore"):
        s = p + c
        bv = s - p
        err = (p - (s - bv)) + (c - bv)  # TwoSum: s + err == p + c exactly
        even = (s.view(np.int64) & 1) == 0
        fix = (err != 0) & even & np.isfinite(s)
        if fix.any():
            s = np.where(fix, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def affine32(z, s, b, fused: bool):
    """``z * s + b`` in float32, fused (one rounding) or not (two); tensor in, tensor out."""
    if isinstance(z, torch.Tensor):
        if not fused:
            return z * s + b
        zt, st, bt = torch.broadcast_tensors(z, torch.as_tensor(s), torch.as_tensor(b))
        return torch.from_numpy(fma32(zt.detach().cpu().numpy(), st.cpu().numpy(), bt.cpu().numpy()))
    f32 = np.float32
    if not fused:
        return (np.asarray(z, f32) * np.asarray(s, f32)).astype(f32) + np.asarray(b, f32)
    return fma32(z, s, b)


class BatchNormAffine(NamedTuple):
    alpha: torch.Tensor  # (C,) float32
    beta: torch.Tensor   # (C,) float32
    fused: bool          # PyTorch's x * alpha + beta is one FMA here
    exact: bool          # the probe matched one of the two roundings bit for bit


def _probe(c: int) -> torch.Tensor:
    """(1, C, 4, 8) probe values: integers (binary conv results) plus fractions, signed."""
    g = torch.Generator().manual_seed(15)
    ints = torch.randint(-600, 600, (1, c, 4, 8), generator=g).float()
    return ints + torch.rand(1, c, 4, 8, generator=g) * 2 - 1


def batch_norm_affine(bn: torch.nn.BatchNorm2d) -> BatchNormAffine:
    """PyTorch's eval-mode CPU batch_norm of ``bn`` as ``x * alpha + beta`` (module docstring)."""
    f32 = np.float32
    c = bn.num_features
    with torch.no_grad():
        mean = bn.running_mean.detach().to(torch.float32).cpu()
        var = bn.running_var.detach().to(torch.float32).cpu()
        w = bn.weight.detach().to(torch.float32).cpu() if bn.weight is not None else torch.ones(c)
        b = bn.bias.detach().to(torch.float32).cpu() if bn.bias is not None else torch.zeros(c)

        def run(x):
            return F.batch_norm(x, mean, var, w, b, False, 0.0, bn.eps)

        invstd = f32(1) / np.sqrt(var.numpy() + f32(bn.eps))
        alpha = (invstd * w.numpy()).astype(f32)
        beta = run(torch.zeros(1, c, 2, 2))[0, :, 0, 0].contiguous().numpy()
        x = _probe(c)
        want = run(x).numpy()
        a4, b4 = alpha.reshape(1, -1, 1, 1), beta.reshape(1, -1, 1, 1)
        miss_fused = int((fma32(x.numpy(), a4, b4) != want).sum())
        miss_plain = int((affine32(x.numpy(), a4, b4, False) != want).sum())
    fused = miss_fused < miss_plain
    return BatchNormAffine(torch.from_numpy(alpha.copy()), torch.from_numpy(beta.copy()), fused,
                           min(miss_fused, miss_plain) == 0)
