"""``bsrnas upscale``'s compiled runtime against the PyTorch model on one large image: the share
of uint8 values that differ (and the largest difference), and the time per image.

Three steps, each its own process so that two code trees can be compared in one run::

    python -m benchmarks.upscale_exactness prepare --out DIR [--train STEPS] [--size 1024x768]
        the model (e2fif x2 64 ch x 16 blocks; random init with BN running statistics and every
        parameter moved, or trained STEPS steps on the default images: BN statistics from data)
        saved as DIR/model.pt, the image (scikit-image's astronaut, bicubic to the size) as
        DIR/image.npy, and the PyTorch model's uint8 output (``bsrnas upscale --torch``: the
        same tiles) as DIR/torch.npy
    python -m benchmarks.upscale_exactness measure --out DIR [--exact 1|0] [--reps 2] [--whole 1]
        one compiled run to compare, then ``reps`` timed runs; prints one JSON line
        (``--whole 1``: also the whole image untiled, compared with the tiled result)
    python -m benchmarks.upscale_exactness compare --out DIR --base TREE [--rounds 3]
        alternates ``measure`` in TREE (another checkout, e.g. the commit before) and here
        (exact=True, exact=False), ``rounds`` times, and prints the medians and their ratios

Threads: ``--threads`` (default 1) for PyTorch and the kernel alike. Tiles: ``default_tile``
of the spec (what the command uses), margin = receptive radius.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

SPEC = dict(name="e2fif", scale=2, channels=64, blocks=16)


def _spec():
    from space import presets

    return presets.get(SPEC["name"], scale=SPEC["scale"], channels=SPEC["channels"], blocks=SPEC["blocks"])


def _image(w: int, h: int) -> np.ndarray:
    import skimage.data
    from PIL import Image

    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((w, h), Image.BICUBIC))


def prepare(a) -> None:
    from evaluators.checkpoint import save_checkpoint
    from nas import upscale as U
    from space.builder import build

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(a.threads)
    spec = _spec()
    torch.manual_seed(0)
    model = build(spec)
    if a.train:
        from evaluators.data import PatchSampler, training_images
        from evaluators.training import TrainConfig, train

        sampler = PatchSampler(training_images(), spec.scale, a.patch, a.batch, seed=0)
        t0 = time.perf_counter()
        res = train(model, sampler, TrainConfig(steps=a.train, batch=a.batch, patch=a.patch, lr=2e-4,
                                                log_every=max(1, a.train // 10), threads=a.threads,
                                                device="cpu"), progress=False)
        print(f"trained {a.train} steps in {time.perf_counter() - t0:.0f} s, last loss "
              f"{res.final_loss:.4f}, history {[(s, round(l, 4)) for s, l, _ in res.history]}")
    else:
        from tests.model_helpers import perturb

        perturb(model, seed=1, weight_std=0.1, bn="normal")
    model.eval()
    save_checkpoint(out / "model.pt", spec, model)
    w, h = (int(v) for v in a.size.split("x"))
    img = _image(w, h)
    np.save(out / "image.npy", img)
    r = U.receptive_radius(spec)
    tile = U.default_tile(spec)

    def run(x):
        with torch.no_grad():
            return model(x)

    t0 = time.perf_counter()
    ref = U.to_uint8(U.upscale_float(run, img, spec.scale, tile, r))
    np.save(out / "torch.npy", ref)
    print(json.dumps(dict(step="prepare", size=a.size, tile=tile, margin=r, threads=a.threads,
                          torch_s=round(time.perf_counter() - t0, 2))))


def measure(a) -> None:
    import ops.native as native
    from evaluators.checkpoint import load_model
    from nas import upscale as U

    out = Path(a.out)
    torch.set_num_threads(a.threads)
    spec, model = load_model(out / "model.pt")
    img = np.load(out / "image.npy")
    ref = np.load(out / "torch.npy")
    kw = {}
    has_exact = "exact" in inspect.signature(native.compile).parameters
    if has_exact:
        kw["exact"] = bool(a.exact)
    run = native.compile(model, threads=a.threads, **kw)
    r, tile = U.receptive_radius(spec), U.default_tile(spec)
    got = U.to_uint8(U.upscale_float(run, img, spec.scale, tile, r))  # also the first-use tuning
    d = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    extra = {}
    if a.whole:  # the same network on the whole image at once: tiles vs whole
        whole = U.to_uint8(U.upscale_float(run, img, spec.scale, None, r))
        dw = np.abs(whole.astype(np.int16) - got.astype(np.int16))
        extra = dict(tiled_vs_whole_differ=int((dw > 0).sum()), tiled_vs_whole_max=int(dw.max()))
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        U.upscale_float(run, img, spec.scale, tile, r)
        times.append(time.perf_counter() - t0)
    print(json.dumps(dict(step="measure", tree=str(Path(native.__file__).parents[2]), exact=kw.get("exact", "n/a"),
                          threads=a.threads, differ_pct=round(100 * float((d > 0).mean()), 4),
                          differ=int((d > 0).sum()), values=int(d.size), max_diff=int(d.max()),
                          s_per_image=round(min(times), 3), times=[round(t, 3) for t in times],
                          **extra)))


def compare(a) -> None:
    here = Path(__file__).resolve().parents[1]
    base = Path(a.base).resolve()
    out = str(Path(a.out).resolve())

    def one(tree: Path, exact: int):
        env = dict(os.environ, PYTHONPATH=str(tree))
        cmd = [sys.executable, "-m", "benchmarks.upscale_exactness", "measure", "--out", out,
               "--threads", str(a.threads), "--reps", str(a.reps), "--exact", str(exact)]
        res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
        line = [ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1]
        print(line, flush=True)
        return json.loads(line)

    runs = {"base": [], "exact": [], "fast": []}
    for _ in range(a.rounds):
        runs["base"].append(one(base, 1))
        runs["exact"].append(one(here, 1))
        runs["fast"].append(one(here, 0))
    med = {k: statistics.median(r["s_per_image"] for r in v) for k, v in runs.items()}
    summary = {k: dict(s_per_image=med[k], differ_pct=v[0]["differ_pct"], max_diff=v[0]["max_diff"])
               for k, v in runs.items()}
    summary["ratio exact/base"] = round(med["exact"] / med["base"], 3)
    summary["ratio exact/fast"] = round(med["exact"] / med["fast"], 3)
    print(json.dumps(dict(step="compare", threads=a.threads, rounds=a.rounds, **summary)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("step", choices=["prepare", "measure", "compare"])
    p.add_argument("--out", required=True)
    p.add_argument("--size", default="1024x768")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train", type=int, default=0)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--exact", type=int, default=1)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--base")
    p.add_argument("--whole", type=int, default=0, help="measure: also run the whole image untiled")
    a = p.parse_args(argv)
    {"prepare": prepare, "measure": measure, "compare": compare}[a.step](a)


if __name__ == "__main__":
    main()
