"""Checkpoint format 2: only tensors and plain values; loading never runs code from the file."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from evaluators.checkpoint import FORMAT, load_checkpoint, load_model, save_checkpoint
from evaluators.training import CHECKPOINT_NAME, TrainConfig, rng_state, set_rng_state, train
from tests.evil_pickles import SystemTouch, TouchMarker, write_evil  # noqa: E402

REFUSED = "is not a current bsrnas checkpoint"


class TinySR(nn.Module):
    def __init__(self, channels=8):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channels, 12, 3, padding=1))
        self.up = nn.PixelShuffle(2)

    def forward(self, x):
        return self.up(self.body(x)) + torch.nn.functional.interpolate(x, scale_factor=2)


class PureSampler:
    def __init__(self):
        self.calls = []

    def sample(self, step):
        self.calls.append(step)
        g = torch.Generator().manual_seed(step)
        hr = torch.rand(1, 3, 8, 8, generator=g)
        return torch.nn.functional.avg_pool2d(hr, 2), hr


def _config(**kw):
    base = dict(steps=2, batch=1, patch=8, lr=1e-2, schedule="cosine", seed=3, log_every=1,
                threads=1, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _assert_same(a, b, where="value"):
    """Deep equality: tensors by torch.equal (and dtype), everything else by == and type."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, where


def test_roundtrip_keeps_tensors_and_plain_values_and_loads_weights_only(tmp_path):
    torch.manual_seed(0)
    model = TinySR()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(1, 3, 4, 4)).mean().backward()
    opt.step()
    random.gauss(0, 1)  # so that the Python and NumPy gauss caches hold a value
    np.random.standard_normal()
    state = dict(optimizer=opt.state_dict(), scheduler={"schedule": "step", "last_step": 3},
                 step=3, loss=0.25, rng=rng_state(), train_config=_config().to_dict(),
                 note=None, pair=(1, "a"))
    path = save_checkpoint(tmp_path / "c.pt", '{"not": "checked here"}', model, **state)

    data = load_checkpoint(path)
    assert data["format"] == "bsrnas-checkpoint-2" == FORMAT
    assert data["spec"] == '{"not": "checked here"}'
    _assert_same(model.state_dict(), data["model"], "model")
    for key, value in state.items():
        _assert_same(value, data[key], key)
    # independent check: the file is readable by torch's restricted (weights-only) unpickler
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "bsrnas-checkpoint-2" and raw["step"] == 3
    _assert_same(model.state_dict(), raw["model"], "model")
    # RNG state is stored as tensors and plain values, with the documented layout
    py, nps = raw["rng"]["python"], raw["rng"]["numpy"]
    version, words, gauss = random.getstate()
    assert py["version"] == version and py["state"].dtype == torch.int64
    assert py["state"].tolist() == list(words) and len(words) == 625
    name, keys, pos, has_gauss, cached = np.random.get_state()
    assert nps["name"] == name == "MT19937" and nps["keys"].tolist() == keys.tolist()
    assert (nps["pos"], nps["has_gauss"], nps["cached_gaussian"]) == (pos, has_gauss, cached)
    assert has_gauss == 1 and isinstance(py["gauss"], float) and py["gauss"] == gauss


def test_rng_state_survives_a_checkpoint_bit_for_bit(tmp_path):
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    random.gauss(0, 1)  # leaves gauss_next cached
    np.random.standard_normal()  # leaves has_gauss = 1 with a cached value
    saved_py, saved_np = random.getstate(), np.random.get_state()
    save_checkpoint(tmp_path / "c.pt", None, TinySR(), rng=rng_state())
    want = (random.gauss(0, 1), random.random(), np.random.standard_normal(), np.random.rand(3),
            torch.rand(3))

    random.seed(99)
    np.random.seed(98)
    torch.manual_seed(97)
    # restore from what torch's restricted (weights-only) unpickler reads back
    set_rng_state(torch.load(tmp_path / "c.pt", weights_only=True)["rng"])
    assert random.getstate() == saved_py
    back = np.random.get_state()
    assert back[0] == saved_np[0] and back[1].dtype == np.uint32
    assert np.array_equal(back[1], saved_np[1]) and back[2:] == saved_np[2:]
    got = (random.gauss(0, 1), random.random(), np.random.standard_normal(), np.random.rand(3),
           torch.rand(3))
    assert got[0] == want[0] and got[1] == want[1] and got[2] == want[2]
    assert np.array_equal(got[3], want[3]) and torch.equal(got[4], want[4])


