"""``bsrnas eval``: PSNR_Y / SSIM_Y of a model on standard test sets, as the papers' tables.

    bsrnas eval --model bicubic --data-root DIR --sets Set5,Set14,B100 --scales 2,3,4 --json out.json
    bsrnas eval --model runs/x/checkpoint.pt --data-root DIR          # at the checkpoint's scale
    bsrnas eval --model bicubic                                       # embedded default images

``--model`` is ``bicubic`` (MATLAB bicubic upscaling, the tables' baseline), an ArchSpec JSON file
(``*.json``: the network is built with fresh, untrained weights, so the figures only show that the
spec builds and runs: a smoke test) or a checkpoint written by training (``evaluators.checkpoint``).
A spec or checkpoint has a fixed scale; asking for another scale is an error naming both.
Without ``--data-root`` the embedded default validation images (scikit-image photos, 128x128 HR
crops) are used as the single set ``default``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HELP = ("PSNR_Y/SSIM_Y of bicubic, an ArchSpec JSON (untrained: a smoke test only) or a "
        "checkpoint on test sets, one row per set and scale")

DEFAULT_SETS = ("Set5", "Set14", "B100")


def add_arguments(p) -> None:
    p.add_argument("--model", default="bicubic",
                   help="'bicubic', an ArchSpec JSON file (built untrained: meaningful only as a "
                        "smoke test) or a training checkpoint (default: bicubic)")
    p.add_argument("--data-root", default=None,
                   help="folder holding <Set>/HR/*.png (e.g. ../shared/datasets); without it the "
                        "embedded default validation images are used")
    p.add_argument("--sets", default=None,
                   help=f"comma-separated set names under --data-root, each evaluated once "
                        f"(default: {','.join(DEFAULT_SETS)} where present)")
    p.add_argument("--scales", default=None,
                   help="comma-separated scales among 2,3,4, each evaluated once (default: 2,3,4 "
                        "for bicubic, the model's own scale for a spec or checkpoint)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results to this JSON file")
    p.add_argument("--device", default="cpu", help="torch device for a model (default: cpu)")
    p.add_argument("--cache-dir", default=None,
                   help="folder for cached LR images (.npy), reused by later runs")


def parse_scales(text: Optional[str], fixed: Optional[int], model: str) -> List[int]:
    from evaluators.data import SCALES

    allowed = ", ".join(map(str, SCALES))
    if text is None:
        return [fixed] if fixed is not None else list(SCALES)
    scales = []
    for tok in (t.strip() for t in text.split(",")):
        try:
            value = int(tok)
        except ValueError:
            raise ValueError(f"--scales: {tok!r} is not an integer; allowed: {allowed}") from None
        if value not in SCALES:
            raise ValueError(f"--scales: scale {value} is not supported; allowed: {allowed}")
        if fixed is not None and value != fixed:
            raise ValueError(f"--scales: model {model} has fixed scale {fixed}; cannot evaluate "
                             f"it at scale {value}")
        if value not in scales:
            scales.append(value)
    return scales


def parse_sets(text: Optional[str], data_root: Optional[str]) -> List[str]:
    """The set names to evaluate, in the order given; a name given twice is kept once, at its
    first place (as ``parse_scales`` does for scales)."""
    from evaluators.data import list_sets

    names = (None if text is None
             else list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip())))
    if data_root is None:
        if names not in (None, ["default"]):
            raise ValueError(f"--sets: without --data-root only the embedded set 'default' is "
                             f"available, got {text!r}")
        return ["default"]
    if not Path(data_root).is_dir():
        raise FileNotFoundError(f"--data-root: folder {data_root} not found")
    found = list_sets(data_root)
    if not found:
        raise ValueError(f"--data-root: no sets (<name>/HR folders) under {data_root}")
    if names is None:
        names = [s for s in DEFAULT_SETS if s in found] or found
    elif not names:
        raise ValueError(f"--sets: empty list; allowed: {', '.join(found)}")
    for name in names:
        if name not in found:
            raise ValueError(f"--sets: unknown set {name!r}; allowed (found under {data_root}): "
                             f"{', '.join(found)}")
    return names


def load_sr(model: str, device: str) -> Tuple[Optional[object], Optional[int]]:
    """(nn.Module or None for bicubic, fixed scale or None)."""
    if model == "bicubic":
        return None, None
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"--model: {model!r} is neither 'bicubic' nor an existing file "
                                f"(ArchSpec JSON or checkpoint)")
    if path.suffix.lower() == ".json":
        from space.builder import build
        from space.spec import ArchSpec

        spec = ArchSpec.from_json(path.read_text())
        net = build(spec)
    else:  # a checkpoint: read with torch.load(weights_only=True), no code from the file runs
        from evaluators.checkpoint import load_model

        try:
            spec, net = load_model(str(path))
        except ValueError as exc:
            raise ValueError(f"--model: {exc}") from None
    return net, int(spec.scale)


def run(args) -> int:
    from evaluators.data import SRImageSet, validation_set
    from evaluators.evaluate import bicubic_sr_fn, evaluate, model_sr_fn

    net, fixed = load_sr(args.model, args.device)
    scales = parse_scales(args.scales, fixed, args.model)
    sets = parse_sets(args.sets, args.data_root)
    sr_model = model_sr_fn(net, args.device) if net is not None else None

    rows: List[Dict] = []
    print(f"model: {args.model}" + ("  (untrained spec: smoke test only)"
                                    if args.model.lower().endswith(".json") else ""))
    header = f"{'set':<10} {'scale':>5} {'images':>6} {'PSNR_Y (dB)':>12} {'SSIM_Y':>8}"
    print(header)
    print("-" * len(header))
    for name in sets:
        for scale in scales:
            if args.data_root is None:
                items = validation_set(None, scale=scale)
            else:
                items = SRImageSet(args.data_root, name, scale, cache_dir=args.cache_dir)
            sr_fn = sr_model if sr_model is not None else bicubic_sr_fn(scale)
            result = evaluate(sr_fn, items, scale)
            rows.append({"set": name, "scale": scale, "images": len(result["per_image"]),
                         **result})
            print(f"{name:<10} {'x' + str(scale):>5} {len(result['per_image']):>6} "
                  f"{result['psnr_y']:>12.2f} {result['ssim_y']:>8.4f}", flush=True)
            if args.json:  # after every row, so an interruption keeps what is done
                write_json(args.json, {"model": args.model, "data_root": args.data_root,
                                       "results": rows})
    if args.json:
        print(f"results written to {args.json}")
    return 0


def write_json(path: str, payload: Dict) -> None:
    """Write ``payload`` atomically (temporary file, then rename)."""
    from space.files import atomic_write

    atomic_write(path, json.dumps(payload, indent=2) + "\n")
