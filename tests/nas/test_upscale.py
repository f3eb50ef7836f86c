"""``bsrnas upscale`` and ``nas.upscale``: tiles equal the whole image, the packed runtime equals
the PyTorch model within uint8 rounding, images and checkpoints are checked, errors exit 2.

Tolerances. The tiled and whole-image runs execute the same operations on the same values
for every kept pixel, so they agree bit for bit except where a library computes the same value
in another order for another input size: ``F.interpolate`` (the image skip of the BBCU and FP
presets) gives results that change in the last float bit with the input size, and at x3 its
source coordinate ``(i + 0.5) * (1/3)`` is rounded differently at another offset. The packed
runtime's float epilogue (folded BN, fused scales) and its channels-last FP convs round
differently from PyTorch's by about 1e-6 with ``compile(exact=False)``; the default
``exact=True`` reproduces the model's float operations (BN's FMA rounding, FP convs on NCHW),
so packed and PyTorch agree bit for bit, on the whole image and on the same tiles. Between a
tiled and a whole-image run a float difference ``d`` moves a uint8 value only when the exact
value lies within ``d`` of a rounding boundary (k + 0.5) / 255, i.e. for about ``2 * 255 * d``
of the values: with ``d <= 1e-5``, at most ~0.5 % in the worst case and, measured, 0-2 values
of ~10^4-10^5. So tiled vs whole: floats within 1e-5, every uint8 value within 1, and at most
0.2 % of them off by 1.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ops.native as native
from evaluators.checkpoint import load_model, save_checkpoint
from nas import upscale as U
from nas.cli import main
from space import presets
from space.builder import build
from tests.model_helpers import perturb

REPO = Path(__file__).resolve().parents[2]
#: share of uint8 values allowed off by one between two runs of different float rounding
OFF_BY_ONE = 2e-3


def _model(name, scale, channels=8, blocks=1, seed=0):
    spec = presets.get(name, scale=scale, channels=channels, blocks=blocks)
    return spec, perturb(build(spec), seed=seed + scale, weight_std=0.1, bn="normal")


def _torch_run(model):
    model = model.eval()

    def run(x):
        with torch.no_grad():
            return model(x)
    return run


def _image(h, w, seed=0, channels=3):
    """A photo-like test image: random blocks smoothed by bilinear resizing, plus noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, h // 4), max(2, w // 4), channels)).astype(np.uint8)
    img = np.asarray(Image.fromarray(small.squeeze()).resize((w, h), Image.BILINEAR))
    img = img.reshape(h, w, channels).astype(np.int16) + rng.integers(-12, 13, size=(h, w, channels))
    return np.clip(img, 0, 255).astype(np.uint8)


def _assert_close_u8(a, b, what):
    a, b = np.asarray(a).astype(np.int16), np.asarray(b).astype(np.int16)
    assert a.shape == b.shape, what
    d = np.abs(a - b)
    assert d.max() <= 1, f"{what}: uint8 values differ by up to {d.max()}"
    assert (d > 0).mean() <= OFF_BY_ONE, f"{what}: {(d > 0).sum()} of {d.size} values off by 1"


def _checkpoint(path, name="e2fif", scale=2, channels=8, blocks=1, seed=0):
    spec, model = _model(name, scale, channels, blocks, seed)
    save_checkpoint(path, spec, model)
    return path


def _png(path, img):
    Image.fromarray(img.squeeze() if img.shape[-1] == 1 else img).save(path)
    return path


# -- receptive field ---------------------------------------------------------------------
@pytest.mark.parametrize("name,scale", [("fp", 2), ("fp", 3), ("fp", 4), ("e2fif", 3),
                                        ("lmb", 2), ("bbcu_l", 4), ("bbcu_m", 3),
                                        ("e2fif_repeat", 4), ("xnor", 3)])
