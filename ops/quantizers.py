"""Sign quantizers with custom (surrogate) gradients, for activations and weights.

Every binarizer computes the same forward value, ``sign(x)`` with ``sign(0) = +1``; they
differ only in the gradient used in training (the estimator). ``g`` below is the incoming
gradient dL/dy of the output ``y = sign(x)``.

Activation estimators (``act_estimator``):

* ``ste``  -- straight-through estimator clipped to the linear window (Courbariaux et al.,
  "Binarized Neural Networks", 2016): ``dL/dx = g * 1{|x| <= 1}``.
* ``approx_sign`` -- the piecewise-quadratic ApproxSign of Bi-Real Net (Liu et al., ECCV 2018),
  the derivative of ``F(x) = sign(x) * (2|x| - x^2)`` on ``|x| <= 1``:
  ``dL/dx = g * max(0, 2 - 2|x|)``.
* ``aae`` -- the adaptive approximation estimator of Rectified-BSR: the ApproxSign window is
  widened or narrowed by a learnable per-layer width ``a = softplus(theta)``
  (``theta`` initialised to ``log(e - 1)`` so that ``a = 1``, i.e. ApproxSign at start).
  The surrogate is ``F_a(x) = sign(x) * (1 - (1 - |x|/a)^2)`` for ``|x| <= a`` and ``sign(x)``
  outside, whose derivatives are::

      dF_a/dx = (2/a) * max(0, 1 - |x|/a)
      dF_a/da = -(2 x / a^2) * max(0, 1 - |x|/a)

  so ``dL/dx = g * (2/a) * max(0, 1 - |x|/a)``, ``dL/da = sum(g * dF_a/da)`` over every element
  the layer binarizes, and ``dL/dtheta = dL/da * sigmoid(theta)`` (softplus' = sigmoid, applied
  by autograd). Both vanish at ``|x| = a``.

Weight estimators (``weight_estimator``), forward ``sign(W)``:

* ``identity`` -- plain straight-through: ``dL/dW = g`` (E2FIF).
* ``clip`` -- ``dL/dW = g * 1{|W| <= 1}``.
* ``tanh_anneal`` -- the IR-Net / LMB error-decay estimator (Qin et al., CVPR 2020, Eq. 9):
  the surrogate ``k * tanh(t * W)`` gives ``dL/dW = g * k * t * (1 - tanh^2(t * W))`` with
  ``t = t_min * (t_max / t_min) ** progress`` (``t_min = 0.1``, ``t_max = 10``, ``progress``
  the fraction of training done, in [0, 1]) and ``k = max(1/t, 1)``. Training code sets the
  progress of every layer of a model with :func:`set_progress`.

Weight scale (``weight_scale``): ``none`` -> ``alpha = 1``; ``channel_mean`` -> the XNOR-Net
scale ``alpha_o = mean(|W_o|)`` over the ``in * k * k`` weights of output channel ``o``
(Rastegari et al., ECCV 2016), differentiable: ``d alpha_o / d W_o = sign(W_o) / n``.
The binarized weight is ``sign(W) * alpha``; :class:`WeightBinarizer` returns the two factors
apart so that the convolution itself runs on exact ``{-1, +1}`` values.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn
from torch.autograd import Function

ACT_ESTIMATORS = ("ste", "approx_sign", "aae")
WEIGHT_ESTIMATORS = ("identity", "clip", "tanh_anneal")
WEIGHT_SCALES = ("none", "channel_mean")

#: annealing range of the tanh_anneal temperature (IR-Net: T_min = 0.1, T_max = 10).
T_MIN = 0.1
T_MAX = 10.0


def sign(x: torch.Tensor) -> torch.Tensor:
    """``+1`` where ``x >= 0`` (so ``sign(0) = +1``), ``-1`` elsewhere; same dtype as ``x``."""
    return (x >= 0).to(x.dtype) * 2 - 1


class _SignSTE(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


class _SignApprox(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.clamp(2 - 2 * x.abs(), min=0)


class _SignAAE(Function):
    @staticmethod
    def forward(ctx, x, a):
        ctx.save_for_backward(x, a)
        return sign(x)

    @staticmethod
    def backward(ctx, g):
        x, a = ctx.saved_tensors
        window = torch.clamp(1 - x.abs() / a, min=0)
        grad_x = g * (2 / a) * window
        grad_a = (g * (-2 * x / a**2) * window).sum().reshape(a.shape)
        return grad_x, grad_a


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)``; backward ``g * 1{|x| <= 1}``."""
    return _SignSTE.apply(x)


