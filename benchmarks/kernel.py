"""The native xnor-popcount kernel against this CPU's own ceilings, a naive loop, and PyTorch.

    python -m benchmarks.kernel            # full run (several minutes on 2 cores)
    python -m benchmarks.kernel --quick    # short run: smaller network, fewer layers

Everything below is measured in the same run, on this CPU, with ``--threads`` (default 2) and 1
thread:

* **Ceilings.** Each ISA path's inner operation in a register-resident loop (C++,
  ``_bsrnas_native.peak``): xor + popcount + add on 512-bit (``avx512``: vpopcntq), 256-bit
  (``avx2``: vpshufb nibble lookup) or 64-bit registers (``popcnt``, ``scalar``: SWAR), and
  the AMX tile multiply TDPBSSD (``amx``: 16 x 16 x 64 int8 MACs), with enough independent
  chains to fill the pipes. Binary MACs per second on 1 and on ``--threads`` threads at once
  (when the vCPUs are SMT siblings of one core, the two-thread figure is the core's, not twice).
* **Target layer**: the 64 -> 64, 3x3, 128x128 conv from packed bits with the float epilogue
  (folded BN scale and bias), channels-last output, as the packed runtime runs it, on every path
  this CPU can run (its tuned kernel variant, ``ops.native.tune``), as a fraction of that path's
  measured ceiling (same thread count) and against the **naive loop** of issue 15 (C++,
  ``_bsrnas_native.naive_conv``: per output pixel, broadcast each word of the pre-padded input
  and xor + vpopcntq + add it against 8 zmm of weights = 64 output channels, int32 output; its
  AVX2 analogue with 8 ymm of byte counters on CPUs without AVX-512), timed in alternating
  rounds with each path's conv (the pair sees the same load). The automatic path is the
  production conv; each path runs as the compiled network runs it (``_bsrnas_native.Layer``).
* **Variants** of the automatic path and of ``avx512`` on the target layer (all bit-exact).
* **Layers** C -> C, k x k, 128x128: conv, packing, PyTorch fp32 (and bf16) ``F.conv2d``.
* **Networks**: every ``space.presets`` design at x2, 64 ch x 16 blocks (``--quick``: 4 blocks),
  input 1x3x128x128, compiled (``ops.native.compile``) against the ``fp`` preset of the same size
  in PyTorch fp32 (eval, no_grad), in alternating rounds; each compiled output checked against
  its PyTorch model. And the FP head + tail of ``e2fif`` in fp32 channels-last (oneDNN, what the
  runtime does) vs NCHW and bf16.

Times are medians of alternating rounds (the machine may be shared with other jobs: compare
ratios of the same run). Writes the ``kernel`` section of BENCHMARKS.md (between
``<!-- BEGIN kernel -->`` and ``<!-- END kernel -->``; other sections are kept).
"""
from __future__ import annotations

import os

# OMP_WAIT_POLICY is left as the user has it (unset: libgomp's default, torch's workers spin a
# while after each operator): the kernels run on torch's OpenMP team (ops.native.kernels.POOL),
# for which the default is the fast case (AMD Zen 5, 2 threads: compiled e2fif 9.1 ms default,
# 11.1 ms PASSIVE).

import argparse
import copy
import datetime
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import ops.native as native
from ops.native import kernels, tune
from ops.native.kernels import empty64

from benchmarks.report import write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "kernel"
#: the target layer of issue 15
TARGET = dict(c=64, hw=128, k=3)


def cpu_name() -> str:
    try:
        m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor()


