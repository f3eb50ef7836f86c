"""Steady heap: the packed runtime keeps freed memory in the process instead of paging it back in.

A forward pass allocates every activation anew (the native convs' outputs, and each PyTorch op
of the FP head, tail and glue). glibc serves large blocks with ``mmap`` and returns them with
``munmap`` or by trimming the heap top, so the next forward page-faults the same memory back in,
at a cost that depends on the history of allocations in the process. Measured on a x2 network
with the SRResNet tail at 32 channels and a 64x64 input (Intel Xeon, one thread): about 1,450
minor page faults per forward and 4.9 ms per call, against 0 faults and 3.6 ms with a steady
heap; a per-layer latency table cannot predict the former, and a deployment pays it on every
call. Inference engines avoid it with an arena of their own; the runtime gets the same effect
from glibc: ``mallopt(M_MMAP_THRESHOLD, 32 MiB)`` (blocks below 32 MiB come from the heap and
are reused) and ``mallopt(M_TRIM_THRESHOLD, 256 MiB)`` (freed memory up to 256 MiB stays in the
process).

``steady_heap()`` applies this once per process (``ops.native.compile`` calls it, and so does the
latency table before it measures anything) and returns whether the heap is steady. The setting
is process-wide and permanent: the process keeps up to 256 MiB of freed memory for reuse.
``BSRNAS_STEADY_HEAP=0`` in the environment leaves glibc's defaults alone. Where the C library
is not glibc (no ``mallopt``), nothing changes and the result is False.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Optional

#: glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
STEADY_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit
STEADY_TRIM_THRESHOLD = 256 * 1024 * 1024
ENV = "BSRNAS_STEADY_HEAP"

_state: Optional[bool] = None


def steady_heap() -> bool:
    """Make the heap steady (see the module docstring) unless ``BSRNAS_STEADY_HEAP=0``; return
    True when it is. Decided once per process; later calls return the same answer."""
    global _state
    if _state is None:
        _state = False
        if os.environ.get(ENV, "1") != "0":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                ok = libc.mallopt(M_MMAP_THRESHOLD, STEADY_MMAP_THRESHOLD) == 1
                ok = libc.mallopt(M_TRIM_THRESHOLD, STEADY_TRIM_THRESHOLD) == 1 and ok
                _state = ok
            except (OSError, AttributeError):  # no glibc: leave the allocator as it is
                _state = False
    return _state


def heap_state() -> str:
    """``steady``, ``default`` (glibc's own policy) or ``undecided`` (no compile yet), without
    changing anything."""
    if _state is None:
        return "undecided"
    return "steady" if _state else "default"
