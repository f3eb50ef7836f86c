"""TensorBoard view of a search: ``tensorboard --logdir runs/NAME``.

What is written, and where (every folder is one TensorBoard "run"):

* ``trials/NNNN/``: one HParams *session* per finished trial. Its hparams are the trial's
  Optuna parameters (every choice of the space, labels such as ``body.3.parts``) plus
  ``preset`` (the preset name or ``-``); its metrics are the scalars ``psnr_y``,
  ``latency_ms``, ``bops``, ``params``, ``model_bytes``, ``feasible`` (1/0) and ``on_front``
  (1/0). ``on_front`` is re-logged (a later step) whenever a later trial changes the front;
  the HParams dashboard shows the last value, so it is always current.
* ``hparams/``: the HParams *experiment config* (every hparam with its discrete domain, every
  metric). TensorBoard expects exactly one run holding it, so this folder is rewritten (old
  event file removed) each time the experiment grows.
* ``search/``: the scalar ``hypervolume`` after each trial (step = trial number), the scalar
  ``front_size``, the Pareto scatter figure ``pareto`` (presets marked, updated at the end of
  a search and by ``bsrnas pareto``) and SR sample images of the front members
  (``samples/trial_NNNN``) when a trial folder holds a model checkpoint.

Hypervolume reference point: ``(psnr_y, cost) = (hv_reference.psnr_y, hv_reference.cost)``;
by default 0 dB and the cost budget, else 1.1 x the largest cost seen among the random
feasibility samples drawn before the search started; it is stored in the study (user
attribute ``hv_reference``) so a resumed search keeps the same reference and the curve is
comparable across the whole run. See ``nas.pareto.hypervolume_2d`` for the formula.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from nas import pareto
from nas.runfolder import RunFolder

METRICS = ("psnr_y", "latency_ms", "bops", "params", "model_bytes", "feasible", "on_front")


def _writer(logdir: str):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=logdir)


def hparam_value(v: Any):
    """HParams values are numbers or strings: bools and anything else become strings."""
    if isinstance(v, bool) or v is None:
        return str(v).lower()
    if isinstance(v, (int, float)):
        return v
    return str(v)


def trial_hparams(record: Mapping[str, Any]) -> Dict[str, Any]:
    hp = {k: hparam_value(v) for k, v in sorted(record.get("params_choice", {}).items())}
    hp["preset"] = record.get("preset") or "-"
    return hp


def metric_values(record: Mapping[str, Any], on_front: bool) -> Dict[str, float]:
    out = {}
    for k in METRICS[:-2]:
        if record.get(k) is not None:
            out[k] = float(record[k])
    out["feasible"] = 1.0 if record.get("feasible", True) else 0.0
    out["on_front"] = 1.0 if on_front else 0.0
    return out


class SearchBoard:
    """Writes the TensorBoard files of one run folder (see the module docstring)."""

    def __init__(self, run: RunFolder, cost_key: str, reference: Tuple[float, float]):
        self.run = run
        self.cost_key = cost_key
        self.reference = (float(reference[0]), float(reference[1]))
        self._on_front: Dict[int, bool] = {}
        self._logged: set = set()
        self._domains: Dict[str, List[Any]] = {}

    # --------------------------------------------------------------------- sessions
    def _session(self, record: Mapping[str, Any], on_front: bool) -> None:
        from torch.utils.tensorboard.summary import hparams

        hp = trial_hparams(record)
        metrics = metric_values(record, on_front)
        _, ssi, sei = hparams(hp, metrics)
        w = _writer(self.run.trial_dir(record["trial"]))
        try:
            w.file_writer.add_summary(ssi)
            w.file_writer.add_summary(sei)
            for k, v in metrics.items():
                w.add_scalar(k, v, 0)
        finally:
            w.close()

    def _update_front_flag(self, number: int, on_front: bool, step: int) -> None:
        w = _writer(self.run.trial_dir(number))
        try:
            w.add_scalar("on_front", 1.0 if on_front else 0.0, step)
        finally:
            w.close()

    def _experiment(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite the single experiment config from every hparam value seen so far."""
        from torch.utils.tensorboard.summary import hparams

        grown = False
        for r in records:
            for k, v in trial_hparams(r).items():
                dom = self._domains.setdefault(k, [])
                if v not in dom:
                    dom.append(v)
                    grown = True
        if not grown and os.path.isdir(self.run.file("hparams")):
            return
        hp, domains = {}, {}
        for k, dom in sorted(self._domains.items()):
            kinds = {type(v) for v in dom}
            if kinds <= {int, float} and len(kinds) >= 1:
                vals = [float(v) for v in dom]
                hp[k] = vals[0]
            else:
                vals = [str(v) for v in dom]
                hp[k] = vals[0]
            domains[k] = sorted(set(vals), key=lambda x: (str(type(x)), x))
        exp, _, _ = hparams(hp, {m: 0.0 for m in METRICS}, hparam_domain_discrete=domains)
        d = self.run.file("hparams")
        for old in glob.glob(os.path.join(d, "events.out.tfevents.*")):
            os.remove(old)
        w = _writer(d)
        try:
            w.file_writer.add_summary(exp)
        finally:
            w.close()

    # --------------------------------------------------------------------- public
    def update(self, records: Sequence[Mapping[str, Any]], step: Optional[int] = None) -> float:
        """Log every record not logged yet, refresh ``on_front`` flags and the experiment
        config, and log the hypervolume at ``step`` (default: the largest trial number).
        Returns the hypervolume."""
        members = pareto.front(records, self.cost_key)
        front_ids = {int(r["trial"]) for r in members}
        step = max((int(r["trial"]) for r in records), default=0) if step is None else int(step)
        for r in records:
            n = int(r["trial"])
            now = n in front_ids
            if n not in self._logged:
                if self._has_session(n):  # written by another process: refresh its flag
                    self._update_front_flag(n, now, step)
                else:
                    self._session(r, now)
            elif self._on_front.get(n) != now:
                self._update_front_flag(n, now, step)
            self._logged.add(n)
            self._on_front[n] = now
        if records:
            self._experiment(records)
        hv = pareto.hypervolume_2d([(r["psnr_y"], r[self.cost_key]) for r in members], self.reference)
        w = _writer(self.run.search_tb_dir)
        try:
            w.add_scalar("hypervolume", hv, step)
            w.add_scalar("front_size", len(members), step)
        finally:
            w.close()
        return hv

    def _has_session(self, number: int) -> bool:
        return bool(glob.glob(os.path.join(self.run.trial_dir(number), "events.out.tfevents.*")))

    def resume_from(self, records: Sequence[Mapping[str, Any]]) -> None:
        """After a resume: treat sessions already on disk as logged with the current front."""
        members = pareto.front(records, self.cost_key)
        ids = {int(r["trial"]) for r in members}
        for r in records:
            n = int(r["trial"])
            if self._has_session(n):
                self._logged.add(n)
                self._on_front[n] = n in ids
            for k, v in trial_hparams(r).items():
                dom = self._domains.setdefault(k, [])
                if v not in dom:
                    dom.append(v)

    def figure(self, records: Sequence[Mapping[str, Any]], step: int, title: Optional[str] = None) -> None:
        """The Pareto scatter figure (presets marked) in the ``search`` run."""
        members = pareto.front(records, self.cost_key)
        fig = pareto.scatter_figure(records, members, self.cost_key, title)
        w = _writer(self.run.search_tb_dir)
        try:
            w.add_figure("pareto", fig, step, close=False)
        finally:
            w.close()

    def samples(self, images: Iterable[Tuple[int, Any]], step: int) -> int:
        """SR sample images ``(trial, HWC uint8 or float array)`` of front members."""
        n = 0
        w = _writer(self.run.search_tb_dir)
        try:
            for number, img in images:
                w.add_image(f"samples/trial_{int(number):04d}", img, step, dataformats="HWC")
                n += 1
        finally:
            w.close()
        return n


