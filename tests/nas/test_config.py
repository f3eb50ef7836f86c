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


def test_shipped_configs_are_valid(tmp_path):
    with pytest.raises(ValueError, match=r"evaluator\.val_set: 'Set5' needs data\.root"):
        config.load(os.path.join(REPO, "configs", "search", "default.yaml"))
    for name in ("quickstart.yaml", "default.yaml"):
        path = os.path.join(REPO, "configs", "search", name)
        cfg = config.load(path, {"data.root": str(tmp_path)})
        assert cfg["name"] == name[:-5]
        assert os.path.isfile(cfg["space"])