def test_receptive_radius_bounds_the_impulse_response(name, scale):
    """Changing one LR pixel changes only SR pixels whose LR pixel is within R of it; for the
    FP network (no binarization to stop a change) the farthest change is exactly at R."""
    spec, model = _model(name, scale, channels=8, blocks=2)
    r = U.receptive_radius(spec)
    n = 2 * r + 9
    x = torch.from_numpy(_image(n, n, seed=1).transpose(2, 0, 1).copy()).float().div(255)[None]
    c = n // 2
    x2 = x.clone()
    x2[0, :, c, c] = 1.0 - x2[0, :, c, c]
    with torch.no_grad():
        diff = (model(x) - model(x2)).abs().amax(dim=(0, 1))
    ys, xs = np.nonzero(diff.numpy() > 0)
    assert len(ys), "the impulse changed nothing"
    reach = max(np.abs(ys // scale - c).max(), np.abs(xs // scale - c).max())
    assert reach <= r, f"{name} x{scale}: a change {reach} LR pixels away, radius {r}"
    if name == "fp":
        assert reach == r


def test_receptive_field_sums_the_layout():
    e2fif = presets.get("e2fif", scale=2, channels=64, blocks=16)
    assert U.receptive_field(e2fif) == 1 + 32 + 1  # head, 32 binary 3x3 convs, ESPCN conv
    lmb = presets.get("lmb", scale=2, channels=8, blocks=1)
    assert U.receptive_field(lmb) == 1 + 2 * (1 + 1) + 1  # 3x3 local mean adds 1 per conv
    bbcu = presets.get("bbcu_l", scale=4, channels=8, blocks=1)  # two x2 stages, HR convs
    assert U.receptive_field(bbcu) == 1 + 2 + 1 + 0.5 + 0.25 + 0.25


def test_image_wide_statistics_are_named():
    assert U.image_wide_statistics(presets.get("e2fif", scale=2, channels=8, blocks=1)) == []
    assert "SCALES" in U.image_wide_statistics(presets.get("ebsr", 2, 8, 1))[0]
    assert "BAM" in U.image_wide_statistics(presets.get("bam", 2, 8, 1))[0]
    for name in ("e2fif", "e2fif_repeat", "lmb", "ari", "bbcu_l", "bbcu_m", "xnor", "fp"):
        assert U.image_wide_statistics(presets.get(name, 2, 8, 1)) == [], name


@pytest.mark.parametrize("name", ["ebsr", "bam"])
def test_image_wide_statistics_really_change_under_tiling(name):
    """Why such networks run whole: tiles with their own statistics give other values."""
    spec, model = _model(name, 2)
    run = native.compile(model)
    img = _image(40, 36)
    r = U.receptive_radius(spec)
    whole = U.upscale_float(run, img, 2, None, r)
    tiled = U.upscale_float(run, img, 2, U.min_tile(r), r)
    assert (whole - tiled).abs().max() > 1e-4


def test_tile_smaller_than_the_receptive_field_is_refused():
    assert U.check_tile(13, 6) == 13
    with pytest.raises(ValueError, match=r"--tile 12 is smaller than the receptive field .*"
                                         r"allowed: --tile >= 13"):
        U.check_tile(12, 6)


def test_default_tile_keeps_the_largest_activation_within_budget():
    for name in presets.names():
        for scale in (2, 3, 4):
            spec = presets.get(name, scale=scale, channels=64, blocks=16)
            tile, r = U.default_tile(spec), U.receptive_radius(spec)
            assert tile >= U.min_tile(r)
            if tile > U.min_tile(r):
                assert 4 * U._values_per_lr_pixel(spec) * (tile + 2 * r) ** 2 <= U.DEFAULT_BUDGET
    assert U.default_tile(presets.get("e2fif", scale=2, channels=64, blocks=16)) == 440


# -- tiles equal the whole image; packed equals PyTorch ------------------------------------
CASES = [("e2fif", 2), ("e2fif", 3), ("e2fif", 4), ("lmb", 3), ("ari", 2), ("bbcu_l", 4),
         ("bbcu_m", 3), ("e2fif_repeat", 2), ("xnor", 4)]


@pytest.mark.parametrize("name,scale", CASES)
def test_tiled_equals_whole_image_and_packed_equals_torch(name, scale):
    spec, model = _model(name, scale)
    r = U.receptive_radius(spec)
    img = _image(47, 39, seed=scale)  # odd sizes: tiles of unequal cores, odd borders
    tile = U.min_tile(r)  # the smallest tile allowed: the most seams
    packed, reference = native.compile(model, exact=True), _torch_run(model)
    fast = native.compile(model, exact=False)
    floats, tiles = {}, {}
    for label, run in (("packed", packed), ("torch", reference), ("packed exact=False", fast)):
        whole = U.upscale_float(run, img, scale, None, r)
        tiled = U.upscale_float(run, img, scale, tile, r)
        tiles[label] = tiled
        assert len(U.plan_tiles(47, 39, tile, r)) > 4
        torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)
        _assert_close_u8(U.to_uint8(tiled), U.to_uint8(whole), f"{label} tiled vs whole")
        # not asserted bit-exact: PyTorch's convs (NCHW, and on some CPUs oneDNN's channels-last
        # ones: AMD Zen 5, 2.4e-7) and F.interpolate change in the last float bit with the
        # input size (README, "Tiles equal the whole image")
        floats[label] = whole
    # the compiled runtime (exact=True) computes the PyTorch model's floats bit for bit, on
    # the whole image and on the same tiles, so the uint8 images are equal
    for what, got, want in (("whole", floats["packed"], floats["torch"]),
                            ("tiled", tiles["packed"], tiles["torch"])):
        assert torch.equal(got, want), (
            f"packed vs torch ({what}): {int((got != want).sum())} values differ, "
            f"max {float((got - want).abs().max()):.3g}")
        np.testing.assert_array_equal(U.to_uint8(got), U.to_uint8(want))
    # the uint8 strips the command writes are the rounded floats, stitched
    pic = U.Picture(img)
    strips = list(U.upscale_strips(packed, pic, scale, tile, r))
    assert all(len(s) <= scale * tile for s in strips)  # memory: one row of tiles at a time
    np.testing.assert_array_equal(np.concatenate(strips),
                                  U.to_uint8(U.upscale_float(packed, img, scale, tile, r))
                                  .transpose(1, 2, 0))


def test_windows_are_bounded_by_the_tile():
    seen = []

    def run(x):
        seen.append(tuple(x.shape[-2:]))
        return torch.zeros(1, 3, 2 * x.shape[-2], 2 * x.shape[-1])

    pic = U.Picture(_image(301, 205))
    out = U.upscale_array(run, pic, 2, 64, 10)
    assert out.shape == (602, 410, 3)
    assert max(max(s) for s in seen) <= 64 + 2 * 10 and len(seen) == 5 * 4
    # cores tile the image exactly once
    cover = np.zeros((301, 205), int)
    for t in U.plan_tiles(301, 205, 64, 10):
        cover[t.core[0]:t.core[1], t.core[2]:t.core[3]] += 1
    assert (cover == 1).all()


def test_gray_and_alpha_outputs():
    spec, model = _model("e2fif", 2)
    run = native.compile(model)
    rgb = _image(21, 17)
    alpha = _image(21, 17, seed=5, channels=1)[..., 0]
    gray = U.upscale_array(run, U.Picture(rgb, gray=True), 2, None, 6)
    assert gray.shape == (42, 34, 1)
    want = U.to_uint8(U.run_tile(run, rgb, U.plan_tiles(21, 17, None, 6)[0], 2).mean(0))
    np.testing.assert_array_equal(gray[..., 0], want)
    rgba = U.upscale_array(run, U.Picture(rgb, alpha=alpha), 2, 13, 6)
    assert rgba.shape == (42, 34, 4)
    np.testing.assert_array_equal(rgba[..., :3], U.upscale_array(run, U.Picture(rgb), 2, 13, 6))
    bicubic = torch.nn.functional.interpolate(torch.from_numpy(alpha).float()[None, None] / 255,
                                              scale_factor=2, mode="bicubic",
                                              align_corners=False)[0, 0]
    _assert_close_u8(rgba[..., 3], U.to_uint8(bicubic), "alpha tiled vs whole")


# -- images -----------------------------------------------------------------------------
def test_read_image_modes(tmp_path):
    rgb = _image(9, 7)
    cases = {
        "rgb.png": (Image.fromarray(rgb), "RGB"),
        "gray.png": (Image.fromarray(rgb[..., 0]), "L"),
        "bw.png": (Image.fromarray(rgb[..., 0] > 128), "L"),
        "la.png": (Image.fromarray(rgb[..., 0]).convert("LA"), "LA"),
        "rgba.png": (Image.fromarray(rgb).convert("RGBA"), "RGBA"),
        "pal.png": (Image.fromarray(rgb).convert("P"), "RGB"),
        "cmyk.jpg": (Image.fromarray(rgb).convert("CMYK"), "RGB"),
    }
    for fname, (img, mode) in cases.items():
        img.save(tmp_path / fname)
        pic = U.read_image(tmp_path / fname)
        assert pic.png_mode == mode, fname
        assert pic.rgb.shape == (9, 7, 3) and pic.rgb.dtype == np.uint8, fname
    pic = U.read_image(tmp_path / "gray.png")
    assert (pic.rgb == rgb[..., :1]).all() and pic.gray and "grayscale" in pic.note
    transparent = Image.fromarray(rgb).convert("P")
    transparent.info["transparency"] = 0
    transparent.save(tmp_path / "tpal.png", transparency=0)
    assert U.read_image(tmp_path / "tpal.png").png_mode == "RGBA"


def test_read_image_refusals(tmp_path):
    Image.fromarray((np.arange(63, dtype=np.uint16) * 1000).reshape(9, 7)).save(tmp_path / "i16.png")
    with pytest.raises(ValueError, match=r"mode I(;16)? .* not supported.*8-bit"):
        U.read_image(tmp_path / "i16.png", decode=False)
    (tmp_path / "junk.png").write_bytes(b"definitely not a PNG")
    with pytest.raises(ValueError, match=r"junk.png' cannot be read: it is not an image"):
        U.read_image(tmp_path / "junk.png", decode=False)
    _png(tmp_path / "whole.png", _image(64, 64))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    U.read_image(tmp_path / "cut.png", decode=False)  # the header is fine
    with pytest.raises(ValueError, match=r"cut.png' cannot be decoded"):
        U.read_image(tmp_path / "cut.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        U.read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="is a folder"):
        U.read_image(tmp_path)


@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA"])
def test_png_writer_round_trip(tmp_path, mode):
    img = _image(37, 23, channels=len(mode))
    path = tmp_path / "x.png"
    with open(path, "wb") as fh:
        png = U.PngWriter(fh, 23, 37, mode)
        for y in (0, 1, 11, 30):  # strips of uneven height
            png.write(img[y:{0: 1, 1: 11, 11: 30, 30: 37}[y]])
        png.close()
    back = Image.open(path)
    assert back.mode == mode and back.size == (23, 37)
    np.testing.assert_array_equal(np.asarray(back).reshape(img.shape), img)
    with open(tmp_path / "short.png", "wb") as fh:
        png = U.PngWriter(fh, 23, 37, mode)
        png.write(img[:5])
        with pytest.raises(ValueError, match="5 rows written; the image has 37"):
            png.close()


# -- the command --------------------------------------------------------------------------
@pytest.fixture
def ckpt(tmp_path):
    return _checkpoint(tmp_path / "e2fif.pt", "e2fif", scale=3)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "nas.cli", "upscale", *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def _one_error_line(stderr):
    lines = [ln for ln in stderr.strip().splitlines() if ": error: " in ln]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("bsrnas upscale: error: "), stderr
    return lines[0]


def test_cli_end_to_end_subprocess(tmp_path, ckpt):
    img = _image(43, 31, seed=3)
    a = _png(tmp_path / "a.png", img)
    g = _png(tmp_path / "g.png", img[..., :1])
    out = tmp_path / "out"
    proc = _cli("--model", ckpt, a, g, "--out", out, "--tile", 15, "--threads", 2)
    assert proc.returncode == 0, proc.stderr
    assert "[1/2]" in proc.stderr and "tile 9/9" in proc.stderr and "[2/2]" in proc.stderr
    assert "grayscale" in proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if "->" in ln]
    assert len(lines) == 2 and " s (network " in lines[0] and "9 tiles" in lines[0]
    sr = np.asarray(Image.open(out / "a_x3.png"))
    assert sr.shape == (129, 93, 3)
    assert np.asarray(Image.open(out / "g_x3.png")).shape == (129, 93)
    spec, model = load_model(ckpt)
    r = U.receptive_radius(spec)
    want = U.to_uint8(U.upscale_float(native.compile(model, exact=True), img, 3, None, r)).transpose(1, 2, 0)
    np.testing.assert_array_equal(sr, want)  # tiled in another process == whole here
    # --torch: the PyTorch model on the same tiles, equal to the packed runtime's output
    proc = _cli("--model", ckpt, a, "--out", tmp_path / "t", "--torch", "--tile", 15, "--threads", 2)
    assert proc.returncode == 0, proc.stderr
    assert "runtime: pytorch" in proc.stdout
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "t" / "a_x3.png")), sr)
    # --fast: FP convs on channels-last, within uint8 rounding of the exact output
    proc = _cli("--model", ckpt, a, "--out", tmp_path / "f", "--fast", "--tile", 15)
    assert proc.returncode == 0, proc.stderr
    assert ", fast)" in proc.stdout
    _assert_close_u8(np.asarray(Image.open(tmp_path / "f" / "a_x3.png")), sr, "--fast vs exact")


