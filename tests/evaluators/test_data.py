"""evaluators.data: MATLAB bicubic resize, image loading, sets, default data, PatchSampler."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from evaluators import data
from evaluators.data import (PatchSampler, SRImageSet, default_images, imresize, load_image,
                             modcrop, resize_matrix, training_images, validation_set)

# Keys cubic (a = -0.5) at distances 0.25, 0.75, 1.25, 1.75, computed by hand:
# 1.5t^3 - 2.5t^2 + 1 for t <= 1, -0.5t^3 + 2.5t^2 - 4t + 2 for 1 < t <= 2.
K025, K075, K125, K175 = 0.8671875, 0.2265625, -0.0703125, -0.0234375


def reference_resize_1d(col: np.ndarray, scale: float, n_out: int) -> np.ndarray:
    """Slow per-sample transcription of MATLAB's formulas (1-based indices), for one axis."""
    n_in = len(col)

    def cubic(t):
        t = abs(t)
        if t <= 1:
            return 1.5 * t ** 3 - 2.5 * t ** 2 + 1
        if t <= 2:
            return -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2
        return 0.0

    width = 4.0 / scale if scale < 1 else 4.0
    out = np.zeros(n_out)
    for x in range(1, n_out + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = []
        for j in range(left, left + math.ceil(width) + 2):
            w = scale * cubic(scale * (u - j)) if scale < 1 else cubic(u - j)
            jj = j
            while jj < 1 or jj > n_in:  # symmetric mirror: 0 -> 1, n+1 -> n
                jj = 1 - jj if jj < 1 else 2 * n_in + 1 - jj
            taps.append((w, jj))
        total = sum(w for w, _ in taps)
        out[x - 1] = sum(w * col[jj - 1] for w, jj in taps) / total
    return out


def reference_resize(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape
    oh, ow = math.ceil(scale * h), math.ceil(scale * w)
    rows = np.stack([reference_resize_1d(img[:, c], scale, oh) for c in range(w)], axis=1)
    return np.stack([reference_resize_1d(rows[r], scale, ow) for r in range(oh)], axis=0)


def test_upscale_weights_by_hand():
    m = resize_matrix(8, 16, 2.0)
    # interior output x (1-based) = 6: u = 3.25, taps 2..5 at distances 1.25, 0.25, -0.75, -1.75
    np.testing.assert_allclose(m[5, 1:5], [K125, K025, K075, K175], atol=1e-15)
    assert m[5].sum() == pytest.approx(1.0)
    # first output: u = 0.75 taps 0, -1 mirror onto 1, 2 -> col1 = K075 + K025, col2 = K175 + K125
    np.testing.assert_allclose(m[0, :3], [K075 + K025, K175 + K125, 0.0], atol=1e-15)


def test_downscale_weights_by_hand():
    m = resize_matrix(16, 8, 0.5)
    # x = 4: u = 7.5, kernel stretched by 2: w = 0.5 * k(0.5 d), d = +-0.5, +-1.5, +-2.5, +-3.5
    expected = 0.5 * np.array([K175, K125, K075, K025, K025, K075, K125, K175])
    np.testing.assert_allclose(m[3, 3:11], expected, atol=1e-15)


@pytest.mark.parametrize("scale", [2, 3, 4, 0.5, 1 / 3, 0.25, 1.5, 0.7])
def test_matches_slow_reference(scale):
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, size=(13, 11))
    np.testing.assert_allclose(imresize(img, scale), reference_resize(img, scale), atol=1e-9)


@pytest.mark.parametrize("scale", [2, 3, 4, 0.5, 1 / 3, 0.25])
def test_constant_stays_constant(scale):
    img = np.full((12, 12, 3), 77, dtype=np.uint8)
    out = imresize(img, scale)
    assert out.dtype == np.uint8 and np.all(out == 77)
    np.testing.assert_allclose(imresize(img.astype(np.float64) / 255, scale), 77 / 255, atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4, 0.5, 1 / 3, 0.25])
