"""Issue 16, robust measurement on a shared host: the calibration's network rounds spread over
the units' chunks, the retry policy for bursts of other guests (drift alone) vs a local load,
the hot canary, and waiting for a quiet machine. Verdicts are injected where the policy is
tested; the measurements themselves are real (tiny input).
"""
from __future__ import annotations

import pytest

from evaluators.latency import LatencyTable
from evaluators.latency import contention as C
from evaluators.latency import measure as M
from evaluators.latency.keys import key_dict
from evaluators.latency.timing import TimingStats
from space.spec import LayerSpec, uniform

TINY = (3, 6, 5)


def _table(path, **kw):
    kw.setdefault("calibrate", False)
    kw.setdefault("autosave", False)
    return LatencyTable(TINY, path=path, threads=1, warmup=1, repeats=2, **kw)


def _specs():
    return [uniform(2, 4, 1, layer=LayerSpec(parts=p), tail="binary_repeat") for p in (1, 2, 3)]


@pytest.mark.parametrize("rounds", [1, 3, 5])
def test_calibration_rounds_are_spread_over_the_chunks_of_units(tmp_path, monkeypatch, rounds):
    """Round r of R runs right after chunk ceil(r * n / R) of the n chunks, the last round
    after every chunk: the networks are timed across the whole measurement of the units."""
    monkeypatch.setattr(M, "ROTATION_CHUNK", 2)
    monkeypatch.setattr(C, "judge", lambda w, limits=C.LIMITS: C.Verdict(False, ()))
    table = _table(tmp_path / "lut.json", retries=0)
    events = []
    chunk, rnd = M.Measurer._judged_chunk, M.Measurer.network_round

    def judged_chunk(self, *a, **kw):
        events.append("c")
        return chunk(self, *a, **kw)

    def network_round(self, *a, **kw):
        events.append("r")
        return rnd(self, *a, **kw)

    monkeypatch.setattr(M.Measurer, "_judged_chunk", judged_chunk)
    monkeypatch.setattr(M.Measurer, "network_round", network_round)
    specs = _specs()
    extra = [k for k in table.entries(uniform(2, 4, 2, tail="fp_one_stage"))]
    cal = table.measurer.calibrate(specs, rounds=rounds, network_repeats=1, keys=extra)
    n = events.count("c")
    assert n >= 4 and events.count("r") == rounds and events[-1] == "r"
    # the position of each round: after how many chunks it ran
    after = [events[:i].count("c") for i, e in enumerate(events) if e == "r"]
    expected = [-(-r * n // rounds) for r in range(1, rounds)] + [n]
    assert after == expected
    assert cal.networks == len(specs) and not cal.busy
    assert all(k in table for s in specs for k in table.entries(s)) and all(k in table for k in extra)


def test_a_table_already_measured_times_every_round_at_once(tmp_path):
    table = _table(tmp_path / "lut.json", retries=0)
    specs = _specs()
    table.measurer.measure_entries([k for s in specs for k in table.entries(s)])
    calls = []

    def one_round(probes, runs, repeats, order):
        calls.append(len(probes))
        for i, r in enumerate(runs):
            r.append(TimingStats(2.0, 1.0 + i + len(calls), 1.5, 2.5, 3.0, 1, 1))
        return [True] * len(runs)

    table.measurer.network_round = one_round
    cal = table.measurer.calibrate(specs, rounds=3, network_repeats=1)
    assert calls == [3, 3, 3]
    # each network's figure: its fastest call over the rounds (the first round's here)
    raw = [table.raw(s) for s in specs]
    ratios = sorted((2.0 + i) / r for i, r in enumerate(raw))
    assert cal.factor == pytest.approx(ratios[1])
    with pytest.raises(ValueError, match="invalid rounds 0"):
        table.measurer.calibrate(specs, rounds=0)


def test_a_calibration_whose_network_never_timed_idle_is_flagged_busy(tmp_path, monkeypatch):
    table = _table(tmp_path / "lut.json", retries=0)
    seen = []

    def judge(window, limits=C.LIMITS):
        seen.append(window)
        return C.Verdict(True, ("injected",))

    monkeypatch.setattr(C, "judge", judge)
    monkeypatch.setattr(M, "backoff", lambda *a: 0.0)
    cal = table.measurer.calibrate(_specs()[:2], rounds=2, network_repeats=1)
    assert cal.busy and table.measurer.network_tally.kept_busy == 4


def _inject(monkeypatch, verdicts):
    """C.judge answers the given verdicts in turn (the last one from then on)."""
    seq = list(verdicts)

    def judge(window, limits=C.LIMITS):
        return seq.pop(0) if len(seq) > 1 else seq[0]

    monkeypatch.setattr(C, "judge", judge)
    monkeypatch.setattr(M, "backoff", lambda *a: 0.0)


LOCAL = C.Verdict(True, ("threads waited for a core 50 % of the time",), local=True)
BURST = C.Verdict(True, ("reference unit +40 % from its baseline",), local=False)
IDLE = C.Verdict(False, ())


def test_a_local_load_stops_the_retries_after_a_streak_a_burst_does_not(tmp_path, monkeypatch):
    table = _table(tmp_path / "lut.json", retries=2)
    m = table.measurer
    tally = C.Tally()
    _inject(monkeypatch, [LOCAL])
    for _ in range(M.PERSISTENT):
        results, verdict = m._retried(lambda: 1, tally)
        assert len(results) == 3 and verdict.busy  # retried, then kept
    assert tally.kept_busy == M.PERSISTENT
    results, _ = m._retried(lambda: 1, tally)
    assert len(results) == 1  # busy for good: no retries
    # a burst of another guest: retried again, and an idle window ends the streak
    _inject(monkeypatch, [BURST, BURST, IDLE])
    results, verdict = m._retried(lambda: 1, tally)
    assert len(results) == 3 and not verdict.busy and m._streak == 0
    _inject(monkeypatch, [LOCAL, IDLE])
    results, verdict = m._retried(lambda: 1, tally)
    assert len(results) == 2 and not verdict.busy


def test_wait_quiet_needs_consecutive_idle_canaries(tmp_path, monkeypatch):
    table = _table(tmp_path / "lut.json")
    _inject(monkeypatch, [BURST, IDLE, BURST, IDLE, IDLE, IDLE])
    waited, quiet = table.measurer.wait_quiet(30.0, checks=3, gap_s=0.0)
    assert quiet and waited < 30.0
    _inject(monkeypatch, [BURST])
    waited, quiet = table.measurer.wait_quiet(0.2, checks=3, gap_s=0.05)
    assert not quiet and waited >= 0.2


def test_the_canary_is_timed_hot_and_its_drift_is_the_median_unit(tmp_path, monkeypatch):
    table = _table(tmp_path / "lut.json")
    m = table.measurer
    now = m.time_canary()
    assert set(now) == set(M.canary_keys(TINY)) and all(v > 0 for v in now.values())
    kinds = sorted(key_dict(k)["kind"] for k in now)
    assert kinds == ["bconv", "bconv", "head", "overhead"]
    best = m.best_canary()
    assert set(best) == set(now)
    base = dict(best)
    # a contended second vCPU: the threaded units slower, the call overhead not
    slow = {"bconv": 1.1, "head": 1.3, "overhead": 1.0}
    fake = {k: v * slow[key_dict(k)["kind"]] for k, v in base.items()}
    monkeypatch.setattr(M.Measurer, "time_canary", lambda self, samples=15: dict(fake))
    assert m.drift() == pytest.approx(1.1)
    faster = {k: v * 0.9 for k, v in base.items()}
    monkeypatch.setattr(M.Measurer, "time_canary", lambda self, samples=15: dict(faster))
    assert m.drift() == pytest.approx(0.9)
    # the best figures follow the fastest timing seen
    assert m.best_canary() == pytest.approx(faster)
