"""The search objective: one Optuna trial -> spec -> budget check -> (maybe) proxy training.

Objective values of a trial, in the study's direction order ``[maximize, minimize]``::

    values = (psnr_y, cost)          cost = latency_ms | bops | model_bytes (objectives.cost)

Budget constraints are upper bounds ``metric <= bound`` for ``metric`` in latency_ms, bops,
params, model_bytes. For every configured bound the trial records
``trial.set_constraint(metric, value - bound)`` (Optuna 5: feasible iff every value <= 0), so
a constraint-aware sampler (TPE, NSGA-II) learns where the budget lies. A candidate over any
bound is **never trained**: it is told with ``psnr_y = 0`` (the worst value; its true cost
stays as the second value) and ``feasible = false`` in its metrics. Cost and latency are
functions of the spec alone (``evaluators.cost.cost``, ``LatencyTable.predict``), so this
check costs nothing.

A diverged proxy training (the evaluator's ``diverged`` flag, or a non-finite PSNR) is also
told as 0 dB, with ``diverged = true`` in its metrics (the evaluator's own floor score is not
used, so every failure ranks alike).
A candidate whose spec id equals an earlier trained trial's reuses that trial's quality
(``duplicate_of``), so the sampler proposing a known design costs no training.

The work is split so that the Ray engine can run the middle part elsewhere:
``propose`` (driver: sample, cost, constraints) -> ``evaluate`` (anywhere: proxy training)
-> ``finish`` (driver: user attributes, metrics.json, objective values).
"""
from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from nas.runfolder import RunFolder

CONSTRAINT_KEYS = ("latency_ms", "bops", "params", "model_bytes")
WORST_PSNR = 0.0


