"""The Pareto front of a search: non-dominated set, knee point, 2-D hypervolume, output files.

Every search has two objectives: image quality ``psnr_y`` (maximized) and one cost
(``latency_ms``, ``bops`` or ``model_bytes``, minimized). A *record* is a plain dict per
finished trial with at least ``trial``, ``psnr_y``, ``latency_ms``, ``bops``, ``params``,
``model_bytes``, ``feasible``, ``preset`` and ``spec`` (the ArchSpec as a JSON object).

Definitions used here (and documented in the README):

* Dominance: ``a`` dominates ``b`` when ``psnr(a) >= psnr(b)`` and ``cost(a) <= cost(b)``
  with at least one strict inequality. The front is the set of feasible records that no
  feasible record dominates (two records at the same point are both kept).
* Knee: both objectives are normalised to [0, 1] over the front,
  ``q = (psnr - psnr_min) / (psnr_max - psnr_min)`` and ``c = (cost - cost_min) /
  (cost_max - cost_min)`` (when all members share one psnr, every ``q`` is 1; one cost, every
  ``c`` is 0). The utopia point
  is ``(q, c) = (1, 0)``; the knee is the front member closest to it in Euclidean
  distance, ``sqrt((1 - q)^2 + c^2)``; ties go to the lower trial number.
* Hypervolume (2-D): the area dominated by the front and bounded by a reference point
  ``(psnr_ref, cost_ref)``; points with ``psnr <= psnr_ref`` or ``cost >= cost_ref`` add
  nothing. With the front sorted by increasing cost ``c_1 < c_2 < ...`` (and so increasing
  psnr ``p_1 < p_2 < ...``) it is ``sum_i (p_i - psnr_ref) * (c_{i+1} - c_i)`` with
  ``c_{n+1} = cost_ref``.
* Reference: the bicubic PSNR_Y of the validation items the proxy scores (study user
  attribute ``bicubic_psnr_y``, see ``nas.outputs``) is printed in the table's header line and
  drawn as a horizontal line labelled "bicubic" in ``pareto.png`` and the TensorBoard figure:
  a front below it has not learned more than interpolation within the proxy budget.
"""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

COST_KEYS = ("latency_ms", "bops", "model_bytes")
TABLE_COLUMNS = ("trial", "psnr_y", "latency_ms", "bops", "params", "model_bytes", "preset")


def dominates(a: Tuple[float, float], b: Tuple[float, float]) -> bool:
    """``a = (psnr, cost)`` dominates ``b``: no worse in both, strictly better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def non_dominated(points: Sequence[Tuple[float, float]]) -> List[int]:
    """Indices (in input order) of the points no other point dominates.

    O(n log n): sort by cost ascending then psnr descending; a point is on the front when its
    psnr is above every psnr seen at a strictly lower cost, or equal to the best at its cost.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    keep: List[int] = []
    best_psnr = -math.inf  # best psnr at strictly lower cost
    i = 0
    while i < len(order):
        cost = points[order[i]][1]
        group = [j for j in order[i:] if points[j][1] == cost]
        top = points[group[0]][0]  # group is sorted by psnr descending
        if top > best_psnr:
            keep.extend(j for j in group if points[j][0] == top)
        best_psnr = max(best_psnr, top)
        i += len(group)
    return sorted(keep)


def _check_cost_key(cost_key: str) -> None:
    if cost_key not in COST_KEYS:
        raise ValueError(f"objectives.cost: invalid value {cost_key!r}; allowed: {list(COST_KEYS)}")


def front(records: Sequence[Dict[str, Any]], cost_key: str = "latency_ms") -> List[Dict[str, Any]]:
    """The feasible, non-dominated records, sorted by increasing cost (then trial number).
    Records of a multi-fidelity search (``psnr_y_by_rung``, ``nas.rungs``): the front of the
    highest rung reached, each member's ``psnr_y`` its value there and ``rung`` set."""
    _check_cost_key(cost_key)
    from nas import rungs

    if rungs.has_rungs(records):
        top = rungs.top_rung(records)
        records = [] if top is None else rungs.view(records, top)
    feasible = [r for r in records if r.get("feasible", True)]
    pts = [(float(r["psnr_y"]), float(r[cost_key])) for r in feasible]
    members = [feasible[i] for i in non_dominated(pts)]
    return sorted(members, key=lambda r: (float(r[cost_key]), int(r["trial"])))


def knee(members: Sequence[Dict[str, Any]], cost_key: str = "latency_ms") -> Dict[str, Any]:
    """The front member closest to the utopia point after min-max normalisation (module doc)."""
    if not members:
        raise ValueError("pareto: the front is empty (no feasible finished trial); nothing to pick")
    psnr = [float(r["psnr_y"]) for r in members]
    cost = [float(r[cost_key]) for r in members]
    p_lo, p_hi, c_lo, c_hi = min(psnr), max(psnr), min(cost), max(cost)

    def norm(v: float, lo: float, hi: float) -> float:
        return 0.0 if hi == lo else (v - lo) / (hi - lo)

    def distance(r: Dict[str, Any]) -> float:
        q = norm(float(r["psnr_y"]), p_lo, p_hi) if p_hi > p_lo else 1.0
        c = norm(float(r[cost_key]), c_lo, c_hi)
        return math.hypot(1.0 - q, c)

    return min(members, key=lambda r: (distance(r), int(r["trial"])))


