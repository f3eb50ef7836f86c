"""Multi-fidelity search by two objectives: rungs, asynchronous promotion, per-rung fronts.

With ``evaluator.rungs = [T_0, T_1, ..., T_R]`` (training steps) and ``evaluator.eta``, every
candidate is first trained at rung 0 (``T_0`` steps: its Optuna trial, told with the rung-0
PSNR, so the sampler learns from one fidelity only); afterwards it may be *promoted*: its
training is continued (``evaluators.proxy``: the wsd schedule, from the previous rung's
``stable.pt``, no restart) to ``T_{r+1}`` steps. The design follows asynchronous successive
halving (ASHA, Li et al., MLSys 2020) with the multi-objective ordering of MO-ASHA (Schmucker,
Donini, Perrone, Zafar & Archambeau, "Multi-objective multi-fidelity hyperparameter
optimization with application to fairness", 2021), here with NSGA-II's ordering:

**Promotion rule.** Whenever a worker is free it looks, from the second-highest rung down, at
the ``n_r`` candidates that finished rung ``r``; the best ``floor(n_r / eta)`` of them are
promotable, and the best-ordered promotable one that has not reached (nor been claimed for)
rung ``r + 1`` is trained next. Only when nothing is promotable does the worker ask the sampler
for a new candidate (until ``engine.trials`` are COMPLETE); once the trials are done, workers
keep promoting until nothing is promotable. The order at a rung is by **non-dominated rank**
of ``(psnr_y at rung r, cost)`` (rank 0 = the front of that rung, rank 1 = the front of the
rest, ...), then by **crowding distance** within a rank (larger first: NSGA-II's density
measure, so promotions spread along the front instead of clustering; the two extreme points of
a rank have infinite distance), then by trial number. Why this ordering: it needs no weights
or scalarisation between dB and milliseconds, it promotes whole fronts first (what the user
reads), and among a front it prefers the members that cover its range.
Candidates that diverged at a rung, duplicates of an earlier spec and over-budget ones (never
trained) are never promoted (over-budget ones do not count in ``n_r`` either).

**Bookkeeping in the run folder** (shared by every worker and both engines)::

    trials/NNNN/rung-K/claim         who trains rung K of trial NNNN (host:pid; O_EXCL create)
    trials/NNNN/rung-K/result.json   its scores once trained (the rung is never trained again)
    trials/NNNN/rung-K/checkpoint.pt the training, resumable (every 10 % of the rung)

A claim whose process is gone (same host, pid dead) is taken over on the next look, by an
atomic rename, so a search killed during a promotion continues it from its last checkpoint.
Each trial's ``metrics.json`` has ``rung`` (highest finished rung) and ``psnr_y_by_rung``.

**Fronts.** The front at rung ``r`` is the non-dominated set of the candidates that finished
rung ``r``, scored by their rung-``r`` PSNR. ``nas.pareto.front`` returns the front of the
highest rung that any candidate reached (each member carries ``rung``); the lower rungs'
fronts are written beside it (``pareto_rungs.json``, dashed in ``pareto.png``).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from space.files import atomic_write

CLAIM = "claim"
RESULT = "result.json"
RUNGS_ATTR = "rungs"  # study user attribute: the rung steps of a multi-fidelity search


# ------------------------------------------------------------------------------ ordering

def _dominates(a: Tuple[float, float], b: Tuple[float, float]) -> bool:
    """``(psnr, cost)``: ``a`` no worse in both and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def nondominated_ranks(points: Sequence[Tuple[float, float]]) -> List[int]:
    """Non-dominated rank of each ``(psnr, cost)`` point (0: nobody dominates it; k: only
    points of ranks < k do). Repeated peeling, O(n^2) per rank: rungs hold hundreds at most."""
    left = set(range(len(points)))
    ranks = [0] * len(points)
    rank = 0
    while left:
        layer = [i for i in left if not any(_dominates(points[j], points[i]) for j in left if j != i)]
        for i in layer:
            ranks[i] = rank
        left.difference_update(layer)
        rank += 1
    return ranks


def crowding_distances(points: Sequence[Tuple[float, float]]) -> List[float]:
    """NSGA-II crowding distance of each point within ``points`` (one rank): per objective,
    sort, give the extremes ``inf`` and every inner point ``(f_next - f_prev) / (f_max -
    f_min)``; sum over the two objectives. Points sharing one value of an objective add 0."""
    n = len(points)
    dist = [0.0] * n
    for k in (0, 1):
        order = sorted(range(n), key=lambda i: (points[i][k], i))
        lo, hi = points[order[0]][k], points[order[-1]][k]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for a, i, b in zip(order, order[1:], order[2:]):
            dist[i] += (points[b][k] - points[a][k]) / (hi - lo)
    return dist


