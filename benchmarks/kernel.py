"""Speed of the native xnor-popcount kernel against PyTorch conv2d, per layer and per network.

    python -m benchmarks.kernel            # full table (several minutes on 2 cores)
    python -m benchmarks.kernel --quick    # short run: fewer shapes, smaller network

Per layer (C -> C, k x k, stride 1, 'same', batch 1, H = W), all in the same run with the same
thread count (``--threads``, default 2 = this machine's cores):

* ``conv``: native conv from packed bits to float32 output with the fused epilogue (scale and
  bias = folded BN), channels-last; ``pack``: float32 -> bits (channels-last input);
  ``layer = pack + conv`` is what the packed runtime pays per binary conv.
* G binary MAC/s = C*C*k*k*H*W / conv wall time; binary MACs / cycle / core = MACs /
  (conv CPU time * f), where the CPU time is the process CPU time summed over the kernel's
  threads (robust to other jobs on a shared machine) and f the ``cpu MHz`` of /proc/cpuinfo
  (the nominal clock the hypervisor reports; with boost the true per-cycle figure is lower).
* PyTorch fp32 and bf16 ``F.conv2d`` of the same layer (NCHW, oneDNN), and the speedups
  fp32/layer and fp32/conv (wall), fp32/conv (CPU time), bf16/layer. bf16 has no fast path
  on CPUs without AVX512-BF16/AMX: it is timed only up to ``BF16_MAX_MACS`` (n/m above).

Every time is the median of several runs (at least 3, up to 15, about 0.3 s of work per
figure), native and PyTorch measured one after the other in the same run. The
instruction-set comparison (``avx2`` nibble lookup vs ``popcnt`` scalar loop) is measured in the
same way on the 64 -> 64 and 32 -> 32, 3x3, 128x128 layers.

Whole network: binary SRResNet-style x2 model (FP head conv 3->C, N ``ops.BinaryBlock`` of two
binary 3x3 convs with BN, FP skip and leaky ReLU (E2FIF), block residual, FP tail: conv C->4C,
PixelShuffle(2), conv C->3) through ``ops.native.compile`` vs the same model in PyTorch fp32.

Writes the ``kernel`` section of BENCHMARKS.md (between ``<!-- BEGIN kernel -->`` and
``<!-- END kernel -->``; other sections are kept).
"""
from __future__ import annotations

import os

# PyTorch's OpenMP workers spin at barriers by default; on a machine shared with other jobs a
# spinning worker that is descheduled turns a 0.5 ms conv into 60-100 ms (measured here). Let
# them sleep instead, which is PyTorch's best case on a busy machine. Must precede `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import datetime
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

import ops.native as native
from ops import BinaryBlock

from benchmarks.report import write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "kernel"


def cpu_mhz() -> float:
    try:
        vals = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text())]
        return statistics.median(vals) if vals else float("nan")
    except OSError:
        return float("nan")


def cpu_name() -> str:
    try:
        m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor()