def best_psnr(members: Sequence[Dict[str, Any]], cost_key: str = "latency_ms") -> Dict[str, Any]:
    """The front member with the highest psnr_y (the cheaper one on ties)."""
    if not members:
        raise ValueError("pareto: the front is empty (no feasible finished trial); nothing to pick")
    return max(members, key=lambda r: (float(r["psnr_y"]), -float(r[cost_key]), -int(r["trial"])))


def pick(members: Sequence[Dict[str, Any]], records: Sequence[Dict[str, Any]], how: str,
         cost_key: str = "latency_ms") -> Dict[str, Any]:
    """``how`` = ``best-psnr`` | ``knee`` | a trial number (any finished trial, front or not)."""
    if how == "best-psnr":
        return best_psnr(members, cost_key)
    if how == "knee":
        return knee(members, cost_key)
    try:
        number = int(how)
    except (TypeError, ValueError):
        raise ValueError(f"--pick: invalid value {how!r}; allowed: best-psnr, knee or a trial number") from None
    for r in records:
        if int(r["trial"]) == number:
            return r
    known = sorted(int(r["trial"]) for r in records)
    raise ValueError(f"--pick: no finished trial {number}; finished trials: {known}")


def hypervolume_2d(points: Sequence[Tuple[float, float]], reference: Tuple[float, float]) -> float:
    """Area dominated by ``points = [(psnr, cost), ...]`` and bounded by ``reference`` (module doc)."""
    p_ref, c_ref = float(reference[0]), float(reference[1])
    useful = [(float(p), float(c)) for p, c in points if p > p_ref and c < c_ref]
    if not useful:
        return 0.0
    nd = [useful[i] for i in non_dominated(useful)]
    nd = sorted(set(nd), key=lambda pc: pc[1])
    area = 0.0
    for i, (p, c) in enumerate(nd):
        c_next = nd[i + 1][1] if i + 1 < len(nd) else c_ref
        area += (p - p_ref) * (c_next - c)
    return area


# ----------------------------------------------------------------------------- output files

def _row(r: Dict[str, Any]) -> Dict[str, Any]:
    return {k: r.get(k) for k in TABLE_COLUMNS}


def _same_architecture(members: Sequence[Dict[str, Any]]) -> List[Tuple[Dict[str, Any], List[int]]]:
    """Members grouped by architecture (their ``spec``), in order: each first trial with the
    numbers of the later trials that sampled the same spec (the sampler may propose a design
    again; such a trial reuses the first one's quality and lands on the same point)."""
    groups: Dict[str, Tuple[Dict[str, Any], List[int]]] = {}
    for r in members:
        key = json.dumps(r.get("spec"), sort_keys=True) if r.get("spec") is not None else f"trial:{r['trial']}"
        if key in groups:
            groups[key][1].append(int(r["trial"]))
        else:
            groups[key] = (r, [])
    return list(groups.values())


def reference_text(reference: float) -> str:
    """How the table names the bicubic reference (``format_table``)."""
    return f"bicubic on the same validation items: {float(reference):.2f} dB (psnr_y)"


def rung_text(members: Sequence[Dict[str, Any]]) -> Optional[str]:
    """``front of rung 2`` for the members of a multi-fidelity front (None otherwise)."""
    rungs = {r.get("rung") for r in members if r.get("rung_view")}
    return f"front of rung {rungs.pop()}" if len(rungs) == 1 else None


def format_table(members: Sequence[Dict[str, Any]], reference: Optional[float] = None) -> str:
    """A fixed-width text table of the front: one line per architecture (trials that sampled
    the same spec again are listed in a last column, ``same spec``). ``reference``: the
    bicubic PSNR_Y of the validation items the proxy scores, appended to the header line
    (``... preset  | bicubic on the same validation items: 31.23 dB (psnr_y)``) so the column
    names stay the first words of the first line."""
    if reference is not None and not math.isfinite(float(reference)):
        raise ValueError(f"reference: invalid value {reference!r}; allowed: None or a finite PSNR in dB")
    head = ["trial", "psnr_y", "latency_ms", "bops", "params", "model_bytes", "preset"]
    grouped = _same_architecture(members)
    repeats = any(again for _, again in grouped)
    if repeats:
        head.append("same spec")
    lines = [head]
    for r, again in grouped:
        lines.append([
            str(r["trial"]),
            f"{float(r['psnr_y']):.3f}",
            "-" if r.get("latency_ms") is None else f"{float(r['latency_ms']):.3f}",
            "-" if r.get("bops") is None else f"{float(r['bops']):.4g}",
            "-" if r.get("params") is None else str(int(r["params"])),
            "-" if r.get("model_bytes") is None else str(int(r["model_bytes"])),
            r.get("preset") or "-",
        ] + ([", ".join(map(str, again)) or "-"] if repeats else []))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(cell.rjust(w) if i < 6 else cell.ljust(w)
                     for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
           for line in lines]
    if reference is not None:
        out[0] += "  | " + reference_text(reference)
    if rung_text(members):
        out[0] += "  | " + rung_text(members) + " (psnr_y at that rung)"
    return "\n".join(out)


