"""Multi-fidelity search (nas.rungs): the promotion order against a brute-force non-dominated
sort, the wsd continuation against an uninterrupted training, both engines' bookkeeping, the
per-rung fronts and the interface keys, and resume after kill -9 during a promoted training."""
import itertools
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from search_helpers import FakeEvaluator, components, make_cfg  # noqa: E402

from nas import rungs, search  # noqa: E402
from nas.runfolder import RunFolder  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


# ----------------------------------------------------------------------------- brute force

def brute_dominates(a, b):
    return a[0] >= b[0] and a[1] <= b[1] and a != b


def brute_rank(points, i, memo):
    """Length of the longest chain of dominators ending at ``i`` (0: nobody dominates it):
    the non-dominated rank by its recursive definition, not by peeling."""
    if i not in memo:
        doms = [j for j in range(len(points)) if brute_dominates(points[j], points[i])]
        memo[i] = 0 if not doms else 1 + max(brute_rank(points, j, memo) for j in doms)
    return memo[i]


def brute_crowding(points, members):
    """Crowding distance from its definition: per objective, the gap between the nearest
    values strictly below and above (by sorted position), normalised by the range."""
    out = {}
    for i in members:
        total = 0.0
        for k in (0, 1):
            order = sorted(members, key=lambda j: (points[j][k], j))
            pos = order.index(i)
            lo, hi = points[order[0]][k], points[order[-1]][k]
            if pos in (0, len(order) - 1):
                total = math.inf
                continue
            if hi > lo:
                total += (points[order[pos + 1]][k] - points[order[pos - 1]][k]) / (hi - lo)
        out[i] = total
    return out


def brute_order(points):
    memo = {}
    ranks = {i: brute_rank(points, i, memo) for i in range(len(points))}
    crowd = {}
    for r in set(ranks.values()):
        crowd.update(brute_crowding(points, [i for i in ranks if ranks[i] == r]))
    return sorted(range(len(points)), key=lambda i: (ranks[i], -crowd[i], i))


HAND = [  # (psnr, cost): three fronts by construction
    (30.0, 1.0), (31.0, 2.0), (32.0, 4.0), (33.0, 8.0),      # rank 0
    (29.5, 1.5), (30.5, 3.0), (31.5, 6.0),                   # rank 1
    (29.0, 5.0), (30.0, 10.0),                               # rank 2
]


def test_mo_order_on_hand_made_results_equals_brute_force():
    assert rungs.nondominated_ranks(HAND) == [0, 0, 0, 0, 1, 1, 1, 2, 2]
    assert rungs.mo_order(HAND) == brute_order(HAND)
    # rank 0 first, its extremes (0 and 3) before its inner points; inner by crowding:
    # point 1: (32-30)/3 + (4-1)/7 = 1.095; point 2: (33-31)/3 + (8-2)/7 = 1.524
    assert rungs.mo_order(HAND)[:4] == [0, 3, 2, 1]


@pytest.mark.parametrize("seed", range(6))
def test_mo_order_on_random_results_equals_brute_force(seed):
    rng = random.Random(seed)
    pts = [(round(rng.uniform(25, 34), 1), round(rng.uniform(0.5, 3.0), 1)) for _ in range(14)]
    pts += pts[:2]  # equal points are both kept in one rank
    assert rungs.mo_order(pts) == brute_order(pts)


def test_promotable_is_top_floor_n_over_eta():
    finished = {10 + i: p for i, p in enumerate(HAND)}
    assert rungs.promotable(finished, len(finished), 3) == [10, 13, 12]
    assert rungs.promotable(finished, 2, 3) == []  # floor(2 / 3) = 0: nothing yet
    # diverged ones count in n but are never promoted (they are not in `finished`)
    assert rungs.promotable(dict(list(finished.items())[:5]), 9, 3) == [10, 13, 12]


def _records(points):
    return [{"trial": i, "psnr_y": p, "latency_ms": c, "feasible": True, "trained": True}
            for i, (p, c) in enumerate(points)]


def test_rungbook_promotes_from_the_top_rung_down_and_claims_once(tmp_path):
    run = RunFolder(str(tmp_path))
    book = rungs.RungBook(run, [10, 30, 90], 3, "latency_ms")
    recs = _records(HAND)
    assert book.candidates(recs) == [(0, 1), (3, 1), (2, 1)]
    for n, p in ((0, 30.5), (3, 33.4), (2, 32.1)):
        run.write_trial(n, None, {"psnr_y": HAND[n][0], "trained": True})
        book.record(n, 1, {"psnr_y": p, "diverged": False})
    # 3 finished rung 1 -> 1 promotable to rung 2: the rung-1 order, before any new rung-1 job
    assert book.candidates(recs)[0][1] == 2
    other = rungs.RungBook(run, [10, 30, 90], 3, "latency_ms", owner="elsewhere:1")
    job = book.next_job(recs)
    assert job == book.candidates(recs)[0]
    assert other.next_job(recs) != job  # claimed: the other worker takes the next one
    assert json.load(open(os.path.join(run.trial_dir(0), "metrics.json")))["psnr_y_by_rung"] == [30.0, 30.5]


