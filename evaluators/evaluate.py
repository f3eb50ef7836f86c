"""Score a super-resolution function on a list of (name, HR, LR) items: PSNR_Y and SSIM_Y.

``sr_fn(lr_uint8) -> sr`` maps one LR image (HxWx3 uint8, or HxW for a grayscale image) to its SR
estimate, uint8 or float in [0, 1], of the HR shape. Each SR image is rounded to uint8 and scored
against the HR image on Y with ``crop_border = scale`` (see ``evaluators.metrics``); the set's
figures are the means over images, as in the SR papers' tables.

Two ready-made ``sr_fn``:

- ``bicubic_sr_fn(scale)``: MATLAB bicubic upscaling of the uint8 LR (the papers' "Bicubic" row).
- ``model_sr_fn(model)``: an ``nn.Module`` mapping an (N, 3, H, W) batch in [0, 1] to
  (N, 3, sH, sW). A grayscale LR is replicated to 3 channels and the mean of the 3 output
  channels is taken back as the grayscale SR (for a gray input a colour-faithful model returns
  R = G = B, and the mean keeps the image's own value scale, as the grayscale scoring needs).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Tuple

import numpy as np

from evaluators.data import imresize
from evaluators.metrics import SSIM_WINDOW, psnr_y, ssim_y, to_uint8


def evaluate(sr_fn: Callable[[np.ndarray], np.ndarray],
             items: Iterable[Tuple[str, np.ndarray, np.ndarray]], scale: int) -> Dict:
    """``dict(psnr_y, ssim_y, per_image=[dict(name, psnr_y, ssim_y)...])`` (means over images).

    An HR image must be at least ``SSIM_WINDOW + 2 * scale`` pixels high and wide (the border
    crop, then SSIM's window); a smaller one raises ``ValueError`` naming it, before ``sr_fn``.
    """
    per_image = []
    least = SSIM_WINDOW + 2 * int(scale)
    for name, hr, lr in items:
        h, w = np.shape(hr)[:2]
        if min(h, w) < least:
            raise ValueError(f"image {name}: HR size {h}x{w} (height x width) is too small to "
                             f"score at scale {scale}; allowed: height and width >= {least} "
                             f"({scale} border pixels are cropped from each side, then SSIM "
                             f"needs a {SSIM_WINDOW}x{SSIM_WINDOW} window)")
        sr = to_uint8(sr_fn(lr))
        if sr.shape != hr.shape:
            raise ValueError(f"image {name}: SR output shape {sr.shape} differs from HR shape "
                             f"{hr.shape} (scale {scale})")
        per_image.append({"name": name, "psnr_y": psnr_y(sr, hr, crop_border=scale),
                          "ssim_y": ssim_y(sr, hr, crop_border=scale)})
    if not per_image:
        raise ValueError("items: no images to evaluate")
    return {
        "psnr_y": float(np.mean([r["psnr_y"] for r in per_image])),
        "ssim_y": float(np.mean([r["ssim_y"] for r in per_image])),
        "per_image": per_image,
    }


def bicubic_sr_fn(scale: int) -> Callable[[np.ndarray], np.ndarray]:
    """SR by MATLAB bicubic upscaling: ``imresize(lr, scale)`` (uint8 in, uint8 out)."""
    def sr(lr: np.ndarray) -> np.ndarray:
        return imresize(lr, float(scale))
    return sr


def model_sr_fn(model, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """Wrap ``model`` ((N,3,H,W) in [0,1] -> (N,3,sH,sW)) as an ``sr_fn`` returning float in [0, 1].

    The model is put in eval mode and run under ``torch.no_grad`` one image at a time; its output
    is clamped to [0, 1]. Grayscale LR: replicate to 3 channels, return the channel mean.
    """
    import torch

    model = model.to(device).eval()

    def sr(lr: np.ndarray) -> np.ndarray:
        lr = np.asarray(lr)
        gray = lr.ndim == 2
        rgb = np.repeat(lr[..., None], 3, axis=2) if gray else lr
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div(255.0)
        with torch.no_grad():
            y = model(x.unsqueeze(0).to(device))
        if y.ndim != 4 or y.shape[:2] != (1, 3):
            raise ValueError(f"model output must be (1, 3, sH, sW) for one image, got "
                             f"{tuple(y.shape)}")
        out = y[0].clamp(0.0, 1.0).permute(1, 2, 0).cpu().double().numpy()
        return out.mean(axis=2) if gray else out

    return sr
