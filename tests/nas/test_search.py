"""The Optuna engine end to end on the real SearchSpace with an injected cost model, latency
table and evaluator (search_helpers): run format, budget, resume, presets, front."""
import json
import os
import sys

import pytest
from optuna.trial import TrialState

sys.path.insert(0, os.path.dirname(__file__))
from search_helpers import FakeEvaluator, FakeLatency, components, fake_cost, make_cfg  # noqa: E402

from nas import search  # noqa: E402
from nas.runfolder import RunFolder, records  # noqa: E402
from space.spec import ArchSpec  # noqa: E402


def brute_front_numbers(study, cost_key="latency_ms"):
    pts = []
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        if all(c <= 0 for c in (t.constraints or {}).values()):
            pts.append((t.number, t.values[0], t.values[1]))
    return sorted(n for n, p, c in pts
                  if not any(q >= p and d <= c and (q > p or d < c) for _, q, d in pts))


def test_run_format_and_front(tmp_path):
    cfg = make_cfg(tmp_path, engine__trials=8)
    comp = components()
    s, members = search.run(cfg, progress=False, **comp)
    run = RunFolder(cfg["run_dir"])
    study = run.load_study()
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 8
    for name in ("config.yaml", "study.db", "pareto.json", "pareto.csv", "pareto.png"):
        assert os.path.isfile(run.file(name)), name
    for t in done:
        d = run.trial_dir(t.number)
        spec = ArchSpec.from_json(open(os.path.join(d, "spec.json")).read())
        m = json.load(open(os.path.join(d, "metrics.json")))
        assert spec.id == t.user_attrs["spec_id"]
        assert m["state"] == "COMPLETE" and m["psnr_y"] == pytest.approx(t.values[0])
        assert m["latency_ms"] == pytest.approx(FakeLatency().predict(spec))
        assert m["bops"] == fake_cost(spec, (3, 16, 16))["bops"]
    data = json.load(open(run.file("pareto.json")))
    assert sorted(d["trial"] for d in data) == brute_front_numbers(study)
    for d in data:
        assert set(d) >= {"trial", "psnr_y", "latency_ms", "bops", "params", "spec", "preset"}
        assert ArchSpec.from_dict(d["spec"]).id == study.trials[d["trial"]].user_attrs["spec_id"]


def test_over_budget_never_trained(tmp_path):
    # latency of the tiny space: 0.59 .. 2.3 ms; bound 0.8 leaves both sides populated
    cfg = make_cfg(tmp_path, engine__trials=10, constraints__latency_ms=0.8)
    comp = components()
    s, members = search.run(cfg, progress=False, **comp)
    study = s.study
    lat = FakeLatency()
    trained_ids = {spec.id for spec in comp["evaluator"].calls}
    infeasible = 0
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        spec = ArchSpec.from_json(t.user_attrs["spec"])
        over = lat.predict(spec) > 0.8
        assert t.constraints == {"latency_ms": pytest.approx(lat.predict(spec) - 0.8)}
        if over:
            infeasible += 1
            assert spec.id not in trained_ids
            assert t.values[0] == 0.0 and t.user_attrs["metrics"]["feasible"] is False
            assert t.user_attrs["metrics"]["trained"] is False
    assert all(lat.predict(spec) <= 0.8 for spec in comp["evaluator"].calls)
    assert infeasible >= 1
    assert all(m["latency_ms"] <= 0.8 for m in members)
    assert sorted(m["trial"] for m in members) == brute_front_numbers(study)


def test_impossible_budget_raises_before_training(tmp_path):
    cfg = make_cfg(tmp_path, constraints__latency_ms=0.01)
    comp = components()
    with pytest.raises(ValueError, match=r"constraints: no architecture .*latency_ms >= 0\.59"):
        search.run(cfg, progress=False, **comp)
    assert comp["evaluator"].calls == []


