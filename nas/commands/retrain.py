"""``bsrnas retrain``: full training of one spec, then PSNR/SSIM on the test sets."""
from __future__ import annotations

from pathlib import Path

HELP = "retrain one spec with a full schedule and benchmark it (PSNR/SSIM table, checkpoints)"


def add_arguments(p) -> None:
    p.add_argument("--spec", metavar="SPEC.json",
                   help="the architecture to train (ArchSpec as .json or .yaml)")
    p.add_argument("--config", metavar="CONFIG.yaml", default="configs/train/cpu.yaml",
                   help="retrain config (train: + eval: sections); a relative path not found "
                        "from the current folder is looked up in the project's configs/ "
                        "(so the default works from any folder); default %(default)s")
    p.add_argument("--steps", metavar="N", default=None,
                   help="train N steps instead of the config's, same schedule shape (step "
                        "milestones, checkpoint_every and log_every scale by N / config steps)")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="folder with train/T91, train/BSD200 and the test sets <Set>/HR; "
                        "without it the embedded default images are used")
    p.add_argument("--run-dir", metavar="DIR", default=None,
                   help="where checkpoints, TensorBoard events and results go "
                        "(default runs/retrain-<spec id>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --run-dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--from", dest="from_run", metavar="RUN", default=None,
                   help="take the spec from a search run folder (with --pick) instead of --spec")
    p.add_argument("--pick", metavar="WHICH", default="knee",
                   help="with --from: best-psnr, knee or a trial number (default %(default)s)")


def parse_steps(text):
    """``--steps`` value -> int >= 1 (None when not given); else ``ValueError``."""
    if text is None:
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"--steps: {text!r} is not an integer; allowed: an integer >= 1") from None
    if value < 1:
        raise ValueError(f"--steps: {value}; allowed: an integer >= 1")
    return value


def run(args) -> int:
    from nas.paths import resolve_config_path
    from nas.retrain import RetrainConfig, load_spec, retrain, scale_steps

    if getattr(args, "from_run", None) and getattr(args, "spec", None):
        raise ValueError(f"--spec {args.spec} and --from {args.from_run} both given; choose one: "
                         f"--spec SPEC.json, or --from RUN [--pick WHICH] to take a search result")
    if not getattr(args, "from_run", None) and not getattr(args, "spec", None):
        raise ValueError("--spec: a spec file is required (e.g. --spec runs/NAME/trials/ID/spec.json)")
    steps = parse_steps(getattr(args, "steps", None))
    config = RetrainConfig.from_yaml(resolve_config_path(args.config))
    overrides = None
    if steps is not None:
        config, overrides = scale_steps(config, steps)
        print("; ".join(overrides["notes"]))
    if getattr(args, "from_run", None):  # a search result (nas.commands.pareto.picked_spec)
        from nas.commands.pareto import picked_spec
        from space.spec import ArchSpec

        chosen, text = picked_spec(args.from_run, args.pick)
        Path(args.from_run, "picked.json").write_text(text + "\n")
        print(f"retraining trial {chosen['trial']} of {args.from_run} ({args.pick})")
        spec = ArchSpec.from_json(text)
    else:
        spec = load_spec(args.spec)
    results = retrain(spec, config, data_root=args.data_root, run_dir=args.run_dir,
                      resume=args.resume, progress=not args.no_progress, overrides=overrides)
    run_dir = Path(results["checkpoint"]).parent
    print((run_dir / "results.md").read_text())
    print(f"results: {run_dir / 'results.md'} and {run_dir / 'results.json'}; "
          f"checkpoint: {results['checkpoint']}")
    print(f"next: tensorboard --logdir {run_dir}")
    return 0
