"""Proxy evaluation: a short training of one spec, then PSNR/SSIM on validation images.

One :class:`ProxyEvaluator` scores many specs: the training images, the patch samplers (one per
scale) and the validation items are loaded once and shared by every call. Every spec is trained
with the same budget, the same seed (same initialisation stream, same patches in the same order)
and the shared loop of :mod:`evaluators.training`, so differences in the scores come from the
architectures alone.

A spec whose training diverges (non-finite loss) or whose trained output is not finite never
raises out of :meth:`ProxyEvaluator.evaluate`: it is returned with ``diverged = True`` and the
scores of the *all-zero output* on the same validation items (``psnr_y`` of a black image, about
a few dB: a finite floor below any trained network, so a search can still rank it).
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from evaluators.threads import torch_threads
from evaluators.training import TrainConfig, TrainingDiverged, seed_everything, train


class ZeroSR(nn.Module):
    """The all-zero SR output of the right size: the floor reported for a diverged spec."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = int(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.new_zeros(n, c, h * self.scale, w * self.scale)




class ProxyEvaluator:
    """Score specs by a short training (``steps`` Adam steps on ``batch`` HR patches of side
    ``patch``, L1 loss, ``schedule`` from ``lr``) then PSNR_Y / SSIM_Y on validation images.

    Validation: ``val_items`` (a sequence of ``(name, hr, lr)``, used for every spec's scale:
    give it only when all specs share that scale), else ``evaluators.data.validation_set``
    (the embedded default split, or ``val_set`` -- default Set5 -- under ``data_root``), at most
    ``max_val_images`` of them. Training images: ``evaluators.data.training_images(data_root)``.
    ``threads`` bounds torch's threads during a call; ``device`` is as in ``TrainConfig``.
    """

    def __init__(
        self,
        steps: int = 300,
        batch: int = 8,
        patch: int = 48,
        lr: float = 1e-3,
        seed: int = 0,
        data_root: Optional[os.PathLike] = None,
        val_items: Optional[Sequence] = None,
        threads: Optional[int] = None,
        schedule: str = "cosine",
        val_set: Optional[str] = None,
        max_val_images: Optional[int] = None,
        device: str = "cpu",
        grad_clip: Optional[float] = None,
        progress: bool = False,
    ):
        self.config = TrainConfig(
            steps=steps, batch=batch, patch=patch, lr=lr, schedule=schedule, seed=seed,
            checkpoint_every=0, log_every=max(1, steps // 20), grad_clip=grad_clip,
            threads=threads, device=device,
        )
        if max_val_images is not None and (not isinstance(max_val_images, int) or max_val_images < 1):
            raise ValueError(f"max_val_images = {max_val_images!r}; allowed: None or an integer >= 1")
        self.data_root = data_root
        self.val_set = val_set
        self.max_val_images = max_val_images
        self.threads = threads
        self.progress = progress
        self._val_items_given = list(val_items) if val_items is not None else None
        if self._val_items_given is not None and not self._val_items_given:
            raise ValueError("val_items: got an empty sequence; allowed: None or at least one item")
        self._train_images: Optional[List] = None
        self._samplers: Dict[int, Any] = {}
        self._val: Dict[int, List] = {}
        self._floor: Dict[int, Dict[str, float]] = {}
        self._bicubic: Dict[int, Dict[str, float]] = {}

    # -- cached data -----------------------------------------------------------------------
    def sampler(self, scale: int):
        """The patch sampler of ``scale`` (built once; a pure function of (seed, step))."""
        from evaluators.data import PatchSampler, training_images

        if scale not in self._samplers:
            if self._train_images is None:
                self._train_images = training_images(self.data_root)
            c = self.config
            self._samplers[scale] = PatchSampler(self._train_images, scale, c.patch, c.batch, c.seed)
        return self._samplers[scale]

    def val_items(self, scale: int) -> List:
        """The validation items ``(name, hr_uint8, lr_uint8)`` used at ``scale``."""
        if scale not in self._val:
            if self._val_items_given is not None:
                items = self._val_items_given
            else:
                from evaluators.data import validation_set

                items = list(validation_set(self.data_root, scale=scale, name=self.val_set))
            if self.max_val_images is not None:
                items = items[: self.max_val_images]
            self._val[scale] = items
        return self._val[scale]

    def _score(self, model: nn.Module, scale: int) -> Dict[str, float]:
        from evaluators.evaluate import evaluate, model_sr_fn

        base = model_sr_fn(model.eval(), device=str(self.config.resolved_device()))
        finite = [True]

        def sr_fn(lr):
            out = base(lr)
            finite[0] = finite[0] and bool(np.isfinite(out).all())
            return out

        with torch.no_grad():
            out = evaluate(sr_fn, self.val_items(scale), scale)
        if not finite[0]:  # NaN would be clamped/rounded into a finite but meaningless score
            return {"psnr_y": float("nan"), "ssim_y": float("nan")}
        return {"psnr_y": float(out["psnr_y"]), "ssim_y": float(out["ssim_y"])}

    def floor(self, scale: int) -> Dict[str, float]:
        """Scores of the all-zero output (reported for diverged specs)."""
        if scale not in self._floor:
            self._floor[scale] = self._score(ZeroSR(scale), scale)
        return self._floor[scale]

    def bicubic_psnr(self, scale: int) -> Dict[str, float]:
        """``dict(psnr_y, ssim_y)`` of MATLAB bicubic upscaling (``evaluators.evaluate.
        bicubic_sr_fn``) on exactly the validation items a spec of ``scale`` is scored on
        (``val_items(scale)``): the reference a trained spec should beat."""
        if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or int(scale) < 1:
            raise ValueError(f"scale = {scale!r}; allowed: an integer >= 1 (the spec's upscaling factor)")
        scale = int(scale)
        if scale not in self._bicubic:
            from evaluators.evaluate import bicubic_sr_fn, evaluate

            out = evaluate(bicubic_sr_fn(scale), self.val_items(scale), scale)
            self._bicubic[scale] = {"psnr_y": float(out["psnr_y"]), "ssim_y": float(out["ssim_y"])}
        return dict(self._bicubic[scale])

    # -- scoring ---------------------------------------------------------------------------
    def evaluate(self, spec, run_dir: Optional[os.PathLike] = None) -> Dict[str, Any]:
        """Train ``spec`` briefly and score it. Returns ``dict(psnr_y, ssim_y, train_seconds,
        eval_seconds, steps, diverged, final_loss)`` (+ ``diverged_step`` when it diverged).
        With ``run_dir`` the run's TensorBoard scalars and final checkpoint go there (and a
        finished checkpoint there is reused instead of training again)."""
        from space.builder import build

        scale = int(spec.scale)
        sampler = self.sampler(scale)
        with torch_threads(self.threads):
            seed_everything(self.config.seed)  # same initialisation stream for every spec
            model = build(spec)
            result: Dict[str, Any] = {"steps": self.config.steps, "diverged": False}
            t0 = time.perf_counter()
            try:
                res = train(model, sampler, self.config, run_dir=run_dir, resume=True,
                            progress=self.progress, spec=spec)
                result["final_loss"] = res.final_loss
            except TrainingDiverged as exc:
                result.update(diverged=True, diverged_step=exc.step, final_loss=exc.loss)
            result["train_seconds"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            if not result["diverged"]:
                scores = self._score(model, scale)
                if not all(math.isfinite(v) for v in scores.values()):
                    result.update(diverged=True, diverged_step=self.config.steps)
                else:
                    result.update(scores)
            if result["diverged"]:
                result.update(self.floor(scale))
            result["eval_seconds"] = time.perf_counter() - t1
        return result
