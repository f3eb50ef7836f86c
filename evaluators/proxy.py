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

**Rungs** (``rungs = [T_0, T_1, ...]``, the multi-fidelity search of ``nas.rungs``): rung 0
trains ``T_0`` steps; rung ``r`` continues the same network to ``T_r`` steps. Every rung uses
the ``wsd`` schedule of :mod:`evaluators.training` (constant ``lr``, then a cosine cool-down over
the last ``decay`` fraction of the rung's steps), and rung ``r`` starts from the ``stable.pt`` of
rung ``r - 1`` (its state at the end of the constant phase): so each rung's score is that of a
properly annealed ``T_r``-step training, exactly the one an uninterrupted ``T_r``-step ``wsd``
run would give, at the cost ``T_r - T_{r-1} + ceil(decay T_{r-1})`` steps instead of ``T_r``.
The training progress of annealed estimators runs over the top rung (``progress_steps =
T_last``), so it never goes back on promotion. Files: rung 0 in the trial folder itself,
rung ``r`` in ``<trial>/rung-r/``.

**Seeds** (``seeds = K``): every rung trains ``K`` copies with seeds ``seed, seed + 1, ...``
(initialisation and patches), copy ``j > 0`` in ``<trial>/seed-j/``; the scores are the means,
``psnr_y_seeds`` lists each copy's PSNR_Y.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from evaluators.threads import torch_threads
from evaluators.training import (CHECKPOINT_NAME, STABLE_NAME, TrainConfig, TrainingDiverged,
                                 seed_everything, train)


def check_rungs(rungs, decay: float = 0.2) -> tuple:
    """``rungs`` as a tuple of increasing step counts (empty: single fidelity); ``ValueError``
    naming the value otherwise. Each rung's constant phase must end after the previous one's
    (so a rung can continue from the previous ``stable.pt``)."""
    if rungs is None:
        return ()
    allowed = "null or a list of at least 2 increasing integers >= 1 (training steps per rung)"
    if isinstance(rungs, (str, bytes)) or not hasattr(rungs, "__iter__"):
        raise ValueError(f"rungs = {rungs!r}; allowed: {allowed}")
    out = tuple(rungs)
    if (len(out) < 2 or any(isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1 for r in out)
            or any(b <= a for a, b in zip(out, out[1:]))):
        raise ValueError(f"rungs = {list(out)!r}; allowed: {allowed}")
    out = tuple(int(r) for r in out)
    stable = [TrainConfig(steps=r, schedule="wsd", decay=decay).stable_steps for r in out]
    if stable[0] < 1 or any(b <= a for a, b in zip(stable, stable[1:])):
        raise ValueError(f"rungs = {list(out)!r}: with decay = {decay} the constant phases end at steps "
                         f"{stable}; allowed: rungs whose constant phases are >= 1 step and end later "
                         "at every rung (raise the first rung or space the rungs further apart)")
    return out


def _start_from_stable(prev_dir: str, run_dir: str) -> None:
    """Seed ``run_dir/checkpoint.pt`` with the previous rung's ``stable.pt`` (once: a rung
    killed half-way resumes from its own later checkpoint)."""
    import shutil

    target = os.path.join(run_dir, CHECKPOINT_NAME)
    if os.path.exists(target):
        return
    source = os.path.join(prev_dir, STABLE_NAME)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"cannot continue to {run_dir!r}: the previous rung left no {STABLE_NAME} "
                                f"in {prev_dir!r} (it was not trained with rungs, or was removed)")
    os.makedirs(run_dir, exist_ok=True)
    tmp = target + ".tmp"
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


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
        rungs: Optional[Sequence[int]] = None,
        eta: int = 3,
        decay: float = 0.2,
        seeds: int = 1,
    ):
        self.rungs = check_rungs(rungs, decay)
        if isinstance(eta, bool) or not isinstance(eta, (int, np.integer)) or eta < 2:
            raise ValueError(f"eta = {eta!r}; allowed: an integer >= 2 (the promotion rate 1/eta)")
        if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
            raise ValueError(f"seeds = {seeds!r}; allowed: an integer >= 1 (seeds averaged per rung)")
        self.eta, self.seeds = int(eta), int(seeds)
        if self.rungs:
            steps, schedule = self.rungs[0], "wsd"
        self.config = TrainConfig(
            steps=steps, batch=batch, patch=patch, lr=lr, schedule=schedule, seed=seed,
            checkpoint_every=0, log_every=max(1, steps // 20), grad_clip=grad_clip,
            threads=threads, device=device, decay=decay,
            progress_steps=self.rungs[-1] if self.rungs else None,
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
    def _seed_sampler(self, scale: int, seed: int):
        """The patch sampler of another seed's copy (built once per (scale, seed))."""
        from evaluators.data import PatchSampler

        key = (scale, seed)
        if key not in self._samplers:
            self.sampler(scale)  # loads the training images
            c = self.config
            self._samplers[key] = PatchSampler(self._train_images, scale, c.patch, c.batch, seed)
        return self._samplers[key]

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
    def rung_config(self, rung: int, seed_offset: int = 0) -> TrainConfig:
        """The training config of ``rung`` (without rungs: the one config) for copy ``seed_offset``."""
        c = self.config
        if self.rungs:
            if not 0 <= rung < len(self.rungs):
                raise ValueError(f"rung = {rung!r}; allowed: 0..{len(self.rungs) - 1} (rungs {list(self.rungs)})")
            steps = self.rungs[rung]
            # a promoted training is long: a kill costs at most a tenth of it
            c = replace(c, steps=steps, log_every=max(1, steps // 20),
                        checkpoint_every=0 if rung == 0 else max(1, (steps - self.rungs[rung - 1]) // 10))
        elif rung != 0:
            raise ValueError(f"rung = {rung!r}; this evaluator has no rungs (allowed: 0)")
        return replace(c, seed=c.seed + seed_offset) if seed_offset else c

    @staticmethod
    def rung_dir(trial_dir: os.PathLike, rung: int, seed_offset: int = 0) -> str:
        """Folder of one rung's training: ``<trial>[/seed-j][/rung-r]``."""
        d = str(trial_dir)
        if seed_offset:
            d = os.path.join(d, f"seed-{seed_offset}")
        return os.path.join(d, f"rung-{rung}") if rung else d

    def evaluate(self, spec, run_dir: Optional[os.PathLike] = None, rung: int = 0) -> Dict[str, Any]:
        """Train ``spec`` briefly and score it. Returns ``dict(psnr_y, ssim_y, train_seconds,
        eval_seconds, steps, diverged, final_loss)`` (+ ``diverged_step`` when it diverged;
        with ``seeds > 1`` the means and ``psnr_y_seeds``; with rungs ``rung``).
        With ``run_dir`` the run's TensorBoard scalars and final checkpoint go there (and a
        finished checkpoint there is reused instead of training again). ``rung >= 1`` continues
        the rung ``rung - 1`` training of ``run_dir`` (the trial folder; module docstring)."""
        if rung and run_dir is None:
            raise ValueError(f"rung = {rung}: continuing a training needs the trial folder (run_dir)")
        self.rung_config(rung)  # checks the rung
        copies = [self._evaluate_copy(spec, run_dir, rung, j) for j in range(self.seeds)]
        if len(copies) == 1:
            out = copies[0]
        else:
            out = dict(copies[0])
            diverged = any(c["diverged"] for c in copies)
            for key in ("psnr_y", "ssim_y", "final_loss"):
                vals = [c.get(key) for c in copies]
                out[key] = float(np.mean(vals)) if all(v is not None for v in vals) else None
            out["psnr_y_seeds"] = [c["psnr_y"] for c in copies]
            for key in ("train_seconds", "eval_seconds"):
                out[key] = float(sum(c[key] for c in copies))
            out["diverged"] = diverged
            if diverged:
                out.update(self.floor(int(spec.scale)))
        if self.rungs:
            out["rung"] = int(rung)
        return out

    def _evaluate_copy(self, spec, trial_dir, rung: int, seed_offset: int) -> Dict[str, Any]:
        from space.builder import build

        config = self.rung_config(rung, seed_offset)
        run_dir = None if trial_dir is None else self.rung_dir(trial_dir, rung, seed_offset)
        if rung:
            _start_from_stable(self.rung_dir(trial_dir, rung - 1, seed_offset), run_dir)
        scale = int(spec.scale)
        sampler = self.sampler(scale) if not seed_offset else self._seed_sampler(scale, config.seed)
        with torch_threads(self.threads):
            seed_everything(config.seed)  # same initialisation stream for every spec
            model = build(spec)
            result: Dict[str, Any] = {"steps": config.steps, "diverged": False}
            t0 = time.perf_counter()
            try:
                res = train(model, sampler, config, run_dir=run_dir, resume=True,
                            progress=self.progress, spec=spec)
                result["final_loss"] = res.final_loss
                result["resumed_from"] = res.resumed_from
            except TrainingDiverged as exc:
                result.update(diverged=True, diverged_step=exc.step, final_loss=exc.loss)
            result["train_seconds"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            if not result["diverged"]:
                scores = self._score(model, scale)
                if not all(math.isfinite(v) for v in scores.values()):
                    result.update(diverged=True, diverged_step=config.steps)
                else:
                    result.update(scores)
            if result["diverged"]:
                result.update(self.floor(scale))
            result["eval_seconds"] = time.perf_counter() - t1
        return result
