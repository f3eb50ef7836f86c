"""The proxy evaluator: short training beats the untrained network; divergence is flagged."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evaluators.checkpoint import load_model
from evaluators.evaluate import evaluate, model_sr_fn
from evaluators.metrics import psnr_y
from evaluators.proxy import ProxyEvaluator, ZeroSR
from evaluators.training import CHECKPOINT_NAME, seed_everything
from space.builder import build
from space.spec import LayerSpec, uniform

SPEC = uniform(2, 8, 1, LayerSpec(weight_scale="channel_mean", skip="fp"))


@pytest.fixture(scope="module")
def evaluator():
    return ProxyEvaluator(steps=25, batch=4, patch=32, lr=2e-3, seed=0, threads=1)


def test_proxy_beats_the_untrained_network(evaluator, tmp_path):
    res = evaluator.evaluate(SPEC, run_dir=tmp_path)
    assert not res["diverged"] and res["steps"] == 25
    assert math.isfinite(res["psnr_y"]) and 0 < res["ssim_y"] <= 1
    seed_everything(0)  # the same initial weights the proxy trained from
    untrained = evaluate(model_sr_fn(build(SPEC)), evaluator.val_items(2), 2)
    assert res["psnr_y"] > untrained["psnr_y"] + 0.5
    # the stored checkpoint rebuilds the trained network and reproduces the score
    spec, model = load_model(tmp_path / CHECKPOINT_NAME)
    assert spec == SPEC
    again = evaluate(model_sr_fn(model), evaluator.val_items(2), 2)
    assert again["psnr_y"] == pytest.approx(res["psnr_y"], abs=1e-9)


def test_zero_floor_is_psnr_of_black_image(evaluator):
    floor = evaluator.floor(2)
    # independent: PSNR_Y of an all-zero RGB image against each HR, averaged
    want = np.mean([psnr_y(np.zeros_like(hr), hr, crop_border=2) for _, hr, _ in evaluator.val_items(2)])
    assert floor["psnr_y"] == pytest.approx(want, abs=1e-9)
    x = torch.rand(2, 3, 5, 7)
    assert ZeroSR(3)(x).shape == (2, 3, 15, 21)


class NaNSampler:
    def sample(self, step):
        lr = torch.rand(2, 3, 8, 8)
        return lr, torch.full((2, 3, 16, 16), float("nan"))


def test_divergence_is_flagged_not_raised(evaluator):
    ev = ProxyEvaluator(steps=5, batch=2, patch=16, val_items=evaluator.val_items(2))
    ev._samplers[2] = NaNSampler()  # every loss is NaN: the real loop raises TrainingDiverged
    res = ev.evaluate(SPEC)
    assert res["diverged"] and res["diverged_step"] == 0
    assert res["psnr_y"] == pytest.approx(evaluator.floor(2)["psnr_y"], abs=1e-9)


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="steps"):
        ProxyEvaluator(steps=0)
    with pytest.raises(ValueError, match="max_val_images"):
        ProxyEvaluator(max_val_images=0)


def test_rank_statistics_of_the_fidelity_study():
    from benchmarks.proxy_fidelity import average_ranks, kendall_tau_b, spearman_rho

    # one discordant pair of 6: tau = (5 - 1) / 6; rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 0.8
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert list(average_ranks([10, 20, 20, 5])) == [2.0, 3.5, 3.5, 1.0]
    # tau-b with ties: x = [1, 1, 2], y = [1, 2, 3]: C = 2, D = 0, n0 = 3, n1 = 1, n2 = 0
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / np.sqrt(2 * 3))
