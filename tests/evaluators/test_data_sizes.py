"""Images too small for the scale: ``SRImageSet`` names the file, its size and the smallest
allowed size; ``evaluate`` names the image; the smallest allowed size scores."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evaluators.data import SRImageSet
from evaluators.evaluate import bicubic_sr_fn, evaluate


def smallest_scorable(scale: int) -> int:
    """Found by trying every size: cut to a multiple of ``scale``, less ``scale`` pixels on each
    side, SSIM's 11x11 window must fit."""
    n = 1
    while (n - n % scale) - 2 * scale < 11:
        n += 1
    return n


def _set(root, name, sizes):
    folder = root / name / "HR"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(sizes):
        paths.append(folder / f"im{i}.png")
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)).save(paths[-1])
    return paths


@pytest.mark.parametrize("scale, want", [(2, 16), (3, 18), (4, 20)])
def test_min_hr_size(scale, want):
    from evaluators.data import min_hr_size

    assert min_hr_size(scale) == want == smallest_scorable(scale)


@pytest.mark.parametrize("h, w, scale", [(3, 3, 4), (5, 5, 4), (19, 30, 4), (30, 17, 3),
                                         (15, 40, 2)])
def test_srimageset_too_small_names_file_size_and_allowed(tmp_path, h, w, scale):
    good, bad = _set(tmp_path, "S", [(32, 32), (h, w)])
    items = SRImageSet(tmp_path, "S", scale)
    assert items[0][1].shape[:2] == (32 - 32 % scale, 32 - 32 % scale)  # the fine one still loads
    with pytest.raises(ValueError) as info:
        items[1]
    msg = str(info.value)
    assert str(bad) in msg and f"size {h}x{w}" in msg and f"scale {scale}" in msg
    assert f"height and width >= {smallest_scorable(scale)}" in msg
    with pytest.raises(ValueError, match=str(bad.name)):
        evaluate(bicubic_sr_fn(scale), SRImageSet(tmp_path, "S", scale), scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_smallest_allowed_size_scores(tmp_path, scale):
    n = smallest_scorable(scale)
    _set(tmp_path, "S", [(n, n + 3)])
    result = evaluate(bicubic_sr_fn(scale), SRImageSet(tmp_path, "S", scale), scale)
    assert np.isfinite(result["psnr_y"]) and 0 < result["ssim_y"] <= 1


def test_evaluate_names_an_item_too_small_for_the_scale():
    hr = np.zeros((8, 8, 3), np.uint8)
    called = []

    def sr_fn(lr):
        called.append(lr.shape)
        return hr

    with pytest.raises(ValueError) as info:
        evaluate(sr_fn, [("tiny_pic", hr, hr[::4, ::4])], 4)
    msg = str(info.value)
    assert "image tiny_pic" in msg and "8x8" in msg and "scale 4" in msg
    assert ">= 19" in msg  # 4 border pixels on each side + SSIM's 11
    assert called == []  # refused before the SR function runs
