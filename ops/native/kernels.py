"""Validated Python entry points of the xnor-popcount kernel.

Each function accepts numpy arrays or CPU torch tensors, checks dtype / shape / contiguity
(raising ``ValueError`` that names the argument, the value given and what is allowed: the C++
side checks again) and calls the extension, or the pure-Python reference in ``reference.py``
with a one-time warning when the extension is not built.

Layouts: float activations are (N, C, H, W) and may be stored NCHW-contiguous or
channels-last (NHWC) contiguous; packed activations are (P, N, H, W, Cw) uint64 with
Cw = ceil(C / 64); packed weights are (ceil(O/8), k, k, Cw, 8) uint64.
"""
from __future__ import annotations

import os
import warnings
from typing import Optional

import numpy as np
import torch

from ops.native import reference

try:  # the compiled extension (built by ``pip install``)
    from ops.native import _bsrnas_native as _ext
    BUILD_ERROR: Optional[str] = None
except ImportError as exc:  # pragma: no cover - exercised only without a compiler
    _ext = None
    BUILD_ERROR = f"{type(exc).__name__}: {exc}"

ISAS = ("amx", "avx512", "avx2", "popcnt", "scalar")


def _loaded_libgomp() -> Optional[str]:
    """Path of the GNU OpenMP runtime this process loaded (torch's copy), from
    ``/proc/self/maps`` (Linux); None where there is none or no such file."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "libgomp" in line and "/" in line}
    except OSError:
        return None
    torch_dir = os.path.dirname(torch.__file__)
    mine = sorted(p for p in paths if p.startswith(torch_dir))
    return (mine or sorted(paths) or [None])[0]


#: where the kernels run their threads: ``openmp`` (torch's OpenMP team, the default where
#: torch uses GNU libgomp) or ``own`` (the extension's thread pool; ``BSRNAS_POOL=own``)
POOL = "own"
POOL_NOTE = ""
_pool_env = os.environ.get("BSRNAS_POOL", "openmp").strip().lower()
if _pool_env not in ("openmp", "own"):
    warnings.warn(f"BSRNAS_POOL={os.environ.get('BSRNAS_POOL')!r} given; allowed: 'openmp' or 'own'. "
                  "Using 'openmp'.", RuntimeWarning, stacklevel=2)
    _pool_env = "openmp"
if _ext is not None and hasattr(_ext, "attach_openmp"):
    if _pool_env == "openmp":
        _gomp = _loaded_libgomp() if torch.__config__.parallel_info().find("OpenMP") >= 0 else None
        POOL_NOTE = _ext.attach_openmp(_gomp) if _gomp else "torch has no GNU OpenMP runtime here"
        POOL = _ext.pool_backend()
    else:
        POOL_NOTE = "BSRNAS_POOL=own"
_warned = False


def _fallback() -> bool:
    global _warned
    if _ext is not None:
        return False
    if not _warned:
        warnings.warn("ops.native: C++ extension not built (" + str(BUILD_ERROR) + "); using the "
                      "slow pure-Python reference. Reinstall with `pip install -e .`.",
                      RuntimeWarning, stacklevel=3)
        _warned = True
    return True


_resolved: dict = {}


def resolve_isa(isa: Optional[str] = None) -> str:
    """The instruction-set path to use: ``isa`` if given, else ``$BSRNAS_ISA``, else the best
    one the CPU supports. Raises ``ValueError`` for an unknown name or one the CPU lacks."""
    key = (isa, os.environ.get("BSRNAS_ISA") if isa is None else None)
    if key in _resolved:
        return _resolved[key]
    out = _resolve_isa(isa)
    _resolved[key] = out
    return out


def _resolve_isa(isa: Optional[str]) -> str:
    source = "isa"
    if isa is None:
        isa = os.environ.get("BSRNAS_ISA", "").strip().lower() or "auto"
        source = "BSRNAS_ISA"
    if isa != "auto" and isa not in ISAS:
        raise ValueError(f"{source}: unknown value {isa!r}; allowed: auto, {', '.join(ISAS)}")
    if _ext is None:
        if isa not in ("auto", "scalar"):
            raise ValueError(f"{source}: {isa!r} requested but the C++ extension is not built; "
                             "allowed: scalar (pure-Python reference)")
        return "reference"
    try:
        return _ext.resolve_isa(isa)
    except ValueError as exc:
        raise ValueError(f"{source}={isa}: {exc}") from None


def default_threads(threads: Optional[int] = None) -> int:
    if threads is None:
        return max(1, torch.get_num_threads())
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: {threads!r} given; allowed: an int >= 1")
    return threads


def as_numpy(a, name: str, dtype, ndim: int, *, contiguous: str = "c") -> np.ndarray:
    """numpy view of a numpy array or CPU torch tensor, checked. ``contiguous``: 'c' (row
    major), 'nchw' (row major or channels-last for 4-D), or '' (any strides)."""
    if isinstance(a, torch.Tensor):
        if a.device.type != "cpu":
            raise ValueError(f"{name}: tensor on device {a.device} given; allowed: cpu")
        if a.requires_grad:
            a = a.detach()
        try:
            arr = a.numpy()
        except TypeError as exc:
            raise ValueError(f"{name}: dtype {a.dtype} given; allowed: {np.dtype(dtype)}") from exc
    elif isinstance(a, np.ndarray):
        arr = a
    else:
        raise ValueError(f"{name}: {type(a).__name__} given; allowed: numpy array or torch tensor")
    if arr.dtype != np.dtype(dtype):
        raise ValueError(f"{name}: dtype {arr.dtype} given; allowed: {np.dtype(dtype)}")
    if arr.ndim != ndim:
        raise ValueError(f"{name}: shape {tuple(arr.shape)} ({arr.ndim}-D) given; allowed: {ndim}-D")
    if contiguous == "c" and not arr.flags.c_contiguous:
        raise ValueError(f"{name}: non-contiguous array of shape {tuple(arr.shape)} given; "
                         "allowed: C-contiguous")
    if contiguous == "nchw" and not (arr.flags.c_contiguous or is_channels_last(arr)):
        raise ValueError(f"{name}: non-contiguous array of shape {tuple(arr.shape)}, strides "
                         f"{arr.strides} given; allowed: NCHW-contiguous or channels-last")
    return arr


def empty64(shape, dtype) -> np.ndarray:
    """An uninitialised array whose data starts on a 64-byte boundary, as torch's allocator
    gives a compiled network's tensors (numpy's large arrays start 16 bytes past a page; a zmm
    load or store straddling two cache lines costs two: on AMD Zen 5 about a third of the naive
    loop's time). For timing the kernel as a network runs it."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(n + 64, np.uint8)
    off = (-raw.ctypes.data) % 64
    return raw[off:off + n].view(dtype).reshape(shape)


