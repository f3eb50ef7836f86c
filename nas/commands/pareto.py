"""``bsrnas pareto RUN``: print the Pareto front of a run folder, rewrite its files, pick a spec.

    bsrnas pareto runs/NAME [--pick best-psnr|knee|TRIAL]

Writes ``pareto.json``, ``pareto.csv``, ``pareto.png`` (and refreshes the TensorBoard view);
the table's header line gives the bicubic PSNR_Y of the validation items the proxy scores
(``nas.outputs``: stored in the study, computed from ``config.yaml`` for an older run).
A front member whose checkpoint cannot be read (corrupt, not a bsrnas checkpoint, or refused)
gets no SR sample: everything else is still printed and written, one warning line per such
file follows, and the command exits with status 2.
``--pick`` writes the chosen spec to ``RUN/picked.json`` (the ArchSpec JSON). The knee is the
front member closest to the utopia point after normalising both objectives to [0, 1]
(``nas.pareto.knee``).
"""
from __future__ import annotations

import json
import os

HELP = "show the Pareto front of a search run, write pareto.json/.csv/.png, pick a spec"


def add_arguments(p) -> None:
    p.add_argument("run_dir", metavar="RUN", help="run folder of a search (runs/NAME)")
    p.add_argument("--pick", metavar="WHICH", default=None,
                   help="best-psnr, knee or a trial number: write RUN/picked.json")
    p.add_argument("--no-samples", action="store_true", help="skip the SR sample images in TensorBoard")


def load_run(run_dir: str):
    """(RunFolder, resolved config, study) of a finished or running search."""
    from nas.runfolder import RunFolder
    from space.files import read_yaml

    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"RUN: folder {run_dir!r} not found")
    run = RunFolder(run_dir)
    study = run.load_study()
    cfg = {}
    if os.path.isfile(run.config_path):
        cfg = read_yaml(run.config_path, "config.yaml of the run folder") or {}
    return run, cfg, study


def picked_spec(run_dir: str, how: str):
    """(record, spec JSON text) of the pick ``how`` in a run folder; used by retrain --from."""
    from nas import pareto
    from nas.runfolder import records

    run, cfg, study = load_run(run_dir)
    cost_key = (cfg.get("objectives") or {}).get("cost", "latency_ms")
    recs = records(study, run)
    members = pareto.front(recs, cost_key)
    chosen = pareto.pick(members, recs, how, cost_key)
    if not chosen.get("feasible", True):
        raise ValueError(f"--pick: trial {chosen['trial']} is over budget (never trained)")
    return chosen, json.dumps(chosen["spec"], indent=2, sort_keys=True)


def run(args) -> int:
    import sys

    from nas import outputs, pareto

    run, cfg, study = load_run(args.run_dir)
    cost_key = (cfg.get("objectives") or {}).get("cost", "latency_ms")
    root = (cfg.get("data") or {}).get("root")

    def warn(msg: str) -> None:
        print(f"bsrnas pareto: {msg}", file=sys.stderr)

    # the table and pareto.json/.csv/.png first: nothing later (TensorBoard, samples) can cost them
    recs, members, ref = outputs.write_files(run, cost_key, study, title=cfg.get("name"),
                                             bicubic=lambda r: outputs.bicubic_for_config(cfg, r), log=warn)
    print(pareto.format_table(members, reference=ref))
    skipped = []
    outputs.refresh_board(run, cost_key, study, recs, members, samples=not args.no_samples,
                          title=cfg.get("name"), data_root=root, reference=ref, skipped=skipped)
    print(f"files: {run.file('pareto.json')}, pareto.csv, pareto.png")
    from nas.search import front_dirs

    others = [d for d in front_dirs(run.path) if os.path.abspath(d) != run.path]
    if others:
        print("separate fronts (other proxy settings, started with --new-front) in this folder: "
              + ", ".join(others) + "; run bsrnas pareto on one of them to see its front")
    if args.pick is not None:
        chosen, text = picked_spec(args.run_dir, args.pick)
        path = run.file("picked.json")
        with open(path, "w") as fh:
            fh.write(text + "\n")
        print(f"picked trial {chosen['trial']} ({args.pick}): psnr_y {chosen['psnr_y']:.3f}, "
              f"{cost_key} {chosen[cost_key]}; spec written to {path}")
        print(f"next: bsrnas retrain --spec {path}")
    if skipped:
        sys.stdout.flush()
        for path, reason in skipped:
            warn("warning: " + outputs.skipped_line(run, path, reason))
        raise ValueError(
            f"{len(skipped)} checkpoint file(s) in {run.path} could not be read as bsrnas checkpoints "
            "(listed above): the table and every file were written, their SR samples skipped; "
            "remove or replace those files")
    return 0
