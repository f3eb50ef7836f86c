"""nas.pareto against brute force and hand-computed values."""
import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas import pareto


def brute_front(points):
    """Indices no other point dominates (quadratic, straight from the definition)."""
    out = []
    for i, (p, c) in enumerate(points):
        if not any(q >= p and d <= c and (q > p or d < c) for j, (q, d) in enumerate(points) if j != i):
            out.append(i)
    return out


coords = st.integers(min_value=0, max_value=6).map(float)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(coords, coords), min_size=0, max_size=12))
def test_non_dominated_equals_brute_force(points):
    assert pareto.non_dominated(points) == brute_front(points)


def grid_area(points, ref):
    """Dominated area by cells between all breakpoints (independent of the sweep formula)."""
    p_ref, c_ref = ref
    ps = sorted({p_ref} | {p for p, _ in points if p > p_ref})
    cs = sorted({c_ref} | {c for _, c in points if c < c_ref})
    area = 0.0
    for (p0, p1), (c0, c1) in itertools.product(zip(ps, ps[1:]), zip(cs, cs[1:])):
        # cell [c0, c1] x [p0, p1] is dominated when a point has psnr >= p1 and cost <= c0
        if any(p >= p1 and c <= c0 for p, c in points):
            area += (p1 - p0) * (c1 - c0)
    return area


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(coords, coords), min_size=0, max_size=10))
def test_hypervolume_equals_grid_area(points):
    ref = (1.0, 5.0)
    assert pareto.hypervolume_2d(points, ref) == pytest.approx(grid_area(points, ref))


def test_hypervolume_by_hand():
    # front (psnr, cost): (30, 1), (32, 2), (33, 4); ref (28, 5):
    # 2*(2-1) + 4*(4-2) + 5*(5-4) = 2 + 8 + 5 = 15
    assert pareto.hypervolume_2d([(30, 1), (32, 2), (33, 4), (29, 3)], (28, 5)) == pytest.approx(15.0)
    assert pareto.hypervolume_2d([(27, 1)], (28, 5)) == 0.0


def rec(n, psnr, lat, feasible=True, preset=None):
    return {"trial": n, "psnr_y": psnr, "latency_ms": lat, "bops": 10 * lat, "params": 100 + n,
            "model_bytes": 10 + n, "feasible": feasible, "preset": preset, "spec": {"n": n}}


def test_front_skips_infeasible_and_sorts_by_cost():
    recs = [rec(0, 30, 3), rec(1, 31, 2), rec(2, 35, 1, feasible=False), rec(3, 29, 1), rec(4, 32, 5)]
    assert [r["trial"] for r in pareto.front(recs)] == [3, 1, 4]
    assert [r["trial"] for r in pareto.front(recs, "bops")] == [3, 1, 4]


def test_knee_by_hand():
    # normalised (q, c): t0 (0, 0) d=1; t1 (0.8, 0.25) d=0.32; t2 (1, 1) d=1 -> t1
    front = [rec(0, 30, 1), rec(1, 34, 2), rec(2, 35, 5)]
    assert pareto.knee(front)["trial"] == 1
    assert pareto.best_psnr(front)["trial"] == 2
    assert pareto.knee([rec(7, 30, 1)])["trial"] == 7


def test_pick_errors_name_the_value():
    front = [rec(0, 30, 1)]
    with pytest.raises(ValueError, match="--pick.*'bogus'"):
        pareto.pick(front, front, "bogus")
    with pytest.raises(ValueError, match="no finished trial 9"):
        pareto.pick(front, front, "9")
    with pytest.raises(ValueError, match="front is empty"):
        pareto.pick([], [], "knee")
    assert pareto.pick(front, front, "0")["trial"] == 0


def test_write_all(tmp_path):
    recs = [rec(0, 32, 3, preset="e2fif"), rec(1, 31, 2), rec(2, 29, 4)]
    members = pareto.write_all(str(tmp_path), recs)
    data = json.loads((tmp_path / "pareto.json").read_text())
    assert [d["trial"] for d in data] == [1, 0] == [m["trial"] for m in members]
    assert data[1]["preset"] == "e2fif" and data[0]["preset"] is None
    assert set(data[0]) >= {"trial", "psnr_y", "latency_ms", "bops", "params", "spec", "preset"}
    lines = (tmp_path / "pareto.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ["trial", "psnr_y", "latency_ms"] and len(lines) == 3
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    table = pareto.format_table(members)
    assert "e2fif" in table and len(table.splitlines()) == 3


def test_table_shows_one_line_per_architecture():
    """Trials that sampled the same spec again sit on the same point: one line, the later trial
    numbers in the 'same spec' column; without repeats the column is absent."""
    a, b, c = rec(3, 31, 2), rec(5, 31, 2), rec(7, 32, 3)
    b["spec"] = a["spec"]
    members = pareto.front([a, b, c])
    assert [m["trial"] for m in members] == [3, 5, 7]  # the front itself keeps both
    lines = pareto.format_table(members).splitlines()
    assert lines[0].split()[-2:] == ["same", "spec"] and len(lines) == 3
    assert lines[1].split()[0] == "3" and lines[1].split()[-1] == "5"
    assert lines[2].split()[0] == "7" and lines[2].split()[-1] == "-"
    assert "same spec" not in pareto.format_table([a, c])
