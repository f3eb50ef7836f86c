"""Probes: for a latency key, the smallest runnable piece of network that does exactly its work.

``make_probe(key, threads) -> Probe`` returns a zero-argument callable that runs the unit once
on an input of the key's shape (batch 1, random values: the work of every unit is independent
of the values). Its ``prepare()`` (run untimed before each timed call, see
``timing.time_rotation``) rewrites the unit's input tensors in place with the same
values, so they sit in the core's caches as freshly written data (inside a network each unit
reads what the unit before it has just written), then runs its lead, if any (``Probe``). Each probe is made from the same code that
``space.builder.build`` uses (its factory tables ``HEADS`` / ``TAILS`` and ``FPBlock``,
``ops.BinaryConv2d``) and is fed what the unit sees inside a network run by the packed runtime
(``ops.native.compile``): activations in channels-last memory order (the runtime converts the
input once and every layer keeps that order), no autograd. So the sum of the units is the time of the compiled network:

* ``overhead``: the runtime's ``CompiledModel`` call around a module that does no work (returns
  a preallocated NCHW tensor): argument checks, ``no_grad``, the input's channels-last copy;
* ``bconv``: the ``NativeBinaryConv2d`` the runtime puts in place of an eval-mode
  ``BinaryConv2d`` with work-equivalent choices (``keys.conv_choices``), called with
  the BAM history it would see in the body (``space.layout``: one chain across blocks);
* ``output``: the de-normalisation ``o / k + mean`` (``o / k`` for a key with ``mean: false``)
  and the runtime's final NCHW copy of the SR image;
* ``image_skip``: the builder's ``ImageSkip`` (``o + up(x)``, or for ``at = pre_shuffle`` the
  pre-shuffle ``3 s^2 x H x W`` tensor plus the channel-repeated image) on channels-last inputs;
* the other FP units (``head`` with its ``head_act``, ``add``, ``fp_block``, ``fp_stage`` at
  any ``r`` (also the one-stage ``r = s``), ``shuffle``, ``fp_conv`` (also the FP ``conv_hr``
  C -> C), ``leaky_relu``, ``espcn``): the builder's modules (``HEADS`` / ``HEAD_ACTS``,
  ``FPBlock``, ``TAIL_UNITS`` of a ``space.layout`` unit) in eval mode under
  ``torch.no_grad()``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import torch
from torch import nn
import numpy as np

from evaluators.latency.keys import conv_choices


class Probe:
    """A unit of work: ``probe()`` runs it once; ``prepare()`` first rewrites its ``inputs`` in
    place (``numpy.multiply(a, 1.0, out=a)`` on views of their memory: same values, every cache
    line read and written, in this thread only) so that the call that follows finds them hot,
    as a unit inside a network finds the output of the unit before it, then runs its ``lead``
    (when set: a callable standing for the layer before it in a network), so the timed call
    follows that layer's work directly, as inside a network. The rewrite is not a torch op on
    purpose: a parallel torch op just before the timed call leaves torch's OpenMP workers
    spinning on the other cores, which no unit of a network finds there (it follows the
    kernel's own pool). Measured on the 2-vCPU Intel Xeon VM (BENCHMARKS.md
    ``latency_accuracy``, the diagnosis): the FP unit figures moved by about 5 % either way
    (median torch-op / numpy figure 1.05 at 1 thread, 0.94 at 2) and the raw sum of whole
    networks by about 1 point: a small effect there, kept for the state it reproduces."""

    __slots__ = ("fn", "inputs", "lead", "arrays")

    def __init__(self, fn: Callable[[], Any], inputs: Sequence[torch.Tensor] = (),
                 lead: Optional[Callable[[], Any]] = None):
        self.fn = fn
        self.inputs = tuple(inputs)
        self.lead = lead
        # numpy views of the same memory: the rewrite runs in this thread only, so it does not
        # wake torch's OpenMP workers (a unit inside a network follows the previous unit's
        # work, not a parallel torch op of the measurement's own)
        self.arrays = tuple(t.detach().numpy() for t in self.inputs)

    def __call__(self) -> Any:
        return self.fn()

    def prepare(self) -> None:
        for a in self.arrays:
            np.multiply(a, 1.0, out=a)
        if self.lead is not None:
            self.lead()


def _input(c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A random (1, c, h, w) activation in channels-last order, as the runtime passes them."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)


def _no_grad(module: nn.Module, *args: torch.Tensor, extra_inputs: Sequence[torch.Tensor] = ()) -> Probe:
    module = module.eval()

    def run() -> Any:
        with torch.no_grad():
            return module(*args)

    return Probe(run, args + tuple(extra_inputs))


class _ConvWithHistory(nn.Module):
    """Runs ``conv(x, history)`` with a fixed history (the BAM inputs of earlier convs)."""

    def __init__(self, conv: nn.Module, history: int, shape):
        super().__init__()
        self.conv = conv
        self.history = tuple(_input(*shape, seed=1 + i) for i in range(history))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.history)


def _native():
    import ops.native  # imported lazily: FP-only use of the table never loads the extension

    return ops.native


def _bconv(key: Mapping[str, Any], threads: int) -> Probe:
    from ops import BinaryConv2d

    choices, history = conv_choices(key)
    conv = BinaryConv2d(key["in"], key["out"], key["k"], **choices).eval()
    model = _ConvWithHistory(conv, history, (key["in"], key["h"], key["w"])).eval()
    compiled = _native().compile(model, threads=threads)
    # the converted module itself: the CompiledModel wrapper around it is paid once per
    # network (the ``overhead`` unit), not once per conv
    native = getattr(compiled, "module", compiled)
    # the BAM history too was written by the body's earlier convs shortly before
    return _no_grad(native, _input(key["in"], key["h"], key["w"]), extra_inputs=native.history)


class _NoWork(nn.Module):
    """Returns a preallocated NCHW-contiguous tensor: the runtime's final copy is a no-op."""

    def __init__(self):
        super().__init__()
        self.out = torch.zeros(1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out


def _overhead(key: Mapping[str, Any], threads: int) -> Probe:
    compiled = _native().compile(_NoWork().eval(), threads=threads)
    x = torch.rand(1, 3, key["h"], key["w"], generator=torch.Generator().manual_seed(0))
    return Probe(lambda: compiled(x), (x,))


def _spec(scale: int, channels: int, tail: str):
    from space.spec import uniform

    return uniform(scale, channels, 1, tail=tail)


class _Head(nn.Module):
    def __init__(self, head: str, channels: int, subtract_mean: bool = True, act: str = "none"):
        super().__init__()
        from space.builder import HEAD_ACTS, HEADS, RGB_MEAN

        self.head = HEADS[head](channels)
        self.act = HEAD_ACTS[act]()  # None for "none": the probe of before
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1))
        self.k = 1.0
        self.subtract_mean = subtract_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.subtract_mean:
            y = self.head((x - self.mean) * self.k)
        else:
            y = self.head(x * self.k)
        return y if self.act is None else self.act(y)


