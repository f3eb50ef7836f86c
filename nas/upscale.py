"""Upscale whole images with a trained network, in tiles whose result equals the whole image's.

``bsrnas upscale`` (``nas/commands/upscale.py``) is the command; this module is the part that
can be tested without it: the receptive field of a spec, the tile plan, running the tiles and
stitching them, image reading and a streaming PNG writer.

**Receptive field.** Every unit of ``space.layout.layout(spec)`` is local except where noted
below, so an SR output pixel depends only on the LR pixels within ``R`` of its own LR pixel
(``receptive_radius``). ``R`` is the sum, along the network's chain, of each unit's radius in
its own pixel grid divided by that grid's upscaling so far (a 3x3 conv at 2x the LR size adds
1/2 LR pixel), rounded up:

    head              kernel // 2            (3x3: 1, 5x5: 2)
    binary conv       kernel // 2 + box      (box = threshold_kernel // 2 for a local_mean
                                              threshold: the k x k mean of its input; the
                                              spatial rescale S(X), a 3x3 conv, has radius 1)
    FP block          2                      (two 3x3 convs)
    FP stage / ESPCN  1, then x r            (conv at the current size, then PixelShuffle)
    FP conv           kernel // 2            (conv_hr and the last conv, at the HR size)
    image skip        nearest 0, bilinear 1, bicubic 2 LR pixels (a branch from the input,
                      so it counts as max(R_chain, R_skip), not on top of the chain)
    adds, PixelShuffle, LeakyReLU, BN (eval: running statistics), output: 0

Each tile is run on a window of its core plus ``R`` LR pixels on every side (clipped at the
image border, where the window's border *is* the image's border). The convs' zero padding and
the local mean's replicate padding at a window edge change only outputs within ``R`` of that
edge, which are cropped away; every kept output pixel sees exactly the inputs it sees in the
whole image, through the same translation-equivariant operations, so the stitched result
equals the whole image's (the tests check it; float differences can only come from a library
computing the same value in another summation order for another input size).

**Operators with image-wide statistics** cannot be tiled that way: BAM (``bam_depth > 0``,
``ops.bam``: ``beta_i = s_i * mean_hw |A_i|`` per channel over the whole image) and the
SCALES channel / layer rescale (``rescale = channel | both``, ``ops.rescale``: ``G(X)`` and
``L(X)`` from ``mean_hw |X|``) pool over the whole input, so a tile would see its own mean, not
the image's, and the result would change. ``image_wide_statistics(spec)`` names them; such a
network is run on each image whole (``tile = None``: memory then grows with the image; the
command says so), and asking for tiles is refused. BN in eval mode uses its running statistics
(a per-channel affine map: local), and the local-mean threshold and the spatial rescale are
local (their radius is in ``R``), so they tile exactly.

**Memory.** Tiles run one at a time in row-major order; a finished row of tiles becomes a strip
of output rows that goes to the PNG writer at once. Beside the network's own activations for one
window (bounded by the tile size: ``default_tile`` keeps the largest activation of a window
within ``DEFAULT_BUDGET`` bytes) only the uint8 LR image and one strip of uint8 output rows are
held, never the whole SR image.
"""
from __future__ import annotations

import contextlib
import math
import os
import secrets
import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, List, Optional, Tuple

import numpy as np
import torch

from space import layout as L
from space.spec import ArchSpec

#: bytes the largest activation of one tile window may take with the default tile size
DEFAULT_BUDGET = 64 * 2 ** 20
#: the default tile is a multiple of this and at most ``MAX_DEFAULT_TILE`` LR pixels
TILE_STEP = 8
MAX_DEFAULT_TILE = 1024
#: radius of the image-level skip's interpolation, in LR pixels (align_corners=False: a
#: bilinear tap is at most 1 LR pixel away from the output pixel's own, a bicubic one 2)
SKIP_RADIUS = {"nearest": 0, "bilinear": 1, "bicubic": 2}
#: margin kept for the alpha plane, upscaled bicubic (radius 2) beside the network
ALPHA_RADIUS = 2

Run = Callable[[torch.Tensor], torch.Tensor]


