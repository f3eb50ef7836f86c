"""PSNR and SSIM on the Y channel, the super-resolution field's evaluation convention.

Convention (as BasicSR and the MATLAB code of the SR papers):

- An SR output is first brought to uint8 (float in [0, 1] -> round(clip(255 * x))), then scored.
- Colour images are scored on BT.601 luma, MATLAB's ``rgb2ycbcr`` with RGB in [0, 1]::

      Y = 16 + 65.481 R + 128.553 G + 24.966 B        (Y in [16, 235], kept as float64)

  A grayscale image (HxW) is scored on its own values (the classic protocol: Set14's ``bridge``).
- ``crop_border`` pixels (= the scale) are removed from every side before scoring.
- PSNR = 10 log10(255^2 / MSE), float64; identical images give ``inf``.
- SSIM as Wang et al., "Image quality assessment: from error visibility to structural
  similarity", IEEE TIP 2004: local statistics with an 11x11 Gaussian window (sigma = 1.5,
  normalised to sum 1), 'valid' filtering (no padding), C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = 255::

      SSIM = mean over windows of (2 mu_x mu_y + C1)(2 sigma_xy + C2)
                                  / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))

  with sigma_x^2 = E[x^2] - mu_x^2 and sigma_xy = E[xy] - mu_x mu_y under the window weights.
"""
from __future__ import annotations

import math

import numpy as np

#: BT.601 luma coefficients for RGB in [0, 1] (MATLAB rgb2ycbcr), offset 16.
Y_COEFFS = (65.481, 128.553, 24.966)
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2, SSIM_L = 11, 1.5, 0.01, 0.03, 255.0


def to_uint8(img) -> np.ndarray:
    """uint8 unchanged; a float image in [0, 1] -> round(clip(255 x)) as uint8."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"image dtype must be uint8 or float in [0, 1], got {img.dtype}")
    return np.floor(np.clip(img.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def rgb_to_y(img) -> np.ndarray:
    """BT.601 Y (float64, range [16, 235]) of an HxWx3 RGB image (uint8, or float in [0, 1])."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y: img must be HxWx3, got shape {img.shape}")
    rgb = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    r, g, b = Y_COEFFS
    return 16.0 + r * rgb[..., 0] + g * rgb[..., 1] + b * rgb[..., 2]


def _y_pair(sr, hr, crop_border: int):
    sr, hr = to_uint8(sr), to_uint8(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"sr shape {sr.shape} differs from hr shape {hr.shape}")
    if sr.ndim == 3 and sr.shape[2] == 3:
        ys, yh = rgb_to_y(sr), rgb_to_y(hr)
    elif sr.ndim == 2:
        ys, yh = sr.astype(np.float64), hr.astype(np.float64)
    else:
        raise ValueError(f"images must be HxW or HxWx3, got shape {sr.shape}")
    c = int(crop_border)
    if c < 0 or 2 * c >= min(ys.shape):
        raise ValueError(f"crop_border must be in 0..{(min(ys.shape) - 1) // 2} for images of "
                         f"size {ys.shape[0]}x{ys.shape[1]}, got {crop_border!r}")
    if c:
        ys, yh = ys[c:-c, c:-c], yh[c:-c, c:-c]
    return ys, yh


def psnr_y(sr, hr, crop_border: int) -> float:
    """PSNR (dB) on Y between ``sr`` and ``hr`` (see module docstring for the convention)."""
    ys, yh = _y_pair(sr, hr, crop_border)
    mse = float(np.mean((ys - yh) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's fspecial('gaussian', size, sigma)."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """2-D 'valid' correlation with the separable window outer(g, g)."""
    from numpy.lib.stride_tricks import sliding_window_view

    rows = sliding_window_view(img, len(g), axis=0) @ g  # (H-k+1, W)
    return sliding_window_view(rows, len(g), axis=1) @ g  # (H-k+1, W-k+1)


def ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Local SSIM of two float64 single-channel images on the [0, 255] scale ('valid' windows)."""
    if min(x.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} after the "
                         f"border crop, got {x.shape[0]}x{x.shape[1]}")
    g = gaussian_window_1d()
    c1, c2 = (SSIM_K1 * SSIM_L) ** 2, (SSIM_K2 * SSIM_L) ** 2
    mx, my = _filter_valid(x, g), _filter_valid(y, g)
    sxx = _filter_valid(x * x, g) - mx * mx
    syy = _filter_valid(y * y, g) - my * my
    sxy = _filter_valid(x * y, g) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


def ssim_y(sr, hr, crop_border: int) -> float:
    """Mean SSIM on Y between ``sr`` and ``hr`` (Wang et al. 2004, see module docstring)."""
    ys, yh = _y_pair(sr, hr, crop_border)
    return float(np.mean(ssim_map(ys, yh)))
