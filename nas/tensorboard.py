"""TensorBoard view of a search: ``tensorboard --logdir runs/NAME``.

What is written, and where (every folder is one TensorBoard "run"):

* ``trials/NNNN/hparams/``: the trial's HParams *session* (run ``trials/NNNN/hparams``; the
  proxy training's own scalars ``train/loss``, ``train/lr`` stay in ``trials/NNNN/``, a run
  of its own). Its hparams are the trial's Optuna parameters (every choice of the space,
  labels such as ``body.3.parts``) plus ``preset`` (the preset name or ``-``); its metrics are
  the scalars ``psnr_y``, ``latency_ms``, ``bops``, ``params``, ``model_bytes``, ``feasible``
  (1/0) and ``on_front`` (1/0). ``on_front`` is re-logged (a later step, a later event file
  in the same folder) whenever a later trial changes the front; the HParams dashboard shows
  the last value, so it is always current.

  Exactly once, also with several processes on one run folder and after a ``kill -9``: the
  session (start info, end info and the metrics) is written completely into a hidden
  temporary file in that folder (a name TensorBoard does not read), flushed, then published
  under the fixed name ``events.out.tfevents.0000000000.bsrnas-session`` with ``os.link``,
  which never replaces an existing file: of two processes writing the same trial's session,
  one publishes it, the other sees it exists and only logs its ``on_front``. "Already
  written" means that file exists (it only ever appears complete); a folder that holds
  training scalars but no session gets its session. Run folders written before this layout
  (the session in ``trials/NNNN/`` itself) are recognised by reading their event files for
  the session-start summary, so a resume never writes a second session for them.
  Every COMPLETE trial of the study gets its session from the next process that logs (after
  its next trial, or at the end of a search / ``bsrnas pareto``); FAIL trials get none.
  A multi-fidelity search (``nas.rungs``) adds the metrics ``psnr_y_rung_K``: the trial's
  PSNR_Y at each rung K it reached, logged into its session folder when the rung finishes
  (``.rungs_logged`` there counts the rungs already logged, so none is logged twice).
* ``hparams/``: the HParams *experiment config* (every hparam with its discrete domain, every
  metric). TensorBoard expects exactly one run holding it, so this folder is rewritten (old
  event file removed) each time the experiment grows.
* ``search/``: the scalar ``hypervolume`` after each trial (step = trial number), the scalar
  ``front_size``, the Pareto scatter figure ``pareto`` (presets marked, the bicubic PSNR_Y of
  the validation items as a horizontal line when known, updated at the end of a search and by
  ``bsrnas pareto``) and SR sample images of the front members
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
import socket
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from nas import pareto
from nas.runfolder import RunFolder

METRICS = ("psnr_y", "latency_ms", "bops", "params", "model_bytes", "feasible", "on_front")
#: subfolder of ``trials/NNNN/`` holding the trial's HParams session (its own TensorBoard run)
SESSION_DIR = "hparams"
#: the session's event file: a fixed name (one per trial, published atomically, see the module
#: doc) that sorts before every SummaryWriter file of the folder (``...tfevents.<time>...``)
SESSION_FILE = "events.out.tfevents.0000000000.bsrnas-session"
SESSION_START_TAG = "_hparams_/session_start_info"  # tensorboard.plugins.hparams.metadata


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


def rung_metric(k: int) -> str:
    return f"psnr_y_rung_{int(k)}"


def metric_values(record: Mapping[str, Any], on_front: bool) -> Dict[str, float]:
    out = {rung_metric(k): float(v) for k, v in enumerate(record.get("psnr_y_by_rung") or ())}
    for k in METRICS[:-2]:
        if record.get(k) is not None:
            out[k] = float(record[k])
    out["feasible"] = 1.0 if record.get("feasible", True) else 0.0
    out["on_front"] = 1.0 if on_front else 0.0
    return out


def _has_session_start(path: str) -> bool:
    """Whether the event file ``path`` holds an HParams session-start summary (a file being
    written, or cut short, is read as far as it is complete)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    try:
        for event in EventFileLoader(path).Load():
            if any(v.tag == SESSION_START_TAG for v in event.summary.value):
                return True
    except (OSError, ValueError):
        return False
    return False


