"""Kernel variants chosen per CPU and shape: a short autotune on first use, cached per CPU model
and extension build.

Every ISA path has a few variants of its conv kernel (``kernel_variants(isa)``: register tiles
of 8 / 4 / 12 pixels on ``avx512``, blocks of AMX tiles and their loop order on ``amx``, ...),
all computing the same integers (tests: bit-exact against the reference). Which is fastest
depends on the microarchitecture (ports, tile unit, cache sizes) and on the shape, so the
first call of a shape times each variant on a synthetic input of that shape and keeps the
fastest. Small layers (under ``MIN_MACS`` binary MACs) use variant 0 without timing: the
choice cannot matter much there, and it keeps thousands of tiny test shapes from tuning.

The choices are kept in memory and in ``<cache>/native/tune-<cpu>-<build>.json`` (``<cache>``:
``$BSRNAS_CACHE``, else ``$XDG_CACHE_HOME/bsrnas``, else ``~/.cache/bsrnas``), so a process
starts with what an earlier one measured on the same CPU model and build. ``BSRNAS_TUNE=0``
turns tuning off (variant 0 everywhere, nothing read or written).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

#: layers with fewer binary MACs than this use variant 0 untimed
MIN_MACS = 2e7
#: timed runs per variant (the fastest counts: the least disturbed by other load), after one
#: warm-up, the variants taking turns
RUNS = 7
#: a variant replaces the default only when it is at least this much faster
MARGIN = 0.03

_lock = threading.Lock()
_choices: Dict[str, int] = {}
_loaded: Optional[Path] = None


def enabled() -> bool:
    return os.environ.get("BSRNAS_TUNE", "1").strip() not in ("0", "false", "no", "off")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip() or "unknown-cpu"
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def build_id() -> str:
    """First 12 hex digits of the sha1 of the extension file ('reference' when not built)."""
    from ops.native import kernels

    path = getattr(kernels._ext, "__file__", None)
    if not path:
        return "reference"
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def cache_path() -> Path:
    root = os.environ.get("BSRNAS_CACHE")
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "bsrnas"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", cpu_model()).strip("-").lower()[:60] or "cpu"
    return base / "native" / f"tune-{slug}-{build_id()}.json"


def _key(isa, in_ch, out_ch, k, parts, w, threads) -> str:
    return f"{isa}:c{in_ch}:o{out_ch}:k{k}:p{parts}:w{w}:t{threads}"


def _load() -> None:
    global _loaded
    path = cache_path()
    if _loaded == path:
        return
    _loaded = path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        _choices.update({str(k): int(v) for k, v in data.get("choices", {}).items()})
    except (OSError, ValueError, AttributeError):
        pass


def _save() -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"cpu": cpu_model(), "build": build_id(), "choices": _choices},
                                  indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only cache is not an error: the choice stays in memory
        pass


def variant(isa: str, in_ch: int, out_ch: int, k: int, parts: int, h: int, w: int,
            threads: int) -> int:
    """The variant to use for this conv (tuning it first when the shape is new and large)."""
    from ops.native import kernels

    if kernels._ext is None or not enabled():
        return 0
    if float(in_ch) * out_ch * k * k * parts * h * w < MIN_MACS:
        return 0
    key = _key(isa, in_ch, out_ch, k, parts, w, threads)
    with _lock:
        _load()
        if key in _choices:
            return _choices[key]
        best, _ = measure(isa, in_ch, out_ch, k, parts, h, w, threads)
        _choices[key] = best
        _save()
        return best


def measure(isa: str, in_ch: int, out_ch: int, k: int, parts: int, h: int, w: int, threads: int,
            runs: int = RUNS) -> Tuple[int, List[float]]:
    """(chosen variant, fastest seconds of each) for this shape on a random input: the conv
    with the float epilogue (scale and bias, folded: ``Layer(fold=True)``), channels-last output,
    as a network runs it. The rows are capped so that one run is about 1e9 binary MACs at most
    (a few ms at worst): a whole 64 -> 64 3x3 layer on 128x128, so that the threads split the
    rows as they will."""
    from ops.native import kernels

    ext = kernels._ext
    n_var = len(ext.conv_variants(isa))
    rows = int(max(1, min(h, 1e9 // max(1, in_ch * out_ch * k * k * parts * w))))
    rng = np.random.default_rng(0)
    cw = (in_ch + 63) // 64
    xb = rng.integers(0, 2**63, size=(parts, 1, rows, w, cw), dtype=np.uint64)
    if in_ch % 64:  # bits past the last channel are zero in packed activations
        xb[..., -1] &= np.uint64((1 << (in_ch % 64)) - 1)
    wb = kernels.pack_weights(rng.standard_normal((out_ch, in_ch, k, k)).astype(np.float32))
    out = kernels.empty64((1, rows, w, out_ch), np.float32).transpose(0, 3, 1, 2)
    scale = np.ones(out_ch, np.float32)
    # the frozen layer with the folded epilogue, as compile() runs it
    layer = ext.Layer(wb, in_ch, out_ch, post_scale=scale, post_bias=scale, parts=parts, isa=isa, fold=True)
    calls = []
    for v in range(n_var):
        calls.append(lambda v=v: layer.run(xb, out, None, None, None, None, threads, v))
    best = [float("inf")] * n_var
    for call in calls:  # warm-up
        call()
    for _ in range(runs):  # round robin, so a burst of other load hits every variant alike
        for v, call in enumerate(calls):
            t = time.perf_counter()
            call()
            best[v] = min(best[v], time.perf_counter() - t)
    # the fastest, unless it beats the default by less than MARGIN (noise, not a difference)
    v = int(np.argmin(best))
    if best[v] > best[0] * (1.0 - MARGIN):
        v = 0
    return v, best


def choices() -> Dict[str, int]:
    """The choices known in this process (after reading the cache file)."""
    with _lock:
        _load()
        return dict(_choices)


def clear(memory_only: bool = False) -> None:
    """Forget the choices (and delete the cache file unless ``memory_only``)."""
    global _loaded
    with _lock:
        _choices.clear()
        _loaded = None
        if not memory_only:
            try:
                cache_path().unlink()
            except OSError:
                pass
