"""Images for super-resolution: MATLAB bicubic resize, image sets, default data, patch sampling.

MATLAB-compatible bicubic ``imresize`` (what the SR literature uses to make LR inputs).
Along one axis of length ``n_in`` resized by ``scale`` (``n_out = ceil(scale * n_in)``), output
sample ``x = 1..n_out`` (1-based, as MATLAB) sits at input coordinate

    u(x) = x / scale + 0.5 * (1 - 1 / scale)

and is ``sum_j w_j(x) * in[j]`` over the taps ``j = floor(u - K/2) + 0 .. ceil(K) + 1``, with the
Keys cubic kernel (a = -0.5)

    k(t) = 1.5|t|^3 - 2.5|t|^2 + 1            for |t| <= 1
    k(t) = -0.5|t|^3 + 2.5|t|^2 - 4|t| + 2    for 1 < |t| <= 2,   0 otherwise,

``K = 4``. When downscaling (scale < 1) the kernel is stretched for antialiasing:
``w = scale * k(scale * (u - j))`` and ``K = 4 / scale``. Weights of each output sample are
normalised to sum to 1, and taps outside ``1..n_in`` are mirrored symmetrically
(``0 -> 1, -1 -> 2, n+1 -> n``), as MATLAB's ``contributions``. The two axes are resized one after
the other, the axis with the smaller scale first (rows first on a tie); for uint8 input MATLAB keeps
the uint8 type between the two passes, so each pass rounds (half away from zero) and clips to
[0, 255], which we reproduce.
"""
from __future__ import annotations

import functools
import math
import numbers
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from evaluators.metrics import SSIM_WINDOW
from space.files import atomic_write

#: SR scales the project evaluates and trains.
SCALES = (2, 3, 4)


