"""Native xnor-popcount runtime: C++ kernel (pybind11), pure-Python reference, packed runtime.

Bit convention: channels are packed along the innermost axis into uint64 words (NHWC, bit
``c % 64`` of word ``c // 64``); a SET bit means -1, i.e. the binarized value ``x - t < 0``
(sign(0) = +1, as Larq). Bits past the last channel are zero and masked by the conv.

Padding: 'same' zero padding in the sign domain (``ops/choices.py``): the conv counts only
taps inside the image, ``out = valid_bits - 2 * popcount(x xor w)`` over those taps, equal to
``conv2d(sign(x), sign(w), padding=k // 2)`` exactly.

Instruction sets, chosen at run time (``info()['isa']``): ``amx`` (AMX-TILE + AMX-INT8, e.g.
Sapphire Rapids: the bits unpacked to int8 +-1 per row and multiplied on the tile unit, TDPBSSD;
needs the OS to grant the tile state), ``avx512`` (AVX-512 F/BW/VL + VPOPCNTDQ: vpopcntq on 8
output channels per zmm), ``avx2`` (vpshufb nibble-lookup popcount), ``popcnt`` (scalar loop
with the POPCNT instruction), ``scalar`` (portable SWAR popcount). Each path has a few kernel
variants (tile shapes, loop orders: ``kernel_variants(isa)``), all bit-exact; ``ops.native.tune``
picks one per CPU model, build and shape on first use (``BSRNAS_TUNE=0``: the default).
``BSRNAS_ISA=amx|avx512|avx2|popcnt|scalar`` forces one; forcing a path the CPU lacks raises
``ValueError`` at the first kernel call (never an illegal-instruction crash). Every path is
compiled into the one extension; which can *execute* depends on the CPU (``info()['supported']``).
An AMD Zen 3 CPU, for instance, has AVX2 but no AVX-512: the AVX-512 path is built but cannot run.

Entry points: ``pack_activations``, ``pack_weights``, ``conv2d`` (see ``kernels.py``), the
reference implementations in ``reference.py``, and ``compile(model)`` (``runtime.py``), which
also makes the process heap steady (``heap.py``: freed memory is reused instead of page-faulted
back in; ``BSRNAS_STEADY_HEAP=0`` leaves glibc's defaults).
"""
from __future__ import annotations

import os
from typing import Any, Dict

from ops.native.kernels import (BUILD_ERROR, ISAS, conv2d, default_threads, kernel_variants,
                                pack_activations, pack_weights, resolve_isa)
from ops.native import kernels as _kernels
from ops.native.heap import heap_state, steady_heap

BIT_CONVENTION = "bit set = -1 (x - threshold < 0); channels packed NHWC into uint64, bit c%64 of word c//64"


def info() -> Dict[str, Any]:
    """What the native runtime will do here: ``built`` (extension compiled), ``isa`` (the path
    in use, or an error text when ``BSRNAS_ISA`` names one the CPU lacks), ``supported``
    (paths this CPU can execute, fastest first), ``compiled`` (paths in the binary), ``forced`` (the
    ``BSRNAS_ISA`` value or None), ``threads`` (the thread count a call uses when given none:
    ``torch.get_num_threads()`` now), ``heap`` (``steady``, ``default`` or ``undecided`` before
    the first ``compile``: see ``heap.py``), ``pool`` (``openmp``: the kernels run on torch's
    OpenMP team; ``own``: on the extension's thread pool, ``BSRNAS_POOL=own`` or where torch has
    no GNU OpenMP runtime, ``pool_note`` says why), ``cpu`` (feature flags), ``note`` and
    ``bit_convention``."""
    ext = _kernels._ext
    forced = os.environ.get("BSRNAS_ISA") or None
    out: Dict[str, Any] = {"built": ext is not None, "forced": forced,
                           "threads": _kernels.default_threads(), "heap": heap_state(),
                           "pool": _kernels.POOL, "pool_note": _kernels.POOL_NOTE,
                           "bit_convention": BIT_CONVENTION, "compiled": list(ISAS) if ext else []}
    try:
        out["isa"] = resolve_isa()
    except ValueError as exc:
        out["isa"] = f"error: {exc}"
    if ext is None:
        out.update(supported=["reference"], cpu={}, build_error=BUILD_ERROR,
                   note="extension not built: every call runs the pure-Python reference (slow)")
        return out
    out["supported"] = list(ext.supported_isas())
    out["cpu"] = dict(ext.cpu_features())
    missing = [i for i in ISAS if i not in out["supported"]]
    out["note"] = ("all paths executable here" if not missing else
                   "compiled but not executable on this CPU: " + ", ".join(missing))
    return out


def compile(model, threads=None, channels_last=True, exact=False):  # noqa: A001 - the name the design asks for
    """Packed runtime of an ``ops``-built model: see ``ops.native.runtime.compile``."""
    from ops.native.runtime import compile as _compile

    return _compile(model, threads=threads, channels_last=channels_last, exact=exact)


__all__ = ["info", "compile", "pack_activations", "pack_weights", "conv2d", "resolve_isa", "kernel_variants",
           "default_threads", "steady_heap", "heap_state", "ISAS", "BIT_CONVENTION"]
