"""``bsrnas eval``: tables and JSON, and bad input exits 2 with a message and no traceback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluators.data import SRImageSet
from evaluators.evaluate import bicubic_sr_fn, evaluate
from nas.cli import main
from nas.commands.eval import parse_scales
from tests.evil_pickles import SystemTouch, TouchMarker, write_evil  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_root(tmp_path):
    """Two sets of small random-texture images (smooth enough to be a fair bicubic test)."""
    rng = np.random.default_rng(0)
    for name, count in (("Alpha", 2), ("Beta", 1)):
        folder = tmp_path / name / "HR"
        folder.mkdir(parents=True)
        for i in range(count):
            small = rng.integers(0, 256, size=(12, 12, 3)).astype(np.uint8)
            img = np.asarray(Image.fromarray(small).resize((48, 48), Image.BILINEAR))
            Image.fromarray(img).save(folder / f"img{i}.png")
    return tmp_path


def test_eval_table_and_json(tiny_root, tmp_path, capsys):
    out = tmp_path / "res" / "eval.json"
    rc = main(["eval", "--model", "bicubic", "--data-root", str(tiny_root), "--sets", "Alpha,Beta",
               "--scales", "2,4", "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())
    rows = payload["results"]
    assert [(r["set"], r["scale"]) for r in rows] == [("Alpha", 2), ("Alpha", 4), ("Beta", 2),
                                                       ("Beta", 4)]
    for r in rows:
        direct = evaluate(bicubic_sr_fn(r["scale"]), SRImageSet(tiny_root, r["set"], r["scale"]),
                          r["scale"])
        assert r["psnr_y"] == pytest.approx(direct["psnr_y"])
        assert r["ssim_y"] == pytest.approx(direct["ssim_y"])
        assert r["images"] == len(r["per_image"])
        assert f"{r['psnr_y']:.2f}" in printed
    assert "PSNR_Y" in printed and str(out) in printed


def test_eval_default_images(capsys):
    assert main(["eval", "--scales", "4"]) == 0
    printed = capsys.readouterr().out
    assert "default" in printed and "x4" in printed


@pytest.mark.parametrize("argv,needle", [
    (["--scales", "5"], "--scales: scale 5 is not supported; allowed: 2, 3, 4"),
    (["--scales", "two"], "--scales: 'two' is not an integer"),
    (["--sets", "Set5"], "--sets: without --data-root"),
    (["--model", "missing_model.pt"], "--model: 'missing_model.pt'"),
    (["--data-root", "/nonexistent/folder/xyz"], "--data-root"),
])
def test_eval_bad_input_exits_2(argv, needle, capsys):
    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bsrnas eval: error:") and needle in err


def test_eval_unknown_set_lists_allowed(tiny_root, capsys):
    assert main(["eval", "--data-root", str(tiny_root), "--sets", "Alpha,Gamma"]) == 2
    err = capsys.readouterr().err
    assert "--sets: unknown set 'Gamma'" in err and "Alpha, Beta" in err


def test_eval_bad_input_no_traceback_subprocess():
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "eval", "--scales", "8"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--scales" in proc.stderr


def test_fixed_scale_mismatch_names_both():
    with pytest.raises(ValueError, match=r"fixed scale 4.*scale 2"):
        parse_scales("2", 4, "net.json")
    assert parse_scales(None, 3, "net.json") == [3]
    assert parse_scales("4,2,4", None, "bicubic") == [4, 2]


def _tiny_spec(scale):
    presets = pytest.importorskip("space.presets")
    pytest.importorskip("space.builder")
    return presets.get("fp", scale=scale, channels=8, blocks=1)


def test_eval_spec_json_smoke_and_scale_error(tiny_root, tmp_path, capsys):
    spec = _tiny_spec(2)
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    assert main(["eval", "--model", str(path), "--data-root", str(tiny_root), "--sets", "Beta",
                 "--scales", "4"]) == 2
    err = capsys.readouterr().err
    assert "fixed scale 2" in err and "scale 4" in err
    out = tmp_path / "spec_eval.json"
    assert main(["eval", "--model", str(path), "--data-root", str(tiny_root), "--sets", "Beta",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [(r["set"], r["scale"]) for r in rows] == [("Beta", 2)]
    assert np.isfinite(rows[0]["psnr_y"]) and "smoke test" in capsys.readouterr().out


def test_eval_checkpoint(tiny_root, tmp_path, capsys):
    spec = _tiny_spec(2)
    checkpoint = pytest.importorskip("evaluators.checkpoint")
    from space.builder import build

    import torch

    torch.manual_seed(0)
    model = build(spec)
    path = tmp_path / "ck.pt"
    checkpoint.save_checkpoint(path, spec, model)
    out = tmp_path / "ck_eval.json"
    assert main(["eval", "--model", str(path), "--data-root", str(tiny_root), "--sets", "Beta",
                 "--json", str(out)]) == 0
    from evaluators.evaluate import model_sr_fn

    direct = evaluate(model_sr_fn(model), SRImageSet(tiny_root, "Beta", 2), 2)
    assert json.loads(out.read_text())["results"][0]["psnr_y"] == pytest.approx(direct["psnr_y"])


@pytest.mark.parametrize("how,evil", [("torch", TouchMarker), ("pickle", SystemTouch),
                                      ("torch", SystemTouch)])
def test_eval_refuses_malicious_checkpoint(tmp_path, capsys, how, evil):
    marker = tmp_path / "MARKER"
    path = write_evil(tmp_path / "evil.pt", marker, how, evil)
    rc = main(["eval", "--model", str(path)])
    assert not marker.exists(), "bsrnas eval ran code from the checkpoint"
    assert rc == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bsrnas eval: error: --model: checkpoint "
                                                   f"file {str(path)!r} is not a current bsrnas "
                                                   f"checkpoint")


def test_eval_malicious_checkpoint_subprocess(tmp_path):
    # a plain pickle (protocol 4): torch's own warning about it must not clutter the message
    marker = tmp_path / "MARKER"
    path = write_evil(tmp_path / "evil.pt", marker, "pickle", SystemTouch)
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "eval", "--model", str(path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert not marker.exists(), "python -m nas.cli eval ran code from the checkpoint"
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bsrnas eval: error: --model:"), proc.stderr
    assert str(path) in lines[0] and "not a current bsrnas checkpoint" in lines[0]
