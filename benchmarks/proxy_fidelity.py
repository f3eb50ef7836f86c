"""Proxy fidelity: does the short proxy training rank specs as a 10x longer training does?

``python -m benchmarks.proxy_fidelity`` scores a fixed set of specs (all presets plus random draws
from ``configs/space/default.yaml``, shrunk to ``--channels`` x ``--blocks`` so it fits a small
CPU) twice with :class:`evaluators.proxy.ProxyEvaluator`: once with the proxy budget and once with
``--factor`` times the steps, everything else equal (data, seed, batch, patch, lr, schedule shape,
validation images). It reports the rank agreement of the two PSNR_Y columns:

    Kendall tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2))
        C, D: concordant / discordant pairs, n0 = n(n-1)/2, n1, n2: pairs tied in x, in y
    Spearman rho  = Pearson correlation of the (average-tie) ranks

and rewrites its own section of BENCHMARKS.md. Scores are stored per spec in
``<work-dir>/scores.json`` as they are computed, so an interrupted study continues where it
stopped when run again with the same arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import yaml

from benchmarks.report import write_section

SECTION = "proxy_fidelity"
REPO = Path(__file__).resolve().parents[1]


# -- rank statistics (numpy only) ---------------------------------------------------------
def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either variable handled as in the formula above)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"x, y: need two sequences of equal length >= 2, got {len(x)} and {len(y)}")
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    n0 = len(i)
    n1, n2 = int(np.sum(dx == 0)), int(np.sum(dy == 0))
    s = float(np.sum(dx * dy))  # C - D (tied pairs contribute 0)
    denom = np.sqrt((n0 - n1) * (n0 - n2))
    return float("nan") if denom == 0 else s / denom


def average_ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties get the mean of the ranks they span."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), float)
    sx = x[order]
    k = 0
    while k < len(x):
        m = k
        while m + 1 < len(x) and sx[m + 1] == sx[k]:
            m += 1
        ranks[order[k:m + 1]] = (k + m) / 2 + 1
        k = m + 1
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float("nan") if denom == 0 else float((rx * ry).sum() / denom)


# -- the specs ----------------------------------------------------------------------------
def study_specs(n_random: int, channels: int, blocks: int, seed: int, space_path: Path):
    """``[(label, spec)]``: every preset at x2, then ``n_random`` draws of the default space with
    arch.channels and arch.blocks pinned to the small size (all other choices as in the file)."""
    from space import presets
    from space.space import SearchSpace

    data = yaml.safe_load(Path(space_path).read_text())
    data["arch"]["channels"] = [channels]
    data["arch"]["blocks"] = [blocks]
    space = SearchSpace.from_dict(data, where=str(space_path))
    out = [(f"preset:{name}", presets.get(name, scale=space.scale, channels=channels, blocks=blocks))
           for name in presets.names()]
    rng = random.Random(seed)
    seen = {spec.id for _, spec in out}
    while len(out) < len(presets.names()) + n_random:
        spec = space.random(rng)
        if spec.id not in seen:
            seen.add(spec.id)
            out.append((f"random:{len(out) - len(presets.names())}", spec))
    return out


def _report(args, rows: List[Dict], tau: float, rho: float, wall: float, command: str,
            load: float) -> str:
    proxy_steps, long_steps = args.proxy_steps, args.proxy_steps * args.factor
    t_proxy = sum(r["proxy"]["train_seconds"] for r in rows)
    t_long = sum(r["long"]["train_seconds"] for r in rows)
    lines = [
        f"## Proxy fidelity: {proxy_steps} vs {long_steps} training steps, validated on "
        + ("the embedded split" if args.data_root is None else "Set5"),
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, torch threads {args.threads}. "
        f"Specs: {len(rows)} ({sum(r['label'].startswith('preset') for r in rows)} presets + "
        f"{sum(r['label'].startswith('random') for r in rows)} random draws of "
        f"`configs/space/default.yaml`), all x2 at {args.channels} channels x {args.blocks} blocks.",
        f"Budgets: proxy {proxy_steps} steps, reference {long_steps} steps; both batch {args.batch}, "
        f"HR patch {args.patch}, Adam lr {args.lr:g} cosine to 0, seed {args.seed}; " + (
            f"trained on the embedded training images, PSNR_Y on the embedded validation split "
            f"({args.val_count} images, 128x128 crops)" if args.data_root is None else
            f"trained on T91 + BSD200, PSNR_Y on Set5 ({args.val_count} images)")
        + f"; bicubic on the same images: {args.bicubic:.2f} dB.",
        "",
        f"**Kendall tau-b = {tau:.3f}**, Spearman rho = {rho:.3f} (n = {len(rows)}; target tau >= 0.6). "
        f"Training time: proxy {t_proxy:.0f} s in all ({t_proxy / len(rows):.1f} s per spec), "
        f"reference {t_long:.0f} s; study wall time {wall / 60:.1f} min.",
        "",
        f"Reading: the best reference PSNR_Y is {max(r['long']['psnr_y'] for r in rows) - args.bicubic:+.2f} dB "
        f"over bicubic, so both budgets are short trainings of tiny networks; tau measures how well "
        f"{proxy_steps} steps predict the ranking after {long_steps}, not after a full schedule. "
        f"Times were taken on a CPU shared with other jobs (1-min load average at the end: "
        f"{load:.1f}).",
        "",
        "| spec | id | proxy PSNR_Y | reference PSNR_Y | proxy rank | reference rank |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    p = [r["proxy"]["psnr_y"] for r in rows]
    q = [r["long"]["psnr_y"] for r in rows]
    rp, rq = average_ranks([-v for v in p]), average_ranks([-v for v in q])
    for k in np.argsort(rq, kind="mergesort"):
        r = rows[k]
        flag = lambda d: " (diverged)" if d["diverged"] else ""  # noqa: E731
        lines.append(f"| {r['label']} | {r['id']} | {p[k]:.2f}{flag(r['proxy'])} | "
                     f"{q[k]:.2f}{flag(r['long'])} | {rp[k]:g} | {rq[k]:g} |")
    return "\n".join(lines) + "\n"


def seed_spread(args, rows: List[Dict]) -> str:
    """The proxy's seed-to-seed spread: per-spec sample std of its PSNR_Y over the seeds, and
    the rank agreement of the main seed's proxy with each other seed's (a ceiling for tau: the
    proxy cannot predict the reference better than it predicts itself under another seed)."""
    if not args.spread:
        return ""
    seeds = [args.seed] + args.spread
    cols = [[r["proxy"]["psnr_y"] for r in rows]] + [[r[f"proxy_seed{s}"]["psnr_y"] for r in rows]
                                                       for s in args.spread]
    stds = np.std(np.array(cols), axis=0, ddof=1)
    taus = [kendall_tau_b(cols[0], c) for c in cols[1:]]
    return "\n".join([
        "",
        f"**Seed-to-seed spread of the proxy** ({args.proxy_steps} steps, seeds "
        f"{', '.join(map(str, seeds))}: initialisation and patch stream): per-spec std of PSNR_Y "
        f"median {np.median(stds):.2f} dB, max {np.max(stds):.2f} dB; Kendall tau-b of seed "
        f"{args.seed}'s proxy ranking against seed " + ", ".join(
            f"{s}'s: {t:.3f}" for s, t in zip(args.spread, taus))
        + " (beside the proxy-vs-reference tau above: ranks that differ by less than the spread "
          "are not resolved by the proxy).",
        "",
    ]) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.proxy_fidelity", description=__doc__.split("\n")[0])
    ap.add_argument("--random", type=int, default=6, help="random specs besides the presets")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--proxy-steps", type=int, default=150)
    ap.add_argument("--factor", type=int, default=10, help="reference budget = factor x proxy steps")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spread-seeds", default="1,2",
                    help="other seeds of the proxy budget, for its seed-to-seed spread (comma list; '' for none)")
    # 1 thread: at this size a step is too small to split, and on a shared 2-core machine two
    # spinning oneDNN threads per process slowed steps down up to 70x in our measurements.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--space", default=str(REPO / "configs" / "space" / "default.yaml"))
    ap.add_argument("--data-root", default=None,
                    help="train on <root>/train/{T91,BSD200} and validate on <root>/Set5 "
                         "instead of the embedded images")
    ap.add_argument("--work-dir", default=None, help="default runs/<section>")
    ap.add_argument("--section", default=SECTION, help="BENCHMARKS.md section to rewrite")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    try:
        args.spread = [int(t) for t in args.spread_seeds.split(",") if t.strip()]
    except ValueError:
        ap.error(f"--spread-seeds: {args.spread_seeds!r} is not a comma-separated list of integers")
    if args.seed in args.spread:
        ap.error(f"--spread-seeds: {args.seed} is the main --seed; give other seeds")

    from evaluators.proxy import ProxyEvaluator

    command = " ".join(["python -m benchmarks.proxy_fidelity"] + list(argv if argv is not None else sys.argv[1:]))
    if args.work_dir is None:
        args.work_dir = str(REPO / "runs" / args.section)
    specs = study_specs(args.random, args.channels, args.blocks, args.seed, Path(args.space))
    common = dict(batch=args.batch, patch=args.patch, lr=args.lr, seed=args.seed, threads=args.threads,
                  data_root=args.data_root)
    evaluators = {"proxy": ProxyEvaluator(steps=args.proxy_steps, **common),
                  "long": ProxyEvaluator(steps=args.proxy_steps * args.factor, **common)}
    for s in args.spread:  # the proxy budget again with another seed (init and patch stream)
        evaluators[f"proxy_seed{s}"] = ProxyEvaluator(steps=args.proxy_steps, **dict(common, seed=s))
    from evaluators.evaluate import bicubic_sr_fn, evaluate

    val = evaluators["proxy"].val_items(2)
    args.val_count = len(val)
    args.bicubic = evaluate(bicubic_sr_fn(2), val, 2)["psnr_y"]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    key = json.dumps({k: v for k, v in vars(args).items()
                      if k not in ("out", "work_dir", "val_count", "bicubic", "section", "spread_seeds", "spread")},
                     sort_keys=True)
    store = work / "scores.json"
    scores = json.loads(store.read_text()) if store.exists() else {}
    if scores.get("key") != key:
        scores = {"key": key, "rows": {}}
    for budget in ["proxy", "long"] + [f"proxy_seed{s}" for s in args.spread]:  # proxies first
        for label, spec in specs:
            row = scores["rows"].setdefault(spec.id, {"label": label, "id": spec.id})
            if budget in row:
                continue
            t1 = time.perf_counter()
            res = evaluators[budget].evaluate(spec)
            row[budget] = {k: res[k] for k in ("psnr_y", "ssim_y", "train_seconds", "diverged")}
            row[budget]["wall_seconds"] = time.perf_counter() - t1
            scores["load_average"] = os.getloadavg()[0]  # of the last computed evaluation
            print(f"{budget:5s} {label:18s} {spec.id} psnr_y={res['psnr_y']:.3f} "
                  f"({res['train_seconds']:.1f} s){' DIVERGED' if res['diverged'] else ''}", flush=True)
            store.write_text(json.dumps(scores, indent=1))
    rows = [scores["rows"][spec.id] for _, spec in specs]
    p = [r["proxy"]["psnr_y"] for r in rows]
    q = [r["long"]["psnr_y"] for r in rows]
    tau, rho = kendall_tau_b(p, q), spearman_rho(p, q)
    # wall time of the study = sum of the per-evaluation wall times (survives a resume)
    wall = sum(r[b]["wall_seconds"] for r in rows for b in ("proxy", "long"))
    wall += sum(r[f"proxy_seed{s}"]["wall_seconds"] for r in rows for s in args.spread)
    write_section(Path(args.out), args.section,
                  _report(args, rows, tau, rho, wall, command, scores.get("load_average", float("nan")))
                  + seed_spread(args, rows))
    print(f"Kendall tau-b = {tau:.3f}, Spearman rho = {rho:.3f} over {len(rows)} specs; "
          f"written to {args.out} (section {args.section})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
