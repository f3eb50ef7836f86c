"""``bsrnas retrain``: config validation, a tiny end-to-end run, refusal to overwrite, resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from evaluators.checkpoint import load_checkpoint, load_model
from evaluators.data import validation_set
from evaluators.evaluate import bicubic_sr_fn, evaluate, model_sr_fn
from nas.cli import main
from nas.retrain import RetrainConfig
from space.spec import LayerSpec, uniform

REPO = Path(__file__).resolve().parents[2]
SPEC = uniform(2, 8, 1, LayerSpec(weight_scale="channel_mean", skip="fp"))
TINY = {"train": {"steps": 6, "batch": 2, "patch": 32, "lr": 1e-3, "schedule": "cosine",
                  "checkpoint_every": 3, "log_every": 1, "threads": 1, "device": "cpu"},
        "eval": {"sets": ["Set5"], "sample_images": 1, "sample_crop": 64}}


def _files(tmp_path, config=TINY):
    spec = tmp_path / "spec.json"
    spec.write_text(SPEC.to_json())
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return spec, cfg


@pytest.mark.parametrize("name", ["cpu.yaml", "paper.yaml"])
def test_shipped_configs_parse(name):
    cfg = RetrainConfig.from_yaml(REPO / "configs" / "train" / name)
    assert cfg.train.steps > 0 and cfg.sets


def test_paper_config_is_the_published_schedule():
    t = RetrainConfig.from_yaml(REPO / "configs" / "train" / "paper.yaml").train
    assert (t.steps, t.batch, t.patch, t.lr, t.schedule, t.milestones, t.gamma) == (
        300000, 16, 192, 2e-4, "step", (200000,), 0.5)
    assert t.lr_at(199999) == 2e-4 and t.lr_at(200000) == 1e-4


@pytest.mark.parametrize(
    "mutate,named",
    [(lambda c: c["train"].update(learning_rate=1), "learning_rate"),
     (lambda c: c["train"].update(schedule="poly"), "schedule"),
     (lambda c: c["eval"].update(sets=[]), "eval.sets"),
     (lambda c: c["eval"].update(crop=3), "crop"),
     (lambda c: c.update(optimizer="sgd"), "optimizer")],
)
def test_bad_config_exits_2_naming_the_key(tmp_path, capsys, mutate, named):
    config = json.loads(json.dumps(TINY))
    mutate(config)
    spec, cfg = _files(tmp_path, config)
    assert main(["retrain", "--spec", str(spec), "--config", str(cfg), "--run-dir",
                 str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bsrnas retrain: error:") and named in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_missing_spec_file_exits_2(tmp_path, capsys):
    _, cfg = _files(tmp_path)
    assert main(["retrain", "--spec", str(tmp_path / "nope.json"), "--config", str(cfg)]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_tiny_retrain_end_to_end(tmp_path, capsys):
    spec, cfg = _files(tmp_path)
    run = tmp_path / "run"
    args = ["retrain", "--spec", str(spec), "--config", str(cfg), "--run-dir", str(run), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "results.md" in out and "tensorboard --logdir" in out
    results = json.loads((run / "results.json").read_text())
    assert results["spec_id"] == SPEC.id and results["train"]["steps"] == 6
    assert list(results["sets"]) == ["default"]  # no --data-root: the embedded split
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 6

    # the table's figures are those of the stored model, recomputed independently here
    spec_back, model = load_model(run / "checkpoint.pt")
    assert spec_back == SPEC
    items = validation_set(None, scale=2)
    row = results["sets"]["default"]
    assert row["psnr_y"] == pytest.approx(evaluate(model_sr_fn(model), items, 2)["psnr_y"], abs=1e-9)
    assert row["bicubic_psnr_y"] == pytest.approx(evaluate(bicubic_sr_fn(2), items, 2)["psnr_y"])
    md = (run / "results.md").read_text()
    assert f"| default | {len(items)} | {row['psnr_y']:.2f} |" in md

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "train/loss" in tags["scalars"] and "eval/default/psnr_y" in tags["scalars"]
    img = [t for t in tags["images"] if t.startswith("samples/default/")]
    assert img
    ev = acc.Images(img[0])[0]
    assert ev.width == 3 * 64 and ev.height == 64  # HR | bicubic | SR, 64-pixel crop

    # a second run into the same folder is refused without --resume ...
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    # ... and with --resume continues from the finished checkpoint (no step retrained)
    assert main(args + ["--resume"]) == 0
    again = json.loads((run / "results.json").read_text())
    assert again["train"]["resumed_from"] == 6
    assert again["sets"]["default"]["psnr_y"] == pytest.approx(row["psnr_y"], abs=1e-9)

    # resuming under a changed training config is refused before the run dir is touched
    before = (run / "config.yaml").read_text()
    changed = json.loads(json.dumps(TINY))
    changed["train"]["lr"] = 5e-4
    (tmp_path / "other").mkdir()
    _, cfg2 = _files(tmp_path / "other", changed)
    assert main(["retrain", "--spec", str(spec), "--config", str(cfg2), "--run-dir", str(run),
                 "--resume", "--no-progress"]) == 2
    assert "lr" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == before