def sign_approx(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)``; backward ``g * max(0, 2 - 2|x|)`` (Bi-Real ApproxSign)."""
    return _SignApprox.apply(x)


def sign_aae(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``sign(x)``; backward ``g * (2/a) * max(0, 1 - |x|/a)`` to ``x`` and
    ``sum(g * -(2x/a^2) * max(0, 1 - |x|/a))`` to the 0-dim window ``a``."""
    return _SignAAE.apply(x, a)


class _WeightIdentity(Function):
    @staticmethod
    def forward(ctx, w):
        return sign(w)

    @staticmethod
    def backward(ctx, g):
        return g


#: ``clip`` weight estimator: forward sign(w), backward g * 1{|w| <= 1} -- the same function as the
#: activation STE, applied to the latent weights.
_WeightClip = _SignSTE


class _WeightTanh(Function):
    @staticmethod
    def forward(ctx, w, t: float):
        ctx.save_for_backward(w)
        ctx.t = t
        return sign(w)

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        t = ctx.t
        k = max(1.0 / t, 1.0)
        return g * (k * t) * (1 - torch.tanh(t * w) ** 2), None


def anneal_temperature(progress: float) -> float:
    """IR-Net temperature ``t = T_MIN * (T_MAX / T_MIN) ** progress`` (0.1 -> 10)."""
    return T_MIN * (T_MAX / T_MIN) ** float(progress)


def _check_progress(fraction) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ValueError(f"invalid progress {fraction!r}: a number in [0, 1] is allowed")
    value = float(fraction)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"invalid progress {fraction!r}: a number in [0, 1] is allowed")
    return value


class ActivationBinarizer(nn.Module):
    """``sign`` of the activations with the gradient of ``estimator``; holds the AAE ``theta``."""

    def __init__(self, estimator: str = "ste"):
        super().__init__()
        if estimator not in ACT_ESTIMATORS:
            raise ValueError(
                f"invalid value {estimator!r} for choice 'act_estimator'; "
                f"allowed values: {list(ACT_ESTIMATORS)}"
            )
        self.estimator = estimator
        if estimator == "aae":
            # softplus(log(e - 1)) = log(1 + e - 1) = 1
            self.theta = nn.Parameter(torch.tensor(math.log(math.e - 1.0)))

    def window(self) -> Optional[torch.Tensor]:
        """The AAE width ``a = softplus(theta)`` (None for the other estimators)."""
        if self.estimator != "aae":
            return None
        return nn.functional.softplus(self.theta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.estimator == "ste":
            return sign_ste(x)
        if self.estimator == "approx_sign":
            return sign_approx(x)
        return sign_aae(x, self.window().to(x.dtype))

    def extra_repr(self) -> str:
        return f"estimator={self.estimator!r}"


class WeightBinarizer(nn.Module):
    """Returns ``(sign(W), alpha)`` with the gradient of ``estimator``; ``alpha`` is None for
    ``scale='none'`` and ``mean|W_o|`` of shape ``(out,)`` for ``'channel_mean'``.

    ``progress`` (a float in [0, 1], default 0) drives the tanh_anneal temperature; set it
    with :func:`set_progress` on the whole model.
    """

    def __init__(self, estimator: str = "identity", scale: str = "none"):
        super().__init__()
        if estimator not in WEIGHT_ESTIMATORS:
            raise ValueError(
                f"invalid value {estimator!r} for choice 'weight_estimator'; "
                f"allowed values: {list(WEIGHT_ESTIMATORS)}"
            )
        if scale not in WEIGHT_SCALES:
            raise ValueError(
                f"invalid value {scale!r} for choice 'weight_scale'; "
                f"allowed values: {list(WEIGHT_SCALES)}"
            )
        self.estimator = estimator
        self.scale = scale
        self.progress = 0.0

    def set_progress(self, fraction: float) -> None:
        self.progress = _check_progress(fraction)

    @property
    def temperature(self) -> float:
        return anneal_temperature(self.progress)

    def forward(self, w: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self.estimator == "identity":
            wb = _WeightIdentity.apply(w)
        elif self.estimator == "clip":
            wb = _WeightClip.apply(w)
        else:
            wb = _WeightTanh.apply(w, self.temperature)
        alpha = w.abs().mean(dim=tuple(range(1, w.dim()))) if self.scale == "channel_mean" else None
        return wb, alpha

    def extra_repr(self) -> str:
        return f"estimator={self.estimator!r}, scale={self.scale!r}"


def set_progress(model: nn.Module, fraction: float) -> int:
    """Set the training progress (fraction of training done, in [0, 1]) of every layer of
    ``model`` that anneals (tanh_anneal weights); returns how many layers were set."""
    value = _check_progress(fraction)
    count = 0
    for module in model.modules():
        if isinstance(module, WeightBinarizer):
            module.set_progress(value)
            count += 1
    return count
