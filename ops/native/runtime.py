"""Packed runtime: run a model built from ``ops`` layers with every binary conv on the native
xnor-popcount kernel and everything else in PyTorch.

``compile(model)`` deep-copies the model (eval mode) and replaces each ``ops.BinaryConv2d`` by
a ``NativeBinaryConv2d`` that freezes the layer's ``ConvPlan`` (``ops.plan``) and executes it:

    Xa  = plan.pre(x, history)                       (BAM, PyTorch; x when there is no BAM)
    map = box_mean_k(Xa)                              (local-mean threshold, PyTorch)
    bits_p = pack((Xa - map) - threshold_offsets[p])  (native, the exact float ops of the plan)
    S   = plan.spatial(x)                             (spatial rescale map, PyTorch)
    G   = plan.channel(x)                             (input-dependent channel x layer factor,
                                                       PyTorch, (N, out): a per-sample channel
                                                       scale, so the conv runs once per sample
                                                       with post_scale = post_scale * G[n])
    y   = native conv + fused epilogue: part scales, bias, S, post scale/bias (folded BN, or
          G after BN), PReLU / leaky ReLU / RPReLU, FP skip (with repeat), float32 out

so the model's own forward (blocks, BAM history, PixelShuffle, FP head and tail, and for a
``space.builder`` network its input normalisation ``(rgb - m) * k``, image-level skip
``o + up(x)`` and de-normalisation ``o / k + m``, all in PyTorch) drives everything. The binarization decisions and the integer convs are bit-identical to the PyTorch
model; the float epilogue agrees to float32 rounding (summation order).

Activations flow channels-last by default (``channels_last=True``): packing then reads
contiguous channels and the epilogue writes contiguous channels; the output is returned as
an ordinary NCHW-contiguous tensor.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ops.conv import BinaryConv2d
from ops.native import kernels
from ops.native.heap import steady_heap
from ops.thresholds import box_mean


def _vec(t: Optional[torch.Tensor], n: int) -> Optional[np.ndarray]:
    if t is None:
        return None
    a = t.detach().to(torch.float32).reshape(-1)
    if a.numel() == 1:
        a = a.expand(n)
    return np.ascontiguousarray(a.numpy())


class NativeBinaryConv2d(nn.Module):
    """Inference-only replacement of an eval-mode ``BinaryConv2d`` running its ``ConvPlan``
    through the native kernel. ``forward(x, history=())`` like the layer it replaces."""

    def __init__(self, conv: BinaryConv2d, threads: Optional[int] = None):
        super().__init__()
        plan = conv.plan()
        self.plan = plan
        self.threads = threads
        self.in_ch, self.out_ch = plan.in_ch, plan.out_ch
        self.w_bits = kernels.pack_weights(plan.weight_sign)
        self.offsets = np.ascontiguousarray(plan.threshold_offsets.numpy().astype(np.float32))
        n = plan.out_ch
        self.part_scale = np.ascontiguousarray(plan.part_scale.numpy().astype(np.float32))
        self.epilogue = dict(
            bias=_vec(plan.bias, n), post_scale=_vec(plan.post_scale, n),
            post_bias=_vec(plan.post_bias, n),
            act="none" if plan.nonlinearity == "none" else "prelu",
            act_at=plan.nonlinearity_at, slope=_vec(plan.prelu_weight, n),
            act_shift=_vec(plan.rprelu_shift, n), act_bias=_vec(plan.rprelu_bias, n),
            repeat=int(plan.skip_repeat) if plan.skip == "fp" else 1)

    def extra_repr(self) -> str:
        p = self.plan
        return (f"{p.in_ch}, {p.out_ch}, kernel_size={p.kernel_size}, parts={p.parts}, "
                f"local_mean={p.local_mean_kernel}, bam={p.pre is not None}, "
                f"spatial={p.spatial is not None}, channel={p.channel is not None}, act={p.nonlinearity}, skip={p.skip}")

    def forward(self, x: torch.Tensor, history: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        plan = self.plan
        if x.dim() != 4 or x.shape[1] != plan.in_ch:
            raise ValueError(f"x: shape {tuple(x.shape)} given; allowed: (N, {plan.in_ch}, H, W)")
        if x.dtype != torch.float32:
            x = x.to(torch.float32)
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            x = x.contiguous()
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        xa = plan.pre(x, history) if plan.pre is not None else x
        if not (xa.is_contiguous() or xa.is_contiguous(memory_format=torch.channels_last)):
            xa = xa.contiguous()
        tmap = box_mean(xa, plan.local_mean_kernel) if plan.local_mean_kernel is not None else None
        spatial = plan.spatial(x) if plan.spatial is not None else None
        if spatial is not None and not (spatial.is_contiguous()
                                        or spatial.is_contiguous(memory_format=torch.channels_last)):
            spatial = spatial.contiguous()
        residual = x if plan.skip == "fp" else None
        layout = "nhwc" if channels_last else "nchw"
        # per-sample post scales (N, out) when the channel rescale is input-dependent
        scales = None
        if plan.channel is not None:
            scales = (plan.post_scale.view(1, -1) * plan.channel(x)).contiguous()
        if kernels._ext is None:  # reference fallback, through the validated wrappers
            bits = kernels.pack_activations(xa, self.offsets, tmap, threads=self.threads)
            if scales is None:
                return torch.from_numpy(kernels.conv2d(
                    bits, self.w_bits, plan.in_ch, plan.out_ch, mode="float", part_scale=self.part_scale,
                    spatial=spatial, residual=residual, layout=layout, threads=self.threads,
                    **self.epilogue))
            outs = []
            for i in range(x.shape[0]):
                e = dict(self.epilogue, post_scale=np.ascontiguousarray(scales[i].numpy()))
                outs.append(torch.from_numpy(kernels.conv2d(
                    np.ascontiguousarray(bits[:, i:i + 1]), self.w_bits, plan.in_ch, plan.out_ch,
                    mode="float", part_scale=self.part_scale,
                    spatial=None if spatial is None else spatial[i:i + 1],
                    residual=None if residual is None else residual[i:i + 1], layout=layout,
                    threads=self.threads, **e)))
            return torch.cat(outs, 0)
        # fast path: the arrays were checked when the layer was built and the C++ side checks
        # every call again, so skip the Python-side validation (it costs ~50 us per layer)
        isa = kernels.resolve_isa()
        threads = kernels.default_threads(self.threads)
        ext = kernels._ext
        bits = ext.pack_activations(xa.numpy(), self.offsets, None if tmap is None else tmap.numpy(),
                                    threads, isa)
        n, _, h, w = x.shape
        out = torch.empty((n, plan.out_ch, h, w), dtype=torch.float32,
                          memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        e = self.epilogue
        sp = None if spatial is None else spatial.numpy()[:, 0]
        res = None if residual is None else residual.numpy()
        o = out.numpy()
        if scales is None:
            samples = [(bits, o, sp, res, e["post_scale"])]
        else:  # one call per sample: its own channel scale
            sc = scales.numpy()
            samples = [(np.ascontiguousarray(bits[:, i:i + 1]), o[i:i + 1],
                        None if sp is None else sp[i:i + 1], None if res is None else res[i:i + 1],
                        np.ascontiguousarray(sc[i])) for i in range(n)]
        for b_i, o_i, sp_i, res_i, ps_i in samples:
            ext.conv(b_i, self.w_bits, plan.in_ch, plan.out_ch, o_i, "float",
                     part_scale=self.part_scale, bias=e["bias"], spatial=sp_i,
                     post_scale=ps_i, post_bias=e["post_bias"], act=e["act"],
                     act_after_skip=e["act_at"] == "after_skip", slope=e["slope"],
                     act_shift=e["act_shift"], act_bias=e["act_bias"],
                     residual=res_i, repeat=e["repeat"], threads=threads, isa=isa)
        return out


def convert(model: nn.Module, threads: Optional[int] = None) -> nn.Module:
    """Deep copy of ``model`` in eval mode with every ``BinaryConv2d`` made native."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: {type(model).__name__} given; allowed: a torch.nn.Module")
    m = copy.deepcopy(model).eval()
    if isinstance(m, BinaryConv2d):
        return NativeBinaryConv2d(m, threads)
    for name, child in list(m.named_modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, BinaryConv2d):
                setattr(child, attr, NativeBinaryConv2d(sub, threads))
    return m