def is_channels_last(arr: np.ndarray) -> bool:
    return arr.ndim == 4 and arr.transpose(0, 2, 3, 1).flags.c_contiguous


def _vector(v, name: str, n: int) -> Optional[np.ndarray]:
    if v is None:
        return None
    if isinstance(v, torch.Tensor):
        v = v.detach().to(torch.float32).contiguous().numpy()
    a = np.ascontiguousarray(np.asarray(v, dtype=np.float32)).reshape(-1)
    if a.shape != (n,):
        raise ValueError(f"{name}: {a.size} values given; expected one per channel ({n})")
    return a


def pack_activations(x, offsets=None, threshold_map=None, *, threads: Optional[int] = None,
                     isa: Optional[str] = None) -> np.ndarray:
    """Binarize and pack (N, C, H, W) float32 activations -> (P, N, H, W, Cw) uint64.

    Bit SET means -1: ``(x - threshold_map) - offsets[p, c] < 0``. ``offsets``: None (zero
    threshold), (C,) per-channel thresholds, or (P, C) for P ARI parts. ``threshold_map``: an
    explicit (N, C, H, W) threshold (e.g. the local-mean box filter)."""
    xa = as_numpy(x, "x", np.float32, 4, contiguous="nchw")
    c = xa.shape[1]
    if c < 1:
        raise ValueError(f"x: shape {tuple(xa.shape)} given; allowed: at least 1 channel")
    if offsets is None:
        off = np.zeros((1, c), np.float32)
    else:
        off = offsets.detach().numpy() if isinstance(offsets, torch.Tensor) else np.asarray(offsets)
        if off.dtype != np.float32:
            raise ValueError(f"offsets: dtype {off.dtype} given; allowed: float32")
        if off.ndim == 1:
            off = off[None]
        if off.ndim != 2 or off.shape[1] != c or off.shape[0] < 1:
            raise ValueError(f"offsets: shape {tuple(np.shape(offsets))} given; allowed: ({c},) "
                             f"or (P, {c}) for x of shape {tuple(xa.shape)}")
        off = np.ascontiguousarray(off)
    tmap = None
    if threshold_map is not None:
        tmap = as_numpy(threshold_map, "threshold_map", np.float32, 4, contiguous="nchw")
        if tmap.shape != xa.shape:
            raise ValueError(f"threshold_map: shape {tuple(tmap.shape)} given; expected the "
                             f"shape of x {tuple(xa.shape)}")
    resolved = resolve_isa(isa)
    threads = default_threads(threads)
    if _fallback():
        return reference.pack_activations(xa, off, tmap)
    return _ext.pack_activations(xa, off, tmap, threads, resolved)


