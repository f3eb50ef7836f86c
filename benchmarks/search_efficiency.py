"""Search efficiency: hypervolume reached per CPU second by each search method, scored alike.

    python -m benchmarks.search_efficiency --data-root ../shared/datasets
        [--budget-cpu-s 180] [--seeds 0,1,2] [--methods random,tpe,nsga2,mf] [--jobs 2]
        [--rungs 100,300,900] [--eta 3] [--spread-specs 4] [--work-dir runs/search_efficiency]

What it does (section ``search_efficiency`` of BENCHMARKS.md):

1. The latency table of the quickstart space is measured first (``LatencyTable.predict`` on
   random specs), so no search pays for it inside its budget.
2. For each method and search seed, one ``bsrnas search`` of ``configs/search/quickstart.yaml``
   with ``--data-root`` (T91 + BSD200 training patches, Set5 validation), the presets first,
   ``engine.trials`` large, stopped by SIGINT once the process has used ``--budget-cpu-s``
   seconds of CPU (user + system, read from ``/proc``; one torch thread, so CPU time is the
   work done whatever else the machine runs). Methods: ``random`` / ``tpe`` / ``nsga2``
   samplers at the quickstart's single fidelity (its ``steps``, cosine), and ``mf``: TPE
   with ``evaluator.rungs = --rungs`` and ``eta`` (``nas.rungs``). ``--jobs`` searches run at
   once.
3. Snapshots at 25, 50, 75 and 100 % of the budget: the front the search would report at that
   CPU time (trials and rungs finished by then; for ``mf`` the front of the highest rung
   reached, ``nas.pareto.front``). Every member of every snapshot front is **re-evaluated at
   the top rung** (``ProxyEvaluator(steps = last rung, schedule = wsd)``, the same training an
   ``mf`` top rung runs, so an ``mf`` member re-evaluates to its own top-rung score), once
   per distinct spec (``scores.json`` in the work dir, resumable).
4. Hypervolume of the re-evaluated points (``nas.pareto.hypervolume_2d``) against one fixed
   reference: PSNR_Y = Set5 bicubic - 2 dB, latency = 1.1 x the largest predicted latency of
   500 random specs of the space (seed 0). Reported: mean +- std over the search seeds per
   snapshot, a plot (``benchmarks/figures/search_efficiency.png``), and the two acceptance
   ratios of issue 13 (``mf`` at the full budget vs the best single-fidelity method; the CPU
   time ``mf`` needs to reach TPE's final hypervolume).
5. Seed noise (``--spread-specs N``): N presets trained with seeds 0, 1, 2 through every rung;
   the per-rung std of PSNR_Y.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from ops.native.tune import cpu_model

from benchmarks.report import write_section

SECTION = "search_efficiency"
REPO = Path(__file__).resolve().parents[1]
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
METHODS = ("random", "tpe", "nsga2", "mf")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime (+ waited-for children) of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        parts = fh.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return sum(int(parts[i]) for i in (11, 12, 13, 14)) / tick


# ------------------------------------------------------------------------------ one search

def method_config(method: str, seed: int, data_root: str, rungs: Sequence[int], eta: int) -> Dict[str, Any]:
    cfg = yaml.safe_load((REPO / "configs/search/quickstart.yaml").read_text())
    cfg["space"] = str(REPO / "configs/space/quickstart.yaml")
    cfg["seed"] = int(seed)
    cfg["name"] = f"{method}-s{seed}"
    cfg["data"] = {"root": os.path.abspath(data_root)}
    cfg["evaluator"].pop("max_val_images", None)  # the whole of Set5
    cfg["evaluator"]["threads"] = 1
    cfg["engine"]["trials"] = 100000  # the CPU budget stops the search
    cfg["engine"]["sampler"] = "tpe" if method == "mf" else method
    cfg["tensorboard"]["sample_images"] = False
    # single fidelity: the quickstart's `steps` (its own rungs are replaced by ours or dropped)
    cfg["evaluator"].update(rungs=list(rungs) if method == "mf" else None, eta=int(eta))
    return cfg


def run_search(method: str, seed: int, args, work: Path) -> Dict[str, Any]:
    """Run (or reuse) one budgeted search; returns its CPU-time trace and run folder."""
    d = work / f"{method}-s{seed}"
    done = d / "trace.json"
    if done.is_file():
        return json.loads(done.read_text())
    d.mkdir(parents=True, exist_ok=True)
    run_dir = d / "run"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # an interrupted budgeted search cannot be continued fairly
    cfg_path = d / "search.yaml"
    cfg_path.write_text(yaml.safe_dump(method_config(method, seed, args.data_root, args.rungs, args.eta),
                                       sort_keys=False))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "nas.cli", "search", "--config", str(cfg_path), "--run-dir", str(run_dir),
           "--no-progress"]
    log = open(d / "search.log", "w")
    # SIGINT must reach the search as KeyboardInterrupt: a shell's background job starts with it
    # ignored, and Python keeps an ignored SIGINT ignored
    proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    trace: List[Tuple[float, float]] = []
    stopped = False
    while proc.poll() is None:
        try:
            cpu = proc_cpu_seconds(proc.pid)
        except (OSError, IndexError):
            break
        trace.append((time.time(), cpu))
        if cpu >= args.budget_cpu_s and not stopped:
            proc.send_signal(signal.SIGINT)  # the search writes its outputs and stops
            stopped = time.time()
        elif stopped and time.time() - stopped > 120:
            proc.kill()  # the snapshots read the study, not the outputs
        time.sleep(0.5)
    proc.wait()
    log.close()
    out = {"method": method, "seed": seed, "run_dir": str(run_dir), "trace": trace,
           "returncode": proc.returncode}
    done.write_text(json.dumps(out))
    return out


def cpu_at(trace: Sequence[Tuple[float, float]], wall: float) -> float:
    """CPU seconds the search had used at wall time ``wall`` (linear between samples)."""
    if not trace or wall <= trace[0][0]:
        return trace[0][1] if trace else 0.0
    for (w0, c0), (w1, c1) in zip(trace, trace[1:]):
        if w0 <= wall <= w1:
            return c0 + (c1 - c0) * (wall - w0) / max(1e-9, w1 - w0)
    return trace[-1][1]


def snapshot_records(run_dir: str, trace, budget: float) -> Dict[float, List[Dict[str, Any]]]:
    """fraction -> the records (with rungs cut at that CPU time) the search had then."""
    from nas.runfolder import RunFolder, record_of, rung_book
    from optuna.trial import TrialState

    run = RunFolder(run_dir)
    study = run.load_study()
    book = rung_book(study, run)
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    done_cpu = {t.number: cpu_at(trace, t.datetime_complete.timestamp()) for t in trials}
    rung_cpu: Dict[Tuple[int, int], float] = {}
    if book is not None:
        for t in trials:
            for k in range(1, len(book.rungs)):
                p = os.path.join(book.rung_dir(t.number, k), "result.json")
                if not os.path.isfile(p):
                    break
                rung_cpu[(t.number, k)] = cpu_at(trace, os.path.getmtime(p))
    out = {}
    for f in FRACTIONS:
        limit = f * budget
        recs = [record_of(t) for t in sorted(trials, key=lambda t: t.number) if done_cpu[t.number] <= limit]
        if book is not None:
            from nas.rungs import attach

            recs = attach(recs, book)
            for r in recs:
                src = int(r["duplicate_of"]) if r.get("duplicate_of") is not None else int(r["trial"])
                chain = r["psnr_y_by_rung"]
                keep = 1 if chain else 0
                while keep < len(chain) and rung_cpu.get((src, keep), math.inf) <= limit:
                    keep += 1
                r["psnr_y_by_rung"] = chain[:keep]
                r["rung"] = keep - 1 if keep else None
        out[f] = recs
    return out


# ------------------------------------------------------------------------------ scoring

def top_evaluator(args):
    from evaluators.proxy import ProxyEvaluator

    cfg = yaml.safe_load((REPO / "configs/search/quickstart.yaml").read_text())["evaluator"]
    return ProxyEvaluator(steps=int(args.rungs[-1]), schedule="wsd", batch=cfg["batch"], patch=cfg["patch"],
                          lr=float(cfg["lr"]), threads=1, data_root=args.data_root)


def reevaluate(specs: Dict[str, Dict[str, Any]], args, work: Path) -> Dict[str, float]:
    """spec id -> PSNR_Y at the top rung (cached in scores.json; ``--jobs`` processes)."""
    path = work / "scores.json"
    scores = json.loads(path.read_text()) if path.is_file() else {}
    todo = [(sid, spec) for sid, spec in sorted(specs.items()) if sid not in scores]
    if todo:
        print(f"re-evaluating {len(todo)} front members at {args.rungs[-1]} steps", flush=True)
        chunks = [todo[i::args.jobs] for i in range(args.jobs)]
        procs = []
        for i, chunk in enumerate(chunks):
            if not chunk:
                continue
            job = work / f"reeval-{i}.json"
            job.write_text(json.dumps({"specs": dict(chunk), "args": {"rungs": args.rungs, "data_root": args.data_root}}))
            procs.append((subprocess.Popen([sys.executable, "-m", "benchmarks.search_efficiency", "--reeval-job",
                                            str(job)], cwd=str(REPO), env=dict(os.environ, OMP_NUM_THREADS="1")), job))
        for p, job in procs:
            p.wait()
            res = job.with_suffix(".out.json")
            if res.is_file():
                scores.update(json.loads(res.read_text()))
        path.write_text(json.dumps(scores, indent=1, sort_keys=True))
    return scores


def reeval_job(job_path: str) -> int:
    from space.spec import ArchSpec

    job = json.loads(Path(job_path).read_text())
    a = argparse.Namespace(rungs=job["args"]["rungs"], data_root=job["args"]["data_root"])
    ev = top_evaluator(a)
    out_path = Path(job_path).with_suffix(".out.json")
    out = json.loads(out_path.read_text()) if out_path.is_file() else {}
    for sid, spec in job["specs"].items():
        if sid in out:
            continue
        res = ev.evaluate(ArchSpec.from_dict(spec))
        out[sid] = 0.0 if res["diverged"] else float(res["psnr_y"])
        out_path.write_text(json.dumps(out))
        print(f"  {sid}: {out[sid]:.3f} dB ({res['train_seconds']:.0f} s)", flush=True)
    return 0


def hv_of(members: Sequence[Dict[str, Any]], scores: Dict[str, float], ref: Tuple[float, float],
          latency) -> float:
    """Hypervolume of a front with every member re-scored alike: PSNR_Y at the top rung,
    latency predicted by one table (``latency``; searches may have run under other builds)."""
    from nas.pareto import hypervolume_2d
    from space.spec import ArchSpec

    pts = []
    for m in members:
        spec = ArchSpec.from_dict(m["spec"])
        pts.append((scores[spec.id], float(latency.predict(spec))))
    return hypervolume_2d(pts, ref)


def latency_table():
    from evaluators.latency import LatencyTable

    cfg = yaml.safe_load((REPO / "configs/search/quickstart.yaml").read_text())
    return LatencyTable(input_size=tuple(cfg["latency"]["input_size"]), threads=cfg["latency"]["threads"])


def reference_point(args) -> Tuple[float, float]:
    from space.space import SearchSpace

    space = SearchSpace.from_yaml(str(REPO / "configs/space/quickstart.yaml"))
    lat = latency_table()
    rng = random.Random(0)
    worst = max(float(lat.predict(space.random(rng))) for _ in range(500))
    bic = top_evaluator(args).bicubic_psnr(space.scale)["psnr_y"]
    return (float(bic) - 2.0, 1.1 * worst), float(bic)


# ------------------------------------------------------------------------------ seed noise

def seed_spread(args, work: Path) -> List[Dict[str, Any]]:
    """PSNR_Y of ``--spread-specs`` presets at every rung for seeds 0, 1, 2 (cached)."""
    from evaluators.proxy import ProxyEvaluator
    from space import presets

    path = work / "spread.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    cfg = yaml.safe_load((REPO / "configs/search/quickstart.yaml").read_text())["evaluator"]
    names = [n for n in presets.names() if n not in ("fp",)][: args.spread_specs]
    for name in names:
        for seed in (0, 1, 2):
            key = f"{name}:{seed}"
            if key in data:
                continue
            ev = ProxyEvaluator(batch=cfg["batch"], patch=cfg["patch"], lr=float(cfg["lr"]), threads=1, seed=seed,
                                data_root=args.data_root, rungs=args.rungs, eta=args.eta)
            spec = presets.get(name, scale=2, channels=16, blocks=2)
            d = work / "spread" / f"{name}-s{seed}"
            data[key] = [float(ev.evaluate(spec, run_dir=str(d), rung=r)["psnr_y"]) for r in range(len(args.rungs))]
            path.write_text(json.dumps(data, indent=1))
            print(f"  spread {key}: {data[key]}", flush=True)
    return [{"name": n, "by_seed": [data[f"{n}:{s}"] for s in (0, 1, 2)]} for n in names]


# ------------------------------------------------------------------------------ report

def mean_std(v: Sequence[float]) -> Tuple[float, float]:
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s


def plot(curves: Dict[str, List[Tuple[float, float, float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for method, pts in curves.items():
        xs = [p[0] for p in pts]
        ax.errorbar(xs, [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3, label=method)
    ax.set_xlabel("search CPU time [s]")
    ax.set_ylabel("hypervolume (fronts re-evaluated at the top rung)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--budget-cpu-s", type=float, default=180.0)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--rungs", default="100,300,900")
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--spread-specs", type=int, default=4)
    p.add_argument("--work-dir", default=str(REPO / "runs" / "search_efficiency"))
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--reeval-job", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.reeval_job:
        return reeval_job(args.reeval_job)
    if not args.data_root or not os.path.isdir(args.data_root):
        print(f"--data-root: folder {args.data_root!r} not found (the shared datasets: T91, BSD200, Set5)",
              file=sys.stderr)
        return 2
    args.rungs = [int(v) for v in args.rungs.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        print(f"--methods: unknown {bad}; allowed: {list(METHODS)}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    print("latency table and reference point ...", flush=True)
    ref, bicubic = reference_point(args)
    jobs = [(m, s) for s in seeds for m in methods]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        traces = list(pool.map(lambda ms: run_search(ms[0], ms[1], args, work), jobs))
    from nas import pareto

    snaps = {}
    specs: Dict[str, Dict[str, Any]] = {}
    from space.spec import ArchSpec

    for tr in traces:
        recs_at = snapshot_records(tr["run_dir"], tr["trace"], args.budget_cpu_s)
        fronts = {f: pareto.front(recs, "latency_ms") for f, recs in recs_at.items()}
        snaps[(tr["method"], tr["seed"])] = (fronts, recs_at)
        for members in fronts.values():
            for m in members:
                specs[ArchSpec.from_dict(m["spec"]).id] = m["spec"]
    scores = reevaluate(specs, args, work)
    lat = latency_table()
    spread = seed_spread(args, work) if args.spread_specs else []

    rows, curves = [], {}
    hv = {}
    for m in methods:
        curves[m] = []
        for f in FRACTIONS:
            vals = [hv_of(snaps[(m, s)][0][f], scores, ref, lat) for s in seeds]
            hv[(m, f)] = vals
            mu, sd = mean_std(vals)
            curves[m].append((f * args.budget_cpu_s, mu, sd))
        n_trials = [len(snaps[(m, s)][1][1.0]) for s in seeds]
        rows.append((m, n_trials))
    fig = REPO / "benchmarks" / "figures" / "search_efficiency.png"
    title = f"quickstart space, Set5, {cpu_model()}, {args.budget_cpu_s:.0f} CPU-s per search"
    plot(curves, fig, title)

    lines = ["## Search efficiency: hypervolume per CPU second (quickstart space, shared datasets)", "",
             f"Command: `python -m benchmarks.search_efficiency --data-root DATA --budget-cpu-s "
             f"{args.budget_cpu_s:.0f} --seeds {args.seeds} --methods {','.join(methods)} --rungs "
             f"{','.join(map(str, args.rungs))} --eta {args.eta} --jobs {args.jobs}` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {(time.time() - t_start) / 60:.0f} min). "
             f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; {args.jobs} searches at once, each one process "
             "with one torch thread (other jobs shared the machine: the budget is the search process's own CPU time).",
             "",
             f"Each search: `configs/search/quickstart.yaml` with the data root (T91 + BSD200, Set5), presets first, "
             f"stopped after {args.budget_cpu_s:.0f} s of CPU. Single fidelity: {yaml.safe_load((REPO / 'configs/search/quickstart.yaml').read_text())['evaluator']['steps']} "
             f"steps (cosine); `mf`: TPE with rungs {args.rungs}, eta {args.eta} (wsd). Every snapshot front is "
             f"re-evaluated at {args.rungs[-1]} steps (wsd); hypervolume against (PSNR_Y, latency_ms) = "
             f"({ref[0]:.2f} dB = Set5 bicubic {bicubic:.2f} - 2, {ref[1]:.4f} ms = 1.1 x the largest predicted "
             "latency of 500 random specs; every member's latency re-predicted by this run's table). Cells: mean +- std over the search seeds.", "",
             "| method | trials at the end (per seed) | " + " | ".join(f"HV at {int(f * 100)} % ({f * args.budget_cpu_s:.0f} s)" for f in FRACTIONS) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in FRACTIONS) + " |"]
    for m, n_trials in rows:
        cells = [f"{mean_std(hv[(m, f)])[0]:.4f} +- {mean_std(hv[(m, f)])[1]:.4f}" for f in FRACTIONS]
        lines.append(f"| {m} | {', '.join(map(str, n_trials))} | " + " | ".join(cells) + " |")
    lines += ["", f"![hypervolume vs CPU time](benchmarks/figures/search_efficiency.png)", ""]
    if "mf" in methods and any(m != "mf" for m in methods):
        single = [m for m in methods if m != "mf"]
        best = max(single, key=lambda m: mean_std(hv[(m, 1.0)])[0])
        mf_end, best_end = mean_std(hv[("mf", 1.0)])[0], mean_std(hv[(best, 1.0)])[0]
        lines.append(f"- At the full budget: mf {mf_end:.4f} vs the best single-fidelity method ({best}) "
                     f"{best_end:.4f}: {'reached' if mf_end >= best_end else 'NOT reached'} (target: at least equal).")
        if "tpe" in methods:
            tpe_end = mean_std(hv[("tpe", 1.0)])[0]
            hit = next((f for f in FRACTIONS if mean_std(hv[("mf", f)])[0] >= tpe_end), None)
            lines.append(f"- TPE's final hypervolume {tpe_end:.4f}: mf reaches it at "
                         + (f"{int(hit * 100)} % of the budget" if hit is not None else "no snapshot")
                         + f" (target: at most 50 %): {'reached' if hit is not None and hit <= 0.5 else 'NOT reached'}.")
    if spread:
        lines += ["", f"Seed noise of the proxy per rung (16 ch x 2 blocks presets, seeds 0/1/2, rungs {args.rungs}, "
                  "wsd, Set5 PSNR_Y):", "",
                  "| preset | " + " | ".join(f"rung {k} ({s} steps): mean +- std" for k, s in enumerate(args.rungs)) + " |",
                  "| --- | " + " | ".join("---:" for _ in args.rungs) + " |"]
        stds = [[] for _ in args.rungs]
        for item in spread:
            cells = []
            for k in range(len(args.rungs)):
                mu, sd = mean_std([s[k] for s in item["by_seed"]])
                stds[k].append(sd)
                cells.append(f"{mu:.2f} +- {sd:.2f}")
            lines.append(f"| {item['name']} | " + " | ".join(cells) + " |")
        lines.append("| median std | " + " | ".join(f"{sorted(s)[len(s) // 2]:.2f}" for s in stds) + " |")
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(Path(args.out), SECTION, body)
        print(f"wrote section {SECTION!r} of {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
