"""One training loop for every SR model of the project (proxy evaluation and full retraining).

Objective and optimiser (as in EDSR and the binary-SR papers built on it)::

    loss(theta) = mean |model(LR) - HR|                     (L1, pixels in [0, 1])
    Adam(beta1, beta2), learning rate lr(step) from the schedule below

Learning-rate schedules, a pure function of the step ``t`` (0-based) of ``T`` steps:

    step:    lr(t) = lr * gamma ** #{m in milestones : m <= t}
    cosine:  lr(t) = min_lr + (lr - min_lr) * (1 + cos(pi * t / T)) / 2
    wsd:     lr(t) = lr                                              t <  S = T - D
             lr(t) = min_lr + (lr - min_lr) * (1 + cos(pi * (t - S) / D)) / 2    t >= S
             with D = ceil(decay * T) (warmup-stable-decay without warmup; Hagele et al., "Scaling
             Laws and Compute-Optimal Training Beyond Fixed Training Durations", NeurIPS 2024:
             a 20 % cool-down matches cosine)

``wsd`` makes a training *continuable*: the state at the end of the stable phase (step ``S``,
saved as ``stable.pt`` beside ``checkpoint.pt``) is the state of any longer run of the same
seed at that step, so a run of ``T' > T`` steps resumes from it and pays only its own decay
(the multi-fidelity search, ``nas.rungs``). ``progress_steps`` (default ``steps``) is the
denominator of the training progress that annealed estimators read (``ops.set_progress``):
a run continued to a longer schedule keeps one monotone progress when every run of the chain
uses the longest run's ``steps`` there.

Because the schedule is a pure function of ``t`` and the patch sampler is a pure function of
``(seed, step)``, the whole training state is (model, Adam moments, step, RNG states): a checkpoint
holding those resumes *exactly* (bit-identical weights to an uninterrupted run on the same
machine and thread count). Checkpoints are written atomically (temporary file, then
``os.replace``) so an interruption never leaves a corrupt file.

A non-finite loss raises :class:`TrainingDiverged` (carrying the step), so that a search can
record the candidate as diverged instead of crashing.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

import ops
from evaluators.checkpoint import checkpoint_spec_id, load_checkpoint, one_line, save_checkpoint
from evaluators.threads import torch_threads

#: file name of the (latest, resumable) checkpoint inside a run folder.
CHECKPOINT_NAME = "checkpoint.pt"
SCHEDULES = ("step", "cosine", "wsd")
#: file name of the end-of-stable-phase checkpoint of a ``wsd`` run
STABLE_NAME = "stable.pt"
DEVICES = ("auto", "cpu", "cuda")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite at ``step`` (0-based)."""

    def __init__(self, step: int, loss: float):
        super().__init__(f"training diverged at step {step}: loss = {loss}")
        self.step = int(step)
        self.loss = float(loss)


