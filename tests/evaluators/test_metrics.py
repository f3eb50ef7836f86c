"""evaluators.metrics: BT.601 Y, PSNR_Y and SSIM_Y against hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from evaluators.metrics import psnr_y, rgb_to_y, ssim_y, to_uint8

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def test_rgb_to_y_known_colours():
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]],
                   dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_y(img)[0], [16, 235, 16 + 65.481, 16 + 128.553,
                                                  16 + 24.966], atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(img.astype(np.float64) / 255), rgb_to_y(img), atol=1e-12)
    with pytest.raises(ValueError, match="HxWx3"):
        rgb_to_y(np.zeros((4, 4)))


def test_psnr_gray_constant_offset():
    rng = np.random.default_rng(0)
    hr = rng.integers(10, 200, size=(20, 24)).astype(np.uint8)
    sr = hr + np.uint8(3)
    assert psnr_y(sr, hr, crop_border=2) == pytest.approx(10 * math.log10(255 ** 2 / 9), abs=1e-12)


def test_psnr_colour_constant_offset():
    # RGB all + d shifts Y by d * (65.481 + 128.553 + 24.966) / 255 = d * 219 / 255
    rng = np.random.default_rng(1)
    hr = rng.integers(10, 200, size=(16, 16, 3)).astype(np.uint8)
    sr = hr + np.uint8(5)
    mse = (5 * 219 / 255) ** 2
    assert psnr_y(sr, hr, 4) == pytest.approx(10 * math.log10(255 ** 2 / mse), abs=1e-9)


def test_psnr_crop_border_and_rounding():
    hr = np.full((12, 12, 3), 100, np.uint8)
    sr = hr.copy()
    sr[:2] = 0  # differences only inside the 2-pixel border
    assert psnr_y(sr, hr, 2) == math.inf
    assert psnr_y(sr, hr, 1) < 20
    # float SR in [0, 1] is rounded to uint8 first: +0.4/255 rounds away
    assert psnr_y((hr.astype(np.float64) + 0.4) / 255, hr, 0) == math.inf
    np.testing.assert_array_equal(to_uint8(np.array([-0.1, 0.5 / 255, 1.2])), [0, 1, 255])


def test_psnr_bad_input():
    with pytest.raises(ValueError, match="shape"):
        psnr_y(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), 0)
    with pytest.raises(ValueError, match="crop_border"):
        psnr_y(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), 2)
    with pytest.raises(ValueError, match="dtype"):
        psnr_y(np.zeros((4, 4), np.int32), np.zeros((4, 4), np.uint8), 0)


def test_ssim_identical_is_one():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(32, 40, 3)).astype(np.uint8)
    assert ssim_y(img, img, 2) == pytest.approx(1.0, abs=1e-12)


def test_ssim_constant_images_closed_form():
    # no variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1) everywhere
    a, b = 100.0, 130.0
    x, y = np.full((20, 20), 100, np.uint8), np.full((20, 20), 130, np.uint8)
    assert ssim_y(x, y, 0) == pytest.approx((2 * a * b + C1) / (a * a + b * b + C1), rel=1e-10)


def test_ssim_shifted_stripes_closed_form():
    # vertical stripes of period 2 (values m +- v): every 11x11 Gaussian window sees the same
    # mean mu and variance s2 (the Gaussian is symmetric, 11 columns: weights of even and odd
    # columns are fixed). With y = x + d the structure term is 1 and SSIM is the luminance term
    # evaluated at the window mean mu of x and mu + d of y.
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()
    cols = np.where(np.arange(30) % 2 == 0, 120, 80).astype(np.uint8)
    x = np.tile(cols, (25, 1))
    y = x + np.uint8(20)
    w_even = g[0::2].sum()  # weight of the columns with the same parity as the window start
    mus = [(120 * w_even + 80 * (1 - w_even)), (80 * w_even + 120 * (1 - w_even))]
    expect = np.mean([(2 * m * (m + 20) + C1) / (m * m + (m + 20) ** 2 + C1) for m in mus])
    # output columns alternate start parity: 20 valid columns, 10 of each
    assert ssim_y(y, x, 0) == pytest.approx(expect, rel=1e-10)


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    hr = rng.integers(0, 256, size=(40, 36)).astype(np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-30, 31, size=hr.shape), 0, 255).astype(np.uint8)
    ours = ssim_y(sr, hr, 3)
    ref = structural_similarity(sr[3:-3, 3:-3].astype(np.float64), hr[3:-3, 3:-3].astype(np.float64),
                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=255)
    assert ours == pytest.approx(ref, abs=1e-10)


def test_ssim_too_small():
    with pytest.raises(ValueError, match="11x11"):
        ssim_y(np.zeros((12, 12), np.uint8), np.zeros((12, 12), np.uint8), 1)
