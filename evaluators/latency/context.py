"""The measurement context of a latency table: what its figures are valid for, and under what
conditions they were taken. The one place that defines both.

**Context** (``current_context``, ``CONTEXT_FIELDS``): what changes every figure, so a table
measured in one context is refused in another (``check_context``):

    cpu         CPU model name (``/proc/cpuinfo`` 'model name')
    isa         ISA path of the native kernel (``ops.native.info()['isa']``; ``reference`` when
                the extension is not built)
    native      build of the native kernel: first 12 hex digits of the sha1 of its file
    threads     thread count of torch and of the kernel's pool
    torch       torch version (the FP layers run through it)
    input_size  LR input (3, H, W), batch 1
    clock       ``wall`` (time.perf_counter_ns) or ``cpu`` (process CPU time, one thread only)
    heap        allocation policy of the packed runtime (``ops.native.heap``): ``steady`` or
                ``default`` (``BSRNAS_STEADY_HEAP=0``)
    pool        where the kernels run their threads (``ops.native.kernels.POOL``): ``openmp``
                (torch's OpenMP team) or ``own`` (the extension's pool, ``BSRNAS_POOL=own``)

The default file name of a table is made from the context (``context_slug``); ``parse_input_size``
reads the ``CxHxW`` form of an input size that the command line and error messages use.

**Conditions** (``conditions()``): when a measurement was taken and how busy the machine was
(UTC time, 1-minute load average, host, pid). They are metadata of a measuring session (see
``store``), not context: the same context measured twice gives one file.
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import os
import re
import socket
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from ops.native.tune import cpu_model  # noqa: F401 (one reader of the CPU's name; part of this module's API)

CONTEXT_FIELDS = ("cpu", "isa", "native", "threads", "torch", "input_size", "clock", "heap", "pool")


def native_isa() -> str:
    """The ISA path the native kernel uses here (``ops.native.info()['isa']``); ``reference``
    when the extension is not built (then every binary conv runs the slow Python reference)."""
    import ops.native

    info = ops.native.info()
    if not info.get("built"):
        return "reference"
    isa = str(info.get("isa"))
    if isa.startswith("error"):
        raise ValueError(f"native runtime: {isa}")
    return isa


@functools.lru_cache(maxsize=None)
def native_build() -> str:
    """First 12 hex digits of the sha1 of the native extension's file (``reference`` when it is
    not built): a rebuilt kernel times differently, so a table names the build it measured.
    Hashed once per process: the build this process loaded, even when the file is rebuilt on
    disk meanwhile (its tables stay this build's)."""
    from ops.native import kernels

    ext = getattr(kernels, "_ext", None)
    path = getattr(ext, "__file__", None)
    if not path:
        return "reference"
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def current_context(input_size: Tuple[int, int, int], threads: int,
                    clock: str = "wall") -> Dict[str, Any]:
    """The context a table measured here and now would be valid for (see the module
    docstring). The heap policy is applied here as ``ops.native.compile`` would."""
    from ops.native.heap import steady_heap

    from ops.native import kernels

    heap = "steady" if steady_heap() else "default"
    return {"cpu": cpu_model(), "isa": native_isa(), "native": native_build(), "threads": threads,
            "torch": torch.__version__, "input_size": tuple(input_size), "clock": clock,
            "heap": heap, "pool": kernels.POOL}


def parse_input_size(text: Any, field: str = "input") -> Tuple[int, int, int]:
    """``'3x64x64'`` (or a 3-sequence) -> ``(3, 64, 64)``; anything else raises naming ``field``."""
    expected = "CxHxW with three positive integers and C = 3, e.g. 3x128x128"
    if isinstance(text, str):
        parts = text.lower().split("x")
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"invalid {field} {text!r}; expected {expected}") from None
    elif isinstance(text, (tuple, list)):
        dims = tuple(text)
    else:
        raise ValueError(f"invalid {field} {text!r}; expected {expected}")
    if (len(dims) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims)
            or dims[0] != 3):
        raise ValueError(f"invalid {field} {text!r}; expected {expected}")
    return dims  # type: ignore[return-value]


def format_input_size(size: Tuple[int, int, int]) -> str:
    return "x".join(str(d) for d in size)


def check_context(path: Path, stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    """Refuse a table measured in another context: ``ValueError`` naming the field, both values
    and how to build a table for the current context."""
    for name in CONTEXT_FIELDS:
        have, want = stored.get(name), wanted[name]
        if name == "input_size":
            have = tuple(have) if isinstance(have, (list, tuple)) else have
            want = tuple(want)
        if have != want:
            raise ValueError(
                f"latency table {path} was measured for {name}={have!r}, but this table is for "
                f"{name}={want!r}; a table only predicts for the CPU, native kernel (ISA, build), "
                f"thread count, torch version, input size, clock, heap policy and thread pool it was measured with — build one for this context with "
                f"`bsrnas lut build --input {format_input_size(tuple(wanted['input_size']))} "
                f"--threads {wanted['threads']}` or pass another path"
            )


def slug(text: str) -> str:
    """A file-name-safe lower-case slug: runs of other characters become one '-'."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out or "unknown"


def context_slug(context: Mapping[str, Any]) -> str:
    """``<cpu-slug>-<isa>-<build>-t<threads>-<CxHxW>[-cpuclock][-defaultheap][-ownpool]``: the
    part of a table's default file name that names its context (``-cpuclock`` for the CPU-time
    clock, ``-defaultheap`` for ``BSRNAS_STEADY_HEAP=0``, ``-ownpool`` for the extension's own
    thread pool)."""
    return "{}-{}-{}-t{}-{}{}".format(
        slug(str(context["cpu"])), slug(str(context["isa"])), slug(str(context["native"])),
        context["threads"], format_input_size(tuple(context["input_size"])),
        ("-cpuclock" if context.get("clock", "wall") == "cpu" else "")
        + ("-defaultheap" if context.get("heap", "steady") != "steady" else "")
        + ("-ownpool" if context.get("pool", "openmp") == "own" else ""))


# -- conditions of a measurement ---------------------------------------------------------------
def utc_now() -> str:
    """The current UTC time, ISO 8601 with milliseconds (``2025-01-31T09:15:02.113+00:00``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def load_1min() -> Optional[float]:
    """The 1-minute load average (``os.getloadavg()[0]``); ``None`` where the OS has none."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return None


def conditions() -> Dict[str, Any]:
    """When and where, and how busy the machine is, now: ``time`` (UTC), ``load_1min``,
    ``host``, ``pid``."""
    return {"time": utc_now(), "load_1min": load_1min(), "host": socket.gethostname(),
            "pid": os.getpid()}