def _cubic(t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    a2, a3 = a * a, a * a * a
    inner = (1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1)
    outer = (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * ((a > 1) & (a <= 2))
    return inner + outer


def resize_matrix(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """Dense (n_out, n_in) matrix M of MATLAB's bicubic weights: ``out = M @ in`` along one axis."""
    width = 4.0
    antialias = scale < 1
    if antialias:
        width = width / scale
    x = np.arange(1, n_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based input positions
    dist = u[:, None] - idx
    w = scale * _cubic(scale * dist) if antialias else _cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])  # symmetric padding
    cols = mirror[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    m = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(m, (np.repeat(np.arange(n_out), taps), cols.ravel()), w.ravel())
    return m


@functools.lru_cache(maxsize=64)
def _cached_matrix(n_in: int, n_out: int, scale: float) -> np.ndarray:
    m = resize_matrix(n_in, n_out, scale)
    m.setflags(write=False)
    return m


def _round_uint8(a: np.ndarray) -> np.ndarray:
    """MATLAB's cast to uint8: clip to [0, 255] then round half away from zero."""
    return np.floor(np.clip(a, 0.0, 255.0) + 0.5)


def imresize(img: np.ndarray, scale: Optional[float] = None,
             output_shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """MATLAB ``imresize(img, scale)`` / ``imresize(img, [h w])``, bicubic with antialiasing.

    ``img`` is HxW or HxWxC; computed in float64. uint8 input gives uint8 output (rounded and
    clipped after each axis pass, as MATLAB); any other dtype gives float64 output, unclipped.
    With ``scale`` the output is ``ceil(scale * size)``; with ``output_shape`` the per-axis scale is
    ``out / in``.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize: img must be HxW or HxWxC, got shape {img.shape}")
    in_hw = img.shape[:2]
    if (scale is None) == (output_shape is None):
        raise ValueError("imresize: give exactly one of scale and output_shape "
                         f"(scale={scale!r}, output_shape={output_shape!r})")
    if scale is not None:
        if not (isinstance(scale, numbers.Real) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"imresize: scale must be a positive number, got {scale!r}")
        scales = (float(scale), float(scale))
        out_hw = tuple(int(math.ceil(scale * n)) for n in in_hw)
    else:
        if (len(output_shape) != 2 or any(int(n) != n or n < 1 for n in output_shape)):
            raise ValueError("imresize: output_shape must be two positive integers (h, w), "
                             f"got {output_shape!r}")
        out_hw = (int(output_shape[0]), int(output_shape[1]))
        scales = (out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])
    is_uint8 = img.dtype == np.uint8
    out = img.astype(np.float64)
    order = sorted((0, 1), key=lambda ax: scales[ax])  # stable: rows first on a tie
    for axis in order:
        m = _cached_matrix(in_hw[axis], out_hw[axis], scales[axis])
        moved = np.moveaxis(out, axis, 0)
        flat = m @ moved.reshape(moved.shape[0], -1)  # one BLAS matmul per pass
        out = np.moveaxis(flat.reshape((m.shape[0],) + moved.shape[1:]), 0, axis)
        if is_uint8:
            out = _round_uint8(out)
    return out.astype(np.uint8) if is_uint8 else out


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so height and width are multiples of ``scale``."""
    if int(scale) != scale or scale < 1:
        raise ValueError(f"modcrop: scale must be a positive integer, got {scale!r}")
    h, w = img.shape[:2]
    return img[: h - h % int(scale), : w - w % int(scale)]


def min_hr_size(scale: int) -> int:
    """Smallest height and width (pixels) of an HR image that can be scored at ``scale``.

    Scoring (``evaluators.evaluate``) crops the image to a multiple of ``scale`` (``modcrop``),
    then removes ``scale`` pixels from every side and slides SSIM's ``SSIM_WINDOW`` x
    ``SSIM_WINDOW`` window (11) over what is left: the smallest multiple of ``scale`` that is
    ``>= SSIM_WINDOW + 2 * scale`` (16 at x2, 18 at x3, 20 at x4).
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"min_hr_size: scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    return scale * -(-(SSIM_WINDOW + 2 * scale) // scale)


def load_image(path) -> np.ndarray:
    """Read an image file as uint8: HxWx3 RGB, or HxW for a grayscale image.

    Grayscale files (PIL modes L, LA, 1) stay single-channel: the classic SR protocol
    scores a grayscale image (Set14's ``bridge``) on its own values as the Y channel, and
    converting it to RGB then BT.601 Y would compress its range by 219/255.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            gray = im.mode in ("1", "L", "LA")
            arr = np.asarray(im.convert("L") if gray else im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"image file {path} is corrupt or not an image: {exc}") from None
    return np.ascontiguousarray(arr, dtype=np.uint8)


def to_rgb(img: np.ndarray) -> np.ndarray:
    """HxW grayscale -> HxWx3 by replication; HxWx3 unchanged."""
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def list_sets(root) -> List[str]:
    """Names of the folders ``<root>/<name>`` that hold an ``HR`` sub-folder."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "HR").is_dir())


class SRImageSet:
    """Test set ``<root>/<name>/HR/*.png`` (sorted by file name) at one scale.

    Item ``i`` is ``(image_name, hr, lr)``: ``hr`` the modcropped HR uint8 image and
    ``lr = imresize(hr, 1/scale)`` (uint8), made on first use and kept in memory. An image
    smaller than ``min_hr_size(scale)`` on a side raises ``ValueError`` naming its file. With
    ``cache_dir`` the LR images are also stored as ``.npy`` there, keyed by set, scale and a
    digest of the HR pixels, so a second process reads them instead of resizing again.
    """

    def __init__(self, root, name: str, scale: int, cache_dir=None):
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        self.root, self.name, self.scale = Path(root), str(name), int(scale)
        folder = self.root / self.name / "HR"
        if not folder.is_dir():
            found = list_sets(self.root)
            raise FileNotFoundError(
                f"set {name!r}: folder {folder} not found; sets found under {self.root}: "
                f"{', '.join(found) if found else 'none'}")
        self.paths = sorted(folder.glob("*.png"))
        if not self.paths:
            raise FileNotFoundError(f"set {name!r}: no .png images in {folder}")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._items: Dict[int, Tuple[str, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tuple[str, np.ndarray, np.ndarray]:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"{self.name}: index {i} out of range 0..{len(self) - 1}")
        if i not in self._items:
            path = self.paths[i]
            img = load_image(path)
            least = min_hr_size(self.scale)
            if min(img.shape[:2]) < least:
                s, win = self.scale, SSIM_WINDOW
                raise ValueError(
                    f"image file {path}: size {img.shape[0]}x{img.shape[1]} (height x width) is "
                    f"too small for scale {s}; allowed: height and width >= {least} at x{s} "
                    f"(cut to a multiple of {s}, less {s} border pixels on each side, it must "
                    f"still fit SSIM's {win}x{win} window)")
            hr = modcrop(img, self.scale)
            self._items[i] = (path.stem, hr, self._lr(path.stem, hr))
        return self._items[i]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def _lr(self, stem: str, hr: np.ndarray) -> np.ndarray:
        if self.cache_dir is None:
            return imresize(hr, 1.0 / self.scale)
        import hashlib

        digest = hashlib.sha1(hr.tobytes() + str(hr.shape).encode()).hexdigest()[:12]
        file = self.cache_dir / f"{self.name}_x{self.scale}_{stem}_{digest}.npy"
        if file.is_file():
            return np.load(file)
        lr = imresize(hr, 1.0 / self.scale)
        atomic_write(file, lambda fh: np.save(fh, lr))
        return lr


#: The embedded default data: natural colour photographs bundled inside scikit-image's wheel
#: (read from the package folder, never fetched). Train: astronaut (512x512), rocket (427x640),
#: motorcycle_left and motorcycle_right (500x741, a stereo pair, kept together so the two views
#: never straddle the split). Validation: chelsea (300x451) and coffee (400x600), each
#: center-cropped to 128x128 HR so that proxy validation is fast.
DEFAULT_TRAIN = ("astronaut.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png")
DEFAULT_VAL = ("chelsea.png", "coffee.png")
DEFAULT_VAL_SIZE = 128


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h < size or w < size:
        raise ValueError(f"center_crop: size {size} larger than image {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return img[top: top + size, left: left + size]


def default_images() -> Dict[str, List[Tuple[str, np.ndarray]]]:
    """``dict(train=[(name, hr)...], val=[(name, hr)...])`` from scikit-image's bundled photos.

    See ``DEFAULT_TRAIN`` / ``DEFAULT_VAL``: train images full size, validation images
    center-cropped to ``DEFAULT_VAL_SIZE`` (128) pixels square. All uint8 RGB.
    """
    import skimage.data

    folder = Path(skimage.data.__file__).parent

    def read(name):
        return name.rsplit(".", 1)[0], load_image(folder / name)

    return {
        "train": [read(n) for n in DEFAULT_TRAIN],
        "val": [(stem, center_crop(img, DEFAULT_VAL_SIZE)) for stem, img in map(read, DEFAULT_VAL)],
    }


def _check_scale(scale) -> int:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(map(str, SCALES))}, got {scale!r}")
    return int(scale)


def training_images(data_root=None) -> List[np.ndarray]:
    """HR uint8 RGB training images: the default train split, or ``<data_root>/train/T91`` and
    ``<data_root>/train/BSD200`` (the classic 291 images) when ``data_root`` is given."""
    if data_root is None:
        return [img for _, img in default_images()["train"]]
    folders = [Path(data_root) / "train" / "T91", Path(data_root) / "train" / "BSD200"]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise FileNotFoundError(f"data_root {data_root}: training folder(s) not found: "
                                f"{', '.join(missing)} (expected train/T91 and train/BSD200)")
    paths = [p for f in folders for p in sorted(f.glob("*.png"))]
    return [to_rgb(load_image(p)) for p in paths]


def validation_set(data_root=None, scale: int = 2, name: Optional[str] = None):
    """Validation items ``(name, hr_uint8, lr_uint8)`` at ``scale``.

    Without ``data_root``: the default validation split (128x128 crops, see ``default_images``),
    HR modcropped and LR = imresize(HR, 1/scale). With ``data_root``: the images of the set
    ``name`` (default ``Set5``, see ``SRImageSet``). Returns a list.
    """
    scale = _check_scale(scale)
    if data_root is not None:
        return list(SRImageSet(data_root, name or "Set5", scale))
    if name not in (None, "default"):
        raise ValueError(f"name: without data_root only the default validation set exists, "
                         f"got {name!r}")
    items = []
    for stem, img in default_images()["val"]:
        hr = modcrop(img, scale)
        items.append((stem, hr, imresize(hr, 1.0 / scale)))
    return items


class PatchSampler:
    """Random aligned (LR, HR) patches; the batch of ``step`` is a pure function of (seed, step).

    LR images are made once per image (``imresize(modcrop(hr, scale), 1/scale)``). For each of
    the ``batch`` samples a generator seeded by ``(seed, step)`` draws an image (uniformly), an LR
    crop corner ``(y, x)`` (HR corner ``(scale*y, scale*x)``), and one of the 8 dihedral
    transforms (horizontal flip, vertical flip, transpose = 90 degree rotations with flips).
    ``sample(step)`` returns ``(lr, hr)`` float32 tensors NCHW in [0, 1] of spatial size
    ``patch // scale`` and ``patch``.
    """

    def __init__(self, images: Sequence[np.ndarray], scale: int, patch: int, batch: int,
                 seed: int = 0):
        scale = int(scale)
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        if int(patch) != patch or patch < scale or patch % scale:
            raise ValueError(f"patch must be a positive multiple of scale {scale}, got {patch!r}")
        if int(batch) != batch or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not len(images):
            raise ValueError("images: need at least one training image, got none")
        self.scale, self.patch, self.batch, self.seed = scale, int(patch), int(batch), int(seed)
        self.lr_patch = self.patch // scale
        self.hr: List[np.ndarray] = []
        self.lr: List[np.ndarray] = []
        for i, img in enumerate(images):
            img = np.asarray(img)
            if img.dtype != np.uint8 or img.ndim not in (2, 3):
                raise ValueError(f"images[{i}]: must be a uint8 HxW or HxWx3 array, got dtype "
                                 f"{img.dtype} shape {img.shape}")
            hr = to_rgb(modcrop(img, scale))
            if min(hr.shape[:2]) < self.patch:
                raise ValueError(f"images[{i}]: size {hr.shape[0]}x{hr.shape[1]} is smaller "
                                 f"than patch {self.patch}")
            self.hr.append(hr)
            self.lr.append(imresize(hr, 1.0 / scale))

    def sample(self, step: int):
        import torch

        if int(step) != step or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        rng = np.random.default_rng([self.seed, int(step)])
        p, s = self.lr_patch, self.scale
        lr_batch = np.empty((self.batch, p, p, 3), dtype=np.uint8)
        hr_batch = np.empty((self.batch, p * s, p * s, 3), dtype=np.uint8)
        for b in range(self.batch):
            k = int(rng.integers(len(self.hr)))
            lr_img, hr_img = self.lr[k], self.hr[k]
            y = int(rng.integers(lr_img.shape[0] - p + 1))
            x = int(rng.integers(lr_img.shape[1] - p + 1))
            lr_crop = lr_img[y: y + p, x: x + p]
            hr_crop = hr_img[y * s: (y + p) * s, x * s: (x + p) * s]
            hflip, vflip, transpose = (bool(v) for v in rng.integers(2, size=3))
            for arr, out in ((lr_crop, lr_batch), (hr_crop, hr_batch)):
                if hflip:
                    arr = arr[:, ::-1]
                if vflip:
                    arr = arr[::-1]
                if transpose:
                    arr = arr.transpose(1, 0, 2)
                out[b] = arr

        def to_tensor(a):
            return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).float() / 255.0

        return to_tensor(lr_batch), to_tensor(hr_batch)
