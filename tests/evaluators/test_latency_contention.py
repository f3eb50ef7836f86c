"""A busy machine must not poison a latency table: the decision rule on injected signals, the
retry / keep / refuse policy of the measurer, the canary check of a cached table, the
calibration, and one real run with busy loops holding the cores.

Speed is never asserted; a tiny input keeps every measurement in milliseconds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from evaluators.latency import ContentionError, LatencyTable
from evaluators.latency import calibration as cal_mod
from evaluators.latency import contention as C
from evaluators.latency import keys as K
from evaluators.latency.measure import canary_keys
from nas.cli import main
from space.spec import LayerSpec, uniform

TINY = (3, 6, 5)


def _spec(**layer):
    return uniform(2, 4, 1, layer=LayerSpec(**layer), tail="binary_repeat",
                   tail_layer=LayerSpec(skip="fp"))


def _table(path, **kw):
    kw.setdefault("calibrate", False)
    return LatencyTable(TINY, path=path, threads=1, warmup=1, repeats=3, **kw)


# -- the decision rule -------------------------------------------------------------------
def test_an_idle_window_is_not_busy():
    assert C.judge(C.Window(1.0, wait=0.001, steal=0.0, drift=1.02)) == C.Verdict(False, ())
    assert not C.judge(C.Window(1.0)).busy  # no signal available: nothing to judge by


@pytest.mark.parametrize("window, reason", [
    (C.Window(1.0, wait=0.30), "threads waited for a core 30 % of the time"),
    (C.Window(1.0, steal=0.12), "hypervisor steal 12 %"),
    (C.Window(1.0, drift=1.40), "reference unit +40 % from its baseline"),
])
def test_each_signal_past_its_limit_makes_a_window_busy(window, reason):
    verdict = C.judge(window)
    assert verdict.busy and verdict.reasons == (reason,)


def test_a_reference_faster_than_its_best_is_not_contention():
    """The drift of a window is one way: the canary faster than its best so far means the
    baseline was taken on a slower machine, not that this window was disturbed."""
    assert not C.judge(C.Window(1.0, drift=0.80)).busy
    assert C.judge(C.Window(1.0, drift=1.0 + C.LIMITS["drift"] + 0.01)).busy


def test_the_slowdown_of_a_window_is_the_median_canary_unit():
    best = {"conv": 1.0, "conv32": 1.0, "head": 2.0, "overhead": 0.5, "gone": 1.0}
    # a contended second vCPU: the threaded units slower, the single-threaded call overhead not
    now = {"conv": 1.07, "conv32": 1.09, "head": 2.36, "overhead": 0.5, "new": 9.0}
    assert C.canary_slowdown(now, best) == pytest.approx(1.08)
    assert C.canary_slowdown({"a": 1.3, "b": 1.0, "c": 1.0}, {"a": 1.0, "b": 1.0, "c": 1.0}) == 1.0
    assert C.canary_slowdown({"x": 1.0}, {"y": 1.0}) is None


def test_limits_are_the_callers():
    w = C.Window(1.0, wait=0.04, drift=1.03)
    assert not C.judge(w).busy
    assert C.judge(w, dict(C.LIMITS, wait=0.01)).reasons == ("threads waited for a core 4 % of the time",)
    assert len(C.judge(w, {"wait": 0.01, "steal": 0.01, "drift": 0.01}).reasons) == 2


def test_the_wait_limit_grows_with_the_threads():
    assert C.limits_for(1) == C.LIMITS
    two = C.limits_for(2)
    assert two["wait"] == pytest.approx(0.15) and two["drift"] == C.LIMITS["drift"]
    idle_two_threads, one_busy_loop = C.Window(1.0, wait=0.09), C.Window(1.0, wait=0.41)
    assert not C.judge(idle_two_threads, two).busy and C.judge(one_busy_loop, two).busy
    assert C.judge(idle_two_threads, C.limits_for(1)).busy


def test_window_from_snapshots():
    a = C.Snapshot(wall_ns=0, wait_ns=1_000_000, steal_ns=0)
    b = C.Snapshot(wall_ns=2_000_000_000, wait_ns=501_000_000, steal_ns=400_000_000)
    w = C.window(a, b, drift=1.1, cpus=2)
    assert w.wall_s == 2.0 and w.wait == pytest.approx(0.25) and w.steal == pytest.approx(0.1)
    assert w.drift == 1.1
    none = C.window(C.Snapshot(0, None, None), C.Snapshot(10, None, None))
    assert none.wait is None and none.steal is None


def test_other_processes_on_the_cpus_make_a_window_busy():
    """The foreign signal: all CPUs' busy time minus this process's own, over wall x CPUs."""
    a = C.Snapshot(wall_ns=0, wait_ns=0, steal_ns=0, busy_ns=10_000_000_000, own_ns=5_000_000_000)
    # 2 s on 2 CPUs: the CPUs were busy 3.0 s, 1.9 s of it this process's own
    b = C.Snapshot(wall_ns=2_000_000_000, wait_ns=0, steal_ns=0, busy_ns=13_000_000_000,
                   own_ns=6_900_000_000)
    w = C.window(a, b, cpus=2)
    assert w.foreign == pytest.approx(1.1 / 4.0)
    assert C.judge(w).reasons == ("other processes used 28 % of the CPUs",)
    quiet = C.Snapshot(2_000_000_000, 0, 0, 11_850_000_000, 6_900_000_000)
    assert C.window(a, quiet, cpus=2).foreign == 0.0  # own time above busy (tick rounding)
    assert not C.judge(C.Window(1.0, foreign=0.09)).busy
    # too short to judge at 100 Hz ticks, or no counters
    short = C.Snapshot(100_000_000, 0, 0, 13_000_000_000, 5_000_000_000)
    assert C.window(a, short, cpus=2).foreign is None
    assert C.window(C.Snapshot(0, None, None), C.Snapshot(10**10, None, None)).foreign is None


def test_a_process_on_the_other_cpu_is_seen_as_foreign_load():
    """End to end: one busy loop beside a single-threaded measurement. On an SMT pair the run
    queue shows nothing (this process never waits), the foreign signal does."""
    if not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2:
        pytest.skip("needs /proc/stat and at least 2 CPUs")
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        start = C.snapshot()
        t = time.perf_counter()
        while time.perf_counter() - t < 1.0:
            pass
        w = C.window(start, C.snapshot())
    finally:
        loop.kill()
        loop.wait()
    # the loop holds one CPU of cpu_count: expect about 1 / cpu_count (well above the limit)
    assert w.foreign is not None and w.foreign > 0.5 / (os.cpu_count() or 1), w


def test_the_counters_read_this_machine():
    snap = C.snapshot()
    assert snap.wall_ns > 0
    if sys.platform.startswith("linux"):
        assert snap.wait_ns is not None and snap.wait_ns >= 0


def test_canary_drift_is_the_median_ratio_of_shared_units():
    stored = {"a": 2.0, "b": 1.0, "c": 3.0, "gone": 9.0}
    now = {"a": 1.0, "b": 1.0, "c": 1.0, "new": 1.0}
    assert C.canary_drift(stored, now) == 2.0
    assert C.canary_drift({"a": 2.0, "b": 1.0}, {"a": 1.0, "b": 1.0}) == 1.5
    assert C.canary_drift({"x": 1.0}, {"y": 1.0}) is None
    assert C.drifted(1.5) and C.drifted(0.8) and not C.drifted(1.05) and not C.drifted(None)


# -- the measurer's policy on injected verdicts ------------------------------------------
def _verdicts(monkeypatch, busy):
    """C.judge answers busy for the first ``busy`` windows (all of them for busy=-1)."""
    seen = []

    def fake(window, limits=C.LIMITS):
        seen.append(window)
        if busy < 0 or len(seen) <= busy:
            return C.Verdict(True, ("injected",))
        return C.Verdict(False, ())

    monkeypatch.setattr(C, "judge", fake)
    return seen


def test_a_busy_chunk_is_measured_again(tmp_path, monkeypatch):
    table = _table(tmp_path / "lut.json", retries=2, autosave=False)
    seen = _verdicts(monkeypatch, busy=2)
    keys = table.entries(_spec())[:2]  # one family: one chunk
    table.measurer.measure_entries(keys)
    s = table.measurer.session
    assert len(seen) == 3 and not s["busy"]
    assert s["contention"]["retries"] == 2 and s["contention"]["busy"] == 2
    assert s["contention"]["windows"] == 3 and s["contention"]["kept_busy"] == 0


def test_a_chunk_busy_through_every_retry_is_kept_and_flagged(tmp_path, capsys, monkeypatch):
    path = tmp_path / "lut.json"
    table = _table(path, retries=1)
    _verdicts(monkeypatch, busy=-1)
    keys = table.entries(_spec())
    table.measurer.measure_entries(keys)
    assert set(keys) <= set(table.keys())
    (rec,) = json.loads(path.read_text())["measured"]
    assert rec["busy"] is True and rec["contention"]["kept_busy"] >= 1
    assert rec["contention"]["reasons"] == ["injected"]
    assert set(rec["canary"]) == set(canary_keys(TINY))
    data = json.loads(path.read_text())
    assert all(v["session"] == rec["id"] for v in data["entries"].values())
    assert main(["lut", "show", str(path)]) == 0
    out = capsys.readouterr().out
    kept = rec["contention"]["kept_busy"]
    assert f"contention: BUSY, {kept} chunk(s) kept busy after their retries (flagged)" in out
    assert "(injected)" in out


def test_refuse_raises_and_keeps_nothing_of_the_busy_chunk(tmp_path, monkeypatch):
    table = _table(tmp_path / "lut.json", retries=1, on_contention="refuse")
    _verdicts(monkeypatch, busy=-1)
    keys = table.entries(_spec())[:2]
    with pytest.raises(ContentionError, match="stayed busy.*injected.*1 retries"):
        table.measurer.measure_entries(keys)
    assert not set(keys) & set(table.keys())
    with pytest.raises(ValueError, match="on_contention"):
        _table(tmp_path / "x.json", on_contention="ignore")


def test_lut_build_refusing_a_busy_machine_exits_2(tmp_path, capsys, monkeypatch):
    _verdicts(monkeypatch, busy=-1)
    space = tmp_path / "tiny.yaml"
    space.write_text("scale: 2\narch: {channels: [4], blocks: [1], tail: [binary_repeat]}\n")
    monkeypatch.setenv("BSRNAS_CACHE", str(tmp_path / "cache"))
    code = main(["lut", "build", "--space", str(space), "--input", "3x6x5", "--threads", "1",
                 "--repeats", "2", "--on-contention", "refuse"])
    err = capsys.readouterr().err
    assert code == 2 and "bsrnas lut: error:" in err and "stayed busy" in err


# -- the canary check of a cached table --------------------------------------------------
def _measured_file(path):
    table = _table(path, retries=0)
    spec = _spec(parts=2)
    table.measurer.measure_entries(table.entries(spec))
    return spec, table


def _scale_canary(path, factor):
    data = json.loads(path.read_text())
    for rec in data["measured"]:
        rec["canary"] = {k: v * factor for k, v in rec["canary"].items()}
    path.write_text(json.dumps(data))


def test_a_table_that_drifted_is_measured_again_before_use(tmp_path, monkeypatch):
    path = tmp_path / "lut.json"
    spec, first = _measured_file(path)
    n = len(first)
    monkeypatch.setattr(C, "judge", lambda w, limits=C.LIMITS: C.Verdict(False, ()))
    _scale_canary(path, 3.0)  # as if measured on a machine 3x slower than now
    table = _table(path)
    check = table.check_result
    assert not check["busy_now"] and len(check["drifted"]) == 1
    assert check["ratios"][check["drifted"][0]] == pytest.approx(3.0, rel=0.5)
    assert len(check["dropped"]) == n and len(table) == 0
    assert table.predict(spec) > 0 and len(table) == n  # measured again, in a new session
    data = json.loads(path.read_text())
    sessions = {v["session"] for v in data["entries"].values()}
    assert sessions == {table.measurer.session["id"]}


def test_a_table_that_holds_is_used_as_it_is(tmp_path, monkeypatch):
    path = tmp_path / "lut.json"
    _, first = _measured_file(path)
    monkeypatch.setattr(C, "judge", lambda w, limits=C.LIMITS: C.Verdict(False, ()))
    now = {k: 1.0 for k in canary_keys(TINY)}
    monkeypatch.setattr("evaluators.latency.measure.Measurer.time_canary",
                        lambda self, samples=9: dict(now))
    data = json.loads(path.read_text())
    data["measured"][0]["canary"] = {k: 1.04 for k in now}
    data["measured"][0]["busy"] = False  # as if measured on a quiet machine (this one may not be)
    path.write_text(json.dumps(data))
    table = _table(path)
    assert table.check_result["drifted"] == [] and len(table) == len(first)
    assert table.measurer.session is None  # nothing measured
    # busy at the check: nothing is judged, the table is used as it is
    data["measured"][0]["canary"] = {k: 5.0 for k in now}
    path.write_text(json.dumps(data))
    monkeypatch.setattr(C, "judge", lambda w, limits=C.LIMITS: C.Verdict(True, ("busy",)))
    busy = _table(path)
    assert busy.check_result["busy_now"] and len(busy) == len(first)
    # no check asked, or a strict table: no canary timed at all
    assert _table(path, check=False).check_result is None
    assert LatencyTable(TINY, path=path, threads=1, strict=True).check_result is None


def test_a_session_flagged_busy_is_measured_again_at_idle_even_if_its_canary_agrees(
        tmp_path, monkeypatch):
    """Its canary baseline was timed under the same load as its units: agreeing with now
    proves nothing, so on an idle machine the session is re-measured."""
    path = tmp_path / "lut.json"
    _, first = _measured_file(path)
    monkeypatch.setattr(C, "judge", lambda w, limits=C.LIMITS: C.Verdict(False, ()))
    now = {k: 1.0 for k in canary_keys(TINY)}
    monkeypatch.setattr("evaluators.latency.measure.Measurer.time_canary",
                        lambda self, samples=9: dict(now))
    data = json.loads(path.read_text())
    data["measured"][0]["canary"] = dict(now)
    data["measured"][0]["busy"] = True
    path.write_text(json.dumps(data))
    table = _table(path)
    check = table.check_result
    assert check["ratios"][check["drifted"][0]] == pytest.approx(1.0)
    assert len(check["dropped"]) == len(first) and len(table) == 0


# -- calibration -------------------------------------------------------------------------
def test_calibration_is_the_median_ratio_of_the_reference_networks():
    feats = [{"sum_ms": 1.0 + i} for i in range(5)]
    ratios = [1.10, 1.12, 1.11, 1.50, 0.70]  # two networks disturbed: the median ignores them
    measured = [f["sum_ms"] * r for f, r in zip(feats, ratios)]
    cal = cal_mod.fit(feats, measured, threads=2, session="s1")
    assert cal.factor == pytest.approx(1.11) and cal.networks == 5 and cal.session == "s1"
    assert cal.fit_error["mean_before"] < 0 and cal.fit_error["max_abs"] == pytest.approx(1.11 / 0.7 - 1)
    assert cal.apply({"sum_ms": 2.0}) == pytest.approx(2.22)
    again = cal_mod.Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    with pytest.raises(ValueError, match="at least one network"):
        cal_mod.fit([], [], threads=1)
    with pytest.raises(ValueError, match="must hold factor"):
        cal_mod.Calibration.from_dict({"costs": {}})


def test_features_count_units_and_sum_their_figures(tmp_path):
    table = _table(tmp_path / "lut.json", retries=0)
    spec = _spec()
    f = table.features(spec)
    kinds = [K.key_dict(k)["kind"] for k in table.entries(spec)]
    assert f["n_bconv"] == kinds.count("bconv")
    assert f["n_fp"] == len(kinds) - kinds.count("bconv") - kinds.count("overhead")
    assert f["sum_ms"] == pytest.approx(table.raw(spec))
    overhead = sum(table.stats(k).min_ms for k, kd in zip(table.entries(spec), kinds)
                   if kd == "overhead")
    assert f["bconv_ms"] + f["fp_ms"] + overhead == pytest.approx(f["sum_ms"])
    assert len(cal_mod.reference_specs()) == cal_mod.N_REFERENCE


def test_calibrate_times_networks_sets_and_saves_the_calibration(tmp_path, capsys):
    path = tmp_path / "lut.json"
    table = _table(path, retries=0)
    specs = [_spec(), _spec(parts=2), uniform(2, 4, 2, tail="fp_one_stage")]
    cal = table.measurer.calibrate(specs, rounds=1, network_repeats=2)
    assert table.calibration == cal and cal.networks == 3 and cal.threads == 1
    assert table.predict(specs[0]) == pytest.approx(cal.apply(table.features(specs[0])))
    again = _table(path, check=False)
    assert again.calibration == cal
    assert main(["lut", "show", str(path)]) == 0
    assert "calibrated on 3 networks: factor" in capsys.readouterr().out
    # a table asked to predict without a calibration fits one on the reference networks
    auto = LatencyTable(TINY, path=tmp_path / "auto.json", threads=1, warmup=1, repeats=3,
                        retries=0)
    assert auto.predict(specs[0]) > 0 and auto.calibration.networks == cal_mod.N_REFERENCE
    # never far from the raw sum, whatever the fit
    assert cal_mod.Calibration(factor=0.1, networks=2, threads=1).apply({"sum_ms": 1.0}) == 0.5
    assert cal_mod.Calibration(factor=7.0, networks=2, threads=1).apply({"sum_ms": 1.0}) == 2.0


def test_a_check_keeps_the_stored_canary_as_the_best_of_the_session_that_measures_again(
        tmp_path, monkeypatch):
    """A session flagged busy whose canary was faster than the canary now (a machine still slow
    after the load): the measurer that re-measures starts from the faster stored figures, so
    its windows are judged against them, not against the slow machine of the check."""
    path = tmp_path / "lut.json"
    _measured_file(path)
    data = json.loads(path.read_text())
    for rec in data["measured"]:
        rec["busy"] = True
    path.write_text(json.dumps(data))
    _scale_canary(path, 0.5)  # stored twice as fast as any canary timed now
    stored = json.loads(path.read_text())["measured"][0]["canary"]
    monkeypatch.setattr(C, "judge", lambda w, limits=C.LIMITS: C.Verdict(False, ()))
    table = _table(path)
    assert table.check_result["drifted"]
    best = table.measurer.best_canary()
    assert best == pytest.approx(stored)
    assert table.measurer.drift() > 1.5  # the canary now, about 2x its best
    # a stored canary slower than now does not raise the best figures
    path2 = tmp_path / "lut2.json"
    _measured_file(path2)
    _scale_canary(path2, 3.0)
    stored3 = json.loads(path2.read_text())["measured"][0]["canary"]
    slow = _table(path2)
    best = slow.measurer.best_canary()
    assert all(best[k] < stored3[k] for k in stored3)


def test_a_check_that_measures_entries_again_fits_the_calibration_again(tmp_path, monkeypatch):
    """The calibration relates whole networks to the entries: when the check drops a drifted
    session's entries, the calibration goes too (and is not merged back from the file when
    the table saves), and the next prediction fits a new one in the new session; a
    calibration whose networks were timed on a busy machine goes at an idle check."""
    path = tmp_path / "lut.json"
    table = _table(path, retries=0)
    specs = [_spec(), _spec(parts=2)]
    old = table.measurer.calibrate(specs, rounds=1, network_repeats=2)
    monkeypatch.setattr(C, "judge", lambda w, limits=C.LIMITS: C.Verdict(False, ()))
    monkeypatch.setattr("evaluators.latency.calibration.reference_specs",
                        lambda input_size=None, **kw: list(specs))
    monkeypatch.setattr("evaluators.latency.measure.reference_specs",
                        lambda input_size=None, **kw: list(specs))
    data = json.loads(path.read_text())
    for rec in data["measured"]:
        rec["busy"] = False
    path.write_text(json.dumps(data))
    _scale_canary(path, 3.0)
    again = _table(path, calibrate=True)
    check = again.check_result
    assert check["drifted"] and check["calibration_dropped"] and again.calibration is None
    again.measurer.measure_entries(again.entries(specs[0]))  # autosave: the old fit stays out
    assert again.calibration is None
    assert json.loads(path.read_text()).get("calibration") is None
    assert again.predict(specs[0]) > 0
    assert again.calibration is not None and again.calibration.session != old.session
    assert again.calibration.session == again.measurer.session["id"]
    # a fit flagged busy, entries that hold: the fit alone goes
    data = json.loads(path.read_text())
    data["calibration"]["busy"] = True
    now = {k: 1.0 for k in canary_keys(TINY)}
    for rec in data["measured"]:
        rec["canary"], rec["busy"] = dict(now), False
    path.write_text(json.dumps(data))
    monkeypatch.setattr("evaluators.latency.measure.Measurer.time_canary",
                        lambda self, samples=9: dict(now))
    third = _table(path)
    assert third.check_result["drifted"] == [] and third.check_result["calibration_dropped"]
    assert len(third) == len(again) and third.calibration is None


# -- real busy loops ---------------------------------------------------------------------
def test_busy_loops_holding_every_core_are_detected(tmp_path):
    """End to end, nothing injected: one busy loop per core while a tiny table measures; the
    measuring windows see this process wait for a core."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the run-queue signal reads /proc (Linux)")
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(min(os.cpu_count() or 1, 8))]
    sessions = []
    try:
        time.sleep(1.0)  # the loops' interpreters started and spinning
        # the scheduler may favour this (long-sleeping) process for a short table: up to three
        # tables, each measured whole under the loops; one judged busy is the detection
        for attempt in range(3):
            table = LatencyTable(TINY, path=tmp_path / f"lut{attempt}.json", threads=1, warmup=2,
                                 repeats=60, calibrate=False, retries=1, autosave=False)
            table.measurer.measure_entries(table.entries(_spec(parts=2)))
            sessions.append(table.measurer.session)
            if sessions[-1]["busy"]:
                break
    finally:
        for p in loops:
            p.kill()
        for p in loops:
            p.wait()
    s = sessions[-1]
    assert s["busy"] and s["contention"]["max_wait"] > C.LIMITS["wait"], [x["contention"] for x in sessions]
