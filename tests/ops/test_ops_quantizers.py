"""Forward values and gradient formulas of the sign quantizers (ops.quantizers)."""
import math

import numpy as np
import pytest
import torch

from ops.quantizers import (
    ActivationBinarizer,
    WeightBinarizer,
    anneal_temperature,
    set_progress,
    sign,
)

# zeros, the window edges |x| = 1 and |x| = 0.5, points inside and outside
POINTS = [-3.0, -1.5, -1.0, -0.999, -0.75, -0.5, -0.25, -1e-3, 0.0, 1e-3, 0.25, 0.5, 0.75, 0.999, 1.0, 1.5, 3.0]


def _grad(module_fn, values, upstream=None):
    x = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    g = torch.linspace(0.5, 2.0, len(values), dtype=torch.float64) if upstream is None else upstream
    y = module_fn(x)
    (y * g).sum().backward()
    return y.detach().numpy(), x.grad.numpy(), g.numpy()


def test_sign_of_zero_is_plus_one():
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, -1e-30, 5.0])
    assert sign(x).tolist() == [-1.0, 1.0, 1.0, 1.0, -1.0, 1.0]


@pytest.mark.parametrize("estimator", ["ste", "approx_sign", "aae"])
def test_activation_forward_is_sign(estimator):
    y, _, _ = _grad(ActivationBinarizer(estimator).double(), POINTS)
    expected = np.where(np.array(POINTS) >= 0, 1.0, -1.0)
    np.testing.assert_array_equal(y, expected)


def test_ste_gradient():
    _, gx, g = _grad(ActivationBinarizer("ste"), POINTS)
    expected = [gi * (1.0 if abs(x) <= 1 else 0.0) for x, gi in zip(POINTS, g)]
    np.testing.assert_allclose(gx, expected, rtol=0, atol=0)


def test_approx_sign_gradient():
    _, gx, g = _grad(ActivationBinarizer("approx_sign"), POINTS)
    expected = [gi * max(0.0, 2 - 2 * abs(x)) for x, gi in zip(POINTS, g)]
    np.testing.assert_allclose(gx, expected, rtol=1e-12, atol=1e-15)
    assert gx[POINTS.index(1.0)] == 0.0 and gx[POINTS.index(0.0)] == 2 * g[POINTS.index(0.0)]


