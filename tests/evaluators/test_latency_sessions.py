"""When and under what load a latency table was measured: one record per measuring session in
the table file (metadata, not context), printed by ``bsrnas lut show``; v3 files written before
the record existed still load and show as unknown.

Speed is never asserted: a tiny input and few repeats keep every measurement in milliseconds.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import socket

import pytest

from evaluators.latency import context, keys as K, store
from evaluators.latency.keys import decompose
from nas.cli import main
from space.spec import LayerSpec, uniform

TINY = (3, 6, 5)
SESSION_LINE = re.compile(r"^    (\S+) \.\. (\S+)  load (\S+) -> (\S+)  (\d+) entr(?:y|ies)  "
                          r"(\S+) pid (\d+)$", re.M)
UNKNOWN = "unknown (table written before measurement times were recorded)"


def _table(path, **kw):
    from evaluators.latency import LatencyTable

    kw.setdefault("calibrate", False)
    kw.setdefault("retries", 0)
    kw.setdefault("check", False)  # the canary check: test_latency_contention.py
    return LatencyTable(TINY, path=path, threads=1, warmup=1, repeats=3, **kw)


def _keys(n):
    spec = uniform(2, 4, 1, layer=LayerSpec(parts=2), tail="binary_repeat",
                   tail_layer=LayerSpec(skip="fp"))
    keys = list(dict.fromkeys(K.canonical_key(k) for k in decompose(spec, TINY)))
    assert len(keys) >= n
    return keys[:n]


def _now():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)  # the record keeps ms


def _show(capsys, path):
    code = main(["lut", "show", str(path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def _loads(monkeypatch, *values):
    """os.getloadavg returns (v, 0, 0) for each value in turn, the last one from then on."""
    calls = []

    def fake():
        calls.append(1)
        return (values[min(len(calls), len(values)) - 1], 0.0, 0.0)

    monkeypatch.setattr(os, "getloadavg", fake)
    return calls


def test_lut_show_prints_when_and_under_what_load_entries_were_measured(tmp_path, capsys,
                                                                          monkeypatch):
    path = tmp_path / "lut.json"
    keys = _keys(3)
    table = _table(path, autosave=False)
    _loads(monkeypatch, 1.5, 2.75)  # at the start, then at the end of the measurements
    t0 = _now()
    assert table.measurer.measure_entries(keys) == 3
    t1 = datetime.datetime.now(datetime.timezone.utc)
    table.save()
    shown = _show(capsys, path)
    assert "measured   1 session, 3 unit measurements" in shown
    (line,) = SESSION_LINE.findall(shown)
    started, finished = (datetime.datetime.fromisoformat(t) for t in line[:2])
    assert started.utcoffset() == finished.utcoffset() == datetime.timedelta(0)
    assert t0 <= started <= finished <= t1
    assert line[2:5] == ("1.50", "2.75", "3")
    assert line[5:] == (socket.gethostname(), str(os.getpid()))
    # in the file: metadata beside the context, not inside it
    data = json.loads(path.read_text())
    (rec,) = data["measured"]
    assert rec["load_1min_start"] == 1.5 and rec["load_1min_end"] == 2.75 and rec["entries"] == 3
    assert "measured" not in data["context"] and set(data["context"]) == set(context.CONTEXT_FIELDS)
    assert store.default_path(data["context"]) == store.default_path(table.context)


def test_one_session_per_table_object_and_both_kept_on_one_file(tmp_path, capsys, monkeypatch):
    path = tmp_path / "lut.json"
    ka, kb = _keys(5)[:3], _keys(5)[3:]
    a, b = _table(path), _table(path)  # b opened before a saved anything
    _loads(monkeypatch, 0.5)
    a.measurer.measure_entries(ka[:2])
    first = json.loads(path.read_text())["measured"]
    a.measurer.measure_entries(ka[2:])  # the same session: started kept, count and end updated
    _loads(monkeypatch, 4.0)
    monkeypatch.setattr(os, "getpid", lambda: 4242)  # b stands for another process
    b.measurer.measure_entries(kb)
    monkeypatch.undo()
    recs = json.loads(path.read_text())["measured"]
    assert len(recs) == 2 and recs[0]["id"] != recs[1]["id"]
    ra = next(r for r in recs if r["pid"] == os.getpid())
    rb = next(r for r in recs if r["pid"] == 4242)
    assert ra["started"] == first[0]["started"] and ra["finished"] >= first[0]["finished"]
    assert (ra["entries"], ra["load_1min_start"], ra["load_1min_end"]) == (3, 0.5, 0.5)
    assert (rb["entries"], rb["load_1min_start"], rb["load_1min_end"]) == (2, 4.0, 4.0)
    a.save()  # a's later save keeps b's record (and b's entries)
    recs = json.loads(path.read_text())["measured"]
    assert sorted(r["entries"] for r in recs) == [2, 3]
    assert len(_table(path)) == 5
    shown = _show(capsys, path)
    assert "2 sessions, 5 unit measurements" in shown and len(SESSION_LINE.findall(shown)) == 2


def test_a_v3_table_without_the_record_loads_and_shows_unknown(tmp_path, capsys, monkeypatch):
    path = tmp_path / "lut.json"
    keys = _keys(3)
    _table(path).measurer.measure_entries(keys[:2])
    data = json.loads(path.read_text())
    del data["measured"]  # as a table written before measurement times were recorded
    path.write_text(json.dumps(data))
    assert store.read(path)["measured"] is None and len(store.load(path)[1]) == 2
    shown = _show(capsys, path)
    assert f"measured   {UNKNOWN}" in shown and "entries    2" in shown
    # extended by a new session: the old entries stay under one record of unknown time
    _loads(monkeypatch, 0.25)
    table = _table(path)
    assert len(table) == 2
    table.measurer.measure_entries(keys)
    recs = json.loads(path.read_text())["measured"]
    assert [(r["id"], r["started"], r["entries"]) for r in recs][0] == ("legacy", None, 2)
    assert recs[1]["entries"] == 1 and recs[1]["load_1min_start"] == 0.25
    shown = _show(capsys, path)
    assert f"    {UNKNOWN}: 2 entries" in shown and len(SESSION_LINE.findall(shown)) == 1


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("started"), "measured[0] lacks the field(s) ['started']"),
    (lambda r: r.update(entries=-1), "measured[0].entries is -1; allowed: an integer >= 0"),
    (lambda r: r.update(load_1min_end="high"), "measured[0].load_1min_end is 'high'; allowed: "
                                                "int or float or null"),
])
def test_a_malformed_record_is_refused_naming_the_field(tmp_path, capsys, change, message):
    path = tmp_path / "lut.json"
    _table(path).measurer.measure_entries(_keys(1))
    data = json.loads(path.read_text())
    change(data["measured"][0])
    path.write_text(json.dumps(data))
    assert main(["lut", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bsrnas lut: error:") and message in err and str(path) in err
