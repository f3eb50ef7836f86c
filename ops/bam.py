"""BAM, the bit-accumulation mechanism: the binarizer input accumulates scaled one-bit values.

Xin, Wang, Jiang, Li, Huang & Gao, "Binarized Neural Network for Single Image Super
Resolution", ECCV 2020 (doi 10.1007/978-3-030-58548-8_6). Reconstructed from the abstract
(no equations or code were reachable): BAM "approximate[s] the full precision number by
accumulating the multi-layer's one-bit values". Our reading, the formula sheet's
(``/work/shared/docs/seed_methods.md``, BAM section): the binarizer of binary conv ``n`` sees,
instead of its own FP input ``A_n = X``, the accumulation of the *scaled one-bit values* of the
inputs of the last ``d + 1`` binary convs (``d = bam_depth``), normalised by a batch norm::

    Xa = BN( sum_{i = n-d'}^{n} beta_i ⊙ sign(A_i) ),      d' = min(d, len(history))
    beta_i[n, c] = s_i[c] * mean_hw |A_i|[n, c]

* ``beta_i`` is the XNOR-Net scale of ``sign(A_i)`` **per sample and per channel** (mean of
  ``|A_i|`` over H and W), times a learnable per-channel factor ``s_i`` (``beta_i^scale``;
  parameter ``scales`` of shape ``(d + 1, C)``, row ``d`` the current conv, row ``d - 1`` the
  previous one, ..., initialised to 1). ``beta_i ⊙ sign(A_i)`` is the least-squares one-bit
  approximation of ``A_i`` per channel (Rastegari et al., ECCV 2016), so the sum is linear in
  the A_i's magnitudes (not quadratic, as a sum of ``mean|A_i| ⊙ A_i`` would be).
* ``sign(0) = +1``. In training, ``sign`` is the conv's own activation binarizer (its estimator:
  STE / ApproxSign / AAE), so gradient reaches every ``A_i`` through the sign's surrogate and
  through ``mean_hw |A_i|``, and reaches ``s`` and the BN affine.
* ``BN`` is an affine ``BatchNorm2d(C)``; in eval mode it uses the running statistics.

**History.** ``history`` holds the FP inputs ``A_i`` of the earlier binary convs, oldest first;
the conv uses its last ``min(d, len(history))`` entries with the last rows of ``scales``. It
may cross block boundaries: a caller threads one :class:`BamHistory` through consecutive convs.
Entries must have the shape of ``X`` (a builder starts a new history where the shape changes,
e.g. at the upsampler's PixelShuffle). Builder interface::

    history = BamHistory()            # keeps the last MAX_DEPTH inputs
    for block in body:                # BinaryBlock(s) or bare BinaryConv2d(s)
        x = block(x, history=history) # a BinaryBlock pushes each of its convs' inputs
    # bare convs:  y = conv(x, history); history.push(x)

``BinaryBlock`` without a history argument keeps the block-local wiring (a fresh history per
block call). A plain tuple / list of tensors is accepted as history too.

Extra inference cost: per accumulated input a sign, its ``mean_hw|A_i|``, one multiply-add per
element; then the BN affine; the last ``d`` FP inputs are kept.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ops.quantizers import sign as _sign

BAM_DEPTHS = (0, 1, 2, 3)
MAX_DEPTH = max(BAM_DEPTHS)


class BamHistory(Sequence):
    """The FP inputs of the last ``maxlen`` binary convs, oldest first (a ``Sequence`` of tensors).

    ``push(x)`` appends (dropping the oldest beyond ``maxlen``); ``clear()`` empties it."""

    def __init__(self, items: Iterable[torch.Tensor] = (), maxlen: int = MAX_DEPTH):
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 0:
            raise ValueError(f"invalid maxlen {maxlen!r}; allowed: an integer >= 0")
        self.maxlen = maxlen
        self._items: list = []
        for x in items:
            self.push(x)

    def push(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"invalid history entry {type(x).__name__}; allowed: a tensor")
        self._items.append(x)
        if len(self._items) > self.maxlen:
            del self._items[: len(self._items) - self.maxlen]

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        return self._items[i]

    def __repr__(self) -> str:
        return f"BamHistory(len={len(self)}, maxlen={self.maxlen})"


def window(history: Sequence[torch.Tensor], depth: int) -> list:
    """The last ``depth`` tensors of ``history`` (oldest first)."""
    history = list(history)
    return history[len(history) - min(depth, len(history)):] if depth > 0 else []


def accumulate(x: torch.Tensor, history: Sequence[torch.Tensor], scales: torch.Tensor,
               binarize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
    """``sum_i s_i ⊙ mean_hw|A_i| ⊙ sign(A_i)`` over ``A = window(history) + [x]`` (before BN).

    ``binarize`` is the sign used (default the plain ``sign``, sign(0) = +1)."""
    binarize = _sign if binarize is None else binarize
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
        term = (s.view(1, -1, 1, 1) * a.abs().mean(dim=(2, 3), keepdim=True)) * binarize(a)
        total = term if total is None else total + term
    return total


class BitAccumulation(nn.Module):
    """``Xa = BN(accumulate(x, history, scales, binarize))`` for one conv with ``bam_depth = depth``."""

    def __init__(self, channels: int, depth: int):
        super().__init__()
        if isinstance(depth, bool) or depth not in BAM_DEPTHS or depth == 0:
            raise ValueError(f"invalid value {depth!r} for choice 'bam_depth'; allowed values here: [1, 2, 3]")
        self.depth = depth
        self.scales = nn.Parameter(torch.ones(depth + 1, channels))
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, history: Sequence[torch.Tensor] = (),
                binarize: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> torch.Tensor:
        return self.norm(accumulate(x, history, self.scales, binarize))

    def frozen(self):
        """A detached inference callable ``pre(x, history) -> Xa`` (plain sign, BN with running
        stats), computing exactly what ``forward`` computes in eval mode."""
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