def median_times(fns: Dict[str, Callable[[], object]], budget_s: float = 0.3,
                 min_runs: int = 3, max_runs: int = 15) -> Dict[str, float]:
    """Median wall time (ms) of each function, and under ``<name>_cpu`` the median process CPU
    time (ms, all threads of this process). Each function runs its repetitions back to back
    after a warm-up call (which also absorbs the spin-wait of the previous function's OpenMP
    workers, which would otherwise steal a core from the next measurement)."""
    first = {}
    for name, fn in fns.items():
        fn()  # warm-up
        t = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - t
    runs = int(min(max_runs, max(min_runs, budget_s / max(sum(first.values()), 1e-6))))
    wall: Dict[str, List[float]] = {name: [] for name in fns}
    cpu: Dict[str, List[float]] = {name: [] for name in fns}
    for name, fn in fns.items():
        fn()
        for _ in range(runs):
            c, t = time.process_time(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    out = {name: 1e3 * statistics.median(v) for name, v in wall.items()}
    out.update({f"{name}_cpu": 1e3 * statistics.median(v) for name, v in cpu.items()})
    return out


#: bf16 conv has no native support on CPUs without AVX512-BF16/AMX (oneDNN falls back to a
#: slow path, about 0.1 GMAC/s here): layers above this many MACs are not timed in bf16.
BF16_MAX_MACS = 700e6


def layer_case(c: int, hw: int, k: int, threads: int, isa: str, with_torch: bool = True):
    g = torch.Generator().manual_seed(c + hw + k)
    x = torch.randn(1, c, hw, hw, generator=g)
    w = torch.randn(c, c, k, k, generator=g)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    bits = native.pack_activations(x_cl, threads=threads, isa=isa)
    w_bits = native.pack_weights(w)
    scale, bias = torch.rand(c).numpy() + 0.5, torch.randn(c).numpy()
    fns = {
        "conv": lambda: native.conv2d(bits, w_bits, c, c, mode="float", post_scale=scale,
                                      post_bias=bias, layout="nhwc", threads=threads, isa=isa),
        "pack": lambda: native.pack_activations(x_cl, threads=threads, isa=isa),
    }
    with torch.no_grad():
        if not with_torch:
            return median_times(fns)
        fns["fp32"] = lambda: F.conv2d(x, w, padding=k // 2)
        out = median_times(fns)
        out["bf16"] = float("nan")
        if c * c * k * k * hw * hw <= BF16_MAX_MACS:
            xb, wb = x.to(torch.bfloat16), w.to(torch.bfloat16)
            out["bf16"] = median_times({"bf16": lambda: F.conv2d(xb, wb, padding=k // 2)},
                                       budget_s=1.0, min_runs=1, max_runs=3)["bf16"]
        return out


def srresnet(blocks: int, channels: int) -> nn.Module:
    e2fif = dict(norm="bn", skip="fp", nonlinearity="leaky_relu")
    body = [BinaryBlock(channels, [e2fif, e2fif], residual=True) for _ in range(blocks)]
    model = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), *body,
                          nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2),
                          nn.Conv2d(channels, 3, 3, padding=1))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.copy_(0.5 + torch.rand(channels, generator=g))
    return model.eval()


def network_case(blocks: int, channels: int, hw: int, threads: int):
    model = srresnet(blocks, channels)
    compiled = native.compile(model, threads=threads)
    head_tail = nn.Sequential(model[0], *list(model)[-3:])
    x = torch.rand(1, 3, hw, hw)
    xh = torch.rand(1, channels, hw, hw)
    with torch.no_grad():
        err = float((compiled(x) - model(x)).abs().max() / model(x).abs().max())
        t = median_times({"native": lambda: compiled(x), "torch": lambda: model(x),
                          "fp_tail": lambda: head_tail[1:](xh), "fp_head": lambda: head_tail[0](x)},
                         budget_s=2.0, min_runs=3, max_runs=7)
    return t, err


#: per-cycle ceiling of the xor + popcount + add loop of each path, and why
CEILINGS = {
    "avx512": (341, "vpopcntq zmm issues once per cycle and xor/add share the two 512-bit vector "
                    "ports, so xor + popcount + add on 512 bits takes at least 1.5 cycles"),
    "avx2": (128, "the vpshufb nibble lookup costs 8 vector ops (xor, 2 and, shift, 2 vpshufb, 2 add) "
                  "per 256 binary MACs, at most 4 vector ops per cycle (3 on most Intel cores: 96)"),
    "popcnt": (85, "xor, popcnt and add per 64 binary MACs on up to 4 integer ALUs (64 where one port "
                   "does popcnt)"),
    "scalar": (21, "the SWAR popcount takes about 12 integer ops per 64 binary MACs"),
}


def ceiling_text(isa: str, target, mhz: float) -> str:
    """The per-cycle ceiling of ``isa`` and the binary/fp32 ratio it allows, with PyTorch's fp32
    rate on the 64 -> 64, 3x3, 128x128 layer measured in this run (``target``; None: not run)."""
    ceiling, why = CEILINGS.get(isa, (float("nan"), "no ceiling known for this path"))
    text = (f"Ceiling of the `{isa}` path: {why}: at most about {ceiling} binary MACs/cycle/core.")
    if target is not None:
        fp32 = target["macs"] / (target["fp32_cpu"] * 1e-3) / (mhz * 1e6)
        text += (f" PyTorch fp32 ran the 64 -> 64, 3x3, 128x128 layer at {fp32:.1f} MACs/cycle/core "
                 f"in this run (CPU time at {mhz:.0f} MHz), so the best binary/fp32 ratio this CPU "
                 f"allows per cycle is about {ceiling}/{fp32:.1f} = {ceiling / fp32:.0f}x, before "
                 "packing and the epilogue. Targets of issue 3: >= 240 binary MACs/cycle/core "
                 "(70 % of the avx512 ceiling) and >= 60x fp32 on that layer.")
    return text + (" MACs/cycle use the nominal clock of /proc/cpuinfo: where the core boosts above "
                   "it, the true per-cycle figures are lower.")


def fmt(v: float, digits: int = 2) -> str:
    if v != v:  # NaN: not measured
        return "n/m"
    return f"{v:.{digits}f}" if v < 100 else f"{v:.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few shapes, small network (about a minute)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"--threads: {args.threads} given; allowed: >= 1")
    torch.set_num_threads(args.threads)
    info = native.info()
    isa = info["isa"]
    mhz = cpu_mhz()
    load_start = os.getloadavg()[0]
    chans, sizes = ((64,), (64, 128)) if args.quick else ((32, 64, 128), (64, 128, 256))
    cmd = "python -m benchmarks.kernel" + (" --quick" if args.quick else "") + \
        (f" --threads {args.threads}" if args.threads != 2 else "")
    lines = [
        "## Native xnor-popcount kernel vs PyTorch conv2d",
        "",
        f"Command: `{cmd}` ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC). CPU: {cpu_name()}, "
        f"{mhz:.0f} MHz (`cpu MHz` in /proc/cpuinfo, used for MACs/cycle), {args.threads} threads, "
        f"torch {torch.__version__}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}. Kernel path: `{isa}` (runnable here: "
        f"{', '.join(info['supported'])}; {info['note']}). Medians of 3-15 runs; the machine is "
        "shared with other jobs (1-min load average LOAD_START at the start, LOAD_END at the end), so absolute times are noisy: compare the "
        "same-run ratios and the CPU-time columns.",
        "",
        "| C | H=W | k | conv ms | conv CPU ms | pack ms | layer ms | G bMAC/s | bMAC/cycle/core "
        "| fp32 ms | fp32 CPU ms | bf16 ms | fp32/layer | fp32/conv | fp32/conv (CPU) | bf16/layer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    per_layer: List[Dict[str, float]] = []
    for c in chans:
        for hw in sizes:
            for k in (1, 3):
                t = layer_case(c, hw, k, args.threads, isa)
                macs = c * c * k * k * hw * hw
                per_layer.append({"c": c, "hw": hw, "k": k, "macs": macs, **t})
                gmacs = macs / (t["conv"] * 1e-3) / 1e9
                per_cycle = macs / (t["conv_cpu"] * 1e-3) / (mhz * 1e6)
                layer = t["conv"] + t["pack"]
                row = (f"| {c} | {hw} | {k} | {fmt(t['conv'], 3)} | {fmt(t['conv_cpu'], 3)} "
                       f"| {fmt(t['pack'], 3)} | {fmt(layer, 3)} | {fmt(gmacs, 1)} | {fmt(per_cycle, 1)} "
                       f"| {fmt(t['fp32'])} | {fmt(t['fp32_cpu'])} | {fmt(t['bf16'])} "
                       f"| {fmt(t['fp32'] / layer, 1)} | {fmt(t['fp32'] / t['conv'], 1)} "
                       f"| {fmt(t['fp32_cpu'] / t['conv_cpu'], 1)} | {fmt(t['bf16'] / layer, 1)} |")
                print(row, flush=True)
                lines.append(row)
    # instruction-set paths on the target layer, and on 32 channels (32-bit lanes: avx512, avx2)
    lines += ["", "Paths on the C -> C, 3x3, 128x128 layer for C = 64 (the target layer) and C = 32 "
              "(conv only, same run):", "",
              "| C | path | threads | conv ms | conv CPU ms | bMAC/cycle/core |", "|---|---|---|---|---|---|"]
    walls = {}
    for c in (64, 32):
        macs = c * c * 9 * 128 * 128
        for path in info["supported"]:
            for th in sorted({1, args.threads}):
                t = layer_case(c, 128, 3, th, path, with_torch=False)
                if c == 64:
                    walls[path, th] = t["conv"]
                row = (f"| {c} | {path} | {th} | {fmt(t['conv'], 3)} | {fmt(t['conv_cpu'], 3)} "
                       f"| {fmt(macs / (t['conv_cpu'] * 1e-3) / (mhz * 1e6), 1)} |")
                print(row, flush=True)
                lines.append(row)
    if args.threads > 1 and (isa, 1) in walls:
        lines += ["", f"Thread scaling of `{isa}` on this layer: {args.threads} threads are "
                  f"{walls[isa, 1] / walls[isa, args.threads]:.2f}x faster than 1. When this is near 1 "
                  "while both threads are busy (CPU time about twice the wall time), the vCPUs share one "
                  "physical core's vector units (SMT siblings under the hypervisor), so per-core figures "
                  "are per vCPU."]
    blocks, chn, hw = (4, 64, 64) if args.quick else (16, 64, 128)
    t, err = network_case(blocks, chn, hw, args.threads)
    lines += ["", f"Whole network: x2 SRResNet-style, {blocks} BinaryBlocks x 2 binary 3x3 convs x {chn} ch "
              f"(E2FIF choices), FP head/tail, input 1x3x{hw}x{hw}; compiled output within "
              f"{err:.1e} (max relative) of PyTorch.", "",
              "| model | ms | speedup vs PyTorch fp32 |", "|---|---|---|",
              f"| PyTorch fp32 (eval) | {fmt(t['torch'], 1)} | 1.0 |",
              f"| packed runtime (`ops.native.compile`) | {fmt(t['native'], 1)} | {fmt(t['torch'] / t['native'], 2)} |",
              f"| FP head + tail alone (PyTorch, part of both) | {fmt(t['fp_head'] + t['fp_tail'], 1)} | - |"]
    print("\n".join(lines[-6:]))
    target = next((r for r in per_layer if r["c"] == 64 and r["hw"] == 128 and r["k"] == 3), None)
    lines += ["", ceiling_text(isa, target, mhz)]
    lines[2] = lines[2].replace("LOAD_START", f"{load_start:.1f}").replace("LOAD_END", f"{os.getloadavg()[0]:.1f}")
    if not args.no_write:
        write_section(Path(args.out), SECTION, "\n".join(lines))
        print(f"wrote section '{SECTION}' of {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
