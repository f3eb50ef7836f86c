"""``bsrnas search``: run a search experiment described by one YAML file.

    bsrnas search --config configs/search/quickstart.yaml [--trials N] [--engine optuna|ray]
                  [--ray-address HOST:PORT|auto] [--run-dir DIR] [--resume] [--data-root DIR]

Command-line options override the config (``engine.trials``, ``engine.kind``, ``ray.address``,
``run_dir``, ``data.root``). At the end it prints the Pareto table, where the files are, and the
TensorBoard command. Several workers on one study: run the same command with ``--resume`` in
other shells (or machines sharing the run folder) while the first one runs.
"""
from __future__ import annotations

import os

HELP = "search binary SR architectures (Optuna or Ray Tune) under a latency/size budget"


def add_arguments(p) -> None:
    p.add_argument("--config", metavar="FILE", required=True, help="search config YAML (configs/search/*.yaml)")
    p.add_argument("--trials", type=int, metavar="N", default=None,
                   help="COMPLETE trials to reach in total (presets and over-budget ones count)")
    p.add_argument("--engine", choices=("optuna", "ray"), default=None, help="override engine.kind")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="Ray cluster address (HOST:PORT or auto); implies --engine ray")
    p.add_argument("--run-dir", metavar="DIR", default=None, help="run folder (default runs/<name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the search in --run-dir (or join it as another worker); refused "
                        "when the proxy settings (evaluator, data, latency) differ from the run's")
    p.add_argument("--new-front", action="store_true",
                   help="with changed proxy settings: start a separate front in RUN/front-K instead "
                        "of mixing scores of different proxies (the old trials are kept)")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="folder with the standard data sets (default: embedded images)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def overrides_from(args) -> dict:
    out = {}
    if args.trials is not None:
        if args.trials < 1:
            raise ValueError(f"--trials: invalid value {args.trials}; allowed: an integer >= 1")
        out["engine.trials"] = args.trials
    if args.engine is not None:
        out["engine.kind"] = args.engine
    if args.ray_address is not None:
        out["ray.address"] = args.ray_address
        if args.engine is None:
            out["engine.kind"] = "ray"
    if args.run_dir is not None:
        out["run_dir"] = args.run_dir
    if args.data_root is not None:
        if not os.path.isdir(args.data_root):
            raise FileNotFoundError(f"--data-root: folder {args.data_root!r} not found")
        out["data.root"] = args.data_root
    return out


def run(args) -> int:
    from nas import config, pareto, search

    cfg = config.load(args.config, overrides_from(args))
    s, members = search.run(cfg, resume=args.resume, new_front=args.new_front,
                            progress=not args.no_progress)
    print(f"Pareto front of {s.run.path} ({s.n_complete()} trials, objectives psnr_y / {s.cost_key}):")
    print(pareto.format_table(members, reference=s.study.user_attrs.get("bicubic_psnr_y")))
    print(f"files: {s.run.file('pareto.json')}, pareto.csv, pareto.png; trials in {s.run.file('trials')}")
    run_dir = os.path.relpath(s.run.path) if not os.path.isabs(cfg["run_dir"]) else s.run.path
    print(f"next: tensorboard --logdir {run_dir}")
    print(f"      bsrnas pareto {run_dir} --pick knee && bsrnas retrain --from {run_dir} --pick knee")
    return 0