def rounds(fns: Dict[str, Callable[[], object]], n: int = 15, warmup: int = 2) -> Dict[str, float]:
    """Median wall time (ms) of each function over ``n`` rounds, each round calling every
    function once in turn (after ``warmup`` calls each), so that a burst of other load on a
    shared machine hits all of them alike; ``<name>_min``: the fastest call."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(n):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    out = {name: 1e3 * statistics.median(v) for name, v in times.items()}
    out.update({f"{name}_min": 1e3 * min(v) for name, v in times.items()})
    return out


def peak_gmacs(isa: str, threads: int, seconds: float = 0.004, repeats: int = 40) -> float:
    """Measured ceiling of ``isa``: binary GMAC/s of its register-resident loop on ``threads``
    threads, the best of ``repeats`` short runs of about ``seconds`` each (a ceiling: the run
    least disturbed by other load on a shared machine counts)."""
    ext = kernels._ext
    iters = 31 * 64
    while True:  # calibrate
        t = time.perf_counter()
        ext.peak(isa, iters, threads)
        dt = time.perf_counter() - t
        if dt > seconds / 4 or iters > 1 << 34:
            break
        iters *= 4
    iters = max(31, int(iters * seconds / max(dt, 1e-9)))
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        macs = ext.peak(isa, iters, threads)
        best = max(best, macs / (time.perf_counter() - t) / 1e9)
    return best


def naive_inputs(bits: np.ndarray, w_bits: np.ndarray):
    """The naive loop's operands: the packed input padded by one zero pixel on each side
    (H+2, W+2, Cw) and the weights as (3, 3, Cw, O) words (8 output channels side by side)."""
    _, _, h, w, cw = bits.shape
    xp = empty64((h + 2, w + 2, cw), np.uint64)
    xp[...] = 0
    xp[1:-1, 1:-1] = bits[0, 0]
    ot, k, _, _, _ = w_bits.shape
    wn = empty64((k, k, cw, ot * 8), np.uint64)  # 64-byte aligned: the naive loop at its best
    wn[...] = w_bits.transpose(1, 2, 3, 0, 4).reshape(k, k, cw, ot * 8)
    return xp, wn


def target_layer(threads_list: Sequence[int], paths: Sequence[str], n_rounds: int):
    """Rows of the target-layer table and the variant table."""
    ext = kernels._ext
    c, hw, k = TARGET["c"], TARGET["hw"], TARGET["k"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, c, hw, hw, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, k, k, generator=g)
    bits = native.pack_activations(x)
    w_bits = native.pack_weights(w)
    scale = (torch.rand(c, generator=g) + 0.5).numpy()
    bias = torch.randn(c, generator=g).numpy()
    out = empty64((1, hw, hw, c), np.float32).transpose(0, 3, 1, 2)
    xp, wn = naive_inputs(bits, w_bits)
    naive_out = empty64((hw, hw, c), np.int32)
    naive_isa = "avx512" if "avx512" in paths else ("avx2" if "avx2" in paths else None)
    macs = c * c * k * k * hw * hw
    rows, variants = [], []
    for th in threads_list:
        peaks = {p: peak_gmacs(p, th) for p in paths}
        naive_ms = None
        for p in paths:
            v = kernels.tuned_variant(p, c, c, k, 1, hw, hw, th)
            # the production conv: the frozen layer the compiled network runs (weights prepared
            # once), float epilogue with the folded BN scale and bias as compile() folds it (one
            # FMA per value), channels-last output; on the automatic path also the unfolded
            # epilogue that compile(exact=True) runs (PyTorch's order of the float operations)
            layer = ext.Layer(w_bits, c, c, post_scale=scale, post_bias=bias, isa=p, fold=True)
            fns = {p: (lambda layer=layer, v=v: layer.run(bits, out, None, None, None, None, th, v))}
            if p == paths[0]:
                unfolded = ext.Layer(w_bits, c, c, post_scale=scale, post_bias=bias, isa=p)
                fns["exact"] = lambda: unfolded.run(bits, out, None, None, None, None, th, v)
            if naive_isa:  # alternating with this path only: the pair sees the same load
                fns["naive"] = lambda: ext.naive_conv(xp, wn, naive_out, th, naive_isa)
            slow = p in ("popcnt", "scalar")
            t = rounds(fns, n=max(3, n_rounds // 3) if slow else n_rounds)
            gm = macs / (t[p] * 1e-3) / 1e9
            naive, naive_min = t.get("naive", float("nan")), t.get("naive_min", float("nan"))
            if p == paths[0]:
                naive_ms = (naive, naive_min)
            rows.append(dict(path=p, threads=th, ms=t[p], ms_min=t[p + "_min"], gmacs=gm,
                             peak=peaks[p], frac=gm / peaks[p],
                             frac_popcnt=gm / peaks["avx512"] if "avx512" in peaks else float("nan"),
                             naive=naive, naive_min=naive_min, vs_naive=naive / t[p],
                             vs_naive_min=naive_min / t[p + "_min"], variant=ext.conv_variants(p)[v]))
            if "exact" in t:
                gx = macs / (t["exact"] * 1e-3) / 1e9
                rows.append(dict(path=f"{p}, exact=True epilogue", threads=th, ms=t["exact"],
                                 ms_min=t["exact_min"], gmacs=gx, peak=peaks[p], frac=gx / peaks[p],
                                 frac_popcnt=gx / peaks["avx512"] if "avx512" in peaks else float("nan"),
                                 naive=naive, naive_min=naive_min, vs_naive=naive / t["exact"],
                                 vs_naive_min=naive_min / t["exact_min"], variant=ext.conv_variants(p)[v]))
        if naive_isa:
            gm = macs / (naive_ms[0] * 1e-3) / 1e9
            rows.append(dict(path=f"naive loop ({naive_isa})", threads=th, ms=naive_ms[0],
                             ms_min=naive_ms[1], gmacs=gm, peak=peaks[naive_isa], frac=gm / peaks[naive_isa],
                             frac_popcnt=gm / peaks["avx512"] if "avx512" in peaks else float("nan"),
                             naive=naive_ms[0], naive_min=naive_ms[1], vs_naive=1.0, vs_naive_min=1.0,
                             variant="-"))
        for p in [q for q in paths if q in ("amx", "avx512")][:2]:
            layer = ext.Layer(w_bits, c, c, post_scale=scale, post_bias=bias, isa=p, fold=True)
            vfns = {f"{p}:{v}": (lambda v=v: layer.run(bits, out, None, None, None, None, th, v))
                    for v in range(len(ext.conv_variants(p)))}
            tv = rounds(vfns, n=max(5, n_rounds // 2))
            chosen = kernels.tuned_variant(p, c, c, k, 1, hw, hw, th)
            for v, name in enumerate(ext.conv_variants(p)):
                variants.append(dict(path=p, threads=th, variant=v, name=name, ms=tv[f"{p}:{v}"],
                                     chosen=v == chosen))
    return rows, variants


def layer_rows(chans: Sequence[int], hw: int, threads: int, isa: str) -> List[Dict[str, float]]:
    out_rows = []
    for c in chans:
        for k in (1, 3):
            g = torch.Generator().manual_seed(c + k)
            x = torch.randn(1, c, hw, hw, generator=g)
            w = torch.randn(c, c, k, k, generator=g)
            x_cl = x.contiguous(memory_format=torch.channels_last)
            bits = native.pack_activations(x_cl, threads=threads, isa=isa)
            w_bits = native.pack_weights(w)
            scale, bias = torch.rand(c).numpy() + 0.5, torch.randn(c).numpy()
            layer = kernels._ext.Layer(w_bits, c, c, post_scale=scale, post_bias=bias, isa=isa, fold=True)
            out = empty64((1, hw, hw, c), np.float32).transpose(0, 3, 1, 2)
            with torch.no_grad():
                t = rounds({
                    "conv": lambda: layer.run(bits, out, None, None, None, None, threads,
                                              kernels.tuned_variant(isa, c, c, k, 1, hw, hw, threads)),
                    "pack": lambda: native.pack_activations(x_cl, threads=threads, isa=isa),
                    "fp32": lambda: F.conv2d(x_cl, w, padding=k // 2),
                }, n=7)
                xb, wb = x_cl.to(torch.bfloat16), w.to(torch.bfloat16)
                t.update(rounds({"bf16": lambda: F.conv2d(xb, wb, padding=k // 2)}, n=3, warmup=1))
            out_rows.append(dict(c=c, k=k, hw=hw, macs=c * c * k * k * hw * hw, **t))
    return out_rows


def preset_model(name: str, blocks: int, channels: int = 64, scale: int = 2):
    from space import builder, presets

    torch.manual_seed(0)  # the same weights in every run
    model = builder.build(presets.get(name, scale=scale, channels=channels, blocks=blocks)).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # BN statistics away from the identity, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
    return model


def network_rows(blocks: int, hw: int, threads: int, n_rounds: int):
    """Every preset compiled vs the ``fp`` preset (same size) in PyTorch fp32, alternating."""
    from space import presets

    x = torch.rand(1, 3, hw, hw, generator=torch.Generator().manual_seed(1))
    fp = preset_model("fp", blocks)
    rows = []
    with torch.no_grad():
        for name in [n for n in presets.names() if n != "fp"]:
            model = preset_model(name, blocks)
            compiled = native.compile(model, threads=threads)
            want = model(x)
            got = compiled(x)
            got = compiled(x)  # the second call: linked layers, reused buffers
            err = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
            mse = float(((got - want) ** 2).mean())
            psnr = 10 * np.log10(1.0 / mse) if mse > 0 else float("inf")
            t = rounds({"compiled": lambda: compiled(x), "fp": lambda: fp(x)}, n=n_rounds)
            rows.append(dict(name=name, compiled=t["compiled"], compiled_min=t["compiled_min"],
                             fp=t["fp"], ratio=t["fp"] / t["compiled"], err=err, psnr=psnr,
                             linked=sum(getattr(m, "_consumer", None) is not None for m in compiled.modules()),
                             binary=sum(type(m).__name__ == "NativeBinaryConv2d" for m in compiled.modules())))
            print(f"  {name}: compiled {t['compiled']:.1f} ms, fp {t['fp']:.1f} ms, "
                  f"{rows[-1]['ratio']:.1f}x, err {err:.1e}", flush=True)
    return rows


def head_tail_rows(blocks: int, hw: int, threads: int) -> Dict[str, float]:
    """The FP head and tail of e2fif: fp32 channels-last (what the runtime runs), fp32 NCHW,
    bf16 channels-last; and how far the bf16 output of the whole network is from fp32."""
    model = preset_model("e2fif", blocks)
    head, tail = model.head, model.tail
    x = torch.rand(1, 3, hw, hw, generator=torch.Generator().manual_seed(2))
    y = torch.randn(1, 64, hw, hw, generator=torch.Generator().manual_seed(3))
    cl = torch.channels_last
    with torch.no_grad():
        xc, yc = x.contiguous(memory_format=cl), y.contiguous(memory_format=cl)
        hb, tb = [copy.deepcopy(m).to(torch.bfloat16) for m in (head, tail)]
        xb, yb = xc.to(torch.bfloat16), yc.to(torch.bfloat16)
        t = rounds({"fp32_cl": lambda: (head(xc), tail(yc)), "fp32_nchw": lambda: (head(x), tail(y)),
                    "bf16_cl": lambda: (hb(xb), tb(yb))}, n=9)
        tail_out = tail(yc)
        dev = float((tb(yb).float() - tail_out).abs().max() / tail_out.abs().max())
    t["bf16_rel_err"] = dev
    return t


def fmt(v: float, digits: int = 2) -> str:
    if v != v:  # NaN: not measured
        return "n/m"
    return f"{v:.{digits}f}" if abs(v) < 100 else f"{v:.0f}"


def target_text(rows: Sequence[Dict], auto: str) -> List[str]:
    """The target-layer table and the sentence with the acceptance figures (issue 15)."""
    lines = ["| path | threads | conv ms (median / min) | G bMAC/s | measured ceiling G bMAC/s | "
             "fraction of ceiling | fraction of the avx512 xor-popcount ceiling | naive loop ms (median / min) | "
             "naive / conv (medians; fastest runs) | variant |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = f"**{r['path']}** (automatic)" if r["path"] == auto else r["path"]
        fp = r["frac_popcnt"]
        fp_cell = "n/m" if fp != fp else f"{100 * fp:.0f} %"
        lines.append(f"| {name} | {r['threads']} | {fmt(r['ms'], 3)} / {fmt(r['ms_min'], 3)} | {fmt(r['gmacs'], 0)} "
                     f"| {fmt(r['peak'], 0)} | {100 * r['frac']:.0f} % | {fp_cell} "
                     f"| {fmt(r['naive'], 3)} / {fmt(r.get('naive_min', float('nan')), 3)} "
                     f"| {fmt(r['vs_naive'], 2)}; {fmt(r.get('vs_naive_min', float('nan')), 2)} | {r['variant']} |")
    return lines


def summary_text(rows: Sequence[Dict], auto: str, nets: Sequence[Dict], cpu: str) -> str:
    parts = []
    for r in rows:
        if r["path"] == auto:
            parts.append(f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}: {r['ms']:.3f} ms, "
                         f"{100 * r['frac']:.0f} % of the measured `{auto}` ceiling, "
                         f"{r['vs_naive']:.2f}x the speed of the naive loop ({r['naive']:.3f} ms; "
                         f"fastest runs {r['ms_min']:.3f} vs {r.get('naive_min', float('nan')):.3f} ms: "
                         f"{r.get('vs_naive_min', float('nan')):.2f}x)")
        elif r["path"] == f"{auto}, exact=True epilogue" and parts:
            parts[-1] += (f", with the unfolded epilogue of `compile(exact=True)` {r['ms']:.3f} ms "
                          f"({r['vs_naive']:.2f}x)")
    text = f"On this {cpu}, the 64 -> 64 3x3 conv on 128x128 from packed bits with the float epilogue " \
           f"(automatic path `{auto}`): " + "; ".join(parts) + "."
    e2 = next((n for n in nets if n["name"] == "e2fif"), None)
    if e2 is not None:
        text += (f" The compiled e2fif preset runs in {e2['compiled']:.1f} ms against {e2['fp']:.1f} ms "
                 f"for the `fp` preset of the same size in PyTorch fp32: {e2['ratio']:.1f}x.")
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller network, fewer rounds (about a minute)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"--threads: {args.threads} given; allowed: >= 1")
    if kernels._ext is None:
        ap.error("the C++ extension is not built (pip install -e .)")
    torch.set_num_threads(args.threads)
    info = native.info()
    auto, paths = info["isa"], list(info["supported"])
    load_start = os.getloadavg()[0]
    cpu = cpu_name()
    n_rounds = 7 if args.quick else 15
    threads_list = sorted({1, args.threads})
    cmd = "python -m benchmarks.kernel" + (" --quick" if args.quick else "") + \
        (f" --threads {args.threads}" if args.threads != 2 else "")
    print("ceilings and target layer ...", flush=True)
    rows, variants = target_layer(threads_list, paths, n_rounds)
    print("\n".join(target_text(rows, auto)), flush=True)
    print("layers ...", flush=True)
    layers = layer_rows((32, 64) if args.quick else (32, 64, 128), 128, args.threads, auto)
    blocks, hw = (4, 64) if args.quick else (16, 128)
    print("networks ...", flush=True)
    nets = network_rows(blocks, hw, args.threads, 3 if args.quick else 5)
    ht = head_tail_rows(blocks, hw, args.threads)
    load_end = os.getloadavg()[0]

    pool_text = "torch's OpenMP team" if kernels.POOL == "openmp" else "the extension's own pool"
    lines = [
        "## Native xnor-popcount kernel: measured ceilings, naive loop, PyTorch",
        "",
        f"Command: `{cmd}` ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC). "
        f"CPU: {cpu} ({os.cpu_count()} vCPUs), {args.threads} threads, torch {torch.__version__}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, kernel threads on "
        f"{pool_text}. Automatic kernel path: `{auto}` "
        f"(runnable here: {', '.join(paths)}). Medians of alternating rounds (1-min load average "
        f"{load_start:.1f} at the start, {load_end:.1f} at the end: the machine may be shared with "
        "other jobs, so compare the ratios of this run).",
        "",
        summary_text(rows, auto, nets, cpu),
        "",
        "### Ceilings and the target layer",
        "",
        "Measured ceiling: the path's inner operation in a register-resident loop (xor + popcount + add; "
        "`amx`: TDPBSSD), binary MACs per second on all the threads at once. Target layer: 64 -> 64, 3x3, "
        "128x128, from packed bits to float32 channels-last with the folded-BN epilogue, the tuned "
        "variant of each path; naive loop: issue 15's (broadcast one pixel's word, xor + vpopcntq + add "
        "against 8 zmm of weights, pre-padded input, int32 output), in alternating rounds with the convs.",
        "",
        *target_text(rows, auto),
        "",
        "Kernel variants on the target layer (bit-exact, tests/native/test_variants.py; `ops.native.tune` "
        "picks one per CPU model, build and shape on first use, a variant replacing the default only when "
        f"{100 * tune.MARGIN:.0f} % faster):",
        "",
        "| path | threads | variant | ms | chosen |", "|---|---|---|---|---|",
        *[f"| {v['path']} | {v['threads']} | {v['variant']}: {v['name']} | {fmt(v['ms'], 3)} | "
          f"{'yes' if v['chosen'] else ''} |" for v in variants],
        "",
        f"### Layers C -> C, k x k, 128x128 (path `{auto}`, {args.threads} threads)",
        "",
        "| C | k | conv ms | pack ms | G bMAC/s | fp32 ms | bf16 ms | fp32 / (pack + conv) | fp32 / conv |",
        "|---|---|---|---|---|---|---|---|---|",
        *[f"| {r['c']} | {r['k']} | {fmt(r['conv'], 3)} | {fmt(r['pack'], 3)} | "
          f"{fmt(r['macs'] / (r['conv'] * 1e-3) / 1e9, 0)} | {fmt(r['fp32'])} | {fmt(r['bf16'])} | "
          f"{fmt(r['fp32'] / (r['pack'] + r['conv']), 1)} | {fmt(r['fp32'] / r['conv'], 1)} |" for r in layers],
        "",
        f"### Networks: every preset compiled vs the `fp` preset in PyTorch fp32 (x2, 64 ch x {blocks} "
        f"blocks, 1x3x{hw}x{hw}, {args.threads} threads)",
        "",
        "Compiled: `ops.native.compile(model)`, second and later calls (binary convs linked so that each "
        "writes the next one's packed bits in its epilogue, buffers reused, PixelShuffle and image skip "
        "native on channels-last data, FP convs in oneDNN fp32 channels-last). Deviation from the PyTorch "
        "model: max relative, and the PSNR of the compiled SR image against the model's (images in [0, 1]). "
        "Every layer agrees with its plan to float32 rounding, identically on every path; a value that "
        "rounds to the other side of a binarization threshold (likeliest with the local-mean threshold, "
        "whose centred values are often near zero) flips one bit, and 32 binary layers can amplify that "
        "into a visible but local difference.",
        "",
        "| preset | compiled ms (median / min) | `fp` preset, PyTorch fp32 ms | fp / compiled | linked convs "
        "| max rel. dev. | PSNR vs model dB |",
        "|---|---|---|---|---|---|---|",
        *[f"| {n['name']} | {fmt(n['compiled'], 1)} / {fmt(n['compiled_min'], 1)} | {fmt(n['fp'], 1)} | "
          f"{fmt(n['ratio'], 1)} | {n['linked']} / {n['binary']} | {n['err']:.1e} | {n['psnr']:.1f} |"
          for n in nets],
        "",
        f"FP head + tail of e2fif (conv 3 -> 64, conv 64 -> 12 + PixelShuffle, {hw}x{hw}): fp32 "
        f"channels-last (oneDNN, what the runtime runs, automatic) {fmt(ht['fp32_cl'], 2)} ms, fp32 NCHW "
        f"{fmt(ht['fp32_nchw'], 2)} ms, bf16 channels-last {fmt(ht['bf16_cl'], 2)} ms; the bf16 tail's "
        f"output is {ht['bf16_rel_err']:.1e} (max relative) from fp32, far above fp32 rounding, so bf16 "
        "is not used: it could not be shown to keep every preset's PSNR within 0.01 dB.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(Path(args.out), SECTION, text)
        print(f"wrote section '{SECTION}' of {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