class _Output(nn.Module):
    def __init__(self, add_mean: bool = True):
        super().__init__()
        from space.builder import RGB_MEAN

        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1))
        self.k = 1.0
        self.add_mean = add_mean

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        if self.add_mean:
            return (o / self.k + self.mean).contiguous()  # the runtime returns NCHW-contiguous
        return (o / self.k).contiguous()


def _image_skip(key: Mapping[str, Any]) -> Probe:
    from space.builder import ImageSkip

    s, h, w = key["s"], key["h"], key["w"]
    pre = key["at"] == "pre_shuffle"
    skip = ImageSkip(key["mode"], s, pre_shuffle=pre)
    o = _input(3 * s * s, h, w) if pre else _input(3, s * h, s * w)
    return _no_grad(skip, o, _input(3, h, w, seed=1))


class _Add(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def _tail_unit(unit: Any) -> nn.Module:
    """The builder's modules of one tail unit of ``space.layout`` (``builder.TAIL_UNITS``)."""
    from space.builder import TAIL_UNITS

    return nn.Sequential(*TAIL_UNITS[unit.kind](unit))


def _fp(key: Mapping[str, Any], threads: int) -> Probe:
    from space import layout as L
    from space.builder import TAILS, FPBlock

    kind, h, w = key["kind"], key["h"], key["w"]
    if kind == "head":
        return _no_grad(_Head(key["head"], key["out"], key.get("mean", True),
                              key.get("act", "none")), _input(3, h, w))
    if kind == "output":
        return _no_grad(_Output(key.get("mean", True)), _input(3, h, w))
    if kind == "image_skip":
        return _image_skip(key)
    if kind == "add":
        return _no_grad(_Add(), _input(key["c"], h, w), _input(key["c"], h, w, seed=1))
    if kind == "fp_block":
        return _no_grad(FPBlock(key["c"], key["residual"]), _input(key["c"], h, w))
    if kind == "fp_stage":  # one stage (conv C -> r^2 C, PixelShuffle, LeakyReLU), any r
        unit = L.FPStageUnit(0, key["r"], key["c"], h, w)
        return _no_grad(_tail_unit(unit), _input(key["c"], h, w))
    if kind == "leaky_relu":
        unit = L.LeakyReLUUnit("conv_hr", key["c"], L.LEAKY_SLOPE, h, w)
        return _no_grad(_tail_unit(unit), _input(key["c"], h, w))
    if kind == "shuffle":
        r = key["r"]
        return _no_grad(nn.PixelShuffle(r), _input(r * r * key["c"], h, w))
    if kind == "fp_conv":
        k = key["k"]
        return _no_grad(nn.Conv2d(key["in"], key["out"], k, padding=k // 2), _input(key["in"], h, w))
    if kind == "espcn":
        tail = TAILS["fp_one_stage"](_spec(key["s"], key["c"], "fp_one_stage"))
        return _no_grad(tail, _input(key["c"], h, w))
    raise ValueError(f"unknown latency key kind {kind!r}; allowed: {sorted(PROBES)}")


PROBES: Dict[str, Callable[[Mapping[str, Any], int], Probe]] = {
    "bconv": _bconv, "overhead": _overhead,
    **{k: _fp for k in ("head", "output", "add", "fp_block", "fp_stage", "shuffle", "fp_conv",
                        "leaky_relu", "espcn", "image_skip")},
}


def make_probe(key: Mapping[str, Any], threads: int) -> Probe:
    """A zero-argument callable running the unit of ``key`` once (see the module docstring)."""
    kind = key.get("kind")
    if kind not in PROBES:
        raise ValueError(f"unknown latency key kind {kind!r} in {dict(key)}; allowed: {sorted(PROBES)}")
    return PROBES[kind](key, threads)
