"""benchmarks.search_efficiency: the CPU-time mapping and the snapshot cut of a run folder."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "nas"))
from search_helpers import components, make_cfg  # noqa: E402
from test_rungs import RungFake  # noqa: E402

from benchmarks import search_efficiency as se  # noqa: E402
from nas import search  # noqa: E402


def test_cpu_at_interpolates_the_trace():
    trace = [(100.0, 1.0), (102.0, 3.0), (104.0, 3.0)]
    assert se.cpu_at(trace, 99.0) == 1.0
    assert se.cpu_at(trace, 101.0) == pytest.approx(2.0)
    assert se.cpu_at(trace, 103.0) == pytest.approx(3.0)
    assert se.cpu_at(trace, 200.0) == 3.0


def test_snapshot_cuts_trials_and_rungs_at_the_cpu_time(tmp_path):
    cfg = make_cfg(tmp_path, engine__trials=8, engine__presets=False, evaluator={"rungs": [10, 30, 90], "eta": 2})
    comps = components()
    comps["evaluator"] = RungFake()
    s, _ = search.run(cfg, progress=False, **comps)
    trials = s.study.get_trials(deepcopy=False)
    t0 = min(t.datetime_start.timestamp() for t in trials) - 1
    t1 = max(os.path.getmtime(os.path.join(root, f)) for root, _, files in os.walk(s.run.path)
             for f in files if f == "result.json") + 1
    trace = [(t0, 0.0), (t1, 100.0)]  # CPU time grows with wall time
    snaps = se.snapshot_records(s.run.path, trace, budget=100.0)
    full = s.engine_context().records()
    assert [r["psnr_y_by_rung"] for r in snaps[1.0]] == [r["psnr_y_by_rung"] for r in full]
    # earlier snapshots hold a prefix of the trials, each with a prefix of its rungs
    for f in (0.25, 0.5, 0.75):
        by = {r["trial"]: r for r in full}
        assert len(snaps[f]) <= len(full)
        for r in snaps[f]:
            chain = by[r["trial"]]["psnr_y_by_rung"]
            assert r["psnr_y_by_rung"] == chain[: len(r["psnr_y_by_rung"])]
    assert sum(len(r["psnr_y_by_rung"]) for r in snaps[0.25]) < sum(len(r["psnr_y_by_rung"]) for r in full)