class CompiledModel(nn.Module):
    """Callable returned by ``compile``: float NCHW in, float NCHW out, no autograd."""

    def __init__(self, module: nn.Module, channels_last: bool):
        super().__init__()
        self.module = module
        self.channels_last = channels_last

    @torch.no_grad()
    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"x: {getattr(x, 'shape', type(x).__name__)} given; allowed: a 4-D "
                             "(N, C, H, W) float tensor")
        x = x.to(torch.float32)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.module(x, *args, **kwargs)
        return y.contiguous() if isinstance(y, torch.Tensor) else y


def compile(model: nn.Module, threads: Optional[int] = None,  # noqa: A001
            channels_last: bool = True) -> CompiledModel:
    """Packed runtime of ``model`` (any module made of ``ops`` layers and ordinary PyTorch
    layers, e.g. a bare ``nn.Sequential(BinaryConv2d(...))``). ``threads``: kernel threads per
    call (default ``torch.get_num_threads()`` at call time). The model itself is not changed.
    Makes the process heap steady (``ops.native.heap``) unless ``BSRNAS_STEADY_HEAP=0``."""
    if threads is not None:
        kernels.default_threads(threads)
    if not isinstance(channels_last, bool):
        raise ValueError(f"channels_last: {channels_last!r} given; allowed: True, False")
    steady_heap()  # freed activations are reused, not page-faulted back in (ops/native/heap.py)
    return CompiledModel(convert(model, threads), channels_last)
