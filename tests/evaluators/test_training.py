"""The shared training loop: schedules, exact resume, divergence, checkpoints, TensorBoard."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from evaluators.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from evaluators.training import CHECKPOINT_NAME, TrainConfig, TrainingDiverged, train


class TinySR(nn.Module):
    """x2 SR net: conv -> ReLU -> conv -> pixel shuffle, plus nearest upsampling of the input."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1))
        self.up = nn.PixelShuffle(2)

    def forward(self, x):
        return self.up(self.body(x)) + torch.nn.functional.interpolate(x, scale_factor=2)


class NaNSR(TinySR):
    def forward(self, x):
        return super().forward(x) * float("nan")


class PureSampler:
    """A patch sampler that is a pure function of (seed, step), as evaluators.data's is."""

    def __init__(self, seed=0, batch=2, patch=8, stop_at=None):
        self.seed, self.batch, self.patch, self.stop_at = seed, batch, patch, stop_at
        self.calls = []

    def sample(self, step):
        if self.stop_at is not None and step == self.stop_at:
            raise KeyboardInterrupt  # simulates a user interrupting the run here
        self.calls.append(step)
        g = torch.Generator().manual_seed(self.seed * 100003 + step)
        hr = torch.rand(self.batch, 3, self.patch, self.patch, generator=g)
        lr = torch.nn.functional.avg_pool2d(hr, 2)
        return lr, hr


def _config(**kw):
    base = dict(steps=12, batch=2, patch=8, lr=1e-2, schedule="cosine", seed=3, log_every=1,
                threads=1, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_step_schedule_matches_formula():
    c = TrainConfig(steps=100, lr=2e-4, schedule="step", milestones=(30, 60), gamma=0.5)
    expected = {0: 2e-4, 29: 2e-4, 30: 1e-4, 59: 1e-4, 60: 5e-5, 99: 5e-5}
    for t, v in expected.items():
        assert c.lr_at(t) == pytest.approx(v, rel=1e-12)


def test_cosine_schedule_matches_formula():
    c = TrainConfig(steps=200, lr=1e-3, schedule="cosine", min_lr=1e-5)
    for t in (0, 1, 50, 100, 150, 199):
        want = 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + np.cos(np.pi * t / 200))
        assert c.lr_at(t) == pytest.approx(want, rel=1e-12)
    assert c.lr_at(0) == pytest.approx(1e-3)
    assert c.lr_at(100) == pytest.approx((1e-3 + 1e-5) / 2)


def test_resume_after_interruption_is_bit_identical(tmp_path):
    torch.manual_seed(0)
    init = TinySR().state_dict()
    config = _config(steps=12, checkpoint_every=6)

    full = TinySR()
    full.load_state_dict(init)
    train(full, PureSampler(), config, run_dir=tmp_path / "full", progress=False)

    part = TinySR()
    part.load_state_dict(init)
    with pytest.raises(KeyboardInterrupt):
        train(part, PureSampler(stop_at=8), config, run_dir=tmp_path / "cut", progress=False)
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)["step"] == 6

    resumed = TinySR()  # a fresh process would rebuild the model from scratch
    sampler = PureSampler()
    res = train(resumed, sampler, config, run_dir=tmp_path / "cut", progress=False)
    assert res.resumed_from == 6 and sampler.calls == list(range(6, 12))
    _same_state(full.state_dict(), resumed.state_dict())
    # the stored optimizer state matches too (Adam moments, step counts)
    a = load_checkpoint(tmp_path / "full" / CHECKPOINT_NAME)["optimizer"]["state"]
    b = load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)["optimizer"]["state"]
    for k in a:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(a[k][name], b[k][name])


def test_training_reduces_loss_and_logs(tmp_path):
    model = TinySR()
    res = train(model, PureSampler(), _config(steps=30, lr=5e-3), run_dir=tmp_path, progress=False)
    assert res.history[0][0] == 0 and res.history[-1][0] == 29
    first = np.mean([l for _, l, _ in res.history[:3]])
    last = np.mean([l for _, l, _ in res.history[-3:]])
    assert last < first
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert {"train/loss", "train/lr"} <= set(acc.Tags()["scalars"])
    lrs = [e.value for e in acc.Scalars("train/lr")]
    assert lrs[0] == pytest.approx(5e-3, rel=1e-6)


def test_nan_loss_raises_training_diverged():
    with pytest.raises(TrainingDiverged) as info:
        train(NaNSR(), PureSampler(), _config(steps=5), progress=False)
    assert info.value.step == 0 and math.isnan(info.value.loss)


def test_resume_with_other_config_is_refused(tmp_path):
    train(TinySR(), PureSampler(), _config(steps=4), run_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="lr"):
        train(TinySR(), PureSampler(), _config(steps=4, lr=1e-3), run_dir=tmp_path, progress=False)


@pytest.mark.parametrize(
    "key,value",
    [("steps", 0), ("schedule", "linear"), ("milestones", [5, 3]), ("gamma", 2.0), ("lr", -1.0),
     ("device", "tpu"), ("threads", 0), ("batch", 1.5)],
)
def test_bad_config_values_name_the_key(key, value):
    with pytest.raises(ValueError, match=key):
        TrainConfig(**{key: value})


def test_yaml_style_numeric_strings_are_read_as_numbers():
    # PyYAML loads "1e-3" as a string; from_dict accepts it for float fields
    assert TrainConfig.from_dict({"lr": "1e-3", "min_lr": "1e-5"}).lr == 1e-3
    with pytest.raises(ValueError, match="lr"):
        TrainConfig.from_dict({"lr": "fast"})


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_checkpoint_roundtrip_and_errors(tmp_path):
    model = TinySR()
    path = save_checkpoint(tmp_path / "c.pt", None, model, step=7)
    data = load_checkpoint(path)
    assert data["format"] == FORMAT and data["step"] == 7 and data["spec"] is None
    _same_state(model.state_dict(), data["model"])
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(bad)


class GlobalRNGSampler(PureSampler):
    """Draws from the global Python, NumPy (incl. its cached gaussian) and torch generators, so
    a resumed run matches only if the checkpoint restores all three exactly."""

    def sample(self, step):
        import random

        lr, hr = super().sample(step)
        jitter = random.gauss(0, 1e-3) + float(np.random.standard_normal()) * 1e-3
        return lr + jitter + torch.rand(lr.shape) * 1e-3, hr


def test_resume_restores_global_rngs_exactly_from_a_weights_only_file(tmp_path):
    torch.manual_seed(0)
    init = TinySR().state_dict()
    config = _config(steps=9, checkpoint_every=4, schedule="step", milestones=(5,))

    full = TinySR()
    full.load_state_dict(init)
    train(full, GlobalRNGSampler(), config, run_dir=tmp_path / "full", progress=False)
    part = TinySR()
    part.load_state_dict(init)
    with pytest.raises(KeyboardInterrupt):
        train(part, GlobalRNGSampler(stop_at=6), config, run_dir=tmp_path / "cut", progress=False)
    # the resumable state is tensors and plain values only (no pickled NumPy/Python objects)
    raw = torch.load(tmp_path / "cut" / CHECKPOINT_NAME, weights_only=True)
    assert raw["format"] == "bsrnas-checkpoint-2" and raw["step"] == 4
    assert raw["rng"]["numpy"]["keys"].dtype == torch.int64

    resumed = TinySR()
    res = train(resumed, GlobalRNGSampler(), config, run_dir=tmp_path / "cut", progress=False)
    assert res.resumed_from == 4
    _same_state(full.state_dict(), resumed.state_dict())
