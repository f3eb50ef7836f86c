"""Resume rules: failed presets are retried, a changed proxy is refused (or starts a separate
front with --new-front), a trial told FAIL says so in its metrics.json, engines depend on the
small EngineContext only."""
import os
import sys

import pytest
from optuna.trial import TrialState

sys.path.insert(0, os.path.dirname(__file__))
from search_helpers import FakeEvaluator, components, make_cfg  # noqa: E402

from nas import search  # noqa: E402
from nas.cli import main  # noqa: E402
from nas.runfolder import RunFolder  # noqa: E402

QUICK_SPACE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "space",
                                           "quickstart.yaml"))


class CrashOnPreset(FakeEvaluator):
    """Raises KeyboardInterrupt (a kill) while training the first preset it is handed."""

    def __init__(self, at=0):
        super().__init__()
        self.at = at

    def evaluate(self, spec, run_dir=None):
        if len(self.calls) == self.at:
            self.calls.append(spec)
            raise KeyboardInterrupt
        return super().evaluate(spec, run_dir)


def fitting_presets():
    from space import presets
    from space.space import SearchSpace

    sp = SearchSpace.from_yaml(QUICK_SPACE)
    return [n for n in presets.names() if sp.contains(presets.get(n, 2, 16, 2))]


def test_failed_preset_is_retried_on_resume(tmp_path):
    names = fitting_presets()
    assert len(names) >= 2
    cfg = make_cfg(tmp_path, space=QUICK_SPACE, engine__trials=len(names) + 1)
    comp = components()
    comp["evaluator"] = CrashOnPreset(at=1)  # the second preset's training is interrupted
    with pytest.raises(KeyboardInterrupt):
        search.run(cfg, progress=False, **comp)
    study = RunFolder(cfg["run_dir"]).load_study()
    failed = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    assert [t.user_attrs.get("preset") for t in failed] == [names[1]]
    s, _ = search.run(cfg, resume=True, progress=False, **components())
    done = s.study.get_trials(states=(TrialState.COMPLETE,))
    got = sorted(t.user_attrs.get("preset") for t in done if t.user_attrs.get("preset"))
    assert got == sorted(names)  # every preset has a COMPLETE trial, the failed one included
    # a second resume enqueues nothing more (each preset has its COMPLETE trial)
    s2, _ = search.run(make_cfg(tmp_path, space=QUICK_SPACE, engine__trials=len(names) + 2),
                       resume=True, progress=False, **components())
    presets_done = [t.user_attrs.get("preset") for t in s2.study.get_trials(states=(TrialState.COMPLETE,))
                    if t.user_attrs.get("preset")]
    assert sorted(presets_done) == sorted(names)


def test_trial_failed_by_interrupt_says_fail_in_metrics(tmp_path):
    cfg = make_cfg(tmp_path, engine__trials=5)
    comp = components()
    comp["evaluator"] = CrashOnPreset(at=2)
    with pytest.raises(KeyboardInterrupt):
        search.run(cfg, progress=False, **comp)
    run = RunFolder(cfg["run_dir"])
    for t in run.load_study().get_trials():
        m = run.read_metrics(t.number)
        assert m["state"] == t.state.name, (t.number, m["state"], t.state)
    failed = [t.number for t in run.load_study().get_trials() if t.state == TrialState.FAIL]
    assert len(failed) == 1 and run.read_metrics(failed[0])["fail_reason"].startswith("KeyboardInterrupt")


def test_stale_running_trial_metrics_marked_fail_on_resume(tmp_path):
    cfg = make_cfg(tmp_path, engine__trials=3)
    search.run(cfg, progress=False, **components())
    run = RunFolder(cfg["run_dir"])
    study = run.load_study()
    ghost = study.ask()  # a worker killed with -9 during its trial: RUNNING, metrics.json RUNNING
    ghost.set_user_attr("worker", "%s:%d" % (os.uname().nodename, 2 ** 22 + 4321))
    run.write_trial(ghost.number, None, {"state": "RUNNING", "trial": ghost.number})
    search.run(make_cfg(tmp_path, engine__trials=4), resume=True, progress=False, **components())
    assert run.load_study().trials[ghost.number].state == TrialState.FAIL
    assert run.read_metrics(ghost.number)["state"] == "FAIL"