def write_json(path: str, members: Sequence[Dict[str, Any]]) -> None:
    """``pareto.json``: a list of objects, one per front member (columns plus ``spec``)."""
    out = []
    for r in members:
        item = _row(r)
        item["ssim_y"] = r.get("ssim_y")
        if r.get("rung_view"):
            item["rung"] = r.get("rung")
            item["psnr_y_by_rung"] = r.get("psnr_y_by_rung")
        item["spec"] = r.get("spec")
        out.append(item)
    with open(path, "w") as fh:
        json.dump(out, fh, indent=2)
        fh.write("\n")


def write_csv(path: str, members: Sequence[Dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(TABLE_COLUMNS))
        writer.writeheader()
        for r in members:
            row = _row(r)
            row["preset"] = row["preset"] or ""
            writer.writerow(row)


def scatter_figure(records: Sequence[Dict[str, Any]], members: Sequence[Dict[str, Any]],
                   cost_key: str = "latency_ms", title: Optional[str] = None,
                   reference: Optional[float] = None):
    """A matplotlib Figure: every feasible trial (grey), infeasible (x), the front (line),
    presets marked with their names; ``reference`` (the bicubic PSNR_Y of the same validation
    items) as a dashed horizontal line labelled "bicubic". Multi-fidelity records
    (``nas.rungs``): each trial at the PSNR of its highest rung, the top rung's front as the
    line and every lower rung's front dashed beside it."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    from nas import rungs as rungs_mod

    if rungs_mod.has_rungs(records):
        by_rung = rungs_mod.fronts(records, cost_key)
        for r in sorted(by_rung)[:-1]:
            lower = by_rung[r]
            if lower:
                ax.plot([m[cost_key] for m in lower], [m["psnr_y"] for m in lower], "--", lw=0.9,
                        alpha=0.4 + 0.5 * r / max(1, len(by_rung) - 1), c="tab:purple",
                        label=f"front of rung {r}")
        records = [dict(r, psnr_y=r["psnr_y_by_rung"][-1]) if r.get("psnr_y_by_rung") else r for r in records]
    feas = [r for r in records if r.get("feasible", True)]
    infeas = [r for r in records if not r.get("feasible", True)]
    if feas:
        ax.scatter([r[cost_key] for r in feas], [r["psnr_y"] for r in feas], s=16, c="0.6",
                   label="feasible trial")
    if infeas:
        ax.scatter([r[cost_key] for r in infeas], [r["psnr_y"] for r in infeas], s=16, c="tab:red",
                   marker="x", label="over budget (not trained)")
    if members:
        ax.plot([r[cost_key] for r in members], [r["psnr_y"] for r in members], "-o", c="tab:blue",
                ms=5, label=rung_text(members) or "Pareto front")
    presets = [r for r in records if r.get("preset")]
    for r in presets:
        ax.scatter([r[cost_key]], [r["psnr_y"]], s=60, facecolors="none", edgecolors="tab:orange")
        ax.annotate(str(r["preset"]), (r[cost_key], r["psnr_y"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    if reference is not None:
        ax.axhline(float(reference), ls="--", lw=1.0, c="tab:green", label="bicubic")
        ax.annotate(f"bicubic {float(reference):.2f} dB", (0.01, float(reference)),
                    xycoords=("axes fraction", "data"), fontsize=7, color="tab:green",
                    xytext=(0, 3), textcoords="offset points")
    ax.set_xlabel(cost_key + " (lower is better)")
    ax.set_ylabel("psnr_y [dB] (higher is better)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if records or reference is not None:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def write_png(path: str, records, members, cost_key: str = "latency_ms", title=None,
              reference: Optional[float] = None) -> None:
    fig = scatter_figure(records, members, cost_key, title, reference=reference)
    fig.savefig(path)


def write_all(run_dir: str, records: Sequence[Dict[str, Any]], cost_key: str = "latency_ms",
              title: Optional[str] = None, reference: Optional[float] = None) -> List[Dict[str, Any]]:
    """Compute the front of ``records`` and write ``pareto.json``, ``.csv`` and ``.png``
    (``reference``: the bicubic line of the figure, see ``scatter_figure``)."""
    members = front(records, cost_key)
    write_json(os.path.join(run_dir, "pareto.json"), members)
    from nas import rungs as rungs_mod

    if rungs_mod.has_rungs(records):
        by_rung = rungs_mod.fronts(records, cost_key)
        with open(os.path.join(run_dir, "pareto_rungs.json"), "w") as fh:
            json.dump({str(r): [dict(_row(m), rung=r, psnr_y_by_rung=m.get("psnr_y_by_rung"))
                                for m in ms] for r, ms in by_rung.items()}, fh, indent=2)
            fh.write("\n")
    write_csv(os.path.join(run_dir, "pareto.csv"), members)
    write_png(os.path.join(run_dir, "pareto.png"), records, members, cost_key, title, reference=reference)
    return members
