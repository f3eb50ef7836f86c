"""Latency table: predict == sum of entries, strict mode, on-demand measurement and saving,
refusal of a table measured in another context, whole-network measurement, and ``bsrnas lut``.

Speed is never asserted here (benchmarks/latency_accuracy.py measures the accuracy): a tiny input
and few repeats keep every measurement in the millisecond range.
"""
from __future__ import annotations


import pytest

from evaluators.latency import contention as C, context, keys as K, store
from evaluators.latency.enumeration import space_keys
from space.space import SearchSpace
from space.spec import LayerSpec, uniform

TINY = (3, 6, 5)  # a tiny, non-square LR input keeps every measurement in the millisecond range


def _tiny_spec(**layer):
    """x2, 4 channels, 1 block, binary upsampler: every kind of binary unit, fast to measure."""
    return uniform(2, 4, 1, layer=LayerSpec(**layer), tail="binary_repeat",
                   tail_layer=LayerSpec(skip="fp"))


# -- the table ---------------------------------------------------------------------------
def _table(tmp_path, **kw):
    from evaluators.latency import LatencyTable

    kw.setdefault("threads", 1)
    kw.setdefault("calibrate", False)
    kw.setdefault("retries", 0)
    kw.setdefault("check", False)  # the canary check: test_latency_contention.py
    return LatencyTable(TINY, path=tmp_path / "lut.json", warmup=1, repeats=3, **kw)


def test_on_demand_measurement_fills_the_table_and_saves_it(tmp_path):
    table = _table(tmp_path)
    spec = _tiny_spec(parts=2, threshold="local_mean", bam_depth=1, skip="fp", nonlinearity="rprelu")
    assert len(table) == 0 and not (tmp_path / "lut.json").exists()
    predicted = table.predict(spec)
    keys = table.entries(spec)
    assert set(keys) <= set(table.keys()) and len(table) == len(set(keys))
    # saved: a fresh table on the same file knows every entry, with the same statistics
    again = _table(tmp_path, strict=True)
    assert again.keys() == table.keys()
    assert all(again.stats(k) == table.stats(k) for k in keys)
    assert again.predict(spec) == predicted
    stats = [table.stats(k) for k in keys]
    assert all(0 < s.min_ms <= s.q1_ms <= s.median_ms <= s.q3_ms <= s.max_ms for s in stats)


def test_two_tables_on_one_file_keep_each_others_entries(tmp_path):
    a, b = _table(tmp_path), _table(tmp_path)
    ka, kb = a.entries(_tiny_spec())[:2], b.entries(_tiny_spec(parts=2))[2:4]
    a.measurer.measure_entries(ka)
    b.measurer.measure_entries(kb)  # b was opened before a saved: its save must not drop a's entries
    assert set(_table(tmp_path).keys()) == set(ka) | set(kb)


def test_units_rotate_within_their_family_and_fp_units_get_a_binary_lead(tmp_path, monkeypatch):
    """Binary convs are timed only among binary convs (and bconv fillers); every other unit
    among FP units (and FP fillers), each of its calls led by an untimed binary conv."""
    import evaluators.latency.measure as latency
    from evaluators.latency.probes import Probe

    kind_of, rotations = {}, []

    def fake_probe(key, threads):
        probe = Probe(lambda: None)
        kind_of[id(probe)] = key["kind"]
        return probe

    def fake_rotation(probes, samples, warmup, clock, fillers, seed):
        rotations.append((dict(probes), list(fillers)))
        return {k: latency.TimingStats(1.0, 1.0, 1.0, 1.0, 1.0, samples, 1) for k in probes}

    monkeypatch.setattr(latency, "make_probe", fake_probe)
    monkeypatch.setattr(latency, "time_rotation", fake_rotation)
    table = _table(tmp_path, autosave=False)
    spec = _tiny_spec(parts=2, skip="fp")
    keys = table.entries(spec)
    table.measurer.measure_entries(keys)
    assert set(table.keys()) == set(keys)
    rotations = [r for r in rotations if set(r[0]) & set(keys)]  # not the canary's
    assert len(rotations) == 2  # one per family: a handful of units each
    for probes, fillers in rotations:
        families = {"bconv" if kind_of[id(p)] == "bconv" else "fp" for p in probes.values()}
        assert len(families) == 1
        fam = families.pop()
        assert fillers and {("bconv" if kind_of[id(f)] == "bconv" else "fp") for f in fillers} == {fam}
        for probe in probes.values():
            if fam == "fp":
                assert probe.lead is not None and kind_of[id(probe.lead)] == "bconv"
            else:
                assert probe.lead is None


def test_predict_is_the_sum_of_the_entries(tmp_path):
    table = _table(tmp_path)
    for spec in (_tiny_spec(), _tiny_spec(rescale="both", norm="bn"),
                 uniform(3, 4, 2, body="fp", tail="fp_two_stage", global_skip=False),
                 uniform(4, 4, 1, tail="fp_one_stage", head="conv5")):
        predicted = table.predict(spec)
        keys = table.entries(spec)
        total = 0.0
        for key in keys:
            total += table.stats(key).min_ms
        assert predicted == total
        assert predicted == pytest.approx(sum(table.stats(k).min_ms for k in keys), rel=1e-12)
        assert keys.count(K.canonical_key({"kind": "overhead", "h": 6, "w": 5})) == 1
        assert all(table.stats(k).repeats == 3 and table.stats(k).number == 1 for k in keys)


