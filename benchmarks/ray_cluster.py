"""Multi-node acceptance run of the Ray Tune engine: a real two-node Ray cluster on this machine.

    python -m benchmarks.ray_cluster [--trials 4] [--steps 10] [--port 6391] [--no-write]
                                     [--rungs 10,40 --eta 2]

What it does:

0. ``RAY_AUTH_MODE=token`` (unless set): Ray 2.60 starts clusters with token authentication,
   and a node joining without token mode is refused.
1. ``ray start --head --node-ip-address 127.0.0.1 --port PORT --num-cpus 1`` (node A), then
   ``ray start --address 127.0.0.1:PORT --num-cpus 1`` (node B, a second raylet on the same
   machine, sharing the head's session folder). Each node offers one CPU and every trial asks
   for one, so two concurrent trials must land on different nodes.
2. ``bsrnas search --config configs/search/quickstart.yaml --ray-address 127.0.0.1:PORT`` with a
   small proxy budget (``--steps`` Adam steps, 1 validation crop) and ``--trials`` trials
   (the fitting presets first), into a fresh run folder.
3. Reads ``trials/*/metrics.json`` (each trained trial records the Ray ``node_id`` it ran on)
   and checks: the run folder holds every trial, ``pareto.json`` exists, and the trained trials
   ran on both nodes.
4. ``ray stop`` (always, also after an error), then prints the result and writes it to the
   ``ray_cluster`` section of BENCHMARKS.md (between ``<!-- BEGIN ray_cluster -->`` and
   ``<!-- END ray_cluster -->``; other sections are kept).

With ``--rungs`` (a multi-fidelity search, ``nas.rungs``) the driver also schedules
promotions; the checks then include that promotions ran (``trials/*/rung-K/result.json``)
and on which nodes, and the section is ``ray_cluster_rungs``.

Exit status 0 when every check passes, 1 otherwise.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.report import write_section

REPO = Path(__file__).resolve().parent.parent
SECTION = "ray_cluster"


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


def ray_bin() -> str:
    cand = Path(sys.executable).with_name("ray")
    return str(cand) if cand.exists() else "ray"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--steps", type=int, default=10, help="proxy training steps per trial")
    p.add_argument("--port", type=int, default=6391)
    p.add_argument("--run-dir", default=None, help="default: a fresh temporary folder")
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--rungs", default=None, help="e.g. 10,40: multi-fidelity search with these rungs")
    p.add_argument("--eta", type=int, default=2)
    args = p.parse_args(argv)
    rungs = [int(v) for v in args.rungs.split(",")] if args.rungs else None
    section = SECTION + ("_rungs" if rungs else "")

    work = Path(tempfile.mkdtemp(prefix="bsrnas-ray-cluster-"))
    run_dir = Path(args.run_dir) if args.run_dir else work / "run"
    cfg = yaml.safe_load((REPO / "configs/search/quickstart.yaml").read_text())
    cfg["space"] = str(REPO / "configs/space/quickstart.yaml")
    cfg["evaluator"].update(steps=args.steps, rungs=None, max_val_images=1, threads=1)
    if rungs:
        cfg["evaluator"].update(rungs=rungs, eta=args.eta)
    cfg["ray"].update(cpus_per_trial=1, max_concurrent=2)
    cfg["tensorboard"]["sample_images"] = False
    cfg_path = work / "cluster.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    # Ray 2.60 enables token authentication for clusters it starts: the head, the joining node
    # and the driver must all run in token mode (they share ~/.ray/auth_token on one machine).
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    address = f"127.0.0.1:{args.port}"
    ray = ray_bin()
    command = (f"bsrnas search --config {cfg_path.name} --ray-address {address} "
               f"--trials {args.trials} --run-dir RUN --no-progress")
    checks = {}
    nodes_seen = {}
    promos = {}
    t_search = float("nan")
    try:
        r = sh([ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(args.port),
                "--num-cpus", "1", "--include-dashboard", "false", "--disable-usage-stats"])
        checks["head node started"] = r.returncode == 0
        if r.returncode:
            print(r.stdout, r.stderr)
        r = sh([ray, "start", "--address", address, "--node-ip-address", "127.0.0.1",
                "--num-cpus", "1", "--disable-usage-stats"])
        checks["second node joined"] = r.returncode == 0
        if r.returncode:
            print(r.stdout, r.stderr)
        time.sleep(2.0)
        t0 = time.perf_counter()
        r = sh([sys.executable, "-m", "nas.cli", "search", "--config", str(cfg_path),
                "--ray-address", address, "--trials", str(args.trials), "--run-dir", str(run_dir),
                "--no-progress"], cwd=str(REPO))
        t_search = time.perf_counter() - t0
        print(r.stdout[-4000:])
        if r.returncode:
            print(r.stderr[-4000:])
        checks["search exit status 0"] = r.returncode == 0
        metrics = [json.loads(Path(f).read_text()) for f in sorted(glob.glob(str(run_dir / "trials/*/metrics.json")))]
        complete = [m for m in metrics if m.get("state") == "COMPLETE"]
        trained = [m for m in complete if m.get("trained")]
        for m in trained:
            nodes_seen.setdefault(m.get("node_id"), []).append(m["trial"])
        checks[f"{args.trials} COMPLETE trials in the run folder"] = len(complete) == args.trials
        checks["pareto.json written"] = (run_dir / "pareto.json").is_file()
        checks["every trained trial has a node_id"] = all(m.get("node_id") for m in trained)
        checks["trained trials ran on 2 nodes"] = len([k for k in nodes_seen if k]) == 2
        if rungs:
            for f in sorted(glob.glob(str(run_dir / "trials/*/rung-*/result.json"))):
                res = json.loads(Path(f).read_text())
                promos.setdefault(res.get("node_id"), []).append(f"{Path(f).parent.parent.name}/{Path(f).parent.name}")
            checks["promotions ran (rung >= 1 results)"] = bool(promos)
            checks["every promotion has a node_id"] = all(promos) and None not in promos
    finally:
        r = sh([ray, "stop"])
        checks["ray stop"] = r.returncode == 0

    ok = all(checks.values())
    lines = [
        "## Ray Tune engine on a two-node Ray cluster (one machine)" + (", multi-fidelity" if rungs else ""),
        "",
        f"Command: `python -m benchmarks.ray_cluster --trials {args.trials} --steps {args.steps} "
        f"--port {args.port}" + (f" --rungs {args.rungs} --eta {args.eta}" if rungs else "") + "` (starts `ray start --head --node-ip-address 127.0.0.1 --port "
        f"{args.port} --num-cpus 1` and `ray start --address {address} --num-cpus 1`, runs "
        f"`{command}` on the quickstart space with {args.steps} proxy steps per trial, then "
        "`ray stop`), with `RAY_AUTH_MODE=token` for all three processes.",
        "",
        f"Search wall time: {t_search:.1f} s for {args.trials} trials (2 nodes x 1 CPU, 1 CPU per trial).",
        "",
        "| node id (first 12) | trials trained there |",
        "| --- | --- |",
    ]
    for node, trials in sorted(nodes_seen.items(), key=lambda kv: str(kv[0])):
        lines.append(f"| {str(node)[:12]} | {', '.join(str(t) for t in sorted(trials))} |")
    if rungs:
        lines += ["", f"Promotions (rungs {rungs}, eta {args.eta}, scheduled by the driver):", "",
                  "| node id (first 12) | promoted trainings there |", "| --- | --- |"]
        for node, items in sorted(promos.items(), key=lambda kv: str(kv[0])):
            lines.append(f"| {str(node)[:12]} | {', '.join(items)} |")
    lines += ["", "| check | result |", "| --- | --- |"]
    lines += [f"| {k} | {'pass' if v else 'FAIL'} |" for k, v in checks.items()]
    lines += ["", f"Overall: {'PASS' if ok else 'FAIL'}."]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(Path(args.out), section, body)
        print(f"wrote section {section!r} of {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
