"""BinaryConv2d: neutral equivalence, every choice value's formula, argument validation."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ops import BinaryConv2d, sign
from ops.choices import CHOICES


def _x(n=2, c=4, h=7, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g)


def _np_sign(a):
    return np.where(a >= 0, 1.0, -1.0)


def _np_conv_same(x, w):
    """Direct-loop float64 conv, zero padding k//2 (independent of torch)."""
    n, cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    p = k // 2
    xp = np.zeros((n, cin, h + 2 * p, wd + 2 * p))
    xp[:, :, p : p + h, p : p + wd] = x
    out = np.zeros((n, cout, h, wd))
    for i in range(k):
        for j in range(k):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i : i + h, j : j + wd], w[:, :, i, j])
    return out


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("shape", [(4, 4), (3, 5)])
def test_neutral_equals_float_conv_of_signs(k, shape):
    cin, cout = shape
    torch.manual_seed(1)
    m = BinaryConv2d(cin, cout, k)
    x = _x(c=cin)
    x[0, 0, 0, 0] = 0.0  # sign(0) = +1
    y = m(x)
    ref = F.conv2d(sign(x), sign(m.weight), padding=k // 2)
    assert torch.equal(y, ref)
    np.testing.assert_array_equal(
        y.detach().numpy(), _np_conv_same(_np_sign(x.numpy()), _np_sign(m.weight.detach().numpy()))
    )
    assert m.weight.shape == (cout, cin, k, k)
    assert m.choices == {name: d for name, (d, _) in CHOICES.items()}


def test_weight_scale_channel_mean():
    m = BinaryConv2d(4, 3, 3, weight_scale="channel_mean")
    x = _x()
    w = m.weight.detach().numpy()
    alpha = np.abs(w).reshape(3, -1).mean(1)
    ref = _np_conv_same(_np_sign(x.numpy()), _np_sign(w)) * alpha[None, :, None, None]
    np.testing.assert_allclose(m(x).detach().numpy(), ref, rtol=1e-5, atol=1e-5)


def test_channel_threshold_shifts_input():
    m = BinaryConv2d(4, 4, 3, threshold="channel")
    with torch.no_grad():
        m.threshold.beta.copy_(torch.tensor([0.3, -0.2, 0.0, 1.1]))
    x = _x()
    ref = _np_conv_same(_np_sign(x.numpy() - np.array([0.3, -0.2, 0.0, 1.1])[None, :, None, None]),
                        _np_sign(m.weight.detach().numpy()))
    np.testing.assert_array_equal(m(x).detach().numpy(), ref)


def _np_sig2(z):
    return 2.0 / (1.0 + np.exp(-z))


def test_bias_bn_rescale_order():
    """Y = BN(conv + bias) * L(X) * G(X) * S(X), BN in eval mode with set statistics, the three
    SCALES factors 2 sigmoid(.) of pooled relative |X| statistics (ops.rescale), computed with loops."""
    m = BinaryConv2d(4, 4, 3, bias=True, rescale="both", norm="bn").eval()
    g = torch.Generator().manual_seed(3)
    r = m.rescale
    with torch.no_grad():
        m.bias.copy_(torch.randn(4, generator=g))
        r.channel_weight.copy_(torch.randn(4, 4, generator=g))
        r.channel_bias.copy_(torch.randn(4, generator=g) * 0.3)
        r.layer_weight.fill_(0.7)
        r.layer_bias.fill_(-0.4)
        r.spatial_weight.copy_(torch.randn(1, 1, 3, 3, generator=g) * 0.5)
        r.spatial_bias.fill_(0.2)
        m.norm.running_mean.copy_(torch.randn(4, generator=g))
        m.norm.running_var.copy_(torch.rand(4, generator=g) + 0.5)
        m.norm.weight.copy_(torch.randn(4, generator=g))
        m.norm.bias.copy_(torch.randn(4, generator=g))
    x = _x()
    xn = x.numpy().astype(np.float64)
    y = _np_conv_same(_np_sign(xn), _np_sign(m.weight.detach().numpy())) + m.bias.detach().numpy()[None, :, None, None]
    bn = m.norm
    y = (y - bn.running_mean.numpy()[None, :, None, None]) / np.sqrt(bn.running_var.numpy() + bn.eps)[None, :, None, None]
    y = y * bn.weight.detach().numpy()[None, :, None, None] + bn.bias.detach().numpy()[None, :, None, None]
    n, c = xn.shape[:2]
    V, v = r.channel_weight.detach().numpy(), r.channel_bias.detach().numpy()
    mu = np.array([np.abs(xn[i]).mean() for i in range(n)])  # each sample's magnitude
    for i in range(n):
        pooled = [np.abs(xn[i, ci]).mean() / mu[i] for ci in range(c)]
        lam = _np_sig2(0.7 * np.log(mu[i]) - 0.4)
        for o in range(4):
            gam = _np_sig2(sum(V[o, ci] * pooled[ci] for ci in range(c)) + v[o])
            y[i, o] *= lam * gam
    s = _np_sig2(_np_conv_same(np.abs(xn).mean(1, keepdims=True) / mu[:, None, None, None],
                               r.spatial_weight.detach().numpy()) + 0.2)
    y = y * s
    np.testing.assert_allclose(m(x).detach().numpy(), y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rescale", ["channel", "spatial", "both"])
def test_rescale_initialised_neutral(rescale):
    m = BinaryConv2d(4, 4, 3, rescale=rescale)
    x = _x()
    assert torch.equal(m(x), F.conv2d(sign(x), sign(m.weight), padding=1))


@pytest.mark.parametrize("nonlinearity", ["none", "prelu", "rprelu", "leaky_relu"])
@pytest.mark.parametrize("at", ["after_skip", "before_skip"])
def test_nonlinearity_and_position(nonlinearity, at):
    m = BinaryConv2d(4, 4, 3, skip="fp", nonlinearity=nonlinearity, nonlinearity_at=at)
    x = _x()
    conv = _np_conv_same(_np_sign(x.numpy()), _np_sign(m.weight.detach().numpy()))
    if nonlinearity == "rprelu":
        with torch.no_grad():
            m.nonlinearity.shift.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
            m.nonlinearity.bias.copy_(torch.tensor([0.1, 0.2, -0.3, 0.0]))
            m.nonlinearity.weight.copy_(torch.tensor([0.25, 0.5, 0.1, 0.0]))

    def f(z):
        if nonlinearity == "none":
            return z
        if nonlinearity == "prelu":
            return np.where(z >= 0, z, 0.25 * z)
        if nonlinearity == "leaky_relu":
            return np.where(z >= 0, z, 0.1 * z)
        sh = np.array([0.5, -1.0, 2.0, 0.0])[None, :, None, None]
        sl = np.array([0.25, 0.5, 0.1, 0.0])[None, :, None, None]
        bi = np.array([0.1, 0.2, -0.3, 0.0])[None, :, None, None]
        u = z - sh
        return np.where(u >= 0, u, sl * u) + bi

    ref = f(conv) + x.numpy() if at == "before_skip" else f(conv + x.numpy())
    np.testing.assert_allclose(m(x).detach().numpy(), ref, rtol=1e-5, atol=1e-5)


def test_fp_skip_repeats_channels():
    m = BinaryConv2d(3, 12, 3, skip="fp")
    x = _x(c=3)
    conv = _np_conv_same(_np_sign(x.numpy()), _np_sign(m.weight.detach().numpy()))
    rep = np.repeat(x.numpy(), 4, axis=1)  # channel c -> outputs 4c..4c+3
    np.testing.assert_allclose(m(x).detach().numpy(), conv + rep, rtol=1e-6, atol=1e-6)
    assert m.skip_repeat == 4


@pytest.mark.parametrize("in_ch,out_ch", [(4, 6), (4, 2), (3, 4)])
def test_fp_skip_incompatible_shapes_raise(in_ch, out_ch):
    with pytest.raises(ValueError, match="'skip'") as err:
        BinaryConv2d(in_ch, out_ch, 3, skip="fp")
    assert "fp" in str(err.value) and "multiple" in str(err.value)


@pytest.mark.parametrize("k", [0, 2, 5, 7, "3", True])
def test_bad_kernel_size(k):
    with pytest.raises(ValueError, match="kernel_size") as err:
        BinaryConv2d(4, 4, k)
    assert "[1, 3]" in str(err.value)


@pytest.mark.parametrize(
    "name,value",
    [("threshold", "mean"), ("parts", 5), ("parts", True), ("bias", 1), ("rescale", "pixel"),
     ("bam_depth", 4), ("skip", "identity"), ("norm", "ln"), ("nonlinearity", "relu"),
     ("nonlinearity_at", "middle"), ("act_estimator", "bnn"), ("weight_estimator", "sgn"),
     ("weight_scale", "max"), ("threshold_kernel", 7)],
)
def test_invalid_choice_value_message(name, value):
    with pytest.raises(ValueError) as err:
        BinaryConv2d(4, 4, 3, **{name: value})
    msg = str(err.value)
    assert repr(name) in msg and repr(value) in msg
    for allowed in CHOICES[name][1]:
        assert repr(allowed) in msg


def test_unknown_choice_name():
    with pytest.raises(ValueError, match="unknown choice 'binarize'"):
        BinaryConv2d(4, 4, 3, binarize=True)


@pytest.mark.parametrize("field,args", [("in_ch", (0, 4, 3)), ("out_ch", (4, -1, 3)), ("in_ch", (2.0, 4, 3))])
def test_bad_channels(field, args):
    with pytest.raises(ValueError, match=field):
        BinaryConv2d(*args)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input shape"):
        BinaryConv2d(4, 4, 3)(torch.randn(2, 3, 5, 5))


@pytest.mark.parametrize("estimator", ["ste", "approx_sign", "aae"])
def test_act_estimator_gradient_through_conv(estimator):
    """1x1 conv with weight +1: y = sign(x), so dL/dx is the estimator's formula."""
    m = BinaryConv2d(1, 1, 1, act_estimator=estimator)
    with torch.no_grad():
        m.weight.fill_(0.5)
    pts = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.3, 1.0, 1.5]).view(1, 1, 1, -1).requires_grad_()
    g = torch.linspace(0.5, 1.5, 7).view(1, 1, 1, -1)
    (m(pts) * g).sum().backward()
    a = pts.detach().abs()
    factor = (a <= 1).float() if estimator == "ste" else torch.clamp(2 - 2 * a, min=0)
    torch.testing.assert_close(pts.grad, g * factor, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("estimator", ["identity", "clip", "tanh_anneal"])
def test_weight_estimator_gradient_through_conv(estimator):
    """1x1 conv on an all-ones input: dL/dW_o = sum_pixels g * estimator'(W_o)."""
    m = BinaryConv2d(1, 3, 1, weight_estimator=estimator)
    m.weight_binarizer.set_progress(0.5)  # t = 1, k = 1
    with torch.no_grad():
        m.weight.copy_(torch.tensor([-1.5, 0.0, 1.0]).view(3, 1, 1, 1))
    g = torch.randn(1, 3, 2, 2)
    (m(torch.ones(1, 1, 2, 2)) * g).sum().backward()
    w = torch.tensor([-1.5, 0.0, 1.0])
    total = g.sum(dim=(0, 2, 3))
    if estimator == "identity":
        factor = torch.ones(3)
    elif estimator == "clip":
        factor = (w.abs() <= 1).float()
    else:
        factor = 1 - torch.tanh(w) ** 2
    torch.testing.assert_close(m.weight.grad.flatten(), total * factor, rtol=1e-6, atol=1e-6)
