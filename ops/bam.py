"""BAM activation accumulation (bit-accumulation mechanism) along the depth of a block.

The binarizer of conv ``n`` sees, instead of its own FP input ``A_n = X``, a learnable
weighted sum of the FP inputs of the last ``d + 1`` convs of the same block
(``d = bam_depth``), normalised by a batch norm::

    Xa = BN( sum_{i = n-d'}^{n} beta_i ⊙ A_i ),      d' = min(d, len(history))
    beta_i = s_i ⊙ mean_hw(|A_i|)

The weights follow the paper's form ``beta_i = beta_i^scale * mean(A_i)`` (BAM, "Binarized
image super-resolution with bit-accumulation", Eq. for the accumulated activation). Our exact
reading, documented because only the equations were available:

* ``s_i`` (``beta_i^scale``) is a learnable vector over the channels, one per position
  ``i`` in the window (parameter ``scales`` of shape ``(d + 1, C)``, row ``d`` is the current
  conv, row ``d - 1`` the previous one, ...), initialised to 1;
* ``mean(A_i)`` is the XNOR-Net magnitude ``mean_hw |A_i|`` per sample and channel (a signed mean
  would cancel on zero-centred activations and flip the sign of the contribution);
* ``BN`` is an affine ``BatchNorm2d(C)``; in eval mode it uses the running statistics.

When the block has fewer than ``d`` earlier convs, the last ``len(history)`` ones are used with
the last rows of ``scales``. Gradient reaches ``s``, the BN affine parameters and every
``A_i`` (also through the magnitude). Extra inference cost: ``d' + 1`` multiply-adds per input
element, a spatial mean per channel and the BN affine; the earlier FP inputs are kept.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BAM_DEPTHS = (0, 1, 2, 3)


def window(history: Sequence[torch.Tensor], depth: int) -> list:
    """The last ``depth`` tensors of ``history`` (oldest first)."""
    history = list(history)
    return history[len(history) - min(depth, len(history)):] if depth > 0 else []


def accumulate(x: torch.Tensor, history: Sequence[torch.Tensor], scales: torch.Tensor) -> torch.Tensor:
    """``sum_i s_i ⊙ mean_hw|A_i| ⊙ A_i`` over ``A = window(history) + [x]`` (before BN)."""
    depth = scales.shape[0] - 1
    inputs = window(history, depth) + [x]
    for i, a in enumerate(inputs[:-1]):
        if not isinstance(a, torch.Tensor) or a.shape != x.shape:
            got = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise ValueError(
                f"invalid history entry {i}: shape {got}; allowed: tensors of the conv input's shape {tuple(x.shape)}"
            )
    rows = scales[scales.shape[0] - len(inputs):]
    total = None
    for s, a in zip(rows, inputs):
        term = s.view(1, -1, 1, 1) * a.abs().mean(dim=(2, 3), keepdim=True) * a
        total = term if total is None else total + term
    return total


class BitAccumulation(nn.Module):
    """``Xa = BN(accumulate(x, history, scales))`` for one conv with ``bam_depth = depth``."""

    def __init__(self, channels: int, depth: int):
        super().__init__()
        if isinstance(depth, bool) or depth not in BAM_DEPTHS or depth == 0:
            raise ValueError(f"invalid value {depth!r} for choice 'bam_depth'; allowed values here: [1, 2, 3]")
        self.depth = depth
        self.scales = nn.Parameter(torch.ones(depth + 1, channels))
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, history: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        return self.norm(accumulate(x, history, self.scales))

    def frozen(self):
        """A detached inference callable ``pre(x, history) -> Xa`` (BN with running stats),
        computing exactly what ``forward`` computes in eval mode."""
        if self.training:
            raise ValueError("invalid mode training=True for BitAccumulation.frozen(); allowed: eval mode")
        scales = self.scales.detach().float().clone()
        bn = self.norm
        mean = bn.running_mean.detach().float().clone()
        var = bn.running_var.detach().float().clone()
        weight = bn.weight.detach().float().clone()
        bias = bn.bias.detach().float().clone()
        eps = bn.eps

        def pre(x: torch.Tensor, history: Sequence[torch.Tensor] = ()) -> torch.Tensor:
            return F.batch_norm(accumulate(x, history, scales), mean, var, weight, bias, False, 0.0, eps)

        return pre

    def extra_repr(self) -> str:
        return f"depth={self.depth}"
