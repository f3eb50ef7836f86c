"""The outputs of a run folder, written at the end of a search and by ``bsrnas pareto``.

In this order, so that a later step failing never costs an earlier one:

1. The bicubic reference: the PSNR_Y of MATLAB bicubic upscaling on exactly the validation
   items the proxy scores (same data root, ``val_set``, ``max_val_images`` and scale,
   ``ProxyEvaluator.bicubic_psnr``). Computed once and stored in the study as the user
   attribute ``bicubic_psnr_y``; a search computes it from its own evaluator (an injected
   evaluator without ``bicubic_psnr``, e.g. a test's fake, gives none), ``bsrnas pareto`` on
   an older run folder without the attribute from the run's ``config.yaml`` (``evaluator``
   section, ``data.root``) and the scale of the trials' specs. When it cannot be computed
   (data folder gone, ...) a one-line warning is logged and the outputs go without it.
2. ``pareto.json``, ``pareto.csv``, ``pareto.png`` (``nas.pareto.write_all``; the png has the
   reference as a horizontal line labelled "bicubic").
3. TensorBoard (``nas.tensorboard``): every COMPLETE trial's session, the hypervolume, the
   Pareto figure (with the same line) and SR samples of the front. A front member whose
   checkpoint cannot be read (corrupt, foreign, refused by ``evaluators.checkpoint``) is
   skipped for the samples and reported as ``(path, reason)``; the search logs a warning,
   ``bsrnas pareto`` exits with status 2 after writing everything (``nas.commands.pareto``).
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from nas import pareto
from nas.runfolder import RunFolder, records
from nas.tensorboard import SearchBoard

BICUBIC_ATTR = "bicubic_psnr_y"
DEFAULT_FACTORY = "evaluators.proxy:ProxyEvaluator"

#: ``(records) -> bicubic PSNR_Y or None``: how a caller computes a missing reference
BicubicFn = Callable[[Sequence[Mapping[str, Any]]], Optional[float]]


def _stderr(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr)


# ----------------------------------------------------------------------------- reference

def bicubic_from_settings(scale: int, data_root=None, val_set: Optional[str] = None,
                          max_val_images: Optional[int] = None) -> float:
    """Bicubic PSNR_Y on the validation items a ``ProxyEvaluator`` with these settings scores
    at ``scale`` (only the settings that choose the items matter; nothing is trained)."""
    from evaluators.proxy import ProxyEvaluator

    ev = ProxyEvaluator(data_root=data_root, val_set=val_set, max_val_images=max_val_images)
    return float(ev.bicubic_psnr(int(scale))["psnr_y"])


def bicubic_for_search(search) -> Optional[float]:
    """The reference of a ``nas.search.Search``: None when its trials are scored by another
    evaluator factory (Ray workers building something else than the proxy); else from its
    evaluator when it holds one (None when that evaluator, e.g. an injected fake, has no
    ``bicubic_psnr``), else from ``search.evaluator_kwargs()``."""
    if getattr(search, "evaluator_factory", DEFAULT_FACTORY) != DEFAULT_FACTORY:
        return None
    scale = int(search.space.scale)
    ev = getattr(search, "_evaluator", None)
    if ev is None:
        kw = search.evaluator_kwargs()
        return bicubic_from_settings(scale, kw.get("data_root"), kw.get("val_set"), kw.get("max_val_images"))
    fn = getattr(ev, "bicubic_psnr", None)
    if fn is None:
        return None
    return float(fn(scale)["psnr_y"])


def run_scale(recs: Sequence[Mapping[str, Any]]) -> Optional[int]:
    """The one upscaling factor of the trials' specs (None: no spec, or several)."""
    scales = {int(r["spec"]["scale"]) for r in recs
              if isinstance(r.get("spec"), Mapping) and r["spec"].get("scale") is not None}
    return scales.pop() if len(scales) == 1 else None


def bicubic_for_config(cfg: Mapping[str, Any], recs: Sequence[Mapping[str, Any]]) -> Optional[float]:
    """The reference of a run folder from its stored ``config.yaml`` (``cfg``) and the scale of
    its trials' specs; None when the specs give no single scale."""
    scale = run_scale(recs)
    if scale is None:
        return None
    ev = cfg.get("evaluator") or {}
    stored = ((cfg.get("proxy_settings") or {}).get("data") or {})
    root = stored["root"] if "root" in stored else (cfg.get("data") or {}).get("root")
    return bicubic_from_settings(scale, root, ev.get("val_set"), ev.get("max_val_images"))