def test_claim_of_a_dead_process_is_taken_over(tmp_path):
    run = RunFolder(str(tmp_path))
    book = rungs.RungBook(run, [10, 30], 2, "latency_ms")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    d = book.rung_dir(4, 1)
    os.makedirs(d)
    with open(os.path.join(d, rungs.CLAIM), "w") as fh:
        fh.write(f"{os.uname().nodename}:{dead.pid}\n")
    assert book.claim(4, 1)
    assert not rungs.RungBook(run, [10, 30], 2, "latency_ms", owner="x:1").claim(4, 1)  # live now


# ----------------------------------------------------------------------------- wsd continuation

SPEC_SPACE = os.path.join(ROOT, "configs", "space", "quickstart.yaml")


def _tiny_spec():
    from space import presets

    return presets.get("e2fif", scale=2, channels=8, blocks=1)


def test_rung_continuation_equals_an_uninterrupted_training(tmp_path):
    """Rung 1 of rungs [10, 30, 60] (rung 0, then continued from its stable.pt) gives exactly
    the model of one 30-step wsd training with the same top rung (rungs [30, 60], rung 0)."""
    import torch

    from evaluators.checkpoint import load_checkpoint
    from evaluators.proxy import ProxyEvaluator

    spec = _tiny_spec()
    kw = dict(batch=2, patch=16, lr=2e-3, threads=1, max_val_images=1)
    chained = ProxyEvaluator(rungs=[10, 30, 60], **kw)
    a = str(tmp_path / "chained")
    r0 = chained.evaluate(spec, run_dir=a)
    assert r0["rung"] == 0 and os.path.isfile(os.path.join(a, "stable.pt"))
    assert load_checkpoint(os.path.join(a, "stable.pt"))["step"] == 8  # 10 - ceil(0.2 * 10)
    r1 = chained.evaluate(spec, run_dir=a, rung=1)
    assert r1["resumed_from"] == 8
    direct = ProxyEvaluator(rungs=[30, 60], **kw)
    b = str(tmp_path / "direct")
    d0 = direct.evaluate(spec, run_dir=b)
    wa = load_checkpoint(os.path.join(a, "rung-1", "checkpoint.pt"))["model"]
    wb = load_checkpoint(os.path.join(b, "checkpoint.pt"))["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert r1["psnr_y"] == d0["psnr_y"]


def test_wsd_schedule_formula():
    from evaluators.training import TrainConfig

    c = TrainConfig(steps=10, lr=1.0, schedule="wsd", decay=0.2)
    assert c.stable_steps == 8
    assert [c.lr_at(t) for t in range(8)] == [1.0] * 8
    assert c.lr_at(8) == pytest.approx(1.0) and c.lr_at(9) == pytest.approx((1 + math.cos(math.pi / 2)) / 2)


@pytest.mark.parametrize("rungs_value, fragment", [
    ([100], "at least 2 increasing"), ([100, 50], "increasing"), ("150", "list"),
    ([1, 600], "constant phases"), ([100, 101], "constant phases"),
])
def test_bad_rungs_name_the_key(tmp_path, rungs_value, fragment):
    with pytest.raises(ValueError, match="evaluator.rungs") as err:
        make_cfg(tmp_path, evaluator={"rungs": rungs_value})
    assert fragment in str(err.value)


@pytest.mark.parametrize("key, value", [("eta", 1), ("eta", 2.5), ("seeds", 0), ("decay", 0.0)])
def test_bad_eta_seeds_decay_name_the_key(tmp_path, key, value):
    with pytest.raises(ValueError, match=f"evaluator.{key}"):
        make_cfg(tmp_path, evaluator={"rungs": [10, 30], key: value})


# ----------------------------------------------------------------------------- whole searches

class RungFake(FakeEvaluator):
    """The fake's PSNR, plus 0.5 dB per rung for even spec hashes and 0.1 for odd ones (so
    longer training reorders the candidates); records every (spec id, rung) it trained."""

    def __init__(self):
        super().__init__()
        self.jobs = []

    def evaluate(self, spec, run_dir=None, rung=0):
        out = super().evaluate(spec, run_dir)
        gain = 0.5 if int(spec.id[:2], 16) % 2 == 0 else 0.1
        out["psnr_y"] += gain * rung
        out["rung"] = rung
        self.jobs.append((spec.id, rung))
        return out


def _mf_search(tmp_path, trials=9, eta=2, **over):
    cfg = make_cfg(tmp_path, engine__trials=trials, engine__presets=False,
                   evaluator={"rungs": [10, 30, 90], "eta": eta}, **over)
    comps = components()
    comps["evaluator"] = RungFake()
    s, members = search.run(cfg, progress=False, **comps)
    return s, members, comps["evaluator"]


def test_optuna_engine_promotes_each_rung_once_and_fronts_are_per_rung(tmp_path):
    s, members, fake = _mf_search(tmp_path)
    assert len(fake.jobs) == len(set(fake.jobs))  # no rung trained twice
    recs = [r for r in s.engine_context().records() if r["trained"]]
    from space.spec import ArchSpec

    by_id = {ArchSpec.from_dict(r["spec"]).id: r for r in recs}
    # replay the jobs in the order they ran: every promotion was the best-ordered unpromoted
    # member of the brute-force top floor(n / eta) of its rung at that moment, looking from
    # the highest rung down; a new candidate started only when no promotion was possible
    known = {0: {}, 1: {}, 2: {}}  # rung -> trial -> (psnr at that rung, cost)

    def expected_job():
        for r in (1, 0):
            done = known[r]
            k = len(done) // 2
            numbers = sorted(done)
            order = brute_order([done[n] for n in numbers])
            for n in [numbers[i] for i in order[:k]]:
                if n not in known[r + 1]:
                    return (n, r + 1)
        return None

    for sid, rung in fake.jobs:
        rec = by_id[sid]
        if rung == 0:
            assert expected_job() is None
        else:
            assert expected_job() == (rec["trial"], rung)
        known[rung][rec["trial"]] = (rec["psnr_y_by_rung"][rung], rec["latency_ms"])
    assert expected_job() is None  # the search ended with nothing promotable
    assert known[2], "nothing reached the top rung"
    # interface: metrics.json rung / psnr_y_by_rung, pareto.json members have rung
    for r in recs:
        m = s.run.read_metrics(r["trial"])
        assert m["rung"] == len(r["psnr_y_by_rung"]) - 1
        assert m["psnr_y_by_rung"] == pytest.approx(r["psnr_y_by_rung"])
    data = json.load(open(s.run.file("pareto.json")))
    assert data and all(m["rung"] == 2 for m in data)
    # duplicates of a spec show the rungs of the trial they repeat (same point, both kept)
    top = [r for r in s.engine_context().records() if len(r["psnr_y_by_rung"]) == 3]
    expected = {r["trial"] for r in top
                if not any(brute_dominates((o["psnr_y_by_rung"][2], o["latency_ms"]),
                                           (r["psnr_y_by_rung"][2], r["latency_ms"])) for o in top)}
    assert {m["trial"] for m in data} == expected
    assert [m["psnr_y"] for m in data] == pytest.approx([r["psnr_y_by_rung"][2] for r in
                                                         sorted(top, key=lambda r: r["latency_ms"])
                                                         if r["trial"] in expected])
    by_rung = json.load(open(s.run.file("pareto_rungs.json")))
    assert sorted(by_rung) == ["0", "1", "2"]


def test_over_budget_candidates_are_never_trained_nor_promoted(tmp_path):
    from space.spec import ArchSpec

    s, members, fake = _mf_search(tmp_path, trials=12, constraints={"latency_ms": 0.8})
    recs = s.engine_context().records()
    over = [r for r in recs if not r["feasible"]]
    assert over and any(r["feasible"] for r in recs)
    trained = {sid for sid, _ in fake.jobs}
    for r in over:
        assert r["psnr_y_by_rung"] == [] and r["rung"] is None
        assert ArchSpec.from_dict(r["spec"]).id not in trained


def test_resume_continues_promotions_without_retraining(tmp_path):
    cfg = make_cfg(tmp_path, engine__trials=6, engine__presets=False, evaluator={"rungs": [10, 30, 90], "eta": 3})
    comps = components()
    comps["evaluator"] = RungFake()
    search.run(cfg, progress=False, **comps)
    first = list(comps["evaluator"].jobs)
    cfg2 = make_cfg(tmp_path, engine__trials=9, engine__presets=False, evaluator={"rungs": [10, 30, 90], "eta": 3})
    comps2 = components()
    comps2["evaluator"] = RungFake()
    search.run(cfg2, resume=True, progress=False, **comps2)
    assert not set(first) & set(comps2["evaluator"].jobs)  # nothing trained twice across the resume


# ----------------------------------------------------------------------------- kill -9 (real proxy)

KILL_SCRIPT = textwrap.dedent("""
    import sys
    from nas import config, search
    cfg = config.load(data={{
        "name": "mf", "seed": 0, "space": {space!r},
        "evaluator": {{"batch": 2, "patch": 16, "lr": 0.002, "threads": 1, "max_val_images": 1,
                      "rungs": [10, 400], "eta": 2}},
        "latency": {{"input_size": [3, 16, 16], "threads": 1}},
        "engine": {{"trials": 2, "presets": False, "startup_trials": 2}},
        "tensorboard": {{"sample_images": False}}, "run_dir": {run!r}}})
    search.run(cfg, resume=len(sys.argv) > 1, progress=False)
""")


def test_kill_during_promoted_training_resumes_it(tmp_path):
    """kill -9 while rung 1 trains (after its first periodic checkpoint); --resume takes the
    dead claim over and continues from that checkpoint; the result equals the same rung
    computed directly by the proxy."""
    from evaluators.checkpoint import load_checkpoint
    from evaluators.proxy import ProxyEvaluator
    from space.spec import ArchSpec

    run_dir = str(tmp_path / "run")
    script = tmp_path / "mf.py"
    script.write_text(KILL_SCRIPT.format(space=SPEC_SPACE, run=run_dir))
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env)
    ckpt = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        for d in ("0000", "0001"):
            p = os.path.join(run_dir, "trials", d, "rung-1", "checkpoint.pt")
            try:
                if os.path.isfile(p) and load_checkpoint(p)["step"] >= 60:
                    ckpt = p
            except (OSError, ValueError, RuntimeError, EOFError):
                pass  # being replaced right now
        if ckpt:
            break
        time.sleep(0.05)
    assert ckpt, "the promoted training never reached its second checkpoint"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    trial_dir = os.path.dirname(os.path.dirname(ckpt))
    assert os.path.isfile(os.path.join(trial_dir, "rung-1", "claim"))
    assert not os.path.isfile(os.path.join(trial_dir, "rung-1", "result.json"))
    at_kill = load_checkpoint(ckpt)["step"]
    out = subprocess.run([sys.executable, str(script), "resume"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.load(open(os.path.join(trial_dir, "rung-1", "result.json")))
    assert res["resumed_from"] >= at_kill > 8  # continued, not restarted from the stable state
    metrics = json.load(open(os.path.join(trial_dir, "metrics.json")))
    assert metrics["rung"] == 1 and len(metrics["psnr_y_by_rung"]) == 2
    spec = ArchSpec.from_json(open(os.path.join(trial_dir, "spec.json")).read())
    ref = ProxyEvaluator(batch=2, patch=16, lr=0.002, threads=1, max_val_images=1, rungs=[10, 400], eta=2)
    direct = ref.evaluate(spec, run_dir=str(tmp_path / "direct"))
    direct1 = ref.evaluate(spec, run_dir=str(tmp_path / "direct"), rung=1)
    assert res["psnr_y"] == pytest.approx(direct1["psnr_y"], abs=1e-9)
    assert metrics["psnr_y_by_rung"][0] == pytest.approx(direct["psnr_y"], abs=1e-9)


def test_seeds_average_independent_copies(tmp_path):
    """evaluator.seeds = 2: the score is the mean of the seed-0 and seed-1 trainings, each the
    same as a single-seed proxy with that seed."""
    from evaluators.proxy import ProxyEvaluator

    spec = _tiny_spec()
    kw = dict(steps=6, batch=2, patch=16, lr=2e-3, threads=1, max_val_images=1)
    both = ProxyEvaluator(seeds=2, **kw).evaluate(spec, run_dir=str(tmp_path / "both"))
    one = [ProxyEvaluator(seed=s, **kw).evaluate(spec)["psnr_y"] for s in (0, 1)]
    assert both["psnr_y_seeds"] == pytest.approx(one, abs=1e-12)
    assert both["psnr_y"] == pytest.approx(sum(one) / 2, abs=1e-12)
    assert os.path.isfile(tmp_path / "both" / "seed-1" / "checkpoint.pt")


def test_random_sampler_is_a_search_method(tmp_path):
    cfg = make_cfg(tmp_path, engine__sampler="random", engine__trials=4, engine__presets=False)
    s, _ = search.run(cfg, progress=False, **components())
    import optuna

    assert isinstance(s.study.sampler, optuna.samplers.RandomSampler)
    assert len(s.study.trials) == 4
