"""Retraining: the full schedule of one spec, then a benchmark table on the test sets.

A retrain config is one YAML file (``configs/train/*.yaml``)::

    train:            # every key of evaluators.training.TrainConfig (steps, batch, patch, lr,
      steps: 3000     # schedule, milestones, gamma, min_lr, betas, seed, checkpoint_every,
      ...             # log_every, grad_clip, threads, device)
    eval:
      sets: [Set5, Set14, B100]   # scored when a data root is given; without one the embedded
                                  # default validation split is scored instead
      sample_images: 1            # per set: HR | bicubic | SR strips written to TensorBoard
      sample_crop: 192            # side of the centre crop shown in those strips (HR pixels)

:func:`retrain` takes an ``ArchSpec`` from anywhere (a spec file, a search run's front) and
writes into the run folder: ``spec.json``, ``config.yaml``, ``checkpoint.pt`` (resumable, and
loadable with ``evaluators.checkpoint.load_model``), TensorBoard events (train/loss, train/lr,
``eval/<set>/psnr_y``, sample strips), ``results.json`` and ``results.md``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
import yaml

from evaluators.checkpoint import checkpoint_spec_id, load_checkpoint
from evaluators.training import CHECKPOINT_NAME, TrainConfig, check_resumable, seed_everything, train
from nas.paths import resolve_config_path  # noqa: F401  (re-exported for retrain --config)

DEFAULT_SET = "default"  # name of the embedded validation split in results
_EVAL_KEYS = ("sets", "sample_images", "sample_crop")


@dataclass(frozen=True)
class RetrainConfig:
    """A parsed retrain YAML: the training config and what to evaluate afterwards."""

    train: TrainConfig
    sets: Tuple[str, ...] = ("Set5", "Set14", "B100")
    sample_images: int = 1
    sample_crop: int = 192

    @classmethod
    def from_dict(cls, data: Any, where: str = "config") -> "RetrainConfig":
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a mapping with keys 'train' and 'eval', got {data!r}")
        unknown = sorted(set(data) - {"train", "eval"})
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; allowed keys: ['train', 'eval']")
        if "train" not in data:
            raise ValueError(f"{where}: key 'train' is missing (the training settings)")
        try:
            tc = TrainConfig.from_dict(data["train"] or {})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: train: {exc}") from None
        ev = data.get("eval") or {}
        if not isinstance(ev, Mapping):
            raise ValueError(f"{where}: eval: expected a mapping, got {ev!r}")
        bad = sorted(set(ev) - set(_EVAL_KEYS))
        if bad:
            raise ValueError(f"{where}: unknown eval key {bad[0]!r}; allowed keys: {list(_EVAL_KEYS)}")
        sets = ev.get("sets", list(cls.sets))
        if (not isinstance(sets, (list, tuple)) or not sets
                or not all(isinstance(s, str) and s for s in sets)):
            raise ValueError(f"{where}: eval.sets = {sets!r}; allowed: a non-empty list of set "
                             f"names (folders <data-root>/<name>/HR)")
        n = ev.get("sample_images", cls.sample_images)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"{where}: eval.sample_images = {n!r}; allowed: an integer >= 0")
        crop = ev.get("sample_crop", cls.sample_crop)
        if not isinstance(crop, int) or isinstance(crop, bool) or crop < 8:
            raise ValueError(f"{where}: eval.sample_crop = {crop!r}; allowed: an integer >= 8")
        return cls(train=tc, sets=tuple(sets), sample_images=n, sample_crop=crop)

    @classmethod
    def from_yaml(cls, path: os.PathLike) -> "RetrainConfig":
        from space.files import read_yaml

        path = Path(path)
        data = read_yaml(path, "--config")
        return cls.from_dict(data, where=f"config {str(path)!r}")

    def to_dict(self) -> Dict[str, Any]:
        return {"train": self.train.to_dict(),
                "eval": {"sets": list(self.sets), "sample_images": self.sample_images,
                         "sample_crop": self.sample_crop}}


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def scale_steps(config: RetrainConfig, steps: Any) -> Tuple[RetrainConfig, Dict[str, Any]]:
    """``config`` shortened (or lengthened) to ``steps`` training steps, same schedule shape.

    With ``S`` the config's steps and ``N = steps``, every step count scales by ``N / S``,
    rounded half up: ``m -> round(m * N / S)`` for the 'step' schedule's milestones, and
    ``checkpoint_every`` / ``log_every`` alike, at least 1 (0, "off", stays 0). A milestone is
    dropped when it collapses after rounding: below 1, not above the previous kept one, or
    (for one that took effect in the original run, ``m < S``) at ``N`` or later, where it would
    no longer take effect. The cosine schedule is already relative to ``steps``.

    Returns ``(new config, info)``; ``info`` (also recorded in ``results.json``) holds
    ``steps``, ``config_steps``, the milestones before and after, the dropped ones and a
    human-readable ``notes`` list. ``steps`` must be an integer >= 1 (else ``ValueError``).
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"--steps = {steps!r}; allowed: an integer >= 1")
    n = int(steps)
    tc = config.train
    s = tc.steps
    ratio = n / s
    kept: List[int] = []
    dropped: List[int] = []
    for m in tc.milestones:
        new = _round_half_up(m * ratio)
        if new < 1 or (kept and new <= kept[-1]) or (m < s and new >= n):
            dropped.append(m)
        else:
            kept.append(new)

    def every(value: int) -> int:
        return 0 if value == 0 else max(1, _round_half_up(value * ratio))

    values = tc.to_dict()
    values.update(steps=n, milestones=kept, checkpoint_every=every(tc.checkpoint_every),
                  log_every=every(tc.log_every))
    new_tc = TrainConfig.from_dict(values)
    notes = [f"--steps {n}: the config's {s} steps scaled by {n}/{s}"]
    if tc.schedule == "step" and tc.milestones:
        notes.append(f"milestones {list(tc.milestones)} -> {kept}")
    if dropped:
        notes.append(f"dropped milestone(s) {dropped}: they collapse after rounding (below 1, "
                     f"onto the previous one, or at/after step {n})")
    notes.append(f"checkpoint_every {tc.checkpoint_every} -> {new_tc.checkpoint_every}, "
                 f"log_every {tc.log_every} -> {new_tc.log_every}")
    info = {"steps": n, "config_steps": s, "milestones": list(tc.milestones),
            "scaled_milestones": kept, "dropped_milestones": dropped, "notes": notes}
    return RetrainConfig(train=new_tc, sets=config.sets, sample_images=config.sample_images,
                         sample_crop=config.sample_crop), info


