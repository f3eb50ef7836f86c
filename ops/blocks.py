"""Blocks of binary convolutions: the residual body block and the binary upsampler.

``BinaryBlock(channels, layers, kernel_size=3, residual=True)`` runs
``BinaryConv2d(channels, channels, kernel_size, **layers[i])`` in order. ``forward(x,
history=None)``: each conv receives as ``history`` the FP inputs of the earlier binary convs,
oldest first (the block input is the input of conv 0), which is what BAM accumulates (convs with
``bam_depth = 0`` ignore it), and the block then pushes that conv's input into the history.

* ``history=None`` (default): a fresh ``ops.bam.BamHistory`` per call, so the history is
  local to the block (conv ``i`` sees convs ``0 .. i-1`` of this block).
* ``history=h`` (a ``BamHistory``): the block reads and extends ``h``; a builder that passes one
  ``h`` to consecutive blocks gets a BAM history that crosses block boundaries (conv ``i`` of
  block ``b`` also sees the last convs of block ``b - 1``). See ``ops.bam`` for the interface.

With ``residual`` the block returns ``convs(x) + x`` (the SRResNet block-level skip).

``BinaryUpsampler(channels, scale, **choices)``: per ``x s`` stage, a binary conv
``C -> s^2 C`` and ``PixelShuffle(s)``; ``x2`` and ``x3`` are one stage, ``x4`` two ``x2`` stages.
With ``skip='fp'`` each conv adds its input repeated ``s^2`` times along channels
(``x.repeat_interleave(s^2, 1)``), so after the pixel shuffle every sub-pixel starts from the
value of its LR pixel: the fp skip of the upsampler is nearest-neighbour upsampling (E2FIF, BBCU).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from ops.bam import BamHistory
from ops.conv import BinaryConv2d, _positive_int

UPSAMPLE_SCALES = {2: (2,), 3: (3,), 4: (2, 2)}


class BinaryBlock(nn.Module):
    """A sequence of same-width binary convs with BAM history and an optional residual."""

    def __init__(
        self,
        channels: int,
        layers: Sequence[Mapping[str, Any]],
        kernel_size: int = 3,
        residual: bool = True,
    ):
        super().__init__()
        _positive_int("channels", channels)
        if isinstance(layers, (str, bytes, Mapping)) or not isinstance(layers, Sequence) or len(layers) == 0:
            raise ValueError(f"invalid layers {layers!r}; allowed: a non-empty sequence of choice mappings")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Mapping):
                raise ValueError(f"invalid layers[{i}] {layer!r}; allowed: a mapping of choice name -> value")
        if not isinstance(residual, bool):
            raise ValueError(f"invalid residual {residual!r}; allowed values: [False, True]")
        self.channels = channels
        self.residual = residual
        self.convs = nn.ModuleList(BinaryConv2d(channels, channels, kernel_size, **dict(l)) for l in layers)

    def forward(self, x: torch.Tensor, history: Optional[BamHistory] = None) -> torch.Tensor:
        if history is None:
            history = BamHistory()
        elif not isinstance(history, BamHistory):
            raise ValueError(f"invalid history {type(history).__name__}; allowed: None or an ops.bam.BamHistory")
        out = x
        for conv in self.convs:
            inp = out
            out = conv(inp, history)
            history.push(inp)
        return out + x if self.residual else out


class BinaryUpsampler(nn.Module):
    """Binary sub-pixel upsampler: (conv C -> s^2 C, PixelShuffle(s)) per stage."""

    def __init__(self, channels: int, scale: int, kernel_size: int = 3, **choices: Any):
        super().__init__()
        _positive_int("channels", channels)
        if type(scale) is not int or scale not in UPSAMPLE_SCALES:
            raise ValueError(f"invalid scale {scale!r}; allowed values: {sorted(UPSAMPLE_SCALES)}")
        self.scale = scale
        stages = []
        for s in UPSAMPLE_SCALES[scale]:
            stages.append(BinaryConv2d(channels, s * s * channels, kernel_size, **choices))
            stages.append(nn.PixelShuffle(s))
        self.stages = nn.Sequential(*stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)
