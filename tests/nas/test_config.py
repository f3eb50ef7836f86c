"""Search config loading and validation; CLI turns errors into exit status 2."""
import os
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(__file__))
from search_helpers import write_space  # noqa: E402

from nas import config  # noqa: E402
from nas.cli import main  # noqa: E402

REPO = os.path.join(os.path.dirname(__file__), "..", "..")


def write(tmp_path, data, name="exp.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return str(p)


def base(tmp_path):
    return {"space": write_space(tmp_path)}


def test_defaults_and_name(tmp_path):
    cfg = config.load(write(tmp_path, base(tmp_path), "my_exp.yaml"))
    assert cfg["name"] == "my_exp" and cfg["run_dir"] == os.path.join("runs", "my_exp")
    assert cfg["objectives"] == {"quality": "psnr_y", "cost": "latency_ms"}
    assert cfg["engine"]["kind"] == "optuna" and cfg["engine"]["trials"] == 20
    assert all(v is None for v in cfg["constraints"].values())


def test_overrides(tmp_path):
    cfg = config.load(write(tmp_path, base(tmp_path)), {"engine.trials": 3, "engine.kind": "ray",
                                                       "ray.address": "auto", "run_dir": "x"})
    assert (cfg["engine"]["trials"], cfg["engine"]["kind"], cfg["ray"]["address"], cfg["run_dir"]) == \
        (3, "ray", "auto", "x")


@pytest.mark.parametrize("patch, message", [
    ({"engine": {"trails": 3}}, r"engine\.trails: unknown key .*allowed keys: .*'trials'"),
    ({"bogus": 1}, r"bogus: unknown key"),
    ({"objectives": {"cost": "flops"}}, r"objectives\.cost: invalid value 'flops'.*latency_ms"),
    ({"constraints": {"latency_ms": -1}}, r"constraints\.latency_ms: invalid value -1"),
    ({"constraints": {"energy": 3}}, r"constraints\.energy: unknown key"),
    ({"engine": {"sampler": "cmaes"}}, r"engine\.sampler: invalid value 'cmaes'.*tpe"),
    ({"engine": {"trials": 0}}, r"engine\.trials: invalid value 0"),
    ({"engine": {"storage": "redis"}}, r"engine\.storage: invalid value 'redis'"),
    ({"latency": {"input_size": [3, 0, 8]}}, r"latency\.input_size: invalid value \[3, 0, 8\]"),
    ({"ray": {"cpus_per_trial": 0}}, r"ray\.cpus_per_trial: invalid value 0"),
    ({"evaluator": {"data_root": "x"}}, r"evaluator\.data_root: unknown key.*data\.root"),
    ({"seed": "a"}, r"seed: invalid value 'a'"),
])
def test_bad_values_name_the_key(tmp_path, patch, message):
    data = base(tmp_path)
    data.update(patch)
    with pytest.raises(ValueError, match=message):
        config.load(write(tmp_path, data))


def test_evaluator_keys_follow_proxy_signature(tmp_path):
    pytest.importorskip("evaluators.proxy")
    data = base(tmp_path)
    data["evaluator"] = {"steps": 5, "stepz": 5}
    with pytest.raises(ValueError, match=r"evaluator\.stepz: unknown key .*'steps'"):
        config.load(write(tmp_path, data))


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="--config"):
        config.load(str(tmp_path / "nope.yaml"))
    with pytest.raises(FileNotFoundError, match="space: file"):
        config.load(write(tmp_path, {"space": "no/such/space.yaml"}))