def mo_order(points: Sequence[Tuple[float, float]]) -> List[int]:
    """Indices of ``(psnr, cost)`` points, best first: rank, then crowding distance within
    the rank (larger first), then index."""
    ranks = nondominated_ranks(points)
    crowd = [0.0] * len(points)
    for r in set(ranks):
        members = [i for i in range(len(points)) if ranks[i] == r]
        for i, d in zip(members, crowding_distances([points[i] for i in members])):
            crowd[i] = d
    return sorted(range(len(points)), key=lambda i: (ranks[i], -crowd[i], i))


def promotable(finished: Mapping[int, Tuple[float, float]], n_finished: int, eta: int) -> List[int]:
    """The trial numbers among ``finished`` (number -> (psnr, cost) at a rung, the eligible
    ones) in the top ``floor(n_finished / eta)`` by ``mo_order``, best first."""
    k = n_finished // int(eta)
    numbers = sorted(finished)
    order = mo_order([finished[n] for n in numbers])
    return [numbers[i] for i in order[:k]]


# ------------------------------------------------------------------------------ the run folder

def _claim_is_stale(path: str) -> bool:
    try:
        with open(path) as fh:
            tag = fh.read().strip()
    except OSError:
        return False
    from nas.objective import worker_is_gone

    return worker_is_gone(tag)


class RungBook:
    """The rung state of one run folder (module docstring): results, claims, promotion."""

    def __init__(self, run, rungs: Sequence[int], eta: int, cost_key: str, owner: Optional[str] = None):
        self.run = run
        self.rungs = tuple(int(r) for r in rungs)
        self.eta = int(eta)
        self.cost_key = cost_key
        if owner is None:
            from nas.objective import worker_tag

            owner = worker_tag()
        self.owner = owner

    def rung_dir(self, number: int, rung: int) -> str:
        return os.path.join(self.run.trial_dir(number), f"rung-{int(rung)}")

    # -- results --------------------------------------------------------------------------
    def result(self, number: int, rung: int) -> Optional[Dict[str, Any]]:
        """The stored result of rung ``rung >= 1`` of a trial (None: not trained yet)."""
        path = os.path.join(self.rung_dir(number, rung), RESULT)
        try:
            with open(path) as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def by_rung(self, number: int, rung0: Mapping[str, Any]) -> List[Dict[str, Any]]:
        """Results of a trial from rung 0 (its metrics) up to its highest finished rung."""
        out = [dict(rung0)]
        for r in range(1, len(self.rungs)):
            res = self.result(number, r)
            if res is None:
                break
            out.append(res)
        return out

    def record(self, number: int, rung: int, result: Mapping[str, Any]) -> Dict[str, Any]:
        """Store a finished rung (``result.json``, then the trial's ``metrics.json`` gets
        ``rung`` and ``psnr_y_by_rung``) and drop the claim. Returns the stored result."""
        psnr = result.get("psnr_y")
        diverged = bool(result.get("diverged", False)) or psnr is None or not math.isfinite(float(psnr))
        keep = {k: result.get(k) for k in ("ssim_y", "train_seconds", "eval_seconds", "steps", "final_loss",
                                           "psnr_y_seeds", "resumed_from", "node_id",
                                           "hostname", "pid")
                if result.get(k) is not None}
        stored = dict(keep, psnr_y=0.0 if diverged else float(psnr), diverged=diverged, rung=int(rung),
                      steps=self.rungs[rung])
        d = self.rung_dir(number, rung)
        os.makedirs(d, exist_ok=True)
        atomic_write(os.path.join(d, RESULT), json.dumps(_finite(stored), indent=2, sort_keys=True) + "\n")
        self.update_metrics(number)
        try:
            os.remove(os.path.join(d, CLAIM))
        except FileNotFoundError:
            pass
        return stored

    def update_metrics(self, number: int) -> None:
        """``metrics.json`` of a trial gets ``rung`` and ``psnr_y_by_rung`` from its results."""
        try:
            metrics = self.run.read_metrics(number)
        except (OSError, ValueError):
            return
        if metrics.get("psnr_y") is None or not metrics.get("trained", metrics.get("duplicate_of") is not None):
            return
        chain = self.by_rung(number, metrics)
        metrics["rung"] = len(chain) - 1
        metrics["psnr_y_by_rung"] = [float(c["psnr_y"]) for c in chain]
        self.run.write_trial(number, None, metrics)

    # -- claims ---------------------------------------------------------------------------
    def claim(self, number: int, rung: int) -> bool:
        """Take rung ``rung`` of trial ``number`` for this owner (False: done, or another live
        worker has it). A claim left by a dead process on this host is taken over."""
        if self.result(number, rung) is not None:
            return False
        d = self.rung_dir(number, rung)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, CLAIM)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not _claim_is_stale(path):
                    return False
                try:  # one taker wins the rename; the others see the file gone
                    os.rename(path, f"{path}.stale-{os.getpid()}")
                except FileNotFoundError:
                    return False
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(self.owner + "\n")
            if self.result(number, rung) is not None:  # finished between the check and the claim
                self.release(number, rung)
                return False
            return True
        return False

    def release(self, number: int, rung: int) -> None:
        try:
            os.remove(os.path.join(self.rung_dir(number, rung), CLAIM))
        except FileNotFoundError:
            pass

    def claimed(self, number: int, rung: int) -> bool:
        path = os.path.join(self.rung_dir(number, rung), CLAIM)
        return os.path.exists(path) and not _claim_is_stale(path)

    # -- promotion ------------------------------------------------------------------------
    def table(self, records: Sequence[Mapping[str, Any]]) -> Dict[int, Tuple[float, List[Tuple[float, bool]]]]:
        """trial -> (cost, [(psnr, diverged) per finished rung]) of the trained, feasible, non-
        duplicate trials among ``records`` (``nas.runfolder.record_of`` dicts)."""
        out = {}
        for r in records:
            if not r.get("feasible", True) or not r.get("trained", False):
                continue
            n = int(r["trial"])
            chain = [(float(r["psnr_y"]), bool(r.get("diverged")) or not float(r["psnr_y"]) > 0)]
            for k in range(1, len(self.rungs)):
                res = self.result(n, k)
                if res is None:
                    break
                chain.append((float(res["psnr_y"]), bool(res.get("diverged"))))
            out[n] = (float(r[self.cost_key]), chain)
        return out

    def candidates(self, records: Sequence[Mapping[str, Any]]) -> List[Tuple[int, int]]:
        """``(trial, rung)`` promotions allowed now, in the order they are to be tried (from the
        second-highest rung down; best first within a rung), whether claimed or not."""
        table = self.table(records)
        out: List[Tuple[int, int]] = []
        for r in reversed(range(len(self.rungs) - 1)):
            done = {n: v for n, v in table.items() if len(v[1]) > r}
            eligible = {n: (v[1][r][0], v[0]) for n, v in done.items() if not v[1][r][1]}
            for n in promotable(eligible, len(done), self.eta):
                if len(done[n][1]) <= r + 1:
                    out.append((n, r + 1))
        return out

    def next_job(self, records: Sequence[Mapping[str, Any]]) -> Optional[Tuple[int, int]]:
        """Claim and return the next promotion ``(trial, rung)``, or None when nothing is
        promotable now (or every promotable one is being trained by another worker)."""
        for number, rung in self.candidates(records):
            if self.claim(number, rung):
                return number, rung
        return None