def load_spec(path: os.PathLike):
    """Read an ArchSpec from a ``.json`` or ``.yaml`` file (errors name the file)."""
    from space.spec import ArchSpec

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spec file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            return ArchSpec.from_yaml(text)
        return ArchSpec.from_json(text)
    except ValueError as exc:
        raise ValueError(f"spec file {str(path)!r}: {exc}") from None


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(1,3,H,W) float in [0,1] -> HxWx3 uint8 (rounded, clipped)."""
    a = t[0].detach().float().cpu().clamp(0, 1).mul(255).round().byte()
    return a.permute(1, 2, 0).numpy()


def _center(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    s_h, s_w = min(size, h), min(size, w)
    top, left = (h - s_h) // 2, (w - s_w) // 2
    return img[top: top + s_h, left: left + s_w]


def sample_strip(model: torch.nn.Module, item, scale: int, crop: int) -> np.ndarray:
    """HR | bicubic | SR of one validation item, side by side (HxWx3 uint8), centre-cropped
    to ``crop`` HR pixels (the crop is taken on the LR side so SR sees real context)."""
    from evaluators.data import imresize, to_rgb

    _, hr, lr = item
    hr, lr = to_rgb(hr), to_rgb(lr)
    lr_c = _center(lr, max(1, crop // scale))
    top = (lr.shape[0] - lr_c.shape[0]) // 2 * scale
    left = (lr.shape[1] - lr_c.shape[1]) // 2 * scale
    hr_c = hr[top: top + lr_c.shape[0] * scale, left: left + lr_c.shape[1] * scale]
    bic = imresize(lr_c, scale)
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(lr_c.transpose(2, 0, 1))).float().div(255)[None]
    with torch.no_grad():
        sr = _to_uint8(model(x.to(device)))
    return np.concatenate([hr_c, bic, sr], axis=1)


def _eval_sets(config: RetrainConfig, data_root) -> List[Tuple[str, Optional[str]]]:
    """(display name, set name for validation_set) pairs."""
    if data_root is None:
        return [(DEFAULT_SET, None)]
    return [(s, s) for s in config.sets]


def results_markdown(results: Mapping[str, Any]) -> str:
    """The benchmark table of a retrain run (PSNR/SSIM on Y, bicubic baseline beside it)."""
    lines = [
        f"# Retrain of spec {results['spec_id']} (x{results['scale']})",
        "",
        f"{results['train']['steps']} steps, {results['train']['seconds']:.0f} s of training; "
        f"PSNR/SSIM on the Y channel, border {results['scale']} px cropped.",
        "",
        "| set | images | PSNR_Y (dB) | SSIM_Y | bicubic PSNR_Y | bicubic SSIM_Y |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results["sets"].items():
        lines.append(f"| {name} | {r['images']} | {r['psnr_y']:.2f} | {r['ssim_y']:.4f} | "
                     f"{r['bicubic_psnr_y']:.2f} | {r['bicubic_ssim_y']:.4f} |")
    return "\n".join(lines) + "\n"


def retrain(spec, config: RetrainConfig, data_root: Optional[os.PathLike] = None,
            run_dir: os.PathLike = None, resume: bool = False, progress: bool = True,
            overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Train ``spec`` with ``config.train`` from scratch (or resume), evaluate, write results.

    ``run_dir`` defaults to ``runs/retrain-<spec.id>``. A run folder that already holds a
    checkpoint is refused unless ``resume`` (nothing computed is ever overwritten); with
    ``resume``, a checkpoint that is not a current bsrnas checkpoint, was trained under another
    config or holds another architecture's weights raises ``ValueError`` naming the file before
    anything in the run folder is rewritten. ``overrides`` (e.g. the ``info`` of
    :func:`scale_steps`) is recorded as ``results["overrides"]``.
    Returns the results dict also written to ``results.json``.
    """
    from torch.utils.tensorboard import SummaryWriter

    from evaluators.data import PatchSampler, training_images, validation_set
    from evaluators.evaluate import bicubic_sr_fn, evaluate, model_sr_fn
    from space.builder import build

    run_dir = Path(run_dir if run_dir is not None else Path("runs") / f"retrain-{spec.id}")
    ckpt = run_dir / CHECKPOINT_NAME
    if ckpt.exists() and not resume:
        raise ValueError(f"run dir {str(run_dir)!r} already holds a checkpoint; pass --resume to "
                         f"continue it, or choose another --run-dir")
    if resume and ckpt.exists():
        saved = run_dir / "spec.json"
        if saved.is_file() and load_spec(saved).id != spec.id:
            raise ValueError(f"--resume: run dir {str(run_dir)!r} holds spec {load_spec(saved).id}, "
                             f"not the given spec {spec.id}")
        # refuse an unreadable file, a changed config or another architecture's weights
        # before anything in the run dir is rewritten
        state = load_checkpoint(ckpt)
        check_resumable(ckpt, state, config.train)
        saved_id = checkpoint_spec_id(state)
        if saved_id is not None and saved_id != spec.id:
            raise ValueError(f"--resume: checkpoint file {str(ckpt)!r}: its weights belong to "
                             f"another architecture (checkpoint spec {saved_id}, given spec "
                             f"{spec.id}); use the spec it was trained with or another --run-dir")
    if data_root is not None and not Path(data_root).is_dir():
        raise FileNotFoundError(f"data root {str(data_root)!r} is not a folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(spec.to_json(indent=2) + "\n")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    tc = config.train
    scale = int(spec.scale)
    sampler = PatchSampler(training_images(data_root), scale, tc.patch, tc.batch, tc.seed)
    seed_everything(tc.seed)
    model = build(spec)
    res = train(model, sampler, tc, run_dir=run_dir, resume=resume, progress=progress, spec=spec)

    results: Dict[str, Any] = {
        "spec_id": spec.id, "scale": scale, "spec": spec.to_dict(), "config": config.to_dict(),
        "data_root": str(data_root) if data_root is not None else None,
        "train": {"steps": res.steps, "seconds": res.seconds, "final_loss": res.final_loss,
                  "resumed_from": res.resumed_from},
        "checkpoint": str(ckpt), "overrides": dict(overrides) if overrides else None, "sets": {},
    }
    model.eval()
    writer = SummaryWriter(log_dir=str(run_dir))
    try:
        for display, name in _eval_sets(config, data_root):
            items = list(validation_set(data_root, scale=scale, name=name))
            with torch.no_grad():
                sr = evaluate(model_sr_fn(model, device=str(tc.resolved_device())), items, scale)
            bic = evaluate(bicubic_sr_fn(scale), items, scale)
            row = {"images": len(items), "psnr_y": float(sr["psnr_y"]), "ssim_y": float(sr["ssim_y"]),
                   "bicubic_psnr_y": float(bic["psnr_y"]), "bicubic_ssim_y": float(bic["ssim_y"])}
            results["sets"][display] = row
            for key in ("psnr_y", "ssim_y"):
                writer.add_scalar(f"eval/{display}/{key}", row[key], res.steps)
            for item in items[: config.sample_images]:
                strip = sample_strip(model, item, scale, config.sample_crop)
                writer.add_image(f"samples/{display}/{item[0]}", strip, res.steps, dataformats="HWC")
    finally:
        writer.close()
    bad = [k for k, r in results["sets"].items() if not math.isfinite(r["psnr_y"])]
    if bad:
        results["warning"] = f"non-finite PSNR on {bad}: the trained model outputs NaN/inf"
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (run_dir / "results.md").write_text(results_markdown(results))
    return results