def test_linear_ramp_away_from_borders(scale):
    # value j at 1-based position j: a cubic kernel symmetric about u reproduces f(u) = u
    n = 48
    ramp = np.tile(np.arange(1, n + 1, dtype=np.float64)[:, None], (1, 4))
    out = imresize(ramp, output_shape=(math.ceil(n * scale), 4))[:, 0]
    x = np.arange(1, len(out) + 1)
    u = x / scale + 0.5 * (1 - 1 / scale)
    margin = 3 + math.ceil(2 / min(scale, 1))
    inner = (u > margin) & (u < n + 1 - margin)
    assert inner.sum() > 5
    np.testing.assert_allclose(out[inner], u[inner], atol=1e-9)


def test_integer_upscale_interpolates_original_samples():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(9, 10, 3)).astype(np.uint8)
    out = imresize(img, 3)
    assert out.shape == (27, 30, 3)
    # u(x) = x/3 + 1/3 is the integer k+1 at x = 3k+2: the cubic weights there are 1, 0, 0
    np.testing.assert_array_equal(out[1::3, 1::3], img)


def test_output_size_and_shape_argument():
    img = np.zeros((7, 10), dtype=np.uint8)
    assert imresize(img, 0.5).shape == (4, 5)  # ceil
    assert imresize(img, output_shape=(14, 5)).shape == (14, 5)
    assert imresize(np.zeros((6, 9, 3)), 1 / 3).shape == (2, 3, 3)


def test_uint8_rounds_between_passes():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(16, 12)).astype(np.uint8)
    rows = np.floor(np.clip(reference_resize_1d_all(img.astype(float), 0.5, axis=0), 0, 255) + .5)
    both = np.floor(np.clip(reference_resize_1d_all(rows, 0.5, axis=1), 0, 255) + 0.5)
    np.testing.assert_array_equal(imresize(img, 0.5), both.astype(np.uint8))


def reference_resize_1d_all(img, scale, axis):
    n_out = math.ceil(img.shape[axis] * scale)
    moved = np.moveaxis(img, axis, 0)
    out = np.stack([reference_resize_1d(moved[:, c], scale, n_out) for c in range(moved.shape[1])],
                   axis=1)
    return np.moveaxis(out, 0, axis)


def test_imresize_bad_input():
    with pytest.raises(ValueError, match="scale"):
        imresize(np.zeros((4, 4)), -2)
    with pytest.raises(ValueError, match="exactly one"):
        imresize(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="shape"):
        imresize(np.zeros(4), 2)


def test_modcrop():
    img = np.arange(7 * 10).reshape(7, 10)
    np.testing.assert_array_equal(modcrop(img, 3), img[:6, :9])
    assert modcrop(np.zeros((8, 8, 3)), 4).shape == (8, 8, 3)
    with pytest.raises(ValueError, match="scale"):
        modcrop(img, 0)


def test_load_image_rgb_gray_missing_corrupt(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, size=(5, 6, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_image(tmp_path / "c.png"), rgb)
    gray = load_image(tmp_path / "g.png")
    assert gray.shape == (5, 6) and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, rgb[..., 0])
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        load_image(tmp_path / "nothere.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ValueError, match="bad.png"):
        load_image(tmp_path / "bad.png")


def make_set(root, name, sizes, seed=0):
    folder = root / name / "HR"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)).save(
            folder / f"im{i}.png")


def test_srimageset_items_and_cache(tmp_path):
    make_set(tmp_path, "Tiny", [(25, 31), (20, 20)])
    s = SRImageSet(tmp_path, "Tiny", 3, cache_dir=tmp_path / "cache")
    assert len(s) == 2
    name, hr, lr = s[0]
    assert name == "im0" and hr.shape == (24, 30, 3) and lr.shape == (8, 10, 3)
    np.testing.assert_array_equal(lr, imresize(hr, 1 / 3))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    again = SRImageSet(tmp_path, "Tiny", 3, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again[0][2], lr)
    assert [n for n, _, _ in s] == ["im0", "im1"]


def test_srimageset_missing_set_lists_found(tmp_path):
    make_set(tmp_path, "Tiny", [(8, 8)])
    with pytest.raises(FileNotFoundError, match=r"Nope.*Tiny"):
        SRImageSet(tmp_path, "Nope", 2)


