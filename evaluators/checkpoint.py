"""Checkpoint files: one format for proxy runs, retraining and anything that loads a model.

A checkpoint is a ``torch.save`` of a plain dict::

    {"format": "bsrnas-checkpoint-1",
     "spec":   ArchSpec JSON text (or None for a model that has no spec, e.g. in tests),
     "model":  model.state_dict(),
     ...training state: "optimizer", "scheduler", "step", "rng", "train_config", ...}

Files are written atomically: the dict goes to ``<path>.tmp-<pid>`` first, is flushed to
disk, then ``os.replace`` moves it over ``path``; an interruption at any moment leaves either
the old complete file or the new complete file, never a truncated one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

FORMAT = "bsrnas-checkpoint-1"


def _spec_json(spec) -> Any:
    if spec is None or isinstance(spec, str):
        return spec
    to_json = getattr(spec, "to_json", None)
    if to_json is None:
        raise ValueError(f"spec must be an ArchSpec (with to_json), a JSON string or None; got {spec!r}")
    return to_json()


def save_checkpoint(path: os.PathLike, spec, model: torch.nn.Module, **state: Any) -> Path:
    """Write ``model``'s weights, ``spec`` and any extra training ``state`` to ``path``
    atomically. Returns the path."""
    path = Path(path)
    reserved = {"format", "spec", "model"} & set(state)
    if reserved:
        raise ValueError(f"state keys {sorted(reserved)} are reserved by the checkpoint format")
    payload: Dict[str, Any] = {"format": FORMAT, "spec": _spec_json(spec), "model": model.state_dict()}
    payload.update(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: os.PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a checkpoint dict. A missing file raises ``FileNotFoundError`` and an unreadable
    or foreign one ``ValueError``, both naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    try:
        # weights_only=False: the file also holds Python RNG state and NumPy arrays; only
        # load checkpoints you wrote yourself (as with any pickle).
        data = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated zip, not a torch file, unpickling error ...
        raise ValueError(f"checkpoint file {str(path)!r} is corrupt or not a checkpoint: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"checkpoint file {str(path)!r} has format {got!r}; expected {FORMAT!r}")
    return data


def load_model(path: os.PathLike, map_location: Any = "cpu") -> Tuple[Any, torch.nn.Module]:
    """Rebuild the model stored in a checkpoint: ``(spec, model)`` with the model in eval mode."""
    from space.builder import build
    from space.spec import ArchSpec

    data = load_checkpoint(path, map_location=map_location)
    if data.get("spec") is None:
        raise ValueError(f"checkpoint file {str(path)!r} holds no spec; cannot rebuild its model")
    spec = ArchSpec.from_json(data["spec"])
    model = build(spec)
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint file {str(path)!r}: weights do not fit its spec: {exc}") from exc
    model.eval()
    return spec, model
