"""``bsrnas upscale``: super-resolve images with a trained network on the packed runtime.

    bsrnas upscale --model runs/retrain-<id>/checkpoint.pt photo.jpg scan.png --out sr/
    bsrnas upscale --model CKPT big.png --out sr/ --tile 256 --threads 2
    bsrnas upscale --model CKPT img.png --out sr/ --torch        # the PyTorch model instead

The checkpoint (``bsrnas-checkpoint-2``, read with ``torch.load(weights_only=True)``: no code
from the file runs) is rebuilt as in ``bsrnas eval --model`` and compiled with
``ops.native.compile(exact=True)`` (binary convs on the xnor-popcount kernel, the rest in
PyTorch on the layouts the model uses: the output equals the PyTorch model's bit for bit;
``--fast``: ``exact=False``), or run as the PyTorch model with ``--torch``. Each image goes through in tiles of ``--tile`` LR pixels
(default: the largest tile whose biggest activation stays within 64 MiB) run with an overlap of
the network's receptive field on every side, so the result equals running the whole image;
a network with image-wide statistics (BAM, SCALES channel rescale) runs each image whole
instead (``nas.upscale`` explains both). The output is ``DIR/<stem>_x<scale>.png``, written
strip by strip as the tiles finish (atomically: a failed image leaves no partial file).
Progress (tiles done, per image) goes to stderr; one line per image with its time to stdout.

Errors (missing or bad checkpoint, unreadable image or unsupported mode, existing output
without ``--overwrite``, an output folder that cannot be written) are one line and exit status
2; images written before a later one fails are kept.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

HELP = ("upscale images with a trained checkpoint on the packed native runtime (tiled, exact), "
        "writing <stem>_x<scale>.png")


def add_arguments(p) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="images to upscale (any format "
                   "Pillow reads, 8 bits per sample)")
    p.add_argument("--model", required=True, metavar="CHECKPOINT",
                   help="a training checkpoint (runs/retrain-<id>/checkpoint.pt, a search "
                        "trial's checkpoint.pt)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the PNGs (created if missing)")
    p.add_argument("--tile", default=None, metavar="N",
                   help="LR tile size in pixels; each tile runs with the receptive field as "
                        "overlap (default: the largest tile whose biggest activation fits in "
                        "64 MiB; at least the receptive field's width)")
    p.add_argument("--threads", default=None, metavar="N",
                   help="threads for the kernel and PyTorch (default: torch's default)")
    p.add_argument("--torch", action="store_true",
                   help="run the PyTorch model instead of the packed runtime (for comparison)")
    p.add_argument("--fast", action="store_true",
                   help="packed runtime with the FP convs on channels-last data "
                        "(ops.native.compile(exact=False)): a few percent faster, but the output "
                        "is the PyTorch model's only to float32 rounding, and a rounding that "
                        "lands on a binarization threshold flips a sign: some uint8 values "
                        "differ (default: exact, equal to the PyTorch model's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _positive(name: str, text) -> Optional[int]:
    if text is None:
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not an integer; allowed: an integer >= 1") from None
    if value < 1:
        raise ValueError(f"{name}: {value}; allowed: an integer >= 1")
    return value


def _out_dir(text: str) -> Path:
    """The output folder, created; ``ValueError`` when it cannot be created or written."""
    out = Path(text)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"--out: {text!r} exists and is not a folder") from None
    except OSError as exc:
        raise ValueError(f"--out: cannot create folder {text!r}: {exc.strerror or exc}") from None
    if not out.is_dir():
        raise ValueError(f"--out: {text!r} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".bsrnas-upscale-", dir=str(out))
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"--out: folder {text!r} is not writable: {exc.strerror or exc}") from None
    return out


class Progress:
    """Tiles done per image on stderr: rewritten in place on a terminal, else a line at the
    first and last tile and at most one a second between them."""

    def __init__(self, label: str, stream=None):
        self.label, self.stream = label, stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.tty:
            end = "\n" if done == total else ""
            print(f"\r{self.label}: tile {done}/{total}", end=end, file=self.stream, flush=True)
        elif done in (1, total) or now - self.last >= 1.0:
            print(f"{self.label}: tile {done}/{total}", file=self.stream, flush=True)
        self.last = now


def run(args) -> int:
    import torch

    from evaluators.checkpoint import load_model
    from nas import upscale as U

    tile_arg = _positive("--tile", args.tile)
    threads = _positive("--threads", args.threads)
    images: List[str] = list(args.images)
    for path in images:  # header and mode of every image first: a bad one stops before any work
        U.read_image(path, decode=False)

    try:
        spec, model = load_model(args.model)
    except ValueError as exc:
        raise ValueError(f"--model: {exc}") from None
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"--model: {exc}") from None
    except OSError as exc:  # unreadable file, a folder ...
        raise ValueError(f"--model: cannot read {args.model!r}: {exc.strerror or exc}") from None
    scale = int(spec.scale)

    out_dir = _out_dir(args.out)
    targets = [U.output_path(out_dir, p, scale) for p in images]
    seen = {}
    for src, dst in zip(images, targets):
        if dst in seen:
            raise ValueError(f"images {seen[dst]!r} and {src!r} would both be written to "
                             f"{str(dst)!r}; upscale them into different --out folders")
        seen[dst] = src
        if dst.exists() and not args.overwrite:
            raise ValueError(f"output {str(dst)!r} exists; use --overwrite to replace it")

    wide = U.image_wide_statistics(spec)
    try:
        radius = U.receptive_radius(spec)
    except ValueError as exc:
        wide, radius = wide + [str(exc)], 0
    if wide:
        if tile_arg is not None:
            raise ValueError(f"--tile {tile_arg}: this network uses image-wide statistics "
                             f"({'; '.join(wide)}), so tiles would change its output; run "
                             f"without --tile to upscale each image whole")
        tile, margin = None, 0
        print(f"bsrnas upscale: note: the network uses image-wide statistics "
              f"({'; '.join(wide)}): each image runs whole (not tiled), so memory grows with "
              f"the image size", file=sys.stderr)
    else:
        tile = U.check_tile(tile_arg, radius) if tile_arg is not None else U.default_tile(spec)
        margin = max(radius, U.ALPHA_RADIUS)

    if threads is not None:
        torch.set_num_threads(threads)
    if args.torch:
        net = model.eval()

        def sr(x):
            with torch.no_grad():
                return net(x)
        runtime = "pytorch"
    else:
        import ops.native

        sr = ops.native.compile(model, threads=threads, exact=not args.fast)
        runtime = f"packed ({ops.native.info()['isa']}{', fast' if args.fast else ', exact'})"
    tiles_text = (f"tile {tile} + overlap {margin} (receptive field radius {radius})"
                  if tile is not None else "whole image")
    print(f"model: {args.model}  x{scale}  runtime: {runtime}  threads: "
          f"{threads or torch.get_num_threads()}  {tiles_text}")

    total_start = time.perf_counter()
    for n, (src, dst) in enumerate(zip(images, targets), 1):
        start = time.perf_counter()
        pic = U.read_image(src)
        h, w = pic.rgb.shape[:2]
        label = f"[{n}/{len(images)}] {src}"
        if pic.note:
            print(f"bsrnas upscale: {src}: {pic.note}", file=sys.stderr)
        net_time = [0.0]

        def timed(x):
            t0 = time.perf_counter()
            y = sr(x)
            net_time[0] += time.perf_counter() - t0
            return y

        count = len(U.plan_tiles(h, w, tile, margin))

        def write(fh):
            png = U.PngWriter(fh, scale * w, scale * h, pic.png_mode)
            for strip in U.upscale_strips(timed, pic, scale, tile, margin, Progress(label)):
                png.write(strip)
            png.close()

        try:
            U.write_atomic(dst, write)
        except (MemoryError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and "alloc" not in str(exc).lower():
                raise
            hint = "try a smaller --tile" if tile is not None else "this network runs whole images"
            raise ValueError(f"image {src!r} ({w}x{h}): out of memory ({hint})") from None
        except OSError as exc:
            raise ValueError(f"cannot write {str(dst)!r}: {exc.strerror or exc}") from None
        took = time.perf_counter() - start
        print(f"{src}  {w}x{h} -> {dst}  {scale * w}x{scale * h}  {count} tile"
              f"{'s' * (count != 1)}  {took:.3f} s (network {net_time[0]:.3f} s)", flush=True)
    if len(images) > 1:
        took = time.perf_counter() - total_start
        print(f"{len(images)} images in {took:.3f} s ({took / len(images):.3f} s per image)")
    return 0