class TrainConfigError(ValueError):
    """A ``TrainConfig`` value out of range: ``field``, ``value`` and what is ``allowed`` (so a
    caller holding the same settings under another name can report them in its own terms)."""

    def __init__(self, field: str, value: Any, allowed: Any):
        super().__init__(f"invalid train config {field} = {value!r}; allowed: {allowed}")
        self.field, self.value, self.allowed = field, value, allowed


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one training run (the model and data aside).

    ``patch`` is the HR patch side in pixels (the LR patch is ``patch // scale``), ``batch`` the
    number of patches per step. ``milestones`` and ``gamma`` are used by the 'step' schedule,
    ``min_lr`` by 'cosine' and 'wsd', ``decay`` (fraction of the steps in the cool-down) by
    'wsd'. ``checkpoint_every`` = 0 saves only at the end (when a run folder is
    given); ``log_every`` is the step interval of TensorBoard scalars and of the loss history.
    ``threads`` sets ``torch.set_num_threads`` for the run (None: leave as is). ``device``:
    'auto' picks cuda when available, else cpu.
    """

    steps: int = 1000
    batch: int = 16
    patch: int = 96
    lr: float = 2e-4
    schedule: str = "step"
    milestones: Tuple[int, ...] = ()
    gamma: float = 0.5
    min_lr: float = 0.0
    decay: float = 0.2
    progress_steps: Optional[int] = None
    betas: Tuple[float, float] = (0.9, 0.999)
    seed: int = 0
    checkpoint_every: int = 0
    log_every: int = 50
    grad_clip: Optional[float] = None
    threads: Optional[int] = None
    device: str = "auto"

    def __post_init__(self):
        def bad(name, value, allowed):
            raise TrainConfigError(name, value, allowed)

        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

        for name in ("steps", "batch", "patch"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                bad(name, v, "an integer >= 1")
        for name in ("checkpoint_every", "log_every", "seed"):
            v = getattr(self, name)
            if not is_int(v) or v < 0:
                bad(name, v, "an integer >= 0")
        if not is_num(self.lr) or not self.lr > 0 or not math.isfinite(self.lr):
            bad("lr", self.lr, "a finite number > 0")
        if self.schedule not in SCHEDULES:
            bad("schedule", self.schedule, list(SCHEDULES))
        ms = self.milestones
        if isinstance(ms, (str, bytes)) or not hasattr(ms, "__iter__"):
            bad("milestones", ms, "a list of increasing step numbers >= 1")
        ms = tuple(ms)
        if any(not is_int(m) or m < 1 for m in ms) or list(ms) != sorted(set(ms)):
            bad("milestones", list(ms), "a list of increasing step numbers >= 1")
        object.__setattr__(self, "milestones", tuple(int(m) for m in ms))
        if not is_num(self.gamma) or not 0 < self.gamma <= 1:
            bad("gamma", self.gamma, "a number in (0, 1]")
        if not is_num(self.min_lr) or not 0 <= self.min_lr <= self.lr:
            bad("min_lr", self.min_lr, f"a number in [0, lr = {self.lr}]")
        if not is_num(self.decay) or not 0 < self.decay <= 1:
            bad("decay", self.decay, "a number in (0, 1] (the fraction of steps in the wsd cool-down)")
        object.__setattr__(self, "decay", float(self.decay))
        if self.progress_steps is not None and (not is_int(self.progress_steps) or self.progress_steps < self.steps):
            bad("progress_steps", self.progress_steps, f"null or an integer >= steps = {self.steps}")
        b = tuple(self.betas) if hasattr(self.betas, "__iter__") else ()
        if len(b) != 2 or any(not is_num(x) or not 0 <= x < 1 for x in b):
            bad("betas", self.betas, "two numbers in [0, 1)")
        object.__setattr__(self, "betas", (float(b[0]), float(b[1])))
        if self.grad_clip is not None and (not is_num(self.grad_clip) or not self.grad_clip > 0):
            bad("grad_clip", self.grad_clip, "null or a number > 0")
        if self.threads is not None and (not is_int(self.threads) or self.threads < 1):
            bad("threads", self.threads, "null or an integer >= 1")
        if self.device not in DEVICES:
            bad("device", self.device, list(DEVICES))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build from a plain mapping (a YAML section); unknown keys raise ``ValueError``."""
        if not isinstance(values, Mapping):
            raise ValueError(f"train config must be a mapping of keys to values, got {values!r}")
        allowed = [f.name for f in fields(cls)]
        for key in values:
            if key not in allowed:
                raise ValueError(f"unknown train config key {key!r}; allowed keys: {allowed}")
        values = dict(values)
        # PyYAML reads 1e-3 (no dot) as a string: accept numeric strings for the float fields.
        for key in ("lr", "gamma", "min_lr", "grad_clip", "decay"):
            v = values.get(key)
            if isinstance(v, str):
                try:
                    values[key] = float(v)
                except ValueError:
                    pass  # left as is: __post_init__ names the key and what is allowed
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        d["betas"] = list(self.betas)
        return d

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based), by the formulas in the module docstring."""
        if self.schedule == "step":
            k = sum(1 for m in self.milestones if m <= step)
            return self.lr * self.gamma**k
        if self.schedule == "wsd":
            stable = self.stable_steps
            if step < stable:
                return self.lr
            d = self.steps - stable
            return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * (step - stable) / d)) / 2
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * step / self.steps)) / 2

    @property
    def stable_steps(self) -> int:
        """``S = T - ceil(decay * T)``: steps of the constant phase of 'wsd' (0 otherwise)."""
        if self.schedule != "wsd":
            return 0
        return self.steps - max(1, math.ceil(self.decay * self.steps - 1e-9))

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclass
class TrainResult:
    """What a finished run reports. ``history`` holds (step, loss, lr) every ``log_every``
    steps (the loss of that one step); ``resumed_from`` is the step the run started at."""

    steps: int
    final_loss: float
    seconds: float
    resumed_from: int = 0
    history: List[Tuple[int, float, float]] = field(default_factory=list)
    checkpoint: Optional[str] = None


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> Dict[str, Any]:
    """The generators' states as tensors and plain values (what a checkpoint may hold)::

        {"python": {"version": int, "state": int64 tensor (625,), "gauss": float | None},
         "numpy":  {"name": str, "keys": int64 tensor (624,), "pos": int,
                    "has_gauss": int, "cached_gaussian": float},
         "torch":  uint8 tensor,
         "cuda":   [uint8 tensor per device]          (only when CUDA is available)}

    ``random.getstate()`` is ``(version, 625 ints < 2**32, gauss_next)`` and
    ``np.random.get_state()`` is ``(name, uint32 keys, pos, has_gauss, cached_gaussian)``;
    both words fit int64 exactly, so :func:`set_rng_state` restores them bit for bit."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python": {"version": int(version), "state": torch.tensor(words, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
        "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states :func:`rng_state` returned. A malformed state raises ``ValueError``
    (and leaves the generators as they were)."""
    try:
        py, nps = state["python"], state["numpy"]
        py_state = (int(py["version"]), tuple(int(w) for w in py["state"].tolist()),
                    None if py["gauss"] is None else float(py["gauss"]))
        keys = nps["keys"].to(torch.int64).numpy()
        if keys.ndim != 1 or (keys < 0).any() or (keys >= 2**32).any():
            raise ValueError(f"numpy keys must be a vector of 32-bit words, got shape "
                             f"{tuple(keys.shape)}")
        np_state = (str(nps["name"]), keys.astype(np.uint32), int(nps["pos"]),
                    int(nps["has_gauss"]), float(nps["cached_gaussian"]))
        torch_state = state["torch"]
        if not isinstance(torch_state, torch.Tensor) or torch_state.dtype != torch.uint8:
            raise ValueError("torch state must be a uint8 tensor")
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_rng_state(torch_state)
        except BaseException:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])
            raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        raise ValueError(f"malformed RNG state ({type(exc).__name__}: {one_line(exc)}); expected "
                         f"the layout of evaluators.training.rng_state") from None
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _set_progress(model: torch.nn.Module, fraction: float) -> None:
    fn = getattr(ops, "set_progress", None)
    if fn is not None:
        fn(model, fraction)


def _save(path: Path, spec, model, optimizer, config: TrainConfig, step: int, loss: float) -> None:
    save_checkpoint(
        path,
        spec,
        model,
        optimizer=optimizer.state_dict(),
        scheduler={"schedule": config.schedule, "last_step": step},
        step=step,
        loss=loss,
        rng=rng_state(),
        train_config=_plain(config.to_dict()),
    )


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars (which TrainConfig accepts) turned into Python ones, so the
    checkpoint holds only plain values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


#: config fields that change the trajectory: a checkpoint resumes only under the same values
#: (plus ``steps`` for the cosine schedule, whose shape depends on it).
_TRAJECTORY_KEYS = ("batch", "patch", "lr", "schedule", "milestones", "gamma", "min_lr",
                    "betas", "seed", "grad_clip", "progress_steps")


def check_resumable(path: Path, state: Mapping[str, Any], config: TrainConfig) -> None:
    """Raise ``ValueError`` naming the first trajectory key where ``config`` differs from the
    config the checkpoint ``state`` (read from ``path``) was trained with."""
    saved = state.get("train_config") or {}
    now = config.to_dict()
    keys = _TRAJECTORY_KEYS + (("steps",) if config.schedule == "cosine" else ())
    if config.schedule == "wsd":
        # a stable-phase state continues any wsd run whose own stable phase reaches past it
        keys = keys + ("decay",)
        step = int(state.get("step", 0) or 0)
        if saved.get("steps") != now["steps"] and step > config.stable_steps:
            raise ValueError(
                f"cannot resume from {str(path)!r}: its step {step} lies past the stable phase of "
                f"this wsd run (steps = {config.steps}, stable until {config.stable_steps}); "
                "continue from a stable.pt or use the same steps")
    for key in keys:
        if key in saved and saved[key] != now[key]:
            raise ValueError(
                f"cannot resume from {str(path)!r}: train config {key} = {now[key]!r} but the "
                f"checkpoint was trained with {key} = {saved[key]!r}; use the same config or a new run dir"
            )


def _resume(path: Path, state: Mapping[str, Any], config: TrainConfig, model: torch.nn.Module,
            optimizer, spec) -> Tuple[int, float]:
    """Load a checkpoint's training state into ``model`` and ``optimizer`` and the RNGs;
    returns ``(step, loss)``. Anything that does not fit raises ``ValueError`` naming ``path``."""
    where = f"cannot resume from {str(path)!r}"
    missing = [k for k in ("step", "optimizer", "rng") if k not in state]
    if missing:
        raise ValueError(f"{where}: it holds no training state (keys {missing} are missing); "
                         f"it is a model-only checkpoint, not a training run's")
    check_resumable(path, state, config)
    saved_id = checkpoint_spec_id(state)
    given_id = getattr(spec, "id", None)
    if saved_id is not None and given_id is not None and saved_id != given_id:
        raise ValueError(f"{where}: its weights belong to another architecture (checkpoint spec "
                         f"{saved_id}, given spec {given_id}); use the spec it was trained with "
                         f"or another run dir")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        ids = (f" (checkpoint spec {saved_id}, given spec {given_id})"
               if saved_id is not None and given_id is not None
               else f" (checkpoint spec {saved_id})" if saved_id is not None else "")
        raise ValueError(f"{where}: its weights belong to another architecture{ids}; use the "
                         f"spec it was trained with or another run dir ({one_line(exc, 200)})") from None
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{where}: its optimizer state does not fit the model "
                         f"({type(exc).__name__}: {one_line(exc, 200)})") from None
    try:
        step = int(state["step"])
        loss = float(state.get("loss", float("nan")))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: step = {state['step']!r} / loss = {state.get('loss')!r}; "
                         f"allowed: an integer step and a number") from None
    try:
        set_rng_state(state["rng"])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return step, loss


def train(
    model: torch.nn.Module,
    sampler,
    config: TrainConfig,
    run_dir: Optional[os.PathLike] = None,
    resume: bool = True,
    progress: bool = True,
    writer=None,
    spec=None,
) -> TrainResult:
    """Train ``model`` in place on ``sampler.sample(step) -> (lr, hr)`` for ``config.steps``.

    With ``run_dir``: checkpoints go to ``run_dir/checkpoint.pt`` (every ``checkpoint_every``
    steps and at the end) and, unless ``writer`` is given, TensorBoard scalars ``train/loss``
    and ``train/lr`` to ``run_dir``. With ``resume`` and an existing checkpoint there, training
    continues from its step with its exact state. ``spec`` (an ArchSpec or None) is stored in
    the checkpoints so that ``evaluators.checkpoint.load_model`` can rebuild the model.

    Raises :class:`TrainingDiverged` on a non-finite loss. With ``resume``, a checkpoint in
    ``run_dir`` that cannot be resumed raises ``ValueError`` naming the file, before any step
    is trained and without touching the file: one that is not a current bsrnas checkpoint
    (a foreign or malicious pickle, an older format: it is never unpickled, see
    :mod:`evaluators.checkpoint`), one trained under another config, or one whose weights
    belong to another architecture. A search therefore never silently retrains over a trial's
    checkpoint it cannot read: the error reaches the caller, and the file stays for the user
    to inspect or delete.
    """
    with torch_threads(config.threads):  # restored however the run ends (even a refused resume)
        return _train(model, sampler, config, run_dir, resume, progress, writer, spec)


def _train(model, sampler, config: TrainConfig, run_dir, resume, progress, writer, spec) -> TrainResult:
    from tqdm.auto import tqdm

    device = config.resolved_device()
    seed_everything(config.seed)
    model.to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)

    start = 0
    loss_value = float("nan")
    ckpt_path = Path(run_dir) / CHECKPOINT_NAME if run_dir is not None else None
    if ckpt_path is not None:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        if resume and ckpt_path.exists():
            state = load_checkpoint(ckpt_path)  # ValueError for a file it cannot read safely
            start, loss_value = _resume(ckpt_path, state, config, model, optimizer, spec)

    own_writer = False
    if writer is None and run_dir is not None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops scalars an interrupted run logged after its last checkpoint.
        writer = SummaryWriter(log_dir=str(run_dir), purge_step=start if start else None)
        own_writer = True

    history: List[Tuple[int, float, float]] = []
    t0 = time.perf_counter()
    bar = tqdm(total=config.steps, initial=start, disable=not progress, desc="train", leave=False)
    try:
        for step in range(start, config.steps):
            _set_progress(model, step / (config.progress_steps or config.steps))
            lr_now = config.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr_now
            lr_img, hr_img = sampler.sample(step)
            lr_img = lr_img.to(device, non_blocking=True)
            hr_img = hr_img.to(device, non_blocking=True)
            loss = F.l1_loss(model(lr_img), hr_img)
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrainingDiverged(step, loss_value)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            done = step + 1
            if config.log_every and (step % config.log_every == 0 or done == config.steps):
                history.append((step, loss_value, lr_now))
                if writer is not None:
                    writer.add_scalar("train/loss", loss_value, step)
                    writer.add_scalar("train/lr", lr_now, step)
            if ckpt_path is not None and (
                (config.checkpoint_every and done % config.checkpoint_every == 0)
                or done == config.steps
            ):
                _save(ckpt_path, spec, model, optimizer, config, done, loss_value)
            if ckpt_path is not None and config.schedule == "wsd" and done == config.stable_steps:
                _save(ckpt_path.with_name(STABLE_NAME), spec, model, optimizer, config, done, loss_value)
            bar.update(1)
            if progress and (step % 10 == 0 or done == config.steps):
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr_now:.2e}")
    finally:
        bar.close()
        if own_writer:
            writer.close()
        elif writer is not None:
            writer.flush()
        _set_progress(model, min(1.0, config.steps / (config.progress_steps or config.steps)))
    model.eval()
    return TrainResult(
        steps=config.steps,
        final_loss=loss_value,
        seconds=time.perf_counter() - t0,
        resumed_from=start,
        history=history,
        checkpoint=str(ckpt_path) if ckpt_path is not None else None,
    )