@pytest.mark.parametrize("how", ["torch", "pickle"])
@pytest.mark.parametrize("evil", [TouchMarker, SystemTouch])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, how, evil):
    marker = tmp_path / "MARKER"
    path = write_evil(tmp_path / "evil.pt", marker, how, evil)
    for loader in (load_checkpoint, load_model):
        msg = _refusal(loader, path)
        assert not marker.exists(), f"{loader.__name__} ran code from the file"
        assert msg is not None, f"{loader.__name__} did not raise ValueError"
        assert str(path) in msg and REFUSED in msg and "\n" not in msg


def _refusal(fn, *args, **kw):
    """The message of the ValueError ``fn`` raises, or None when it raises none."""
    try:
        fn(*args, **kw)
    except ValueError as exc:
        return str(exc)
    return None


def _old_format_1(path):
    """What bsrnas wrote before format 2: NumPy RNG state pickled as Python objects."""
    torch.save({"format": "bsrnas-checkpoint-1", "spec": None, "model": TinySR().state_dict(),
                "rng": {"python": random.getstate(), "numpy": np.random.get_state()}}, path)


@pytest.mark.parametrize("write,needle", [
    (lambda p: p.write_bytes(b"\x00garbage, not a torch file at all\xff" * 10), "corrupt"),
    (lambda p: torch.save(torch.zeros(3), p), "holds a Tensor"),
    (_old_format_1, "bsrnas-checkpoint-1"),
    (lambda p: torch.save({"format": "bsrnas-checkpoint-1", "model": {}}, p), "'bsrnas-checkpoint-1'"),
    (lambda p: torch.save({"format": FORMAT, "model": [1, 2]}, p), "'model' is not a state dict"),
])
def test_foreign_files_are_refused_with_one_line(tmp_path, write, needle):
    path = tmp_path / "foreign.pt"
    write(path)
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert msg.startswith(f"checkpoint file {str(path)!r} {REFUSED}")
    assert needle in msg and "\n" not in msg and "\x1b" not in msg


def test_save_refuses_values_that_are_not_plain(tmp_path):
    with pytest.raises(ValueError, match=r"'extra'.*numpy.ndarray.*allowed: tensors"):
        save_checkpoint(tmp_path / "c.pt", None, TinySR(), extra={"a": np.zeros(2)})
    with pytest.raises(ValueError, match=r"'rng'.*TouchMarker"):
        save_checkpoint(tmp_path / "c.pt", None, TinySR(), rng=[TouchMarker(tmp_path / "m")])
    assert not (tmp_path / "c.pt").exists() and not (tmp_path / "m").exists()


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_proxy_resume_refuses_malicious_trial_checkpoint(tmp_path, how):
    """The proxy training of a search resumes from trials/<id>/checkpoint.pt: a planted pickle
    there raises ValueError (never executed, never silently trained over)."""
    trial = tmp_path / "run" / "trials" / "0000"
    trial.mkdir(parents=True)
    marker = tmp_path / "MARKER"
    ckpt = write_evil(trial / CHECKPOINT_NAME, marker, how)
    before = ckpt.read_bytes()
    sampler = PureSampler()
    msg = _refusal(train, TinySR(), sampler, _config(), run_dir=trial, resume=True, progress=False)
    assert not marker.exists(), "the proxy resume ran code from the trial's checkpoint"
    assert msg is not None and str(ckpt) in msg and REFUSED in msg
    assert sampler.calls == []  # refused before any step was trained
    assert ckpt.read_bytes() == before  # left for the user to inspect, not overwritten


def test_resume_with_weights_of_another_architecture_is_a_value_error(tmp_path):
    train(TinySR(8), PureSampler(), _config(), run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"checkpoint\.pt.*another architecture"):
        train(TinySR(16), PureSampler(), _config(), run_dir=tmp_path, progress=False)