@pytest.mark.parametrize("change, keys", [
    ({"evaluator__steps": 99}, ["evaluator.steps"]),
    ({"evaluator__max_val_images": 1, "evaluator__lr": 0.5}, ["evaluator.lr", "evaluator.max_val_images"]),
    ({"latency__input_size": [3, 24, 24]}, ["latency.input_size"]),
    ({"latency__threads": 2}, ["latency.threads"]),
])
def test_resume_with_other_proxy_is_refused(tmp_path, change, keys):
    cfg = make_cfg(tmp_path, engine__trials=3)
    search.run(cfg, progress=False, **components())
    other = make_cfg(tmp_path, engine__trials=5, **change)
    with pytest.raises(ValueError) as info:
        search.run(other, resume=True, progress=False, **components())
    msg = str(info.value)
    for k in keys:
        assert f"{k}: stored" in msg
    assert "--new-front" in msg
    assert len(RunFolder(cfg["run_dir"]).load_study().trials) == 3  # nothing was added


def test_resume_with_other_data_root_is_refused(tmp_path):
    cfg = make_cfg(tmp_path, engine__trials=2)
    search.run(cfg, progress=False, **components())
    from test_config import tiny_data_root

    other = make_cfg(tmp_path, engine__trials=3, data__root=tiny_data_root(tmp_path))
    with pytest.raises(ValueError, match=r"data\.root: stored None, given '.*data'"):
        search.run(other, resume=True, progress=False, **components())


def test_same_settings_spelled_differently_resume(tmp_path):
    """Defaults written out explicitly are the same proxy: resume proceeds."""
    cfg = make_cfg(tmp_path, engine__trials=2)
    search.run(cfg, progress=False, **components())
    same = make_cfg(tmp_path, engine__trials=3, evaluator__steps=300, evaluator__batch=8)
    s, _ = search.run(same, resume=True, progress=False, **components())
    assert s.n_complete() == 3 and s.run.path == RunFolder(cfg["run_dir"]).path


def test_new_front_is_separate_and_resumable(tmp_path):
    cfg = make_cfg(tmp_path, engine__trials=3)
    s1, _ = search.run(cfg, progress=False, **components())
    old = {t.number: t.values for t in s1.study.get_trials()}
    other = make_cfg(tmp_path, engine__trials=2, evaluator__steps=99)
    s2, front2 = search.run(other, new_front=True, progress=False, **components())
    assert s2.run.path == os.path.join(os.path.abspath(cfg["run_dir"]), "front-2")
    assert s2.n_complete() == 2
    assert {t.number: t.values for t in RunFolder(cfg["run_dir"]).load_study().get_trials()} == old
    # --resume with the new settings continues front-2; with the old ones the first front
    s3, _ = search.run(make_cfg(tmp_path, engine__trials=3, evaluator__steps=99), resume=True,
                       progress=False, **components())
    assert s3.run.path == s2.run.path and s3.n_complete() == 3
    s4, _ = search.run(make_cfg(tmp_path, engine__trials=4), resume=True, progress=False, **components())
    assert s4.run.path == os.path.abspath(cfg["run_dir"]) and s4.n_complete() == 4
    # a duplicate spec of front 1 is never reused on front 2 (different proxy, different score)
    with open(os.path.join(s2.run.path, "config.yaml")) as fh:
        assert "proxy_settings" in fh.read()