def front_samples(run: RunFolder, members: Sequence[Mapping[str, Any]], data_root=None,
                  limit: int = 8) -> List[Tuple[int, Any]]:
    """``(trial, image)`` per front member whose trial folder holds the proxy checkpoint:
    the first validation image as [bicubic | SR of the member | HR] side by side (uint8 HWC).
    Members without a checkpoint (duplicates, or evaluators that keep none) are skipped."""
    import numpy as np

    out: List[Tuple[int, Any]] = []
    todo = [m for m in members if m.get("spec")]
    if not todo:
        return out
    try:
        from evaluators.checkpoint import load_model
        from evaluators.data import validation_set
        from evaluators.evaluate import bicubic_sr_fn, model_sr_fn
        from evaluators.metrics import to_uint8
        from evaluators.training import CHECKPOINT_NAME
    except ModuleNotFoundError:
        return out
    items: Dict[int, Any] = {}
    for m in todo[:limit]:
        ckpt = os.path.join(run.trial_dir(m["trial"]), CHECKPOINT_NAME)
        if not os.path.isfile(ckpt):
            continue
        spec, model = load_model(ckpt)
        scale = int(spec.scale)
        if scale not in items:
            items[scale] = next(iter(validation_set(data_root, scale=scale)))
        _, hr, lr = items[scale]
        sr = to_uint8(model_sr_fn(model)(lr))
        bic = to_uint8(bicubic_sr_fn(scale)(lr))
        row = [np.atleast_3d(a) for a in (bic, sr, hr)]
        row = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in row]
        out.append((int(m["trial"]), np.concatenate(row, axis=1)))
    return out
