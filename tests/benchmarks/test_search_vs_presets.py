"""benchmarks.search_vs_presets: match selection, dominance, Kendall tau, the JSON schema, the
resumable store, bad input, and one end-to-end run with the real parts at a tiny budget."""
import json
import random

import pytest

from benchmarks import search_vs_presets as svp


# ------------------------------------------------------------------------------ match selection

def _member(trial, psnr, lat):
    return {"trial": trial, "psnr_y": psnr, "latency_ms": lat}


def brute_force_match(preset_latency, front):
    """Every member in turn: keep the one that beats the best so far (higher PSNR; on a PSNR
    tie the lower latency; then the lower trial), among those not slower than the preset."""
    best = None
    for m in front:
        if m["latency_ms"] > preset_latency:
            continue
        if best is None:
            best = m
            continue
        if m["psnr_y"] > best["psnr_y"]:
            best = m
        elif m["psnr_y"] == best["psnr_y"]:
            if m["latency_ms"] < best["latency_ms"] or (
                    m["latency_ms"] == best["latency_ms"] and m["trial"] < best["trial"]):
                best = m
    return best


def test_match_on_a_hand_made_front():
    front = [_member(3, 30.0, 1.0), _member(7, 31.5, 2.0), _member(1, 32.0, 3.0)]
    assert svp.select_match(0.5, front) is None  # nothing that fast: no match
    assert svp.select_match(1.0, front)["trial"] == 3  # equal latency is allowed
    assert svp.select_match(2.5, front)["trial"] == 7
    assert svp.select_match(3.0, front)["trial"] == 1
    assert svp.select_match(99.0, front)["trial"] == 1
    # a PSNR tie goes to the faster member, then to the lower trial
    tie = [_member(5, 31.0, 2.0), _member(4, 31.0, 1.5), _member(2, 31.0, 1.5)]
    assert svp.select_match(2.0, tie)["trial"] == 2


@pytest.mark.parametrize("seed", range(30))
def test_match_equals_brute_force_on_random_fronts(seed):
    rng = random.Random(seed)
    n = rng.randint(0, 12)
    # coarse grids make ties in both objectives frequent
    front = [_member(rng.randint(0, 40), rng.choice([30.0, 30.5, 31.0, 31.5, 32.0]),
                     rng.choice([0.5, 1.0, 1.5, 2.0, 2.5])) for _ in range(n)]
    for lat in (0.25, 0.5, 1.0, 1.75, 2.0, 3.0):
        assert svp.select_match(lat, front) == brute_force_match(lat, front)


# ------------------------------------------------------------------------------ dominance

SETS = ("Set5", "Set14", "B100")


def _net(sid, lat, *psnr):
    return {"spec_id": sid, "latency_ms": lat, "psnr": dict(zip(SETS, psnr))}


@pytest.mark.parametrize("match, expected", [
    (_net("m", 1.0, 34.0, 31.0, 30.0), True),    # better everywhere, faster
    (_net("m", 2.0, 33.0, 30.0, 29.0), True),    # equal PSNR everywhere at equal latency
    (_net("m", 2.0, 34.0, 30.0, 28.99), False),  # worse on one set
    (_net("m", 2.001, 34.0, 31.0, 30.0), False),  # better but slower
    (_net("p", 1.0, 34.0, 31.0, 30.0), False),   # the preset itself: dominated by nothing found
    ({"spec_id": "m", "latency_ms": None, "psnr": dict(zip(SETS, (34, 31, 30)))}, False),  # untimed
    ({"spec_id": "m", "latency_ms": 1.0, "psnr": {"Set5": 34.0}}, False),  # sets missing
    (None, False),
])
def test_dominance_rule(match, expected):
    preset = _net("p", 2.0, 33.0, 30.0, 29.0)
    assert svp.dominates(match, preset, SETS) is expected