# -- receptive field, image-wide statistics, tile size ------------------------------------
def _bconv_radius(u: L.BinaryConvUnit) -> int:
    box = u.layer.threshold_kernel // 2 if u.layer.threshold == "local_mean" else 0
    spatial = 1 if u.layer.rescale in ("spatial", "both") else 0
    return max(u.kernel // 2 + box, spatial)


def receptive_field(spec: ArchSpec) -> Fraction:
    """The exact receptive-field radius of ``spec`` in LR pixels (a fraction: convs at the
    HR size count 1 / scale each); see the module docstring. ``ValueError`` for a unit kind
    this module does not know (its reach would be a guess)."""
    chain, skip, f = Fraction(0), Fraction(0), 1
    for u in L.layout(spec):
        kind = u.kind
        if kind == "head":
            chain += u.kernel // 2
        elif kind == "bconv":
            chain += Fraction(_bconv_radius(u), f)
        elif kind == "fp_block":
            chain += Fraction(2, f)
        elif kind == "fp_stage":
            chain += Fraction(1, f)
            f *= u.r
        elif kind == "shuffle":
            f *= u.r
        elif kind == "fp_conv":
            chain += Fraction(u.kernel // 2, f)
        elif kind == "espcn":
            chain += Fraction(L.KERNEL // 2, f)
            f *= u.s
        elif kind == "image_skip":
            skip = Fraction(SKIP_RADIUS[u.mode])
        elif kind in ("add", "leaky_relu", "output"):
            pass
        else:
            raise ValueError(f"layout unit kind {kind!r} has no known receptive field; "
                             f"cannot tile this network")
    return max(chain, skip)


def receptive_radius(spec: ArchSpec) -> int:
    """``R``: every output pixel depends only on the LR pixels within ``R`` of its own."""
    return math.ceil(receptive_field(spec))


def image_wide_statistics(spec: ArchSpec) -> List[str]:
    """What in ``spec`` pools over the whole image (module docstring), one text per kind with
    the number of binary convs; empty when the network can be tiled exactly."""
    convs = [u for u in L.layout(spec) if u.kind == "bconv"]
    bam = sum(u.layer.bam_depth > 0 for u in convs)
    rescale = sum(u.layer.rescale in ("channel", "both") for u in convs)
    out = []
    if bam:
        out.append(f"BAM (mean_hw |A| per channel) in {bam} binary conv{'s' * (bam > 1)}")
    if rescale:
        out.append(f"SCALES channel/layer rescale (mean_hw |X| per channel) in {rescale} "
                   f"binary conv{'s' * (rescale > 1)}")
    return out


def _values_per_lr_pixel(spec: ArchSpec) -> int:
    """Float values per LR pixel of the largest activation in the network."""
    most, f = 3, 1
    for u in L.layout(spec):
        kind = u.kind
        if kind in ("head", "fp_block", "add", "leaky_relu"):
            c = getattr(u, "out_ch", None) or u.channels
            most = max(most, c * f * f)
        elif kind == "bconv":
            most = max(most, u.out_ch * f * f)
        elif kind == "fp_stage":
            most = max(most, u.r * u.r * u.channels * f * f)
            f *= u.r
        elif kind == "shuffle":
            f *= u.r
        elif kind == "fp_conv":
            most = max(most, max(u.in_ch, u.out_ch) * f * f)
        elif kind == "espcn":
            most = max(most, max(u.channels, 3 * u.s * u.s) * f * f)
            f *= u.s
    return most


def min_tile(radius: int) -> int:
    """The smallest tile accepted: the receptive field's width ``2 R + 1``."""
    return 2 * radius + 1


def default_tile(spec: ArchSpec, budget: int = DEFAULT_BUDGET) -> int:
    """LR tile size whose window (tile + 2 R) keeps the largest float32 activation of the
    network within ``budget`` bytes: a multiple of ``TILE_STEP``, at most
    ``MAX_DEFAULT_TILE``, at least ``min_tile(R)``."""
    r = receptive_radius(spec)
    side = math.isqrt(max(1, budget // (4 * _values_per_lr_pixel(spec))))
    tile = min(MAX_DEFAULT_TILE, (side - 2 * r) // TILE_STEP * TILE_STEP)
    return max(tile, min_tile(r))


def check_tile(tile: int, radius: int) -> int:
    """``tile`` if it is an integer of at least ``min_tile(radius)``, else ``ValueError``."""
    least = min_tile(radius)
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < least:
        raise ValueError(f"--tile {tile!r} is smaller than the receptive field of this network "
                         f"({least} LR pixels: every output pixel depends on the LR pixels "
                         f"within {radius} of it, and each tile is run with that overlap on "
                         f"every side); allowed: --tile >= {least}")
    return tile


# -- tile plan ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Tile:
    """One tile: ``core`` (y0, y1, x0, x1) is the LR region whose SR output it provides,
    ``window`` the LR region it runs on (core + margin, clipped to the image)."""

    index: int
    row: int
    col: int
    core: Tuple[int, int, int, int]
    window: Tuple[int, int, int, int]


def _cuts(n: int, tile: Optional[int]) -> List[int]:
    parts = 1 if tile is None else max(1, -(-n // tile))
    return [round(i * n / parts) for i in range(parts + 1)]  # near-equal cores, each <= tile


def plan_tiles(height: int, width: int, tile: Optional[int], margin: int) -> List[Tile]:
    """Row-major tiles covering ``height x width``; ``tile = None``: one tile, the image."""
    ys, xs = _cuts(height, tile), _cuts(width, tile)
    tiles = []
    for i, (y0, y1) in enumerate(zip(ys, ys[1:])):
        for j, (x0, x1) in enumerate(zip(xs, xs[1:])):
            window = (max(0, y0 - margin), min(height, y1 + margin),
                      max(0, x0 - margin), min(width, x1 + margin))
            tiles.append(Tile(len(tiles), i, j, (y0, y1, x0, x1), window))
    return tiles


# -- running tiles -----------------------------------------------------------------------
def _window_tensor(plane: np.ndarray, w: Tuple[int, int, int, int]) -> torch.Tensor:
    """(1, C, h, w) float32 in [0, 1] of ``plane[y0:y1, x0:x1]`` (H x W x C uint8)."""
    crop = np.ascontiguousarray(plane[w[0]:w[1], w[2]:w[3]].transpose(2, 0, 1))
    return torch.from_numpy(crop).to(torch.float32).div_(255.0).unsqueeze(0)


def run_tile(run: Run, rgb: np.ndarray, t: Tile, scale: int) -> torch.Tensor:
    """The SR output (3, s h, s w), float, of tile ``t``'s core: ``run`` on its window of
    ``rgb`` (H x W x 3 uint8), margins cropped."""
    wy0, wy1, wx0, wx1 = t.window
    y0, y1, x0, x1 = t.core
    out = run(_window_tensor(rgb, t.window))
    want = (1, 3, scale * (wy1 - wy0), scale * (wx1 - wx0))
    if tuple(out.shape) != want:
        raise ValueError(f"the network returned shape {tuple(out.shape)} for a "
                         f"{wy1 - wy0}x{wx1 - wx0} window; expected {want} (scale {scale})")
    s = scale
    return out[0, :, s * (y0 - wy0):s * (y1 - wy0), s * (x0 - wx0):s * (x1 - wx0)]


def _alpha_tile(alpha: np.ndarray, t: Tile, scale: int) -> torch.Tensor:
    wy0, _, wx0, _ = t.window
    y0, y1, x0, x1 = t.core
    a = torch.nn.functional.interpolate(_window_tensor(alpha[..., None], t.window),
                                        scale_factor=scale, mode="bicubic", align_corners=False)
    s = scale
    return a[0, 0, s * (y0 - wy0):s * (y1 - wy0), s * (x0 - wx0):s * (x1 - wx0)]


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """round(clip(255 x)) as uint8, in float64: ``evaluators.metrics.to_uint8``'s rule."""
    x = x.to(torch.float64).clamp_(0.0, 1.0)
    return x.mul_(255.0).add_(0.5).floor_().to(torch.uint8).numpy()


@dataclass
class Picture:
    """An image ready to upscale: ``rgb`` (H x W x 3 uint8, a grayscale image replicated),
    ``alpha`` (H x W uint8) or None, ``gray`` (write the channel mean, as ``bsrnas eval``
    scores a grayscale image), ``note`` (what was converted, or '')."""

    rgb: np.ndarray
    alpha: Optional[np.ndarray] = None
    gray: bool = False
    note: str = ""

    @property
    def png_mode(self) -> str:
        return ("L" if self.gray else "RGB") + ("A" if self.alpha is not None else "")


def upscale_strips(run: Run, pic: Picture, scale: int, tile: Optional[int], margin: int,
                   progress: Optional[Callable[[int, int], None]] = None
                   ) -> Iterator[np.ndarray]:
    """The SR image of ``pic`` as strips of uint8 rows (rows, s W, channels of
    ``pic.png_mode``; a channel axis of 1 for L), top to bottom: one strip per row of tiles.
    ``progress(done, total)`` after every tile."""
    h, w = pic.rgb.shape[:2]
    tiles = plan_tiles(h, w, tile, margin)
    channels = len(pic.png_mode)
    strip = None
    for t in tiles:
        y0, y1, x0, x1 = t.core
        if strip is None:
            strip = np.empty((scale * (y1 - y0), scale * w, channels), np.uint8)
        sr = run_tile(run, pic.rgb, t, scale)
        cols = slice(scale * x0, scale * x1)
        if pic.gray:
            strip[:, cols, 0] = to_uint8(sr.mean(0))
        else:
            strip[:, cols, :3] = to_uint8(sr).transpose(1, 2, 0)
        if pic.alpha is not None:
            strip[:, cols, channels - 1] = to_uint8(_alpha_tile(pic.alpha, t, scale))
        if progress is not None:
            progress(t.index + 1, len(tiles))
        if x1 == w:  # the last tile of its row: the strip is complete
            yield strip
            strip = None


def upscale_array(run: Run, pic: Picture, scale: int, tile: Optional[int],
                  margin: int) -> np.ndarray:
    """The whole SR image (s H x s W x channels) at once: for tests and small images."""
    return np.concatenate(list(upscale_strips(run, pic, scale, tile, margin)), axis=0)


def upscale_float(run: Run, rgb: np.ndarray, scale: int, tile: Optional[int],
                  margin: int) -> torch.Tensor:
    """The SR image (3, s H, s W) as the network's floats before rounding, tile by tile (for
    tests comparing tiled and whole runs)."""
    h, w = rgb.shape[:2]
    out = torch.empty(3, scale * h, scale * w)
    for t in plan_tiles(h, w, tile, margin):
        y0, y1, x0, x1 = t.core
        out[:, scale * y0:scale * y1, scale * x0:scale * x1] = run_tile(run, rgb, t, scale)
    return out


# -- images ------------------------------------------------------------------------------
#: modes converted to RGB with PIL's own conversion
_TO_RGB = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")


def read_image(path: os.PathLike, decode: bool = True) -> Picture:
    """Read an 8-bit image as a :class:`Picture`; ``decode=False`` only checks the header and
    the mode (cheap) and returns an empty picture. Orientation from EXIF is applied.
    ``ValueError`` naming the file for anything that is not a readable 8-bit image:

    ``RGB`` as is; ``L`` / ``1`` grayscale (replicated to RGB for the network, written as
    grayscale: the mean of the SR channels); ``LA`` / ``RGBA`` / ``PA`` and palette images with
    transparency: colour through the network, alpha upscaled bicubic beside it (written with
    alpha); ``P`` (no transparency), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: converted to RGB;
    16-bit, 32-bit and float modes (``I;16``, ``I``, ``F``) are refused (convert them to 8-bit
    first: scaling their range down is a choice the user should make)."""
    from PIL import Image, ImageOps

    name = str(path)
    try:
        img = Image.open(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"image {name!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"image {name!r} is a folder, not an image file") from None
    except PermissionError as exc:
        raise ValueError(f"image {name!r} cannot be opened: {exc.strerror or exc}") from None
    except Image.DecompressionBombError as exc:
        raise ValueError(f"image {name!r} is refused by Pillow as a possible decompression "
                         f"bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise ValueError(f"image {name!r} cannot be read: it is not an image file Pillow can "
                         f"decode ({type(exc).__name__}: {_first_line(exc)})") from None
    with img:
        mode = img.mode
        known = ("RGB", "RGBA", "RGBa", "L", "1", "LA", "La", "P", "PA") + _TO_RGB
        if mode not in known:
            raise ValueError(f"image {name!r} has mode {mode} (16-bit, 32-bit or float "
                             f"samples), which is not supported; allowed: 8-bit images (RGB, "
                             f"RGBA, grayscale, palette, CMYK, ...): convert it to 8-bit first")
        if not decode:
            return Picture(np.zeros((0, 0, 3), np.uint8))
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
            has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
                mode == "P" and "transparency" in img.info)
            gray = mode in ("L", "1", "LA", "La")
            note = ""
            alpha = None
            if gray:
                la = img.convert("LA")
                plane = np.asarray(la)
                rgb = np.repeat(plane[..., :1], 3, axis=2)
                alpha = np.ascontiguousarray(plane[..., 1]) if has_alpha else None
                note = "grayscale: run as RGB, written as grayscale (mean of the SR channels)"
            else:
                rgba = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
                rgb = np.ascontiguousarray(rgba[..., :3])
                alpha = np.ascontiguousarray(rgba[..., 3]) if has_alpha else None
                if mode not in ("RGB", "RGBA"):
                    note = f"mode {mode} converted to {'RGBA' if has_alpha else 'RGB'}"
            if alpha is not None:
                note = (note + "; " if note else "") + "alpha upscaled bicubic beside the network"
        except Image.DecompressionBombError as exc:
            raise ValueError(f"image {name!r} is refused by Pillow as a possible decompression "
                             f"bomb: {exc}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ValueError(f"image {name!r} cannot be decoded ({type(exc).__name__}: "
                             f"{_first_line(exc)})") from None
    return Picture(rgb, alpha, gray, note)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


# -- streaming PNG writer ----------------------------------------------------------------
_COLOR_TYPE = {"L": 0, "RGB": 2, "LA": 4, "RGBA": 6}


def _chunk(fh: BinaryIO, kind: bytes, data: bytes) -> None:
    fh.write(struct.pack(">I", len(data)) + kind + data
             + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _filter_rows(rows: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """PNG-filtered rows (n, 1 + row bytes): per row the filter type (None, Sub, Up, Average,
    Paeth) with the smallest sum of |filtered byte| as a signed value (libpng's heuristic)."""
    x = rows.astype(np.int16)
    up = np.concatenate([prev[None].astype(np.int16), x[:-1]], axis=0)
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    upleft = np.zeros_like(x)
    upleft[:, bpp:] = up[:, :-bpp]
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    candidates = np.stack([x, x - left, x - up, x - (left + up) // 2, x - paeth]).astype(np.uint8)
    cost = np.abs(candidates.view(np.int8).astype(np.int32)).sum(axis=2)  # (5, n)
    best = cost.argmin(axis=0)
    out = np.empty((len(rows), rows.shape[1] + 1), np.uint8)
    out[:, 0] = best
    out[:, 1:] = candidates[best, np.arange(len(rows))]
    return out


class PngWriter:
    """Write an 8-bit PNG of ``width x height`` strip by strip (``write(rows)`` with rows of
    shape (n, width, channels)), each row filtered and deflated as it comes, so the
    whole image is never held in memory. ``close()`` checks the row count and ends the file."""

    def __init__(self, fh: BinaryIO, width: int, height: int, mode: str, level: int = 6):
        if mode not in _COLOR_TYPE:
            raise ValueError(f"mode {mode!r}; allowed: {sorted(_COLOR_TYPE)}")
        self.fh, self.width, self.height, self.mode = fh, width, height, mode
        self.channels = len(mode)
        self.rows = 0
        self._prev = np.zeros((width * self.channels,), np.uint8)
        self._z = zlib.compressobj(level)
        self._pending: List[bytes] = []
        self._size = 0
        fh.write(b"\x89PNG\r\n\x1a\n")
        _chunk(fh, b"IHDR", struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPE[mode], 0, 0, 0))

    def write(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, np.uint8).reshape(len(rows), -1)
        if rows.shape[1] != self.width * self.channels:
            raise ValueError(f"rows of {rows.shape[1]} bytes; expected {self.width} x "
                             f"{self.channels}")
        if self.rows + len(rows) > self.height:
            raise ValueError(f"{self.rows + len(rows)} rows written; the image has {self.height}")
        if len(rows):
            self._emit(self._z.compress(_filter_rows(rows, self._prev, self.channels).tobytes()))
            self._prev = rows[-1].copy()
            self.rows += len(rows)

    def _emit(self, data: bytes, flush: bool = False) -> None:
        if data:
            self._pending.append(data)
            self._size += len(data)
        if self._pending and (flush or self._size >= 1 << 20):
            _chunk(self.fh, b"IDAT", b"".join(self._pending))
            self._pending, self._size = [], 0

    def close(self) -> None:
        if self.rows != self.height:
            raise ValueError(f"{self.rows} rows written; the image has {self.height}")
        self._emit(self._z.flush(), flush=True)
        _chunk(self.fh, b"IEND", b"")


def write_atomic(path: os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(fh)`` on a new temporary file beside ``path`` (created with the ordinary
    permissions of a new file, ``0o666`` less the umask), then rename it over ``path``: a
    failure at any moment leaves no partial ``path``. Returns the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def output_path(out_dir: os.PathLike, image: os.PathLike, scale: int) -> Path:
    """``DIR/<stem>_x<scale>.png``."""
    return Path(out_dir) / f"{Path(image).stem}_x{scale}.png"


def sr_size(pic: Picture, scale: int) -> Tuple[int, int]:
    h, w = pic.rgb.shape[:2]
    return scale * h, scale * w


__all__ = ["receptive_field", "receptive_radius", "image_wide_statistics", "default_tile",
           "check_tile", "min_tile", "plan_tiles", "Tile", "run_tile", "upscale_strips",
           "upscale_array", "upscale_float", "read_image", "Picture", "PngWriter",
           "output_path", "write_atomic", "sr_size", "to_uint8", "DEFAULT_BUDGET"]