def test_cli_exit_status_2(tmp_path, capsys):
    data = base(tmp_path)
    data["engine"] = {"trails": 3}
    code = main(["search", "--config", write(tmp_path, data), "--run-dir", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("bsrnas search: error: engine.trails: unknown key")
    assert main(["search", "--config", write(tmp_path, base(tmp_path)), "--trials", "0"]) == 2


def tiny_data_root(tmp_path, sets=("Set5",)):
    """A data root of the shared layout with one small PNG per folder."""
    from PIL import Image
    import numpy as np

    root = tmp_path / "data"
    for sub in ["train/T91", "train/BSD200"] + [f"{s}/HR" for s in sets]:
        (root / sub).mkdir(parents=True)
        Image.fromarray(np.full((24, 24, 3), 128, np.uint8)).save(root / sub / "a.png")
    return str(root)


def test_shipped_configs_are_valid(tmp_path):
    with pytest.raises(ValueError, match=r"evaluator\.val_set: 'Set5' needs data\.root"):
        config.load(os.path.join(REPO, "configs", "search", "default.yaml"))
    root = tiny_data_root(tmp_path)
    for name in ("quickstart.yaml", "default.yaml"):
        path = os.path.join(REPO, "configs", "search", name)
        cfg = config.load(path, {"data.root": root})
        assert cfg["name"] == name[:-5]
        assert os.path.isfile(cfg["space"])


def test_evaluator_settings_mirror_the_proxy_signature():
    """EvaluatorSettings is the typed form of ProxyEvaluator's keyword arguments: same names,
    same defaults (data_root comes from data.root, val_items only from code)."""
    import inspect
    from dataclasses import fields

    from evaluators.proxy import ProxyEvaluator

    sig = {n: p.default for n, p in inspect.signature(ProxyEvaluator).parameters.items()
           if n not in ("data_root", "val_items")}
    ours = {f.name: f.default for f in fields(config.EvaluatorSettings)}
    assert ours == sig


@pytest.mark.parametrize("evaluator, message", [
    ({"steps": "ten"}, r"evaluator\.steps: invalid value 'ten'; allowed: an integer >= 1"),
    ({"steps": 0}, r"evaluator\.steps: invalid value 0"),
    ({"batch": 2.5}, r"evaluator\.batch: invalid value 2\.5"),
    ({"lr": "fast"}, r"evaluator\.lr: invalid value 'fast'; allowed: a finite number > 0"),
    ({"lr": -1}, r"evaluator\.lr: invalid value -1"),
    ({"schedule": "linear"}, r"evaluator\.schedule: invalid value 'linear'.*cosine"),
    ({"threads": 0}, r"evaluator\.threads: invalid value 0"),
    ({"max_val_images": 0}, r"evaluator\.max_val_images: invalid value 0"),
    ({"device": "tpu"}, r"evaluator\.device: invalid value 'tpu'"),
    ({"grad_clip": 0}, r"evaluator\.grad_clip: invalid value 0"),
    ({"progress": "yes"}, r"evaluator\.progress: invalid value 'yes'"),
    ({"patch": 33}, r"evaluator\.patch: invalid value 33; allowed: a multiple of the space's scale 2"),
    ({"val_set": "Set14"}, r"evaluator\.val_set: 'Set14' needs data\.root"),
])
def test_evaluator_values_checked_at_load(tmp_path, evaluator, message):
    data = base(tmp_path)
    data["evaluator"] = evaluator
    with pytest.raises(ValueError, match=message):
        config.load(write(tmp_path, data))


def test_lr_as_yaml_string_is_a_number(tmp_path):
    data = base(tmp_path)
    data["evaluator"] = {"lr": "1e-3"}
    assert config.load(write(tmp_path, data))["evaluator"]["lr"] == 1e-3


def test_data_paths_checked_at_load(tmp_path):
    data = base(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data\.root: folder .*nope.* not found"):
        config.load(write(tmp_path, data), {"data.root": str(tmp_path / "nope")})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"data\.root: .* no \.png training images in train/T91, train/BSD200"):
        config.load(write(tmp_path, data), {"data.root": str(empty)})
    root = tiny_data_root(tmp_path)
    data["evaluator"] = {"val_set": "Set14"}
    with pytest.raises(FileNotFoundError, match=r"evaluator\.val_set: 'Set14' has no \.png images.*sets under data\.root: Set5"):
        config.load(write(tmp_path, data), {"data.root": root})
    data["evaluator"] = {"val_set": "Set5"}
    assert config.load(write(tmp_path, data), {"data.root": root})["data"]["root"] == root


def test_bad_space_is_reported_at_load(tmp_path):
    bad = tmp_path / "space.yaml"
    bad.write_text("scale: 7\n")
    with pytest.raises(ValueError, match=r"^space: "):
        config.load(write(tmp_path, {"space": str(bad)}))


@pytest.mark.parametrize("patch, text", [
    ({"evaluator": {"steps": "ten"}}, "evaluator.steps: invalid value 'ten'"),
    ({"evaluator": {"val_set": "Set14"}, "data": {"root": "/no/such/folder"}}, "data.root: folder"),
])
def test_cli_bad_config_creates_nothing(tmp_path, capsys, patch, text):
    """A bad value is refused before the run folder, study.db or any trial exists; the
    corrected config then starts normally (no --resume needed)."""
    data = base(tmp_path)
    data.update(patch)
    run_dir = tmp_path / "run"
    code = main(["search", "--config", write(tmp_path, data), "--run-dir", str(run_dir), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and text in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not run_dir.exists()


def test_shipped_search_config_loads_from_any_folder(tmp_path, monkeypatch):
    """`bsrnas search --config configs/search/quickstart.yaml` from outside the checkout finds
    the project's config and its space file."""
    monkeypatch.chdir(tmp_path)
    cfg = config.load("configs/search/quickstart.yaml")
    assert os.path.samefile(cfg["space"], os.path.join(REPO, "configs", "space", "quickstart.yaml"))
    with pytest.raises(FileNotFoundError, match=r"--config: config file 'configs/search/nope\.yaml' not found; looked at"):
        config.load("configs/search/nope.yaml")