def test_dominance_counts_every_scored_set():
    preset = {"spec_id": "p", "latency_ms": 2.0, "psnr": {"Set5": 33.0, "Urban": 26.0}}
    match = {"spec_id": "m", "latency_ms": 1.0, "psnr": {"Set5": 34.0, "Urban": 25.9}}
    assert svp.dominates(match, preset, ["Set5"]) is True
    assert svp.dominates(match, preset, ["Set5", "Urban"]) is False


# ------------------------------------------------------------------------------ Kendall tau

def test_kendall_tau_hand_computed():
    # pairs of (1,2,3,4,5) vs (3,1,2,5,4): concordant 7, discordant 3 -> (7 - 3) / 10
    assert svp.kendall_tau([1, 2, 3, 4, 5], [3, 1, 2, 5, 4]) == pytest.approx(0.4)
    # with ties: 6 pairs, 4 concordant, 0 discordant, one tied in x, one in y -> 4 / sqrt(5 * 5)
    assert svp.kendall_tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    assert svp.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert svp.kendall_tau([1.0], [2.0]) is None
    assert svp.kendall_tau([1, 1, 1], [1, 2, 3]) is None


def test_kendall_tau_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(3, 15)
        x = [rng.choice(range(5)) for _ in range(n)]
        y = [rng.choice(range(5)) for _ in range(n)]
        ours = svp.kendall_tau(x, y)
        ref = stats.kendalltau(x, y).statistic
        if ours is None:
            assert ref != ref  # nan
        else:
            assert ours == pytest.approx(ref)


# ------------------------------------------------------------------------------ JSON schema

def check_schema(doc):
    assert set(doc) == {"presets", "kendall_tau", "bicubic"}
    assert doc["kendall_tau"] is None or isinstance(doc["kendall_tau"], float)
    assert all(isinstance(k, str) and isinstance(v, float) for k, v in doc["bicubic"].items())
    for p in doc["presets"]:
        assert set(p) == {"name", "latency_ms", "psnr", "match", "dominates"}
        assert isinstance(p["name"], str) and isinstance(p["dominates"], bool)
        assert p["latency_ms"] is None or isinstance(p["latency_ms"], float)
        assert all(isinstance(v, float) for v in p["psnr"].values())
        if p["match"] is not None:
            assert set(p["match"]) == {"trial", "spec", "latency_ms", "psnr"}
            assert isinstance(p["match"]["trial"], int) and isinstance(p["match"]["spec"], dict)
            assert all(isinstance(v, float) for v in p["match"]["psnr"].values())


def test_json_report_has_the_issue_schema():
    spec = {"scale": 2, "channels": 16}
    rows = [
        {"name": "e2fif", "latency_ms": 1.5, "psnr": {"Set5": 33.0}, "status": "done", "spec_id": "a",
         "latency_pred_ms": 1.4, "dominates": True,
         "match": {"trial": 12, "spec": spec, "latency_ms": 1.2, "psnr": {"Set5": 33.5}, "spec_id": "b",
                   "itself": False, "status": "done", "latency_pred_ms": 1.3}},
        {"name": "xnor", "latency_ms": 0.9, "psnr": {"Set5": 30.0}, "status": "done", "spec_id": "c",
         "latency_pred_ms": 0.8, "dominates": False, "match": None},
    ]
    doc = svp.json_report(rows, 0.5, {"Set5": 33.67})
    check_schema(doc)
    assert doc["presets"][0]["match"] == {"trial": 12, "spec": spec, "latency_ms": 1.2, "psnr": {"Set5": 33.5}}
    assert doc["presets"][1]["match"] is None
    json.dumps(doc)  # plain JSON
    table = svp.format_table({"rows": rows, "sets": ["Set5"]}, {"Set5": 33.67})
    assert "no match" in table and "trial 12" in table and "+0.50" in table


# ------------------------------------------------------------------------------ store and resume