def reference(study, compute: Optional[BicubicFn] = None,
              recs: Optional[Sequence[Mapping[str, Any]]] = None,
              log: Optional[Callable[[str], None]] = None) -> Optional[float]:
    """The study's ``bicubic_psnr_y``; when missing and ``compute`` is given, computed from
    ``recs``, stored in the study and returned. A failure to compute is logged (one line) and
    gives None."""
    log = log or _stderr
    stored = study.user_attrs.get(BICUBIC_ATTR)
    if stored is not None:
        return float(stored)
    if compute is None:
        return None
    try:
        value = compute(records(study) if recs is None else recs)
    except (OSError, ValueError) as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        log(f"warning: bicubic reference not computed ({first}); outputs written without it")
        return None
    if value is None or not math.isfinite(float(value)):
        return None
    study.set_user_attr(BICUBIC_ATTR, float(value))
    return float(value)


# ----------------------------------------------------------------------------- the outputs

def write_files(run: RunFolder, cost_key: str, study, title: Optional[str] = None,
                bicubic: Optional[BicubicFn] = None, log: Optional[Callable[[str], None]] = None
                ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]], Optional[float]]:
    """Steps 1-2 of the module doc; returns ``(records, front, reference)``."""
    recs = records(study, run)
    ref = reference(study, bicubic, recs, log)
    members = pareto.write_all(run.path, recs, cost_key, title, reference=ref)
    return recs, members, ref


def refresh_board(run: RunFolder, cost_key: str, study, recs: Sequence[Dict[str, Any]],
                  members: Sequence[Dict[str, Any]], board: Optional[SearchBoard] = None,
                  samples: bool = True, title: Optional[str] = None, data_root=None,
                  reference: Optional[float] = None,
                  skipped: Optional[List[Tuple[str, str]]] = None) -> None:
    """Step 3 of the module doc; unreadable checkpoints go to ``skipped`` as (path, reason)."""
    if board is None:
        board = SearchBoard(run, cost_key, tuple(study.user_attrs.get("hv_reference", (0.0, 1.0))))
        board.resume_from(recs)
    if recs:
        step = max(r["trial"] for r in recs)
        board.update(recs, step)
        board.figure(recs, step, title, reference=reference)
        if samples:
            from nas.tensorboard import front_samples

            board.samples(front_samples(run, members, data_root, skipped=skipped), step)


def write_outputs(run: RunFolder, cost_key: str, study, board: Optional[SearchBoard] = None,
                  samples: bool = True, title: Optional[str] = None, data_root=None,
                  bicubic: Optional[BicubicFn] = None, skipped: Optional[List[Tuple[str, str]]] = None,
                  log: Optional[Callable[[str], None]] = None) -> List[Dict[str, Any]]:
    """Write the Pareto files of a run folder and refresh its TensorBoard view (module doc);
    returns the front."""
    recs, members, ref = write_files(run, cost_key, study, title, bicubic, log)
    refresh_board(run, cost_key, study, recs, members, board, samples, title, data_root, ref, skipped)
    return members


def skipped_line(run: RunFolder, path: str, reason: str) -> str:
    """``trials/0003/checkpoint.pt: <reason>; SR sample skipped`` (path relative to the run)."""
    rel = os.path.relpath(path, run.path)
    return f"{rel}: {reason}; SR sample skipped"


def search_outputs(search) -> List[Dict[str, Any]]:
    """The outputs of a ``nas.search.Search`` at its end (``Search.finalize``)."""
    skipped: List[Tuple[str, str]] = []
    members = write_outputs(search.run, search.cost_key, search.study, search.board,
                            samples=search.cfg["tensorboard"]["sample_images"], title=search.cfg["name"],
                            data_root=search.evaluator_kwargs()["data_root"],
                            bicubic=lambda recs: bicubic_for_search(search), skipped=skipped, log=search.log)
    for path, reason in skipped:
        search.log("warning: " + skipped_line(search.run, path, reason))
    return members
