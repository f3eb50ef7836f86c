"""Activation thresholds ``t(Xa)``: the binarizer computes ``sign(Xa - t)``.

* ``zero``  -- ``t = 0`` (plain XNOR / E2FIF).
* ``channel`` -- ``t = beta_c``, a learnable shift per input channel, initialised to 0
  (EBSR's channel-wise shifting; ReActNet's RSign, Liu et al. ECCV 2020; BBCU's ``sign(X + beta)``
  is the same with the opposite sign of beta).
* ``local_mean`` -- ``t = boxmean_k(Xa)``: the mean of the ``k x k`` neighbourhood of each
  activation in its own channel, ``k in {3, 5}``, stride 1, centre included, replicate
  padding at the borders (LMB, "Local Mean Binarization")::

      boxmean_k(X)[n, c, i, j] = (1/k^2) * sum_{|u|,|v| <= k//2} X[n, c, clamp(i+u), clamp(j+v)]

  The gradient flows through both paths of ``Xa - boxmean_k(Xa)``:
  ``dL/dXa = G - boxmean_k^T(G)``, ``boxmean^T`` being the adjoint of the replicate-padded box
  filter (autograd of pad + avg_pool).

The binary conv splits a threshold into a *local* part (the box mean, data dependent) and a
*static* part (``beta``, plus the ARI offsets ``tau_p``) so that the inference plan can fold the
static part into per-channel offsets: ``sign((Xa - boxmean_k(Xa)) - offsets[p])``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

THRESHOLDS = ("zero", "channel", "local_mean")
LOCAL_MEAN_KERNELS = (3, 5)


def box_mean(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """``k x k`` box mean per channel, stride 1, replicate padding, centre included."""
    if kernel not in LOCAL_MEAN_KERNELS:
        raise ValueError(
            f"invalid value {kernel!r} for choice 'threshold_kernel'; allowed values: {list(LOCAL_MEAN_KERNELS)}"
        )
    p = kernel // 2
    return F.avg_pool2d(F.pad(x, (p, p, p, p), mode="replicate"), kernel, stride=1)


class Threshold(nn.Module):
    """The threshold of one binary conv over ``channels`` input channels."""

    def __init__(self, kind: str, channels: int, kernel: int = 3):
        super().__init__()
        if kind not in THRESHOLDS:
            raise ValueError(
                f"invalid value {kind!r} for choice 'threshold'; allowed values: {list(THRESHOLDS)}"
            )
        if kernel not in LOCAL_MEAN_KERNELS:
            raise ValueError(
                f"invalid value {kernel!r} for choice 'threshold_kernel'; allowed values: {list(LOCAL_MEAN_KERNELS)}"
            )
        self.kind = kind
        self.kernel = kernel
        if kind == "channel":
            self.beta = nn.Parameter(torch.zeros(channels))

    @property
    def local_kernel(self) -> Optional[int]:
        """``k`` when the threshold is a local mean, else None."""
        return self.kernel if self.kind == "local_mean" else None

    def static(self) -> Optional[torch.Tensor]:
        """The static per-channel part ``beta`` (shape ``(C,)``), or None."""
        return self.beta if self.kind == "channel" else None

    def centred(self, xa: torch.Tensor) -> torch.Tensor:
        """``Xa - boxmean_k(Xa)`` for local_mean, else ``Xa`` itself."""
        if self.kind == "local_mean":
            return xa - box_mean(xa, self.kernel)
        return xa

    def forward(self, xa: torch.Tensor) -> torch.Tensor:
        """The full threshold ``t`` broadcastable against ``xa`` (for inspection and tests)."""
        if self.kind == "zero":
            return torch.zeros_like(xa)
        if self.kind == "channel":
            return self.beta.view(1, -1, 1, 1).expand_as(xa)
        return box_mean(xa, self.kernel)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}" + (f", kernel={self.kernel}" if self.kind == "local_mean" else "")
