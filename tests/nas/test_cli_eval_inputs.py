"""``bsrnas eval`` input handling: a set or scale named twice is evaluated once, and an image too
small for the scale exits 2 with a message naming its file, its size and the smallest allowed."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nas.cli import main


def smallest_scorable(scale: int) -> int:
    """Smallest side that survives the scoring protocol, found by trying every size: cut to a
    multiple of ``scale``, less ``scale`` pixels on each side, at least 11 (SSIM's window)."""
    n = 1
    while (n - n % scale) - 2 * scale < 11:
        n += 1
    return n


def _png(path, h, w, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)).save(path)


@pytest.fixture
def two_sets(tmp_path):
    """``<root>/Set5/HR`` with 2 images and ``<root>/Set14/HR`` with 1, all 24x28."""
    root = tmp_path / "data"
    for name, count in (("Set5", 2), ("Set14", 1)):
        for i in range(count):
            _png(root / name / "HR" / f"im{i}.png", 24, 28, seed=i)
    return root


def test_eval_duplicate_sets_and_scales_are_evaluated_once(two_sets, tmp_path, capsys):
    out = tmp_path / "eval.json"
    rc = main(["eval", "--data-root", str(two_sets), "--sets", "Set5,Set14,Set5, Set14,Set5",
               "--scales", "2,4,2,4", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 4
    assert [(r["set"], r["scale"]) for r in rows] == [("Set5", 2), ("Set5", 4), ("Set14", 2),
                                                       ("Set14", 4)]
    assert [r["images"] for r in rows] == [2, 2, 1, 1]
    printed = capsys.readouterr().out
    assert sum(line.startswith("Set5 ") for line in printed.splitlines()) == 2


def test_eval_duplicate_default_set_without_data_root(tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--sets", "default,default", "--scales", "4,4", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [(r["set"], r["scale"]) for r in rows] == [("default", 4)]


@pytest.mark.parametrize("h, w, scale", [(3, 3, 4), (5, 5, 4), (19, 40, 4), (40, 17, 3),
                                         (15, 15, 2)])
def test_eval_image_too_small_exits_2_naming_the_file(tmp_path, capsys, h, w, scale):
    root = tmp_path / "data"
    _png(root / "Tiny" / "HR" / "a_fine.png", 32, 32)
    bad = root / "Tiny" / "HR" / "b_small.png"
    _png(bad, h, w)
    out = tmp_path / "eval.json"
    rc = main(["eval", "--data-root", str(root), "--sets", "Tiny", "--scales", str(scale),
               "--json", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    least = smallest_scorable(scale)
    assert err.startswith("bsrnas eval: error: image file ")
    assert str(bad) in err and f"size {h}x{w}" in err and f"scale {scale}" in err
    assert f"height and width >= {least}" in err
    assert "Traceback" not in err


def test_eval_image_of_the_smallest_allowed_size_is_scored(tmp_path, capsys):
    root = tmp_path / "data"
    least = smallest_scorable(4)
    _png(root / "Edge" / "HR" / "im.png", least, least + 1)
    out = tmp_path / "eval.json"
    assert main(["eval", "--data-root", str(root), "--sets", "Edge", "--scales", "4",
                 "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert row["images"] == 1 and np.isfinite(row["psnr_y"]) and 0 < row["ssim_y"] <= 1


def test_output_piped_into_a_closed_reader_is_no_error():
    """`bsrnas eval ... | head -1`: the reader goes away after one line; no traceback, status 0."""
    import subprocess
    import sys

    cmd = f"{sys.executable} -m nas.cli eval --model bicubic --scales 2,3,4 | head -1"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("model: bicubic")
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stderr