def session_run(trial_dir: str) -> Optional[str]:
    """The folder (TensorBoard run) holding the HParams session of the trial folder
    ``trial_dir``, or None when none is written: ``trial_dir/hparams`` when its published
    session file exists, else ``trial_dir`` itself when one of its own event files really
    contains a session-start summary (layout of older versions). Training scalars alone
    (``train/loss``) are never taken for a session."""
    new = os.path.join(trial_dir, SESSION_DIR)
    if os.path.isfile(os.path.join(new, SESSION_FILE)):
        return new
    for path in sorted(glob.glob(os.path.join(trial_dir, "events.out.tfevents.*"))):
        if _has_session_start(path):
            return trial_dir
    return None


def logged_on_front(session_dir: str) -> Optional[bool]:
    """The ``on_front`` flag a session folder shows now (the value at the largest step, the
    latest written on ties), or None when it holds none."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    last = None
    for path in sorted(glob.glob(os.path.join(session_dir, "events.out.tfevents.*"))):
        try:
            for event in EventFileLoader(path).Load():
                for v in event.summary.value:
                    if v.tag != "on_front":
                        continue
                    if v.HasField("simple_value"):
                        value = float(v.simple_value)
                    elif v.HasField("tensor"):  # the loader turns simple values into tensors
                        from tensorboard.util import tensor_util

                        value = float(tensor_util.make_ndarray(v.tensor).item())
                    else:
                        continue
                    key = (event.step, event.wall_time)
                    if last is None or key >= last[0]:
                        last = (key, value)
        except (OSError, ValueError):
            continue
    return None if last is None else bool(last[1] >= 0.5)


def write_session(trial_dir: str, hparams_values: Mapping[str, Any], metrics: Mapping[str, float]) -> bool:
    """Publish one HParams session (start info, metrics at step 0, end info) as
    ``trial_dir/hparams/SESSION_FILE``, atomically and at most once (module doc). Returns True
    when this call published it, False when that file already existed (the caller checks
    ``session_run`` first for a session in the older layout)."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter
    from torch.utils.tensorboard.summary import hparams, scalar

    d = os.path.join(trial_dir, SESSION_DIR)
    os.makedirs(d, exist_ok=True)
    _, ssi, sei = hparams(dict(hparams_values), dict(metrics))
    now = time.time()
    events = [Event(wall_time=now, file_version="brain.Event:2"), Event(wall_time=now, step=0, summary=ssi)]
    events += [Event(wall_time=now, step=0, summary=scalar(k, float(v))) for k, v in metrics.items()]
    events.append(Event(wall_time=now, step=0, summary=sei))
    final = os.path.join(d, SESSION_FILE)
    # hidden, and without "tfevents" in its name: TensorBoard never reads a half-written session
    tmp = os.path.join(d, f".session-{socket.gethostname()}-{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            out = RecordWriter(fh)
            for e in events:
                out.write(e.SerializeToString())
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, final)  # fails when the file exists: exactly one process publishes
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: replace (same run, same session)
            if os.path.exists(final):
                return False
            os.replace(tmp, final)
        return True
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class SearchBoard:
    """Writes the TensorBoard files of one run folder (see the module docstring)."""

    def __init__(self, run: RunFolder, cost_key: str, reference: Tuple[float, float]):
        self.run = run
        self.cost_key = cost_key
        self.reference = (float(reference[0]), float(reference[1]))
        self._on_front: Dict[int, bool] = {}
        self._logged: set = set()
        self._domains: Dict[str, List[Any]] = {}
        self._session_dirs: Dict[int, str] = {}  # trial -> run folder of its session, once seen
        self._n_rungs = 0  # rung metrics in the experiment config

    # --------------------------------------------------------------------- sessions
    def session_dir(self, number: int) -> str:
        """The TensorBoard run of trial ``number``'s HParams session (``trials/NNNN/hparams``,
        or ``trials/NNNN`` for a session written there by an older version)."""
        return self._session_dirs.get(int(number)) or os.path.join(self.run.trial_dir(number), SESSION_DIR)

    def _session(self, record: Mapping[str, Any], on_front: bool, step: int) -> bool:
        """Publish the trial's session unless one exists; True when this call published it.
        When another process published it first, log this process's ``on_front`` instead."""
        number = int(record["trial"])
        if not write_session(self.run.trial_dir(number), trial_hparams(record), metric_values(record, on_front)):
            self._update_front_flag(number, on_front, step)
            return False
        return True

    def _mark_rungs(self, record: Mapping[str, Any]) -> None:
        """A session just published with the rung values it shows: count them as logged."""
        chain = record.get("psnr_y_by_rung") or ()
        if chain:
            from space.files import atomic_write

            atomic_write(os.path.join(self.session_dir(int(record["trial"])), ".rungs_logged"), f"{len(chain)}\n")

    def _update_front_flag(self, number: int, on_front: bool, step: int) -> None:
        w = _writer(self.session_dir(number))
        try:
            w.add_scalar("on_front", 1.0 if on_front else 0.0, step)
        finally:
            w.close()

    def _log_rungs(self, record: Mapping[str, Any], step: int) -> None:
        """Log the rung values of a trial that its session does not show yet."""
        chain = record.get("psnr_y_by_rung") or ()
        if not chain:
            return
        d = self.session_dir(int(record["trial"]))
        mark = os.path.join(d, ".rungs_logged")
        try:
            with open(mark) as fh:
                done = int(fh.read().strip() or 0)
        except (OSError, ValueError):
            done = 0
        if done >= len(chain):
            return
        w = _writer(d)
        try:
            for k in range(done, len(chain)):
                w.add_scalar(rung_metric(k), float(chain[k]), step)
        finally:
            w.close()
        from space.files import atomic_write

        atomic_write(mark, f"{len(chain)}\n")

    def _experiment(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite the single experiment config from every hparam value seen so far."""
        from torch.utils.tensorboard.summary import hparams

        grown = False
        n_rungs = max((len(r.get("psnr_y_by_rung") or ()) for r in records), default=0)
        if n_rungs > self._n_rungs:
            self._n_rungs, grown = n_rungs, True
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
        metrics = METRICS + tuple(rung_metric(k) for k in range(self._n_rungs))
        exp, _, _ = hparams(hp, {m: 0.0 for m in metrics}, hparam_domain_discrete=domains)
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
                elif self._session(r, now, step):
                    self._mark_rungs(r)
            elif self._on_front.get(n) != now:
                self._update_front_flag(n, now, step)
            self._log_rungs(r, step)
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
        """Whether trial ``number``'s session is on disk (see ``session_run``)."""
        found = session_run(self.run.trial_dir(number))
        if found is not None:
            self._session_dirs[int(number)] = found
        return found is not None

    def resume_from(self, records: Sequence[Mapping[str, Any]]) -> None:
        """After a resume (or in another worker): sessions already on disk count as logged and
        are never written again; COMPLETE trials without one (a process killed between telling
        the trial and publishing its session) get theirs at the next ``update``. The
        ``on_front`` each session shows is read back, so the next ``update`` re-logs exactly the
        flags that are stale (a process killed before it updated them)."""
        for r in records:
            n = int(r["trial"])
            if self._has_session(n):
                self._logged.add(n)
                shown = logged_on_front(self.session_dir(n))
                if shown is None:
                    self._on_front.pop(n, None)
                else:
                    self._on_front[n] = shown
            for k, v in trial_hparams(r).items():
                dom = self._domains.setdefault(k, [])
                if v not in dom:
                    dom.append(v)

    def figure(self, records: Sequence[Mapping[str, Any]], step: int, title: Optional[str] = None,
               reference: Optional[float] = None) -> None:
        """The Pareto scatter figure (presets marked; ``reference``: the bicubic PSNR_Y drawn as
        a horizontal line labelled "bicubic") in the ``search`` run."""
        members = pareto.front(records, self.cost_key)
        fig = pareto.scatter_figure(records, members, self.cost_key, title, reference=reference)
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


def _one_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of ``text``, at most ``limit`` characters."""
    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def front_samples(run: RunFolder, members: Sequence[Mapping[str, Any]], data_root=None,
                  limit: int = 8, skipped: Optional[List[Tuple[str, str]]] = None) -> List[Tuple[int, Any]]:
    """``(trial, image)`` per front member whose trial folder holds the proxy checkpoint:
    the first validation image as [bicubic | SR of the member | HR] side by side (uint8 HWC).
    Members without a checkpoint (duplicates, or evaluators that keep none) are skipped; so is
    a member whose checkpoint cannot be read (corrupt, foreign, or refused by
    ``evaluators.checkpoint.load_model``): ``(path, one-line reason)`` is appended to
    ``skipped`` for it, and the other members still get their samples."""
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
        try:
            spec, model = load_model(ckpt)
        except (ValueError, OSError) as exc:
            if skipped is not None:
                skipped.append((ckpt, _one_line(exc) or type(exc).__name__))
            continue
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
