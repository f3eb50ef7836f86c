"""``bsrnas retrain``: safe --resume, another architecture's checkpoint, --spec with --from,
config paths from any folder, and --steps."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from evaluators.checkpoint import load_checkpoint
from nas.cli import main
import nas.paths as paths_mod  # noqa: E402
import nas.retrain as retrain_mod
from nas.retrain import RetrainConfig
from space.spec import LayerSpec, uniform
from tests.evil_pickles import SystemTouch, TouchMarker, write_evil  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SPEC = uniform(2, 8, 1, LayerSpec(weight_scale="channel_mean", skip="fp"))
OTHER = uniform(2, 16, 1, LayerSpec(weight_scale="channel_mean", skip="fp"))
TINY = {"train": {"steps": 2, "batch": 1, "patch": 16, "lr": 1e-3, "schedule": "cosine",
                  "log_every": 1, "threads": 1, "device": "cpu"},
        "eval": {"sets": ["Set5"], "sample_images": 0, "sample_crop": 16}}
REFUSED = "is not a current bsrnas checkpoint"


def _write(tmp_path, config=TINY, spec=SPEC, name="spec.json"):
    spec_path = tmp_path / name
    spec_path.write_text(spec.to_json())
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return spec_path, cfg


def _one_error_line(err, command="retrain"):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"bsrnas {command}: error:") and "Traceback" not in err
    return lines[0]




@pytest.mark.parametrize("how,evil", [("torch", TouchMarker), ("pickle", SystemTouch)])
def test_resume_refuses_malicious_checkpoint_in_run_dir(tmp_path, capsys, how, evil):
    spec, cfg = _write(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "MARKER"
    write_evil(run / "checkpoint.pt", marker, how, evil)
    rc = main(["retrain", "--spec", str(spec), "--config", str(cfg), "--run-dir", str(run),
               "--resume", "--no-progress"])
    assert not marker.exists(), "retrain --resume ran code from the checkpoint"
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and str(run / "checkpoint.pt") in line and REFUSED in line
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt"]  # nothing else written


def test_resume_with_checkpoint_of_another_architecture_exits_2(tmp_path, capsys):
    spec, cfg = _write(tmp_path)
    other, _ = _write(tmp_path, spec=OTHER, name="other.json")
    base = ["--config", str(cfg), "--no-progress"]
    assert main(["retrain", "--spec", str(spec), "--run-dir", str(tmp_path / "a"), *base]) == 0
    assert main(["retrain", "--spec", str(other), "--run-dir", str(tmp_path / "b"), *base]) == 0
    capsys.readouterr()
    shutil.copy(tmp_path / "b" / "checkpoint.pt", tmp_path / "a" / "checkpoint.pt")
    before = (tmp_path / "a" / "results.json").read_text()
    rc = main(["retrain", "--spec", str(spec), "--run-dir", str(tmp_path / "a"), "--resume", *base])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and str(tmp_path / "a" / "checkpoint.pt") in line
    assert "another architecture" in line and OTHER.id in line and SPEC.id in line
    assert (tmp_path / "a" / "results.json").read_text() == before


def test_spec_together_with_from_is_refused(tmp_path, capsys):
    spec, cfg = _write(tmp_path)
    rc = main(["retrain", "--spec", str(spec), "--from", str(tmp_path / "search-run"),
               "--config", str(cfg), "--run-dir", str(tmp_path / "run")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "--spec" in line and "--from" in line and "choose one" in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "search-run").exists()


def test_relative_config_resolves_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert retrain_mod.resolve_config_path("configs/train/cpu.yaml") == REPO / "configs" / "train" / "cpu.yaml"
    assert retrain_mod.resolve_config_path("train/paper.yaml") == REPO / "configs" / "train" / "paper.yaml"
    (tmp_path / "configs" / "train").mkdir(parents=True)
    (tmp_path / "configs" / "train" / "cpu.yaml").write_text("train: {}\n")
    assert retrain_mod.resolve_config_path("configs/train/cpu.yaml") == Path("configs/train/cpu.yaml")  # cwd first
    with pytest.raises(FileNotFoundError) as info:
        retrain_mod.resolve_config_path("configs/train/nope.yaml")
    msg = str(info.value)
    for tried in ("configs/train/nope.yaml", str(REPO / "configs" / "train" / "nope.yaml"),
                  str(REPO / "nas" / "_configs" / "train" / "nope.yaml")):
        assert tried in msg


def test_config_falls_back_to_packaged_nas_configs(tmp_path, monkeypatch):
    root = tmp_path / "site"  # an installed layout: no configs/, only nas/_configs/
    (root / "nas" / "_configs" / "train").mkdir(parents=True)
    shipped = root / "nas" / "_configs" / "train" / "cpu.yaml"
    shipped.write_text("train: {}\n")
    monkeypatch.setattr(paths_mod, "project_root", lambda: root)
    monkeypatch.chdir(tmp_path)
    assert retrain_mod.resolve_config_path("configs/train/cpu.yaml") == shipped


def test_default_config_and_steps_work_outside_the_checkout(tmp_path, monkeypatch, capsys):
    spec, _ = _write(tmp_path)
    monkeypatch.chdir(tmp_path)  # no configs/ here: the default configs/train/cpu.yaml is the project's
    run = tmp_path / "run"
    assert main(["retrain", "--spec", str(spec), "--steps", "2", "--run-dir", str(run),
                 "--no-progress"]) == 0
    results = json.loads((run / "results.json").read_text())
    shipped = RetrainConfig.from_yaml(REPO / "configs" / "train" / "cpu.yaml").train
    assert results["train"]["steps"] == 2 and results["config"]["train"]["steps"] == 2
    assert results["config"]["train"]["patch"] == shipped.patch  # the rest is cpu.yaml's
    assert results["overrides"]["steps"] == 2
    assert results["overrides"]["config_steps"] == shipped.steps
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 2


def test_scale_steps_milestones_follow_the_formula():
    base = RetrainConfig.from_dict({"train": {"steps": 1000, "schedule": "step",
                                              "milestones": [500, 800], "checkpoint_every": 200,
                                              "log_every": 20}})
    short, info = retrain_mod.scale_steps(base, 100)
    t = short.train
    assert (t.steps, t.milestones, t.checkpoint_every, t.log_every) == (100, (50, 80), 20, 2)
    assert info["dropped_milestones"] == [] and info["scaled_milestones"] == [50, 80]
    assert t.lr_at(49) == base.train.lr and t.lr_at(50) == base.train.lr * 0.5
    longer, _ = retrain_mod.scale_steps(base, 3000)
    assert longer.train.milestones == (1500, 2400) and longer.train.checkpoint_every == 600

    # m -> round(m * 3 / 1000): 500 -> 2 (1.5 rounds up), 501 -> 2 collapses onto it,
    # 999 -> 3 = N would no longer take effect: both dropped, and the notes say so
    tight = RetrainConfig.from_dict({"train": {"steps": 1000, "schedule": "step",
                                               "milestones": [500, 501, 999],
                                               "checkpoint_every": 200, "log_every": 0}})
    small, info = retrain_mod.scale_steps(tight, 3)
    assert small.train.milestones == (2,) and info["dropped_milestones"] == [501, 999]
    assert (small.train.checkpoint_every, small.train.log_every) == (1, 0)
    assert any("dropped milestone(s) [501, 999]" in n for n in info["notes"])
    # cosine: only steps and the intervals change (log_every 50 * 500/2000 = 12.5 -> 13)
    cos = RetrainConfig.from_dict({"train": {"steps": 2000, "schedule": "cosine", "min_lr": 1e-5}})
    c, _ = retrain_mod.scale_steps(cos, 500)
    assert c.train.to_dict() == {**cos.train.to_dict(), "steps": 500, "log_every": 13}


def test_steps_with_step_schedule_end_to_end(tmp_path, capsys):
    config = json.loads(json.dumps(TINY))
    config["train"].update(steps=10, schedule="step", milestones=[5, 8], checkpoint_every=5)
    spec, cfg = _write(tmp_path, config)
    run = tmp_path / "run"
    assert main(["retrain", "--spec", str(spec), "--config", str(cfg), "--steps", "4",
                 "--run-dir", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "milestones [5, 8] -> [2, 3]" in out  # 5 * 4/10 = 2, 8 * 4/10 = 3.2 -> 3
    results = json.loads((run / "results.json").read_text())
    assert results["train"]["steps"] == 4
    assert results["config"]["train"]["milestones"] == [2, 3]
    assert results["config"]["train"]["checkpoint_every"] == 2
    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["step"] == 4 and ck["train_config"]["milestones"] == [2, 3]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"] == 4


@pytest.mark.parametrize("value", ["0", "-3", "2.5", "ten"])
def test_bad_steps_exit_2(tmp_path, capsys, value):
    spec, cfg = _write(tmp_path)
    rc = main(["retrain", "--spec", str(spec), "--config", str(cfg), "--steps", value,
               "--run-dir", str(tmp_path / "run")])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and "--steps" in line and value in line and "integer >= 1" in line
    assert not (tmp_path / "run").exists()