def test_cli_bad_image_and_checkpoint_exit_2_subprocess(tmp_path, ckpt):
    good = _png(tmp_path / "good.png", _image(20, 20))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG but not really")
    proc = _cli("--model", ckpt, good, tmp_path / "bad.png", "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert "bad.png' cannot be read" in _one_error_line(proc.stderr)
    assert not (tmp_path / "o" / "good_x3.png").exists()  # refused before any work
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    proc = _cli("--model", tmp_path / "junk.pt", good, "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert "--model: checkpoint file" in _one_error_line(proc.stderr)
    assert "not a current bsrnas checkpoint" in proc.stderr


def test_cli_errors_exit_2(tmp_path, ckpt, capsys):
    good = _png(tmp_path / "good.png", _image(20, 20))
    out = tmp_path / "o"

    def error(*argv):
        assert main(["upscale", *map(str, argv)]) == 2
        return _one_error_line(capsys.readouterr().err)

    assert "--model: checkpoint file" in error("--model", tmp_path / "none.pt", good, "--out", out)
    assert "does not exist" in error("--model", ckpt, tmp_path / "none.png", "--out", out)
    spec, model = _model("e2fif", 2)
    save_checkpoint(tmp_path / "nospec.pt", None, model)
    assert "holds no spec" in error("--model", tmp_path / "nospec.pt", good, "--out", out)
    (tmp_path / "file").write_text("x")
    assert "--out: " in error("--model", ckpt, good, "--out", tmp_path / "file")
    assert "--out: cannot create" in error("--model", ckpt, good, "--out", tmp_path / "file" / "x")
    assert "--tile 5 is smaller than the receptive field" in error(
        "--model", ckpt, good, "--out", out, "--tile", 5)
    assert "--threads: 0" in error("--model", ckpt, good, "--out", out, "--threads", 0)
    sub = tmp_path / "sub"
    sub.mkdir()
    _png(sub / "good.png", _image(20, 20))
    assert "would both be written" in error("--model", ckpt, good, sub / "good.png", "--out", out)
    # an existing output needs --overwrite
    assert main(["upscale", "--model", str(ckpt), str(good), "--out", str(out)]) == 0
    capsys.readouterr()
    first = (out / "good_x3.png").stat().st_mtime_ns
    assert "use --overwrite" in error("--model", ckpt, good, "--out", out)
    assert (out / "good_x3.png").stat().st_mtime_ns == first
    assert main(["upscale", "--model", str(ckpt), str(good), "--out", str(out), "--overwrite"]) == 0


def test_cli_keeps_earlier_images_when_a_later_one_fails(tmp_path, ckpt, capsys):
    good = _png(tmp_path / "good.png", _image(30, 30))
    _png(tmp_path / "whole.png", _image(64, 64))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])  # header fine, data truncated
    out = tmp_path / "o"
    assert main(["upscale", "--model", str(ckpt), str(good), str(tmp_path / "cut.png"),
                 "--out", str(out)]) == 2
    assert "cut.png' cannot be decoded" in _one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in out.iterdir()) == ["good_x3.png"]  # no partial or temp file
    assert np.asarray(Image.open(out / "good_x3.png")).shape == (90, 90, 3)


def test_cli_image_wide_statistics_run_whole(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "ebsr.pt", "ebsr", scale=2)
    img = _image(26, 22)
    good = _png(tmp_path / "good.png", img)
    out = tmp_path / "o"
    assert main(["upscale", "--model", str(ckpt), str(good), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "image-wide statistics" in captured.err and "whole image" in captured.out
    spec, model = load_model(ckpt)
    want = U.to_uint8(native.compile(model, exact=True)(
        torch.from_numpy(img.transpose(2, 0, 1).copy()).float().div(255)[None])[0])
    np.testing.assert_array_equal(np.asarray(Image.open(out / "good_x2.png")),
                                  want.transpose(1, 2, 0))
    assert main(["upscale", "--model", str(ckpt), str(good), "--out", str(out), "--tile", "64",
                 "--overwrite"]) == 2
    assert "tiles would change its output" in _one_error_line(capsys.readouterr().err)