def test_cli_resume_with_changed_proxy_exits_2(tmp_path, capsys):
    import yaml

    from search_helpers import write_space

    data = {"space": write_space(tmp_path), "engine": {"trials": 1, "presets": False,
                                                         "feasibility_samples": 5},
            "latency": {"input_size": [3, 8, 8], "threads": 1,
                        "path": str(tmp_path / "lut.json")},
            "evaluator": {"steps": 1, "batch": 1, "patch": 8, "max_val_images": 1, "threads": 1},
            "tensorboard": {"sample_images": False}}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    run_dir = str(tmp_path / "run")
    assert main(["search", "--config", str(p), "--run-dir", run_dir, "--no-progress"]) == 0
    data["evaluator"]["steps"] = 2
    p.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    code = main(["search", "--config", str(p), "--run-dir", run_dir, "--resume", "--no-progress", "--trials", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "evaluator.steps: stored 1, given 2" in err and "Traceback" not in err
    code = main(["search", "--config", str(p), "--run-dir", run_dir, "--new-front", "--no-progress", "--trials", "1"])
    assert code == 0
    assert RunFolder(os.path.join(run_dir, "front-2")).load_study().trials[0].state == TrialState.COMPLETE


def test_engines_do_not_import_search():
    """nas.engines.* depend on nas.engines.base, not on nas.search (no import circle)."""
    import ast

    root = os.path.join(os.path.dirname(__file__), "..", "..", "nas", "engines")
    for name in ("optuna_engine.py", "ray_engine.py", "base.py"):
        tree = ast.parse(open(os.path.join(root, name)).read())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "nas.search" not in mods, name


def test_untagged_running_trial_is_stale_only_after_the_grace_period():
    """Between study.ask() and its worker tag a trial is another worker's live trial: a worker
    joining with --resume must not tell it FAIL (that crashed the first worker)."""
    import datetime
    from types import SimpleNamespace

    now = datetime.datetime(2026, 1, 1, 12, 0, 0)
    young = SimpleNamespace(user_attrs={}, datetime_start=now - datetime.timedelta(seconds=5))
    old = SimpleNamespace(user_attrs={}, datetime_start=now - datetime.timedelta(seconds=search.UNTAGGED_GRACE_S + 1))
    assert not search.is_stale(young, now=now)
    assert search.is_stale(old, now=now)
    dead = SimpleNamespace(user_attrs={"worker": "%s:%d" % (os.uname().nodename, 2 ** 22 + 99)},
                           datetime_start=now)
    alive = SimpleNamespace(user_attrs={"worker": "%s:%d" % (os.uname().nodename, os.getpid())},
                            datetime_start=now - datetime.timedelta(days=1))
    assert search.is_stale(dead, now=now) and not search.is_stale(alive, now=now)


def test_engines_tag_a_trial_as_soon_as_it_is_asked(tmp_path):
    """The worker tag is set before the spec is sampled and costed (which may measure latency
    units for minutes), so the untagged window is as short as possible."""
    seen = []
    cfg = make_cfg(tmp_path, engine__trials=2)
    comp = components()
    lat = comp["latency"]
    real = lat.predict

    def predict(spec):
        from optuna.trial import TrialState as TS

        st = RunFolder(cfg["run_dir"]).load_study()
        running = st.get_trials(states=(TS.RUNNING,))
        seen.extend(t.user_attrs.get("worker") for t in running)
        return real(spec)

    s = search.Search(cfg, **comp)
    s.setup()
    lat.predict = predict
    from nas.engines.optuna_engine import run_optuna

    run_optuna(s.engine_context())
    assert seen and all(seen), seen


def test_pareto_names_the_separate_fronts(tmp_path, capsys):
    cfg = make_cfg(tmp_path, engine__trials=2)
    search.run(cfg, progress=False, **components())
    search.run(make_cfg(tmp_path, engine__trials=1, evaluator__steps=7), new_front=True, progress=False,
               **components())
    capsys.readouterr()
    assert main(["pareto", cfg["run_dir"], "--no-samples"]) == 0
    out = capsys.readouterr().out
    assert "separate fronts" in out and os.path.join(os.path.abspath(cfg["run_dir"]), "front-2") in out