def worker_tag() -> str:
    """host:pid of this process (stored on every trial; resume fails only dead workers' trials)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_is_gone(tag: str) -> bool:
    """Whether the worker ``host:pid`` is a process of this host that no longer exists (a tag
    of another host is never gone: only that host can tell; an unreadable pid is gone)."""
    host, _, pid = tag.rpartition(":")
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ValueError:
        return True
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class Candidate:
    """What ``propose`` learned about a trial before any training."""

    number: int
    spec: Any
    spec_json: str
    metrics: Dict[str, Any]
    violations: Dict[str, float]
    preset: Optional[str] = None
    duplicate_of: Optional[Dict[str, Any]] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.violations.values())


class Objective:
    """Scores trials. ``evaluator.evaluate(spec, run_dir=...)`` trains (ProxyEvaluator),
    ``latency.predict(spec)`` predicts ms (LatencyTable), ``cost_fn(spec, input_size)``
    counts (evaluators.cost.cost); all three are injectable for tests."""

    def __init__(self, space, evaluator, latency, run: RunFolder, *, cost_key: str = "latency_ms",
                 constraints: Optional[Mapping[str, Optional[float]]] = None,
                 input_size=(3, 32, 32), cost_fn: Optional[Callable] = None):
        if cost_key not in ("latency_ms", "bops", "model_bytes"):
            raise ValueError(f"objectives.cost: invalid value {cost_key!r}; "
                             "allowed: ['latency_ms', 'bops', 'model_bytes']")
        self.space = space
        self.evaluator = evaluator
        self.latency = latency
        self.run = run
        self.cost_key = cost_key
        self.bounds = {k: float(v) for k, v in (constraints or {}).items() if v is not None}
        for k in self.bounds:
            if k not in CONSTRAINT_KEYS:
                raise ValueError(f"constraints.{k}: unknown key; allowed keys: {list(CONSTRAINT_KEYS)}")
        self.input_size = tuple(int(v) for v in input_size)
        if cost_fn is None:
            from evaluators.cost import cost as cost_fn
        self.cost_fn = cost_fn

    # ------------------------------------------------------------------ instant part
    def static_metrics(self, spec) -> Dict[str, Any]:
        """Cost counts and predicted latency of a spec (no training)."""
        counts = dict(self.cost_fn(spec, self.input_size))
        out = {k: counts[k] for k in ("bops", "flops", "params", "model_bytes") if k in counts}
        if self.latency is not None:
            out["latency_ms"] = float(self.latency.predict(spec))
        return out

    def violations(self, metrics: Mapping[str, Any]) -> Dict[str, float]:
        """``value - bound`` for every configured bound (<= 0 is within budget)."""
        return {k: float(metrics[k]) - b for k, b in self.bounds.items()}

    def feasible(self, spec) -> bool:
        return all(v <= 0 for v in self.violations(self.static_metrics(spec)).values())

    def propose(self, trial, known: Optional[Mapping[str, Dict[str, Any]]] = None) -> Candidate:
        """Sample the trial's spec, compute its cost, set its constraints and user attributes.
        ``known`` maps spec id -> metrics of earlier trained trials (duplicate reuse)."""
        spec = self.space.sample(trial)
        metrics = self.static_metrics(spec)
        viol = self.violations(metrics)
        for name, value in viol.items():
            trial.set_constraint(name, value)
        preset = trial.user_attrs.get("preset") if hasattr(trial, "user_attrs") else None
        spec_json = spec.to_json()
        trial.set_user_attr("spec", spec_json)
        trial.set_user_attr("spec_id", spec.id)
        trial.set_user_attr("worker", worker_tag())
        cand = Candidate(trial.number, spec, spec_json, metrics, viol, preset)
        if known and cand.feasible and spec.id in known:
            cand.duplicate_of = dict(known[spec.id])
        self.run.write_trial(trial.number, spec_json, _jsonable(dict(metrics, state="RUNNING", preset=preset)))
        return cand

    # ------------------------------------------------------------------ training part
    def evaluate(self, cand: Candidate) -> Dict[str, Any]:
        """Train/evaluate a feasible candidate; never called for an infeasible one."""
        if not cand.feasible:  # defensive: the engines never get here
            raise RuntimeError(f"trial {cand.number} is over budget and must not be trained")
        if cand.duplicate_of is not None:
            src = cand.duplicate_of
            return {k: src.get(k) for k in ("psnr_y", "ssim_y", "train_seconds", "diverged")}
        t0 = time.perf_counter()
        result = dict(self.evaluator.evaluate(cand.spec, run_dir=self.run.trial_dir(cand.number)))
        result.setdefault("train_seconds", time.perf_counter() - t0)
        return result

    # ------------------------------------------------------------------ driver part
    def finish(self, trial, cand: Candidate, result: Optional[Mapping[str, Any]],
               extra: Optional[Mapping[str, Any]] = None) -> Tuple[float, float]:
        """Store metrics (user attribute and metrics.json) and return the objective values."""
        metrics: Dict[str, Any] = dict(cand.metrics)
        metrics["feasible"] = cand.feasible
        metrics["violations"] = cand.violations
        metrics["preset"] = cand.preset
        metrics["trial"] = cand.number
        if result is None:  # over budget: not trained
            metrics.update(psnr_y=WORST_PSNR, ssim_y=None, trained=False, diverged=False)
        else:
            psnr = result.get("psnr_y")
            diverged = bool(result.get("diverged", False)) or psnr is None or not math.isfinite(float(psnr))
            metrics.update(
                psnr_y=WORST_PSNR if diverged else float(psnr),
                ssim_y=None if diverged or result.get("ssim_y") is None else float(result["ssim_y"]),
                train_seconds=result.get("train_seconds"),
                diverged=diverged,
                trained=cand.duplicate_of is None,
            )
            if cand.duplicate_of is not None:
                metrics["duplicate_of"] = cand.duplicate_of.get("trial")
            if result.get("rung") is not None:  # multi-fidelity: rung 0 (nas.rungs)
                metrics.update(rung=0, psnr_y_by_rung=[metrics["psnr_y"]])
        metrics.update(extra or {})
        metrics["state"] = "COMPLETE"
        metrics = _jsonable(metrics)
        trial.set_user_attr("metrics", metrics)
        self.run.write_trial(cand.number, None, metrics)
        return float(metrics["psnr_y"]), float(metrics[self.cost_key])

    # ------------------------------------------------------------------ promotions (nas.rungs)
    def trial_spec(self, number: int):
        """The ArchSpec a trial was sampled with (its ``spec.json``)."""
        from space.spec import ArchSpec

        with open(os.path.join(self.run.trial_dir(number), "spec.json")) as fh:
            return ArchSpec.from_json(fh.read())

    def evaluate_rung(self, number: int, rung: int) -> Dict[str, Any]:
        """Continue trial ``number``'s training to rung ``rung`` (anywhere; the caller has the claim)."""
        t0 = time.perf_counter()
        result = dict(self.evaluator.evaluate(self.trial_spec(number), run_dir=self.run.trial_dir(number),
                                              rung=rung))
        result.setdefault("train_seconds", time.perf_counter() - t0)
        return result

    def __call__(self, trial, known=None) -> Tuple[float, float]:
        """The whole trial in one process (Optuna engine)."""
        cand = self.propose(trial, known)
        result = self.evaluate(cand) if cand.feasible else None
        return self.finish(trial, cand, result)


def _jsonable(d: Mapping[str, Any]) -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out[k] = _jsonable(v)
        elif isinstance(v, float) and not math.isfinite(v):
            out[k] = None
        elif hasattr(v, "item") and not isinstance(v, (str, bytes)):
            out[k] = v.item()
        else:
            out[k] = v
    return out


def known_results(study) -> Dict[str, Dict[str, Any]]:
    """spec id -> metrics of every COMPLETE trained trial (for duplicate reuse)."""
    from optuna.trial import TrialState

    out: Dict[str, Dict[str, Any]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        m = t.user_attrs.get("metrics") or {}
        sid = t.user_attrs.get("spec_id")
        if sid and m.get("trained") and sid not in out:
            out[sid] = m
    return out
