"""Per-layer bit-exactness of the compiled packed runtime against the PyTorch model (eval).

``python -m benchmarks.exactness [--preset e2fif] [--size 96x128] [--scale 2] [--channels 64]
[--blocks 16] [--threads 1] [--exact 1]``: registers forward hooks on every leaf the two models share by
name (head conv, each binary conv, tail convs, ...), runs both on one random photo-like image
and prints, in call order, for each module: bit-exact or the number of differing values and
the max |difference|; then the fraction of differing uint8 output values (nas.upscale's rule).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import ops.native as native
from nas import upscale as U
from space import presets
from space.builder import build
from tests.model_helpers import perturb


def _hook_all(model, store, names):
    hs = []
    for name, m in model.named_modules():
        if name and name in names:
            def hook(mod, inp, out, name=name):
                if isinstance(out, torch.Tensor):
                    store.append((name, out.detach().contiguous().clone()))
            hs.append(m.register_forward_hook(hook))
    return hs


def compare(model, x, threads=None, exact=True):
    compiled = native.compile(model, threads=threads, exact=exact)
    inner = compiled.module
    names = {n for n, _ in model.named_modules()} & {n for n, _ in inner.named_modules()}
    leaf = {n for n in names if not any(o.startswith(n + ".") for o in names)}
    ref, got = [], []
    h1 = _hook_all(model, ref, leaf)
    h2 = _hook_all(inner, got, leaf)
    with torch.no_grad():
        want = model(x)
    out = compiled(x)
    for h in h1 + h2:
        h.remove()
    rows = []
    for (n1, a), (n2, b) in zip(ref, got):
        assert n1 == n2, (n1, n2)
        d = (a - b).abs()
        rows.append((n1, int((a != b).sum()), float(d.max()) if d.numel() else 0.0, a.numel()))
    return want, out, rows


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="e2fif")
    p.add_argument("--size", default="96x128")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--blocks", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--exact", type=int, default=1, help="compile(exact=...): 1 (default) or 0")
    p.add_argument("--all", action="store_true", help="print every module, not only the first differing ones")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    h, w = (int(v) for v in a.size.split("x"))
    spec = presets.get(a.preset, scale=a.scale, channels=a.channels, blocks=a.blocks)
    model = perturb(build(spec), seed=1, weight_std=0.1, bn="normal")
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((1, 3, h, w), dtype=np.float32))
    want, out, rows = compare(model, x, a.threads, bool(a.exact))
    shown = 0
    for name, nd, dmax, n in rows:
        if a.all or (nd and shown < 12):
            print(f"{name:40s} {'exact' if nd == 0 else f'{nd}/{n} differ, max {dmax:.3g}'}")
            shown += nd > 0
    first = next((r for r in rows if r[1]), None)
    print("first differing module:", first[0] if first else None)
    ua, ub = U.to_uint8(want[0]), U.to_uint8(out[0])
    du = np.abs(ua.astype(np.int16) - ub)
    print(f"float output: {int((want != out).sum())} of {want.numel()} differ, max {float((want - out).abs().max()):.3g}; "
          f"uint8: {(du > 0).mean() * 100:.4f} % differ, max {du.max()}")


if __name__ == "__main__":
    main()