def test_resume_keeps_finished_trials(tmp_path):
    cfg4 = make_cfg(tmp_path, engine__trials=4)
    search.run(cfg4, progress=False, **components())
    run = RunFolder(cfg4["run_dir"])
    before = {t.number: (t.params, t.values) for t in run.load_study().get_trials()}
    assert sorted(before) == [0, 1, 2, 3]
    # a trial left RUNNING by a killed worker (its pid does not exist)
    study = run.load_study()
    ghost = study.ask()
    ghost.set_user_attr("worker", "%s:%d" % (os.uname().nodename, 2 ** 22 + 12345))
    with pytest.raises(ValueError, match="--resume"):
        search.run(make_cfg(tmp_path, engine__trials=7), progress=False, **components())
    comp = components()
    s, _ = search.run(make_cfg(tmp_path, engine__trials=7), resume=True, progress=False, **comp)
    trials = s.study.get_trials()
    assert trials[ghost.number].state == TrialState.FAIL
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 7
    assert sorted(t.number for t in done) == [0, 1, 2, 3, 5, 6, 7]
    for n, (params, values) in before.items():
        assert trials[n].params == params and trials[n].values == values
    assert len(comp["evaluator"].calls) <= 3  # only the new trials were evaluated
    assert sorted(os.listdir(os.path.join(cfg4["run_dir"], "trials"))) == ["%04d" % t.number for t in done]


def test_journal_storage_and_nsga2(tmp_path):
    cfg = make_cfg(tmp_path, engine__trials=5, engine__storage="journal", engine__sampler="nsga2")
    s, _ = search.run(cfg, progress=False, **components())
    assert os.path.isfile(os.path.join(cfg["run_dir"], "study.log"))
    assert len(RunFolder(cfg["run_dir"]).load_study().get_trials(states=(TrialState.COMPLETE,))) == 5


def test_presets_enqueued_first(tmp_path):
    space = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "space", "quickstart.yaml")
    from space import presets
    from space.space import SearchSpace

    sp = SearchSpace.from_yaml(space)
    fitting = [n for n in presets.names() if sp.contains(presets.get(n, 2, 16, 2))]
    assert fitting, "the quickstart space should contain presets"
    cfg = make_cfg(tmp_path, space=os.path.abspath(space), engine__trials=len(fitting) + 1)
    comp = components()
    s, _ = search.run(cfg, progress=False, **comp)
    trials = s.study.get_trials(states=(TrialState.COMPLETE,))
    head = trials[:len(fitting)]
    assert [t.user_attrs.get("preset") for t in head] == fitting
    for t in head:
        assert t.user_attrs["spec_id"] == presets.get(t.user_attrs["preset"], 2, 16, 2).id
    recs = records(s.study)
    assert [r["preset"] for r in recs[:len(fitting)]] == fitting


class InterruptingEvaluator(FakeEvaluator):
    """Raises KeyboardInterrupt (as Ctrl-C would) on call number ``at`` (0-based)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def evaluate(self, spec, run_dir=None):
        if len(self.calls) == self.at:
            self.calls.append(spec)
            raise KeyboardInterrupt
        return super().evaluate(spec, run_dir)


def test_interrupt_then_resume(tmp_path):
    cfg = make_cfg(tmp_path, engine__trials=6)
    comp = components()
    comp["evaluator"] = InterruptingEvaluator(at=2)
    with pytest.raises(KeyboardInterrupt):
        search.run(cfg, progress=False, **comp)
    run = RunFolder(cfg["run_dir"])
    study = run.load_study()
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.FAIL) == 1 and TrialState.RUNNING not in states
    kept = {t.number: t.params for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert os.path.isfile(run.file("pareto.json"))  # outputs written on the way out
    s, _ = search.run(cfg, resume=True, progress=False, **components())
    done = s.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 6
    for n, params in kept.items():
        assert s.study.trials[n].params == params


def test_bops_objective(tmp_path):
    cfg = make_cfg(tmp_path, engine__trials=6, objectives__cost="bops", constraints__params=2000)
    s, members = search.run(cfg, progress=False, **components())
    done = s.study.get_trials(states=(TrialState.COMPLETE,))
    for t in done:
        spec = ArchSpec.from_json(t.user_attrs["spec"])
        assert t.values[1] == fake_cost(spec, (3, 16, 16))["bops"]
        assert t.constraints == {"params": fake_cost(spec, (3, 16, 16))["params"] - 2000}
    assert sorted(m["trial"] for m in members) == brute_front_numbers(s.study)
    # no bound on the cost objective: reference = 1.1 x the largest feasible sampled bops
    import random

    rng = random.Random(cfg["seed"])
    sampled = [s.space.random(rng) for _ in range(cfg["engine"]["feasibility_samples"])]
    largest = max(fake_cost(x, (3, 16, 16))["bops"] for x in sampled
                  if fake_cost(x, (3, 16, 16))["params"] <= 2000)
    assert s.study.user_attrs["hv_reference"] == [0.0, pytest.approx(1.1 * largest)]
