"""The Ray Tune engine on a local Ray (started once for this module): same run format as the
Optuna engine, budget rejection in the driver, node id recorded per trial."""
import os
import sys

import pytest
from optuna.trial import TrialState

ray = pytest.importorskip("ray")

sys.path.insert(0, os.path.dirname(__file__))
from search_helpers import write_space  # noqa: E402

from nas import config, search  # noqa: E402
from nas.runfolder import RunFolder  # noqa: E402
from space.spec import ArchSpec  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    # workers import tests/nas/search_helpers for the failing-evaluator test
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.path.dirname(os.path.abspath(__file__))}})
    yield
    ray.shutdown()


def tiny(tmp_path, kind, trials=4, **constraints):
    data = {
        "name": "tiny", "seed": 0, "space": write_space(tmp_path), "constraints": constraints,
        "evaluator": {"steps": 2, "batch": 2, "patch": 16, "max_val_images": 1, "threads": 1},
        "latency": {"input_size": [3, 8, 8], "threads": 1, "path": str(tmp_path / "lut.json")},
        "engine": {"kind": kind, "trials": trials, "feasibility_samples": 8, "startup_trials": 2},
        "ray": {"num_cpus": 2, "cpus_per_trial": 1, "max_concurrent": 2},
        "tensorboard": {"sample_images": False},
        "run_dir": str(tmp_path / f"run_{kind}"),
    }
    return config.load(data=data)


def layout(run_dir):
    """Relative paths of a run folder; event-file names, checkpoints (absent for a duplicate
    spec, which is not retrained) and Ray's own folder left out."""
    out = set()
    for root, dirs, files in os.walk(run_dir):
        dirs[:] = [d for d in dirs if not (root == run_dir and d == "ray")]
        for f in files:
            if f == "checkpoint.pt":
                continue
            rel = os.path.relpath(os.path.join(root, f), run_dir)
            out.add(rel.split("events.out")[0] + ("events" if "events.out" in rel else ""))
    return out


@pytest.mark.slow
def test_both_engines_same_run_format(tmp_path, local_ray):
    s_ray, front_ray = search.run(tiny(tmp_path, "ray"), progress=False)
    s_opt, front_opt = search.run(tiny(tmp_path, "optuna"), progress=False)
    for s in (s_ray, s_opt):
        done = s.study.get_trials(states=(TrialState.COMPLETE,))
        assert len(done) == 4
    assert layout(s_ray.run.path) == layout(s_opt.run.path)
    run = RunFolder(s_ray.run.path)
    node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    for t in s_ray.study.get_trials(states=(TrialState.COMPLETE,)):
        m = run.read_metrics(t.number)
        if m["trained"]:
            assert m["node_id"] in node_ids
        opt_keys = set(RunFolder(s_opt.run.path).read_metrics(0))
        assert opt_keys <= set(m)
        assert ArchSpec.from_json(open(os.path.join(run.trial_dir(t.number), "spec.json")).read()).id \
            == t.user_attrs["spec_id"]
    assert [m["trial"] for m in front_ray]


def test_ray_engine_rejects_over_budget_and_resumes(tmp_path, local_ray):
    # the tiny space's BOPs at 8x8: 2 convs x 9 x 64 x 64 x parts per block; bound between
    cfg = tiny(tmp_path, "ray", trials=2, bops=2 * 9 * 64 * 64 * 3)
    s, _ = search.run(cfg, progress=False)
    cfg4 = tiny(tmp_path, "ray", trials=4, bops=2 * 9 * 64 * 64 * 3)
    s2, _ = search.run(cfg4, progress=False, resume=True)
    done = s2.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 4
    assert len(s.study.get_trials(states=(TrialState.COMPLETE,))) >= 2
    run = RunFolder(cfg["run_dir"])
    for t in done:
        m = run.read_metrics(t.number)
        over = m["bops"] > 2 * 9 * 64 * 64 * 3
        assert m["feasible"] is (not over)
        if over:
            assert m["trained"] is False and "node_id" not in m and t.values[0] == 0.0
            assert not os.path.exists(os.path.join(run.trial_dir(t.number), "checkpoint.pt"))


def test_failed_tune_trials_are_marked_fail(tmp_path, local_ray):
    logs = []
    s, front = search.run(tiny(tmp_path, "ray", trials=2), progress=False, log=logs.append,
                          evaluator_factory="search_helpers:FailingEvaluator")
    states = [t.state for t in s.study.get_trials()]
    assert TrialState.RUNNING not in states and TrialState.COMPLETE not in states
    assert states.count(TrialState.FAIL) == 2
    assert any("Tune trial(s) failed" in m and "--resume" in m for m in logs)
    assert front == []
    for t in s.study.get_trials():
        assert RunFolder(s.run.path).read_metrics(t.number)["state"] == "FAIL"


def test_ray_engine_schedules_promotions(tmp_path, local_ray):
    """Rungs on the Ray engine: the driver promotes (nas.rungs), the trainable continues the
    training on a worker (node id stored with the rung), the front is the top rung's."""
    import glob
    import json

    from nas import rungs as rungs_mod

    cfg = tiny(tmp_path, "ray", trials=4)
    cfg["evaluator"].update(rungs=[4, 12], eta=2)
    s, front = search.run(cfg, progress=False)
    recs = [r for r in s.engine_context().records() if r["trained"]]
    promoted = [r for r in recs if r["rung"] == 1]
    assert len(promoted) >= len(recs) // 2 >= 1
    node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    for r in promoted:
        res = json.load(open(os.path.join(s.run.trial_dir(r["trial"]), "rung-1", "result.json")))
        assert res["node_id"] in node_ids and res["steps"] == 12
        assert res["resumed_from"] == 3  # continued from rung 0's stable.pt (4 - ceil(0.8))
    assert not glob.glob(os.path.join(s.run.path, "trials", "*", "rung-1", rungs_mod.CLAIM))
    assert front and all(m["rung"] == 1 for m in front)
    data = json.load(open(s.run.file("pareto.json")))
    assert [m["trial"] for m in data] == [m["trial"] for m in front]