def _finite(d: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


# ------------------------------------------------------------------------------ records & fronts

def attach(records: Sequence[Dict[str, Any]], book: RungBook) -> List[Dict[str, Any]]:
    """Records with ``psnr_y_by_rung`` (rung 0 = the study's value) and ``rung`` (highest
    finished). A duplicate trial shows the rungs of the trial it repeats."""
    by_number = {int(r["trial"]): r for r in records}
    out = []
    for r in records:
        rec = dict(r)
        src = int(r.get("duplicate_of")) if r.get("duplicate_of") is not None else int(r["trial"])
        if not rec.get("feasible", True):
            rec["psnr_y_by_rung"], rec["rung"] = [], None
        else:
            base = by_number.get(src, r)
            chain = [float(base["psnr_y"])]
            for k in range(1, len(book.rungs)):
                res = book.result(src, k)
                if res is None:
                    break
                chain.append(float(res["psnr_y"]))
            rec["psnr_y_by_rung"], rec["rung"] = chain, len(chain) - 1
        out.append(rec)
    return out


def view(records: Sequence[Mapping[str, Any]], rung: int) -> List[Dict[str, Any]]:
    """The records that finished ``rung``, with ``psnr_y`` its value there and ``rung`` set."""
    out = []
    for r in records:
        chain = r.get("psnr_y_by_rung") or []
        if len(chain) > rung:
            out.append(dict(r, psnr_y=float(chain[rung]), rung=int(rung), rung_view=True))
    return out


def top_rung(records: Sequence[Mapping[str, Any]]) -> Optional[int]:
    """The highest rung any feasible record reached (None: no rung information)."""
    reached = [len(r["psnr_y_by_rung"]) - 1 for r in records
               if r.get("psnr_y_by_rung") and r.get("feasible", True)]
    return max(reached) if reached else None


def has_rungs(records: Sequence[Mapping[str, Any]]) -> bool:
    """Records of a multi-fidelity search not yet viewed at one rung."""
    return any("psnr_y_by_rung" in r and not r.get("rung_view") for r in records)


def fronts(records: Sequence[Mapping[str, Any]], cost_key: str) -> Dict[int, List[Dict[str, Any]]]:
    """rung -> its front (``nas.pareto.front`` of ``view(records, rung)``), every rung reached."""
    from nas import pareto

    top = top_rung(records)
    return {} if top is None else {r: pareto.front(view(records, r), cost_key) for r in range(top + 1)}