def test_default_images_split():
    d = default_images()
    train = [n for n, _ in d["train"]]
    val = [n for n, _ in d["val"]]
    assert train == ["astronaut", "rocket", "motorcycle_left", "motorcycle_right"]
    assert val == ["chelsea", "coffee"] and not set(train) & set(val)
    for _, img in d["train"] + d["val"]:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert all(img.shape == (128, 128, 3) for _, img in d["val"])
    # a centre crop: chelsea is 300x451 -> rows 86..213, cols 161..288
    import skimage.data
    np.testing.assert_array_equal(d["val"][0][1], skimage.data.chelsea()[86:214, 161:289])


def test_validation_set_default_and_training_images():
    items = validation_set(scale=3)
    assert [n for n, _, _ in items] == ["chelsea", "coffee"]
    for _, hr, lr in items:
        assert hr.shape == (126, 126, 3) and lr.shape == (42, 42, 3)
    assert len(training_images()) == 4
    with pytest.raises(ValueError, match="scale"):
        validation_set(scale=5)


def test_training_images_from_root(tmp_path):
    for sub, n in (("T91", 2), ("BSD200", 3)):
        folder = tmp_path / "train" / sub
        folder.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((10, 12), i, np.uint8)).save(folder / f"{i}.png")
    imgs = training_images(tmp_path)
    assert len(imgs) == 5 and all(im.shape == (10, 12, 3) for im in imgs)
    with pytest.raises(FileNotFoundError, match="T91"):
        training_images(tmp_path / "elsewhere")


def _find(patch, img, size, stride):
    """All (y, x, transform) where a dihedral transform of img[y:y+size, x:x+size] == patch."""
    hits = set()
    for y in range(img.shape[0] - size + 1):
        for x in range(img.shape[1] - size + 1):
            crop = img[y:y + size, x:x + size]
            for t in range(8):
                c = crop[:, ::-1] if t & 1 else crop
                c = c[::-1] if t & 2 else c
                c = c.transpose(1, 0, 2) if t & 4 else c
                if np.array_equal(c, patch):
                    hits.add((y * stride, x * stride, t))
    return hits


def test_patch_sampler_shapes_determinism_alignment():
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, size=(24, 26, 3)).astype(np.uint8),
              rng.integers(0, 256, size=(30, 20, 3)).astype(np.uint8)]
    a = PatchSampler(images, scale=2, patch=8, batch=6, seed=7)
    b = PatchSampler(images, scale=2, patch=8, batch=6, seed=7)
    lr, hr = a.sample(3)
    assert lr.shape == (6, 3, 4, 4) and hr.shape == (6, 3, 8, 8)
    assert lr.dtype == hr.dtype == __import__("torch").float32
    assert 0.0 <= float(lr.min()) and float(hr.max()) <= 1.0
    b.sample(11)  # order of calls must not matter
    lr2, hr2 = b.sample(3)
    assert lr.equal(lr2) and hr.equal(hr2)
    assert not a.sample(4)[1].equal(hr)
    assert not PatchSampler(images, 2, 8, 6, seed=8).sample(3)[1].equal(hr)
    # each LR patch is the same transform of the same place (HR corner = 2 x LR corner)
    for k in range(6):
        hp = np.round(hr[k].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        lp = np.round(lr[k].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        ok = False
        for src_hr, src_lr in zip(a.hr, a.lr):
            if _find(hp, src_hr, 8, 1) & _find(lp, src_lr, 4, 2):
                ok = True
        assert ok, f"sample {k}: LR and HR patches are not aligned"


def test_patch_sampler_bad_input():
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match=r"images\[0\].*smaller than patch 16"):
        PatchSampler([img], 2, 16, 1, 0)
    with pytest.raises(ValueError, match="patch"):
        PatchSampler([img], 3, 8, 1, 0)
    with pytest.raises(ValueError, match="batch"):
        PatchSampler([img], 2, 4, 0, 0)
    with pytest.raises(ValueError, match="dtype float64"):
        PatchSampler([img.astype(np.float64)], 2, 4, 1, 0)
    with pytest.raises(ValueError, match="seed"):
        PatchSampler([img], 2, 4, 1, -1)
    with pytest.raises(ValueError, match="step"):
        PatchSampler([img], 2, 4, 1, 0).sample(-3)


def test_scales_constant():
    assert data.SCALES == (2, 3, 4)
