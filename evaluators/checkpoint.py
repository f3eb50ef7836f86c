"""Checkpoint files: one format for proxy runs, retraining and anything that loads a model.

A checkpoint is a ``torch.save`` of a plain dict of tensors and plain values only::

    {"format": "bsrnas-checkpoint-2",
     "spec":   ArchSpec JSON text (str), or None for a model that has no spec (e.g. in tests),
     "model":  model.state_dict()          (parameter name -> tensor),
     ...training state: "optimizer", "scheduler", "step", "rng", "train_config", ...}

"Plain values" are ``None``, ``bool``, ``int``, ``float``, ``str`` and ``dict`` (str or int
keys) / ``list`` / ``tuple`` of them; everything else must be a ``torch.Tensor``.
:func:`save_checkpoint` refuses any other object (naming its key), and :func:`load_checkpoint`
reads with ``torch.load(weights_only=True)`` *always*: loading a checkpoint never imports or
calls anything named by the file, so a run folder or checkpoint from someone else is safe to
open. A file that does not load that way (a pickle of arbitrary Python objects, a format-1
checkpoint of older bsrnas versions, which pickled NumPy RNG state, garbage bytes) or that
loads but is not a current bsrnas checkpoint is refused with a one-line ``ValueError`` naming
the file.

Files are written atomically (``space.files.atomic_write``): the dict goes to a temporary file
beside ``path`` first, is flushed to disk, then ``os.replace`` moves it over ``path``; an interruption at any moment leaves either
the old complete file or the new complete file, never a truncated one.
"""
from __future__ import annotations

import os
import re
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from space.files import atomic_write

FORMAT = "bsrnas-checkpoint-2"
#: formats of earlier releases, named in the refusal message
OLD_FORMATS = ("bsrnas-checkpoint-1",)

_SCALARS = (type(None), bool, int, float, str)


def _spec_json(spec) -> Any:
    if spec is None or isinstance(spec, str):
        return spec
    to_json = getattr(spec, "to_json", None)
    if to_json is None:
        raise ValueError(f"spec must be an ArchSpec (with to_json), a JSON string or None; got {spec!r}")
    return to_json()


def check_plain(value: Any, where: str) -> None:
    """Raise ``ValueError`` naming the key path ``where`` of the first value in ``value`` that
    is neither a tensor nor a plain value (see the module docstring)."""
    if isinstance(value, torch.Tensor) or type(value) in _SCALARS:
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise ValueError(f"checkpoint value {where}: key {key!r} of type "
                                 f"{type(key).__name__}; allowed keys: str or int")
            check_plain(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple, torch.Size):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    raise ValueError(f"checkpoint value {where} = {value!r} has type {type(value).__module__}."
                     f"{type(value).__qualname__}; allowed: tensors, None, bool, int, float, str "
                     f"and dict/list/tuple of them")


def save_checkpoint(path: os.PathLike, spec, model: torch.nn.Module, **state: Any) -> Path:
    """Write ``model``'s weights, ``spec`` and any extra training ``state`` (tensors and plain
    values only) to ``path`` atomically. Returns the path."""
    path = Path(path)
    reserved = {"format", "spec", "model"} & set(state)
    if reserved:
        raise ValueError(f"state keys {sorted(reserved)} are reserved by the checkpoint format")
    payload: Dict[str, Any] = {"format": FORMAT, "spec": _spec_json(spec), "model": model.state_dict()}
    payload.update(state)
    for key, value in payload.items():
        check_plain(value, repr(key))
    return atomic_write(path, lambda fh: torch.save(payload, fh), durable=True)


def one_line(text: str, limit: int = 300) -> str:
    """``text`` with its whitespace runs (newlines, tabs) collapsed to single spaces, cut at
    ``limit`` characters: error messages stay on one line."""
    line = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(text)).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _load_reason(exc: Exception) -> str:
    """One line saying why ``torch.load(weights_only=True)`` refused a file."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+) was not an allowed global", text)
    if found:
        name = found.group(1)
        hint = (f"; {OLD_FORMATS[0]} files of older bsrnas versions stored NumPy RNG state "
                f"and are no longer read: train again to get a {FORMAT} file"
                if name.startswith("numpy") else "")
        return (f"it holds a pickled Python object ({name}), which is never loaded: only "
                f"tensors and plain values are{hint}")
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    line = found.group(1) if found else next((ln for ln in text.splitlines() if ln.strip()), "")
    line = one_line(line, 160)
    return f"it is corrupt or not a torch file of tensors and plain values ({type(exc).__name__}: {line})"


def load_checkpoint(path: os.PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a checkpoint dict with ``torch.load(weights_only=True)`` (no code from the file
    ever runs). A missing file raises ``FileNotFoundError``; a file that is not a current
    bsrnas checkpoint a one-line ``ValueError``; both name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    what = f"checkpoint file {str(path)!r} is not a current bsrnas checkpoint ({FORMAT})"
    # torch's warnings about a file it then refuses (e.g. "pickle protocol 4") would only
    # clutter the one-line refusal: they are shown only when the file loads.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # refused global, truncated zip, not a torch file ...
            raise ValueError(f"{what}: {_load_reason(exc)}") from None
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    if not isinstance(data, dict):
        raise ValueError(f"{what}: it holds a {type(data).__name__}, not a dict with key 'format'")
    got = data.get("format")
    if got != FORMAT:
        hint = (f" (an older format: train again to get a {FORMAT} file)" if got in OLD_FORMATS
                else "")
        raise ValueError(f"{what}: its format is {got!r}{hint}")
    spec = data.get("spec")
    if spec is not None and not isinstance(spec, str):
        raise ValueError(f"{what}: 'spec' is a {type(spec).__name__}; allowed: ArchSpec JSON text or None")
    weights = data.get("model")
    if not isinstance(weights, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise ValueError(f"{what}: 'model' is not a state dict (parameter name -> tensor)")
    return data


def checkpoint_spec_id(data: Dict[str, Any]):
    """The id of the spec stored in a loaded checkpoint dict, or None (no spec, unreadable)."""
    if not isinstance(data.get("spec"), str):
        return None
    try:
        from space.spec import ArchSpec

        return ArchSpec.from_json(data["spec"]).id
    except Exception:  # a malformed spec is reported where the spec is actually needed
        return None


def load_model(path: os.PathLike, map_location: Any = "cpu") -> Tuple[Any, torch.nn.Module]:
    """Rebuild the model stored in a checkpoint: ``(spec, model)`` with the model in eval mode.
    Loading is as safe as :func:`load_checkpoint`; errors are ``ValueError`` naming the file."""
    from space.builder import build
    from space.spec import ArchSpec

    data = load_checkpoint(path, map_location=map_location)
    if data.get("spec") is None:
        raise ValueError(f"checkpoint file {str(path)!r} holds no spec; cannot rebuild its model")
    try:
        spec = ArchSpec.from_json(data["spec"])
    except ValueError as exc:
        raise ValueError(f"checkpoint file {str(path)!r}: its spec is invalid: {one_line(exc)}") from None
    model = build(spec)
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint file {str(path)!r}: weights do not fit its spec: "
                         f"{one_line(exc)}") from None
    model.eval()
    return spec, model