def pack_weights(weight) -> np.ndarray:
    """(O, C, k, k) float32 latent or sign weights -> (ceil(O/8), k, k, Cw, 8) uint64
    (bit set when w < 0, i.e. sign -1)."""
    w = as_numpy(weight, "weight", np.float32, 4)
    if w.shape[2] != w.shape[3] or w.shape[2] not in (1, 3) or w.shape[0] < 1 or w.shape[1] < 1:
        raise ValueError(f"weight: shape {tuple(w.shape)} given; allowed: (out, in, k, k), k in {{1, 3}}")
    if _fallback():
        return reference.pack_weights(w)
    return _ext.pack_weights(w)


def conv2d(x_bits, w_bits, in_ch: int, out_ch: int, *, mode: str = "int", part_scale=None,
           bias=None, spatial=None, post_scale=None, post_bias=None, act: str = "none",
           act_at: str = "after_skip", slope=None, act_shift=None, act_bias=None,
           residual=None, repeat: int = 1, out_threshold=None, layout: str = "nchw",
           threads: Optional[int] = None, isa: Optional[str] = None, out_bits=None,
           bits_offsets=None, variant: Optional[int] = None, norm_scale=None, norm_bias=None,
           fma: bool = False) -> np.ndarray:
    """Binary conv (k in {1, 3}, stride 1, 'same' zero padding in the sign domain) of packed
    activations with packed weights, with the fused epilogue of ``reference.conv2d``.

    mode 'int': (P, N, O, H, W) int32 = conv2d(sign(x_p), sign(w), padding=k//2), exact.
    mode 'float': (N, O, H, W) float32 after the epilogue; ``layout`` 'nchw' or 'nhwc' chooses
    its memory order (channels-last strides for 'nhwc'). mode 'packed': (N, H, W, ceil(O/64))
    uint64 bits of the epilogue output for the next binary layer.

    ``out_bits`` (mode 'float' only): a (Pn, N, H, W, ceil(O/64)) uint64 array (Pn <= 4) that
    receives, in the same pass, the next layer's packed bits of the float output: plane q has
    bit o set when ``(z - bits_offsets[q, o]) < 0`` (``bits_offsets``: (Pn, O) float32), i.e.
    exactly ``pack_activations(out, bits_offsets)``. ``variant``: the kernel variant of the
    path (``kernel_variants(isa)``; None: the tuned choice for this shape, see ``tune``).
    ``norm_scale``/``norm_bias``: an affine step after the bias, before ``spatial``; ``fma``:
    the affine steps as fused multiply-adds (one rounding; refused on a CPU without FMA)."""
    xb = as_numpy(x_bits, "x_bits", np.uint64, 5)
    wb = as_numpy(w_bits, "w_bits", np.uint64, 5)
    for name, v in (("in_ch", in_ch), ("out_ch", out_ch), ("repeat", repeat)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: {v!r} given; allowed: an int >= 1")
    cw = (in_ch + 63) // 64
    if xb.shape[4] != cw:
        raise ValueError(f"x_bits: {xb.shape[4]} words per pixel given; in_ch={in_ch} needs {cw} "
                         "(channel mismatch)")
    k = wb.shape[1]
    want = ((out_ch + 7) // 8, k, k, cw, 8)
    if k not in (1, 3) or wb.shape != want:
        raise ValueError(f"w_bits: shape {tuple(wb.shape)} given; expected {want} for in_ch={in_ch}, "
                         f"out_ch={out_ch}, k in {{1, 3}}")
    if mode not in ("int", "float", "packed"):
        raise ValueError(f"mode: {mode!r} given; allowed: 'int', 'float', 'packed'")
    if act not in ("none", "prelu"):
        raise ValueError(f"act: {act!r} given; allowed: 'none', 'prelu'")
    if act_at not in ("after_skip", "before_skip"):
        raise ValueError(f"act_at: {act_at!r} given; allowed: 'after_skip', 'before_skip'")
    if layout not in ("nchw", "nhwc"):
        raise ValueError(f"layout: {layout!r} given; allowed: 'nchw', 'nhwc'")
    p, n, h, w = xb.shape[:4]
    if part_scale is not None:
        ps = np.ascontiguousarray(np.asarray(part_scale.detach() if isinstance(part_scale, torch.Tensor)
                                             else part_scale, dtype=np.float32))
        if ps.shape != (p, out_ch):
            raise ValueError(f"part_scale: shape {ps.shape} given; expected ({p}, {out_ch})")
        part_scale = ps
    vecs = {name: _vector(v, name, out_ch) for name, v in (
        ("bias", bias), ("post_scale", post_scale), ("post_bias", post_bias), ("slope", slope),
        ("act_shift", act_shift), ("act_bias", act_bias), ("out_threshold", out_threshold),
        ("norm_scale", norm_scale), ("norm_bias", norm_bias))}
    if not isinstance(fma, (bool, np.bool_)):
        raise ValueError(f"fma: {fma!r} given; allowed: True, False")
    sp = None
    if spatial is not None:
        sp = as_numpy(spatial, "spatial", np.float32, 4, contiguous="nchw")
        if sp.shape != (n, 1, h, w):
            raise ValueError(f"spatial: shape {tuple(sp.shape)} given; expected {(n, 1, h, w)}")
        sp = sp[:, 0]
    res = None
    if residual is not None:
        res = as_numpy(residual, "residual", np.float32, 4, contiguous="nchw")
        if out_ch % repeat or res.shape != (n, out_ch // repeat, h, w):
            raise ValueError(f"residual: shape {tuple(res.shape)} with repeat={repeat} given; "
                             f"expected {(n, out_ch // repeat if out_ch % repeat == 0 else '?', h, w)} "
                             f"(out_ch={out_ch} must be a multiple of repeat)")
    resolved = resolve_isa(isa)
    threads = default_threads(threads)
    kwargs = dict(part_scale=part_scale, spatial=sp, act=act, residual=res, repeat=int(repeat),
                  fma=bool(fma), **vecs)
    if out_bits is not None or bits_offsets is not None:
        if mode != "float" or out_bits is None or bits_offsets is None:
            raise ValueError("out_bits/bits_offsets: both required, and only with mode 'float'")
        out_bits = as_numpy(out_bits, "out_bits", np.uint64, 5)
        bo = np.ascontiguousarray(np.asarray(bits_offsets.detach() if isinstance(bits_offsets, torch.Tensor)
                                             else bits_offsets, dtype=np.float32))
        if bo.ndim == 1:
            bo = bo[None]
        want_b = (bo.shape[0], n, h, w, (out_ch + 63) // 64)
        if bo.shape[1:] != (out_ch,) or not 1 <= bo.shape[0] <= 4 or out_bits.shape != want_b:
            raise ValueError(f"out_bits/bits_offsets: shapes {tuple(out_bits.shape)}/{bo.shape} given; "
                             f"expected {want_b} and ({want_b[0]}, {out_ch}) with 1 to 4 planes")
        bits_offsets = bo
    if _fallback():
        out = reference.conv2d(xb, wb, in_ch, out_ch, mode=mode, act_at=act_at,
                               **{**kwargs, "spatial": spatial if spatial is None else sp[:, None]})
        if out_bits is not None:
            out_bits[...] = reference.pack_activations(out, bits_offsets, None)
        if mode == "float" and layout == "nhwc":
            out = np.ascontiguousarray(out.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        return out
    if variant is None:
        variant = tuned_variant(resolved, in_ch, out_ch, k, p, h, w, threads)
    if mode == "int":
        out = np.empty((p, n, out_ch, h, w), np.int32)
    elif mode == "float":
        out = (np.empty((n, out_ch, h, w), np.float32) if layout == "nchw"
               else np.empty((n, h, w, out_ch), np.float32).transpose(0, 3, 1, 2))
    else:
        out = np.empty((n, h, w, (out_ch + 63) // 64), np.uint64)
    _ext.conv(xb, wb, int(in_ch), int(out_ch), out, mode, act_after_skip=act_at == "after_skip",
              threads=threads, isa=resolved, out_bits=out_bits, bits_offsets=bits_offsets,
              variant=int(variant), **kwargs)
    return out


def kernel_variants(isa: Optional[str] = None) -> list:
    """Names of the conv kernel variants of ``isa`` (default: the path in use), default first;
    every variant computes the same integers."""
    resolved = resolve_isa(isa)
    if _ext is None:
        return ["reference"]
    return list(_ext.conv_variants(resolved))


def tuned_variant(isa, in_ch, out_ch, k, parts, h, w, threads) -> int:
    """The kernel variant ``ops.native.tune`` chose for this path and shape (0 until tuned)."""
    from ops.native import tune

    return tune.variant(isa, in_ch, out_ch, k, parts, h, w, threads)