def test_strict_mode_names_the_missing_key(tmp_path):
    table = _table(tmp_path, strict=True)
    spec = _tiny_spec(parts=3)
    with pytest.raises(ValueError, match=r'no entry \{"h":6,"kind":"overhead","w":5\}.*strict'):
        table.predict(spec)
    assert len(table) == 0 and not (tmp_path / "lut.json").exists()
    lenient = _table(tmp_path)
    lenient.measurer.measure_entries(lenient.entries(spec)[:1])
    with pytest.raises(ValueError, match=r'no entry \{"h":6,"head":"conv3","kind":"head"'):
        _table(tmp_path, strict=True).predict(spec)


def test_table_constructor_refuses_a_file_of_another_context(tmp_path):
    table = _table(tmp_path)
    table.measurer.measure_entries(table.entries(_tiny_spec())[:2])
    from evaluators.latency import LatencyTable

    with pytest.raises(ValueError, match=r"measured for input_size=\(3, 6, 5\).*\(3, 8, 8\)"):
        LatencyTable((3, 8, 8), path=tmp_path / "lut.json", threads=1)
    with pytest.raises(ValueError, match=r"measured for threads=1, .*threads=2"):
        LatencyTable(TINY, path=tmp_path / "lut.json", threads=2)
    with pytest.raises(ValueError, match=r"measured for clock='wall', .*clock='cpu'"):
        LatencyTable(TINY, path=tmp_path / "lut.json", threads=1, clock="cpu")
    with pytest.raises(ValueError, match=r"clock 'cpu' needs threads=1"):
        LatencyTable(TINY, path=tmp_path / "other.json", threads=2, clock="cpu")
    with pytest.raises(ValueError, match=r"invalid clock 'gpu'"):
        LatencyTable(TINY, path=tmp_path / "other.json", threads=1, clock="gpu")


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_measure_times_the_whole_network(tmp_path, clock):
    table = _table(tmp_path, clock=clock)
    stats = table.measurer.measure_stats(_tiny_spec(parts=2), warmup=1, repeats=3)
    assert 0 < stats.min_ms <= stats.median_ms <= stats.max_ms
    assert stats.repeats == 3 and stats.number == 1  # single-call samples, as the units
    assert table.measurer.measure(_tiny_spec(), warmup=1, repeats=3) > 0


# -- bsrnas lut --------------------------------------------------------------------------
def _cli(capsys, monkeypatch, cache, *args):
    from nas.cli import main

    monkeypatch.setenv("BSRNAS_CACHE", str(cache))
    code = main(["lut", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_lut_build_on_a_tiny_space_writes_a_table(tmp_path, capsys, monkeypatch):
    # what is under test is the build and its reuse, not the contention checks: a burst of
    # another guest of a shared host flags the build's session busy now and then (units of a
    # few microseconds, three timed passes), and the rerun's check then measures it again
    monkeypatch.setattr(C, "judge", lambda w, limits=C.LIMITS: C.Verdict(False, ()))
    space = tmp_path / "tiny.yaml"
    space.write_text("scale: 2\narch: {channels: [4], blocks: [1], tail: [binary_repeat]}\n"
                     "layer: {parts: [1, 2]}\ntail_layer: {skip: fp}\n")
    code, out, err = _cli(capsys, monkeypatch, tmp_path / "cache", "build", "--space", str(space),
                          "--input", "3x6x5", "--threads", "1", "--repeats", "3", "--warmup", "1")
    assert code == 0, err
    files = list((tmp_path / "cache" / "latency").glob("*-t1-3x6x5-v3.json"))
    assert len(files) == 1 and str(files[0]) in out
    ctx, entries = store.load(files[0])
    want = space_keys(SearchSpace.from_yaml(space), (3, 6, 5))
    assert sorted(entries) == want and ctx["threads"] == 1
    code, shown, _ = _cli(capsys, monkeypatch, tmp_path / "cache", "show", str(files[0]))
    assert code == 0 and "bconv" in shown and f"entries    {len(want)}" in shown
    # a rerun measures nothing new
    code, out, _ = _cli(capsys, monkeypatch, tmp_path / "cache", "build", "--space", str(space),
                        "--input", "3x6x5", "--threads", "1")
    assert code == 0 and f"{len(want)} already in" in out and "0 to measure" in out


@pytest.mark.parametrize("args, message", [
    (["build", "--input", "3x128"], "invalid --input '3x128'; expected CxHxW"),
    (["build", "--input", "3x8x8", "--threads", "0"], "--threads: 0 given"),
    (["build", "--input", "3x8x8", "--limit", "2", "--sample", "2"], "at most one"),
    (["build", "--space", "no/such/space.yaml", "--input", "3x8x8"], "not found"),
    (["show", "no/such/table.json"], "does not exist"),
])
def test_lut_bad_input_exits_2(tmp_path, capsys, monkeypatch, args, message):
    code, _, err = _cli(capsys, monkeypatch, tmp_path / "cache", *args)
    assert code == 2, err
    assert message in err and err.startswith("bsrnas lut: error:")
