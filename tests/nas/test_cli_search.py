"""``bsrnas search`` and ``bsrnas pareto`` end to end on the real components (ProxyEvaluator,
LatencyTable, evaluators.cost) with a tiny budget."""
import json
import os
import sys

import pytest
import yaml
from optuna.trial import TrialState

sys.path.insert(0, os.path.dirname(__file__))
from search_helpers import write_space  # noqa: E402

from nas.cli import main  # noqa: E402
from nas.runfolder import RunFolder  # noqa: E402
from space.spec import ArchSpec  # noqa: E402


def tiny_config(tmp_path, **constraints):
    data = {
        "name": "tiny", "seed": 0, "space": write_space(tmp_path),
        "constraints": constraints,
        "evaluator": {"steps": 2, "batch": 2, "patch": 16, "max_val_images": 1, "threads": 1},
        "latency": {"input_size": [3, 8, 8], "threads": 1, "path": str(tmp_path / "lut.json")},
        "engine": {"trials": 3, "feasibility_samples": 8, "startup_trials": 2},
        "tensorboard": {"sample_images": True},
    }
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    cfg = tiny_config(tmp)
    run_dir = str(tmp / "run")
    code = main(["search", "--config", cfg, "--run-dir", run_dir, "--no-progress"])
    return code, cfg, run_dir, tmp


def test_search_command_writes_run_folder(searched, capsys):
    code, cfg, run_dir, _ = searched
    assert code == 0
    run = RunFolder(run_dir)
    study = run.load_study()
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 3
    for t in done:
        m = run.read_metrics(t.number)
        assert m["trained"] or m.get("duplicate_of") is not None
        assert m["latency_ms"] > 0 and m["bops"] > 0 and m["params"] > 0
        assert 5.0 < m["psnr_y"] < 60.0
    stored = yaml.safe_load(open(run.config_path))
    assert stored["engine"]["trials"] == 3 and stored["name"] == "tiny"
    assert os.path.isfile(run.file("pareto.png"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run.search_tb_dir)
    acc.Reload()
    images = acc.Tags()["images"]
    assert "pareto" in images and any(t.startswith("samples/trial_") for t in images)


def test_pareto_command_and_pick(searched, capsys):
    _, _, run_dir, _ = searched
    capsys.readouterr()
    assert main(["pareto", run_dir, "--pick", "knee", "--no-samples"]) == 0
    out = capsys.readouterr().out
    front = json.load(open(os.path.join(run_dir, "pareto.json")))
    assert out.splitlines()[0].split()[:3] == ["trial", "psnr_y", "latency_ms"]
    assert len([l for l in out.splitlines()[1:] if l.strip() and l.split()[0].isdigit()]) == len(front)
    picked = ArchSpec.from_json(open(os.path.join(run_dir, "picked.json")).read())
    assert picked.id in {ArchSpec.from_dict(m["spec"]).id for m in front}
    assert main(["pareto", run_dir, "--pick", "nope"]) == 2
    assert main(["pareto", os.path.join(run_dir, "missing")]) == 2


def test_rerun_without_resume_exits_2(searched, capsys):
    _, cfg, run_dir, _ = searched
    capsys.readouterr()
    assert main(["search", "--config", cfg, "--run-dir", run_dir, "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_impossible_budget_exits_2(tmp_path, capsys):
    cfg = tiny_config(tmp_path, latency_ms=1e-6)
    code = main(["search", "--config", cfg, "--run-dir", str(tmp_path / "r"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "constraints: no architecture" in err and "latency_ms" in err
    assert not os.path.isdir(tmp_path / "r" / "trials")


def test_retrain_from_run_trains_the_knee(searched, capsys):
    _, _, run_dir, tmp = searched
    from nas import pareto
    from nas.runfolder import records

    study = RunFolder(run_dir).load_study()
    recs = records(study)
    knee = pareto.knee(pareto.front(recs, "latency_ms"), "latency_ms")
    cfg = tmp / "train.yaml"
    cfg.write_text(yaml.safe_dump({"train": {"steps": 2, "batch": 2, "patch": 16, "log_every": 1,
                                             "threads": 1},
                                   "eval": {"sample_images": 0}}))
    out_dir = tmp / "retrained"
    code = main(["retrain", "--from", run_dir, "--pick", "knee", "--config", str(cfg),
                 "--run-dir", str(out_dir), "--no-progress"])
    assert code == 0
    assert f"retraining trial {knee['trial']} " in capsys.readouterr().out
    picked = ArchSpec.from_json(open(os.path.join(run_dir, "picked.json")).read())
    assert picked.id == ArchSpec.from_dict(knee["spec"]).id
    from evaluators.checkpoint import load_checkpoint

    assert ArchSpec.from_json(load_checkpoint(out_dir / "checkpoint.pt")["spec"]).id == picked.id
