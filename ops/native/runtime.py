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
    y   = native conv + fused epilogue: part scales, bias, BN (norm step, when a rescale
          follows), S, post scale/bias (BN, or G after BN), PReLU / leaky ReLU / RPReLU, FP
          skip (with repeat), float32 out; BN rounded as PyTorch's batch_norm (ops.fma)

so the model's own forward (blocks, BAM history, PixelShuffle, FP head and tail, and for a
``space.builder`` network its input normalisation ``(rgb - m) * k``, image-level skip
``o + up(x)`` and de-normalisation ``o / k + m``, all in PyTorch) drives everything. With
``exact=True`` the output is the PyTorch model's bit for bit: the epilogue performs the model's float operations
in its order (BN with PyTorch's own alpha, beta and FMA rounding: always), and the FP convs, the
local-mean box filter, the rescale maps and the bilinear image skip run in PyTorch on the
layout the model gives them (NCHW; ``TorchLayoutConv2d``), because PyTorch rounds these
differently on channels-last data and a binary network amplifies a last-bit difference that
lands on a binarization threshold. ``exact=False`` (the default) runs them on channels-last
(no layout copies, faster): within float32 rounding of the model, binarizations may flip.

Activations flow channels-last by default (``channels_last=True``): packing then reads
contiguous channels and the epilogue writes contiguous channels; the output is returned as
an ordinary NCHW-contiguous tensor.

The network without per-layer overhead:

* **Linked layers.** When the input of a binary conv is, unchanged (its version counter), the
  output of the binary conv before it and it binarizes that input directly (no BAM, no local
  mean: ``(x - offsets[p]) < 0``), the first call links the two; from then on the producer's
  epilogue writes the consumer's packed bits (all its P planes) in the same pass as the FP
  output, and the consumer skips packing. The bits travel on the output tensor (``_bsr_bits``,
  tagged with the consumer and the tensor's version), so anything that changes or replaces the
  tensor in between makes the consumer pack for itself: never stale bits.
* **Frozen layers.** Each conv runs a C++ ``Layer`` (weights, the amx path's int8 tiles and the
  padded epilogue vectors prepared once), and its kernel variant is the tuned one
  (``ops.native.tune``).
* **Buffers reused across calls.** The layers of one compiled network share a ``BufferPool``: a
  buffer is handed out again once nothing but the pool references it, so a chain of layers runs
  on a few hot buffers instead of a fresh allocation per layer.
* **Native FP data movement.** ``nn.PixelShuffle`` becomes ``NativePixelShuffle`` (depth-to-
  space on channels-last data in the thread pool) and the builder's ``ImageSkip`` (bilinear,
  nearest, pre-shuffle repeat) becomes ``NativeImageSkip``; no layout copy inside a compiled
  network (FP convs run in oneDNN on the channels-last tensors, fp32).
"""
from __future__ import annotations

import copy
import sys
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

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


class BufferPool:
    """Output buffers of the layers of one compiled network, reused across layers and calls: a
    layer takes a buffer of its shape that nothing but the pool references any more (Python
    reference count: the tensor of a previous call that a caller or the next layer still holds
    is never handed out again), the most recently made first, so a network runs on a few hot
    buffers (a chain of layers: about three per shape) instead of one fresh allocation per layer.
    Under the GIL a lookup is atomic, so two threads calling one network never get the same
    buffer (each holds a reference to the one it got)."""

    #: references of a free buffer seen by ``sys.getrefcount``: the pool's list, the loop
    #: variable and the argument
    FREE_REFS = 3

    def __init__(self):
        self._bufs: dict = {}

    def get(self, key, make):
        bufs = self._bufs.setdefault(key, [])
        for buf in reversed(bufs):
            if sys.getrefcount(buf) <= self.FREE_REFS:
                return buf
        buf = make()
        bufs.append(buf)
        return buf

    def __len__(self) -> int:
        return sum(len(v) for v in self._bufs.values())

    def __deepcopy__(self, memo):  # a copied model gets its own (empty) pool
        return BufferPool()


class NativeBinaryConv2d(nn.Module):
    """Inference-only replacement of an eval-mode ``BinaryConv2d`` running its ``ConvPlan``
    through the native kernel. ``forward(x, history=())`` like the layer it replaces."""

    def __init__(self, conv: BinaryConv2d, threads: Optional[int] = None):
        super().__init__()
        plan = conv.plan()
        self.plan = plan
        self.threads = threads
        #: compute the rescale maps on NCHW data, as the PyTorch model does (compile(exact=True))
        self.exact = False
        self.in_ch, self.out_ch = plan.in_ch, plan.out_ch
        self.w_bits = kernels.pack_weights(plan.weight_sign)
        self.offsets = np.ascontiguousarray(plan.threshold_offsets.numpy().astype(np.float32))
        n = plan.out_ch
        self.part_scale = np.ascontiguousarray(plan.part_scale.numpy().astype(np.float32))
        self._layers: dict = {}     # isa (and consumer) -> frozen C++ layer
        self.pool = BufferPool()    # compile() gives every layer of a network the same one
        self._variants: dict = {}   # (isa, H, W, threads) -> kernel variant
        self._consumer: Optional["NativeBinaryConv2d"] = None  # the layer it packs bits for
        self.epilogue = dict(
            bias=_vec(plan.bias, n), post_scale=_vec(plan.post_scale, n),
            post_bias=_vec(plan.post_bias, n),
            act="none" if plan.nonlinearity == "none" else "prelu",
            act_at=plan.nonlinearity_at, slope=_vec(plan.prelu_weight, n),
            act_shift=_vec(plan.rprelu_shift, n), act_bias=_vec(plan.rprelu_bias, n),
            repeat=int(plan.skip_repeat) if plan.skip == "fp" else 1,
            norm_scale=_vec(plan.norm_scale, n), norm_bias=_vec(plan.norm_bias, n), fma=bool(plan.fma))

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
        # the local mean (F.avg_pool2d) and the rescale maps, which reduce over channels (S) or
        # pixels (G), round differently on channels-last data than on NCHW: with ``exact`` they
        # see the NCHW layout the PyTorch model gives them (one copy per layer that has them)
        tmap = None
        if plan.local_mean_kernel is not None:
            if self.exact and not xa.is_contiguous():  # back to xa's layout: fast packing
                tmap = box_mean(xa.contiguous(), plan.local_mean_kernel).contiguous(
                    memory_format=torch.channels_last)
            else:
                tmap = box_mean(xa, plan.local_mean_kernel)
        xr = x
        if self.exact and channels_last and (plan.spatial is not None or plan.channel is not None):
            xr = x.contiguous()
        spatial = plan.spatial(xr) if plan.spatial is not None else None
        if spatial is not None and not (spatial.is_contiguous()
                                        or spatial.is_contiguous(memory_format=torch.channels_last)):
            spatial = spatial.contiguous()
        residual = x if plan.skip == "fp" else None
        layout = "nhwc" if channels_last else "nchw"
        # per-sample post scales (N, out) when the channel rescale is input-dependent
        scales = None
        if plan.channel is not None:
            scales = (plan.post_scale.view(1, -1) * plan.channel(xr)).contiguous()
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
        return self._forward_native(x, xa, tmap, spatial, residual, channels_last, scales)

    # -- the native path -----------------------------------------------------------------------
    def _layer(self, isa: str):
        """The frozen C++ layer for ``isa`` (with the consumer's offsets when linked)."""
        key = (isa, None if self._consumer is None else id(self._consumer))
        layer = self._layers.get(key)
        if layer is None:
            e = self.epilogue
            nxt = self._consumer
            layer = kernels._ext.Layer(
                self.w_bits, self.in_ch, self.out_ch, part_scale=self.part_scale, bias=e["bias"],
                post_scale=e["post_scale"], post_bias=e["post_bias"], act=e["act"],
                act_after_skip=e["act_at"] == "after_skip", slope=e["slope"], act_shift=e["act_shift"],
                act_bias=e["act_bias"], repeat=e["repeat"], parts=self.plan.parts,
                bits_offsets=None if nxt is None else nxt.offsets, isa=isa,
                norm_scale=e["norm_scale"], norm_bias=e["norm_bias"], fma=e["fma"],
                fold=not self.exact)
            self._layers[key] = layer
        return layer


    def _variant(self, isa: str, h: int, w: int, threads: int) -> int:
        key = (isa, h, w, threads)
        v = self._variants.get(key)
        if v is None:
            v = kernels.tuned_variant(isa, self.in_ch, self.out_ch, self.plan.kernel_size,
                                      self.plan.parts, h, w, threads)
            self._variants[key] = v
        return v

    def _forward_native(self, x, xa, tmap, spatial, residual, channels_last, scales):
        plan = self.plan
        isa = kernels.resolve_isa()
        threads = kernels.default_threads(self.threads)
        ext = kernels._ext
        n, _, h, w = x.shape
        # the packed bits: made by the layer that wrote x when it was linked to this one (and x
        # was not changed since: its version counter), else packed here
        tag = getattr(x, "_bsr_bits", None)
        if tag is not None and tag[0] is self and tag[1] == x._version and xa is x and tmap is None:
            bits = tag[2]
        else:
            bits = ext.pack_activations(xa.numpy(), self.offsets,
                                        None if tmap is None else tmap.numpy(), threads, isa)
            producer = getattr(x, "_bsr_from", None)
            if (producer is not None and producer is not self and xa is x and tmap is None
                    and getattr(x, "_bsr_version", None) == x._version and self.plan.parts <= 4):
                producer._link(self)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        pool = self.pool
        out = pool.get(("out", n, plan.out_ch, h, w, channels_last),
                       lambda: torch.empty((n, plan.out_ch, h, w), dtype=torch.float32,
                                           memory_format=fmt))
        nxt = self._consumer
        out_bits = None
        if nxt is not None and (scales is None or n == 1):
            shape = (nxt.plan.parts, n, h, w, (plan.out_ch + 63) // 64)
            out_bits = pool.get(("bits",) + shape, lambda: np.empty(shape, np.uint64))
        layer = self._layer(isa)
        variant = self._variant(isa, h, w, threads)
        sp = None if spatial is None else spatial.numpy()[:, 0]
        res = None if residual is None else residual.numpy()
        o = out.numpy()
        if scales is None:
            layer.run(bits, o, res, sp, None, out_bits, threads, variant)
        else:  # one call per sample: its own channel scale
            sc = scales.numpy()
            for i in range(n):
                layer.run(np.ascontiguousarray(bits[:, i:i + 1]), o[i:i + 1],
                          None if res is None else res[i:i + 1], None if sp is None else sp[i:i + 1],
                          np.ascontiguousarray(sc[i]), out_bits, threads, variant)
        out._bsr_from = self
        out._bsr_version = out._version
        out._bsr_bits = None if out_bits is None else (nxt, out._version, out_bits)
        return out

    def _link(self, consumer: "NativeBinaryConv2d") -> None:
        """From now on also write ``consumer``'s packed bits (its threshold offsets) in this
        layer's epilogue: the consumer reads this layer's output and binarizes it directly."""
        if self._consumer is None:
            self._consumer = consumer


class NativePixelShuffle(nn.Module):
    """``nn.PixelShuffle(r)`` with the depth-to-space done natively on channels-last float32
    input (the compiled network's layout), in the thread pool; any other input goes to
    ``F.pixel_shuffle``. Same values (a permutation)."""

    def __init__(self, upscale_factor: int, threads: Optional[int] = None):
        super().__init__()
        self.upscale_factor = int(upscale_factor)
        self.threads = threads

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.upscale_factor
        if (kernels._ext is None or x.dim() != 4 or x.dtype != torch.float32 or x.requires_grad
                or x.shape[1] % (r * r) or x.is_contiguous()
                or not x.is_contiguous(memory_format=torch.channels_last)):
            return F.pixel_shuffle(x, r)
        n, c, h, w = x.shape
        out = torch.empty((n, c // (r * r), h * r, w * r), dtype=torch.float32,
                          memory_format=torch.channels_last)
        kernels._ext.depth_to_space(x.numpy(), out.numpy(), r, kernels.default_threads(self.threads))
        return out


class NativeImageSkip(nn.Module):
    """The builder's image-level skip ``o + up(x)`` (``space.builder.ImageSkip``: bilinear,
    nearest, or nearest before the shuffle as ``x.repeat_interleave(s^2, 1)``) computed natively
    on the compiled network's channels-last tensors, with PyTorch's index and weight arithmetic
    (bicubic, or anything else, runs the original module)."""

    def __init__(self, skip: nn.Module, threads: Optional[int] = None):
        super().__init__()
        self.skip = skip
        self.mode, self.scale, self.pre_shuffle = skip.mode, int(skip.scale), bool(skip.pre_shuffle)
        self.threads = threads
        #: bilinear through F.interpolate (compile(exact=True)): PyTorch's CPU kernel fuses its
        #: weighted sums into FMAs in a way the native loop does not reproduce at every scale
        #: (measured: bit-equal at x3 and x4 with fma(t0, w0, t1 * w1), not at x2), and
        #: PyTorch's result is the same on NCHW and channels-last input
        self.exact = False

    def forward(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mode = "repeat" if self.pre_shuffle else self.mode
        native_modes = ("repeat", "nearest") if self.exact else ("repeat", "bilinear", "nearest")
        if (kernels._ext is None or mode not in native_modes or o.dim() != 4
                or x.dim() != 4 or o.dtype != torch.float32 or x.dtype != torch.float32
                or o.requires_grad or x.requires_grad):
            return self.skip(o, x)
        cl = o.is_contiguous(memory_format=torch.channels_last) and not o.is_contiguous()
        out = torch.empty(o.shape, dtype=torch.float32,
                          memory_format=torch.channels_last if cl else torch.contiguous_format)
        kernels._ext.image_skip(o.numpy(), x.numpy(), out.numpy(), self.scale, mode,
                                kernels.default_threads(self.threads))
        return out


class TorchLayoutConv2d(nn.Module):
    """An FP ``nn.Conv2d`` of a compiled network run on the memory layout the PyTorch model
    gives it (NCHW-contiguous: the model's input is), so that its float results are PyTorch's
    bit for bit: PyTorch computes a conv on channels-last tensors with another algorithm
    (oneDNN's NHWC kernels; for 3 input channels NCHW even takes a different library path)
    whose sums round differently in the last bit, and a last-bit difference in a value that a
    later binary conv binarizes near its threshold flips that sign. A channels-last input is
    copied to NCHW, and the result copied back to channels-last (the compiled network's
    layout): two layout passes per FP conv (``compile(..., exact=False)`` skips them), both
    native into pooled buffers (``change_layout``, in the thread pool: PyTorch's own copies
    are 3-7x slower, and fresh 60 MB buffers page-fault on every call)."""

    def __init__(self, conv: nn.Conv2d, threads: Optional[int] = None):
        super().__init__()
        self.conv = conv
        self.threads = threads
        self.pool = BufferPool()  # convert() gives it the network's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.is_contiguous():
            return self.conv(x)
        if (kernels._ext is None or x.dtype != torch.float32 or x.requires_grad
                or not x.is_contiguous(memory_format=torch.channels_last)):
            return self.conv(x.contiguous()).contiguous(memory_format=torch.channels_last)
        threads = kernels.default_threads(self.threads)
        shape = tuple(x.shape)
        xn = self.pool.get(("nchw",) + shape, lambda: torch.empty(shape, dtype=torch.float32))
        kernels._ext.change_layout(x.numpy(), xn.numpy(), threads)
        y = self.conv(xn)
        del xn  # free for the pool again
        if y.dtype != torch.float32 or y.requires_grad or not y.is_contiguous():
            return y.contiguous(memory_format=torch.channels_last)
        oshape = tuple(y.shape)
        out = self.pool.get(("nhwc",) + oshape, lambda: torch.empty(
            oshape, dtype=torch.float32, memory_format=torch.channels_last))
        kernels._ext.change_layout(y.numpy(), out.numpy(), threads)
        out._bsr_from = self  # a pooled buffer: CompiledModel hands out a copy if it is the result
        return out


def convert(model: nn.Module, threads: Optional[int] = None, exact: bool = False) -> nn.Module:
    """Deep copy of ``model`` in eval mode with every ``BinaryConv2d`` made native (and, with
    ``exact``, every FP ``nn.Conv2d`` run on PyTorch's NCHW layout: ``TorchLayoutConv2d``)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: {type(model).__name__} given; allowed: a torch.nn.Module")
    m = copy.deepcopy(model).eval()
    if isinstance(m, BinaryConv2d):
        native = NativeBinaryConv2d(m, threads)
        native.exact = exact
        return native
    pool = BufferPool()
    for name, child in list(m.named_modules()):
        if isinstance(child, (TorchLayoutConv2d, NativeBinaryConv2d)):
            continue
        for attr, sub in list(child.named_children()):
            native = _native_module(sub, threads)
            if native is None and exact and type(sub) is nn.Conv2d:
                native = TorchLayoutConv2d(sub, threads)
            if native is not None:
                if isinstance(native, (NativeBinaryConv2d, TorchLayoutConv2d)):
                    native.pool = pool
                if isinstance(native, (NativeBinaryConv2d, NativeImageSkip)):
                    native.exact = exact
                setattr(child, attr, native)
    return m


def _native_module(sub: nn.Module, threads: Optional[int]) -> Optional[nn.Module]:
    """The native replacement of ``sub`` (None: keep it): binary convs, PixelShuffle, and the
    builder's image skip (recognised by its fields, so ``ops`` does not import ``space``)."""
    if isinstance(sub, BinaryConv2d):
        return NativeBinaryConv2d(sub, threads)
    if type(sub) is nn.PixelShuffle:
        return NativePixelShuffle(sub.upscale_factor, threads)
    if type(sub).__name__ == "ImageSkip" and all(hasattr(sub, f) for f in ("mode", "scale", "pre_shuffle")):
        return NativeImageSkip(sub, threads)
    return None


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
        if not isinstance(y, torch.Tensor):
            return y
        if getattr(y, "_bsr_from", None) is not None:  # a layer's reused buffer: hand out a copy
            return y.clone(memory_format=torch.contiguous_format)
        return y.contiguous()


def compile(model: nn.Module, threads: Optional[int] = None,  # noqa: A001
            channels_last: bool = True, exact: bool = False) -> CompiledModel:
    """Packed runtime of ``model`` (any module made of ``ops`` layers and ordinary PyTorch
    layers, e.g. a bare ``nn.Sequential(BinaryConv2d(...))``). ``threads``: kernel threads per
    call (default ``torch.get_num_threads()`` at call time). The model itself is not changed.
    Makes the process heap steady (``ops.native.heap``) unless ``BSRNAS_STEADY_HEAP=0``.
    ``exact=True``: the FP convs (and the local mean, the rescale maps, the bilinear skip) run
    on the layout the PyTorch model gives them (``TorchLayoutConv2d``), so the output equals
    the PyTorch model's bit for bit (module docstring), at the cost of PyTorch's slower NCHW
    convs and layout copies (e2fif 64 x 16 x2, 1024x768: 1.14-1.18x the time, BENCHMARKS.md
    ``upscale_exactness``); ``exact=False`` (default, the fast path) runs them on
    channels-last (oneDNN NHWC: no layout copies, last-bit differences that can flip later
    binarizations). ``bsrnas upscale`` uses ``exact=True``."""
    if not isinstance(exact, bool):
        raise ValueError(f"exact: {exact!r} given; allowed: True, False")
    if threads is not None:
        kernels.default_threads(threads)
    if not isinstance(channels_last, bool):
        raise ValueError(f"channels_last: {channels_last!r} given; allowed: True, False")
    steady_heap()  # freed activations are reused, not page-faulted back in (ops/native/heap.py)
    return CompiledModel(convert(model, threads, exact=exact and channels_last), channels_last)