def test_aae_starts_as_approx_sign():
    m = ActivationBinarizer("aae")
    assert float(m.window().detach()) == pytest.approx(1.0, abs=1e-7)
    _, gx, g = _grad(m.double(), POINTS)
    expected = [gi * max(0.0, 2 - 2 * abs(x)) for x, gi in zip(POINTS, g)]
    np.testing.assert_allclose(gx, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("theta", [-0.7, 0.3, 1.9])
def test_aae_gradients_x_and_theta(theta):
    m = ActivationBinarizer("aae").double()
    with torch.no_grad():
        m.theta.fill_(theta)
    a = math.log1p(math.exp(theta))
    pts = sorted(POINTS + [a, -a, a / 2, -a / 2, 0.999 * a])
    _, gx, g = _grad(m, pts)
    expected_x = [gi * (2 / a) * max(0.0, 1 - abs(x) / a) for x, gi in zip(pts, g)]
    np.testing.assert_allclose(gx, expected_x, rtol=1e-10, atol=1e-14)
    # gradient at |x| = a vanishes
    assert gx[pts.index(a)] == pytest.approx(0.0, abs=1e-12)
    # dL/dtheta = sum g * (-2x/a^2) max(0, 1-|x|/a) * sigmoid(theta)
    dl_da = sum(gi * (-2 * x / a**2) * max(0.0, 1 - abs(x) / a) for x, gi in zip(pts, g))
    expected_theta = dl_da / (1 + math.exp(-theta))
    assert float(m.theta.grad) == pytest.approx(expected_theta, rel=1e-9, abs=1e-12)


def test_aae_theta_gradient_matches_surrogate_derivative():
    """Independent check: dL/da equals the derivative (by autograd) of the explicit surrogate
    F_a(x) = sign(x) * (1 - (1 - min(|x|/a, 1))^2)."""
    theta = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
    x = torch.tensor(POINTS, dtype=torch.float64)
    g = torch.linspace(-1.0, 2.0, len(POINTS), dtype=torch.float64)
    a = torch.nn.functional.softplus(theta)
    surrogate = torch.sign(x) * (1 - (1 - torch.clamp(x.abs() / a, max=1.0)) ** 2)
    (surrogate * g).sum().backward()
    m = ActivationBinarizer("aae").double()
    with torch.no_grad():
        m.theta.fill_(0.4)
    (m(x) * g).sum().backward()
    assert float(m.theta.grad) == pytest.approx(float(theta.grad), rel=1e-9)


@pytest.mark.parametrize("estimator", ["identity", "clip", "tanh_anneal"])
def test_weight_forward_is_sign(estimator):
    w = torch.tensor(POINTS, dtype=torch.float64).reshape(1, -1, 1, 1)
    wb, alpha = WeightBinarizer(estimator)(w)
    assert alpha is None
    np.testing.assert_array_equal(wb.flatten().numpy(), np.where(np.array(POINTS) >= 0, 1.0, -1.0))


def _weight_grad(estimator, progress=0.0):
    m = WeightBinarizer(estimator)
    m.set_progress(progress)
    w = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    g = torch.linspace(0.5, 2.0, len(POINTS), dtype=torch.float64)
    wb, _ = m(w.reshape(1, -1, 1, 1))
    (wb.flatten() * g).sum().backward()
    return w.grad.numpy(), g.numpy()


def test_weight_identity_gradient():
    gw, g = _weight_grad("identity")
    np.testing.assert_array_equal(gw, g)


def test_weight_clip_gradient():
    gw, g = _weight_grad("clip")
    expected = [gi * (1.0 if abs(x) <= 1 else 0.0) for x, gi in zip(POINTS, g)]
    np.testing.assert_array_equal(gw, expected)


@pytest.mark.parametrize("progress", [0.0, 0.25, 0.5, 1.0])
def test_weight_tanh_anneal_gradient(progress):
    t = 0.1 * 100**progress
    k = max(1 / t, 1.0)
    gw, g = _weight_grad("tanh_anneal", progress)
    expected = [gi * k * t * (1 - math.tanh(t * x) ** 2) for x, gi in zip(POINTS, g)]
    np.testing.assert_allclose(gw, expected, rtol=1e-12, atol=1e-15)


def test_anneal_temperature_endpoints():
    assert anneal_temperature(0.0) == pytest.approx(0.1)
    assert anneal_temperature(0.5) == pytest.approx(1.0)
    assert anneal_temperature(1.0) == pytest.approx(10.0)


def test_set_progress_reaches_every_layer_and_validates():
    model = torch.nn.Sequential(WeightBinarizer("tanh_anneal"), torch.nn.Sequential(WeightBinarizer("clip")))
    assert set_progress(model, 0.75) == 2
    assert all(m.progress == 0.75 for m in model.modules() if isinstance(m, WeightBinarizer))
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(ValueError, match="progress"):
            set_progress(model, bad)


def test_channel_mean_scale_value_and_gradient():
    torch.manual_seed(0)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    wb, alpha = WeightBinarizer("identity", "channel_mean")(w)
    expected = np.abs(w.detach().numpy()).reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(alpha.detach().numpy(), expected, rtol=1e-12)
    # L = sum_o c_o * alpha_o  ->  dL/dW_o = c_o * sign(W_o) / n
    c = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    (alpha * c).sum().backward()
    expected_grad = c.numpy()[:, None, None, None] * np.sign(w.detach().numpy()) / 18
    np.testing.assert_allclose(w.grad.numpy(), expected_grad, rtol=1e-12)


@pytest.mark.parametrize(
    "cls,arg,name", [(ActivationBinarizer, "binary", "act_estimator"), (WeightBinarizer, "sign", "weight_estimator")]
)
def test_invalid_estimator_names(cls, arg, name):
    with pytest.raises(ValueError, match=name) as err:
        cls(arg)
    assert repr(arg) in str(err.value)


def test_invalid_weight_scale():
    with pytest.raises(ValueError, match="weight_scale.*allowed"):
        WeightBinarizer("identity", "layer_mean")