def test_store_keeps_results_and_refuses_other_settings(tmp_path):
    path = tmp_path / "store.json"
    st = svp.Store(path, {"quick": True, "steps": 3})
    st["retrain"]["abc"] = {"status": "done", "psnr": {"Set5": 33.0}}
    st["sessions"].append({"start": 10.0, "end": 70.0})
    st.save()
    again = svp.Store(path, {"quick": True, "steps": 3})
    assert again["retrain"]["abc"]["psnr"] == {"Set5": 33.0}
    assert again.wall_s() == pytest.approx(60.0)
    with pytest.raises(svp.InputError, match="other settings.*steps"):
        svp.Store(path, {"quick": True, "steps": 4})
    path.write_text("not json")
    with pytest.raises(svp.InputError, match="not a readable"):
        svp.Store(path, {"quick": True, "steps": 3})


def test_resumed_study_skips_done_work_and_resumes_the_rest(tmp_path):
    args = svp.parse_args(["--quick", "--run-dir", str(tmp_path), "--presets", "e2fif,lmb"])
    inp = svp.check_inputs(args)
    study = svp.Study(args, inp, tmp_path)
    (name_a, a), (name_b, b) = study.preset_specs()
    job = study.retrain_job(name_a, a)
    assert "--resume" not in job.cmd and "--steps" in job.cmd
    ckpt = study.retrain_dir(a.id) / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    assert "--resume" in study.retrain_job(name_a, a).cmd  # continues from its checkpoint
    study.store["retrain"][b.id] = {"status": "done", "psnr": {"Set5": 33.0}}
    study.touch()
    assert study.search_job() is not None and "--resume" not in study.search_job().cmd
    # a new process over the same run folder: the finished retraining is not run again
    again = svp.Study(args, inp, tmp_path)
    assert again.retrain_job(name_b, b) is None
    assert again.retrain_job(name_a, a) is not None
    assert len(again.store["sessions"]) == 2


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert svp.main(["--data-root", str(tmp_path / "missing"), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--data-root" in err and "not found" in err
    (tmp_path / "ev" / "Set5" / "HR").mkdir(parents=True)
    assert svp.main(["--eval-root", str(tmp_path / "ev"), "--eval-sets", "Set5", "--run-dir",
                     str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown set 'Set5'" in err
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------ end to end

@pytest.mark.slow  # ~25 s on the quiet 2-core machine, ~40 s when it is loaded (a search of 2 trials,
# 2 retrainings of 4 steps, the timing, then the same command again): python -m pytest -m slow
def test_end_to_end_tiny_budget_then_resume(tmp_path):
    """The real parts on the embedded default data: 2 search trials at rungs 2/4, 2 presets
    retrained 4 steps each, the timing, the JSON; then the same command again, which redoes
    nothing and gives the same JSON."""
    run = tmp_path / "study"
    out = tmp_path / "out.json"
    argv = ["--quick", "--trials", "2", "--rungs", "2,4", "--retrain-steps", "4", "--latency-input",
            "3x16x16", "--presets", "e2fif,bbcu_l", "--run-dir", str(run), "--json", str(out), "--no-write"]
    assert svp.main(argv) == 0
    doc = json.loads(out.read_text())
    check_schema(doc)
    assert [p["name"] for p in doc["presets"]] == ["e2fif", "bbcu_l"]
    assert set(doc["bicubic"]) == {"default"}
    for p in doc["presets"]:
        assert set(p["psnr"]) == {"default"} and p["latency_ms"] > 0
    assert (run / "pareto_retrained.png").is_file() and (run / "table.md").is_file()
    store = json.loads((run / "store.json").read_text())
    assert store["search"]["done"] and len(store["timing"]) >= 2
    logs = sorted((run / "logs").glob("retrain-*.log"))
    starts = {p.name: p.read_text().count("\n=== ") for p in logs}
    assert svp.main(argv) == 0
    assert json.loads(out.read_text()) == doc
    assert {p.name: p.read_text().count("\n=== ") for p in logs} == starts  # nothing retrained again


# ------------------------------------------------------------------------------ matches and report

def test_matches_and_report_on_hand_made_search_records(tmp_path, monkeypatch):
    """compute_matches + report over a hand-made multi-fidelity search (rungs 0 and 1):
    the top-rung front is trials 3, 0, 4; e2fif is its own match, lmb's is trial 4, xnor has none."""
    from space import presets

    args = svp.parse_args(["--quick", "--run-dir", str(tmp_path), "--presets", "e2fif,lmb,xnor"])
    study = svp.Study(args, svp.check_inputs(args), tmp_path)
    spec = {n: presets.get(n, 2, 16, 2) for n in ("e2fif", "lmb", "xnor", "bbcu_l")}
    shallow = presets.get("e2fif", 2, 16, 1)

    def rec(trial, s, lat, chain, preset=None):
        return {"trial": trial, "spec": s.to_dict(), "latency_ms": lat, "psnr_y": chain[0], "feasible": True,
                "psnr_y_by_rung": chain, "rung": len(chain) - 1, "preset": preset}

    records = [rec(0, spec["e2fif"], 2.0, [30.0, 34.2], "e2fif"), rec(1, spec["lmb"], 3.0, [31.0], "lmb"),
               rec(2, spec["xnor"], 0.5, [28.0], "xnor"), rec(3, shallow, 1.5, [30.5, 33.5]),
               rec(4, spec["bbcu_l"], 2.5, [31.0, 34.5])]
    monkeypatch.setattr(study, "search_records", lambda: [dict(r) for r in records])
    pre = study.preset_specs()
    matches = study.compute_matches(pre)
    assert {n: (m["match"] or {}).get("trial") for n, m in matches.items()} == {"e2fif": 0, "lmb": 4, "xnor": None}
    assert matches["lmb"]["match"]["psnr_search"] == 34.5  # the top-rung value
    retrained = {"e2fif": (34.0, 31.0, 30.0, 2.1), "lmb": (34.1, 31.1, 30.1, 3.1), "xnor": (30.0, 28.0, 27.0, 0.6),
                 "bbcu_l": (35.0, 31.5, 30.5, 2.6)}
    for n, (a, b, c, lat) in retrained.items():
        study.store["retrain"][spec[n].id] = {"status": "done", "psnr": {"Set5": a, "Set14": b, "B100": c},
                                              "bicubic": {"Set5": 33.67, "Set14": 30.23, "B100": 29.56},
                                              "steps": 300, "train_s": 30.0, "wall_s": 60.0}
        study.store["timing"][spec[n].id] = {"min_ms": lat, "median_ms": lat, "predicted_ms": lat}
    rep = study.report(pre)
    rows = {r["name"]: r for r in rep["rows"]}
    assert rows["e2fif"]["match"]["itself"] and rows["e2fif"]["dominates"] is False
    assert rows["lmb"]["match"]["trial"] == 4 and rows["lmb"]["dominates"] is True
    assert rows["xnor"]["match"] is None and rows["xnor"]["dominates"] is False
    # search-time PSNR (highest rung reached) 34.2, 31, 28, 34.5 vs Set5 34.0, 34.1, 30.0, 35.0:
    # one discordant pair of six -> (5 - 1) / 6; at rung 0 (30, 31, 28, 31): 5 concordant, one tie
    assert rep["tau"] == pytest.approx(4 / 6)
    assert rep["tau0"] == pytest.approx(5 / (5 * 6) ** 0.5)
    doc = rep["json"]
    check_schema(doc)
    assert doc["bicubic"] == {"Set5": 33.67, "Set14": 30.23, "B100": 29.56}
    assert doc["presets"][1]["match"]["latency_ms"] == 2.6 and doc["presets"][1]["latency_ms"] == 3.1
    table = svp.format_table(rep, doc["bicubic"])
    assert "the preset itself" in table and "no (itself)" in table and "no match" in table
    text = svp.section_text(study, rep, doc["bicubic"], table, "python -m benchmarks.search_vs_presets --quick")
    assert table in text and "(QUICK run)" in text and "0.667" in text and "0.100 s per step" in text
