"""``SearchSpace``: the YAML list of allowed values, turned into define-by-run Optuna calls.

YAML format (every key but ``scale`` optional; see ``configs/space/default.yaml``)::

    scale: 2                        # fixed per space: 2 | 3 | 4
    arch:                           # architecture-level dimensions (lists of allowed values)
      channels: [32, 64]            # default [64]
      blocks: [4, 8, 16]            # default [16]
      head: [conv3, conv5]          # default [conv3]
      tail: [fp_two_stage, fp_one_stage, binary_repeat]   # default [fp_two_stage]
      global_skip: [true, false]    # default [true]
      block_residual: [true, false] # default [true]; the SRResNet block-level skip
      body: [binary]                # default [binary]; "fp" adds the full-precision reference
      residual_alignment: [1.0]     # default [1.0]; the input scale k, e.g. [1.0, 130.0]
      input_mean: [div2k]           # default [div2k]; "none" feeds the raw image (BBCU)
      image_skip: [none]            # default [none]; image-level skip: none | nearest |
                                    #   bilinear | bicubic (see space/spec.py)
      head_act: [none, leaky_relu]  # default [none]; LeakyReLU(0.1) after the FP head conv
      tail_conv_hr: [none, fp, binary]  # default [none]; conv C -> C at the SR size (staged
                                    #   tails only; binary: one more tail LayerSpec)
      tail_stages: [staged, one]    # default [staged]; (2, 2) or one x4 stage (staged tails)
    layer:                          # the choices of each body binary conv
      granularity: block            # default granularity of this section (default: layer)
      threshold: [zero, channel, local_mean]          # list -> section granularity
      parts: {values: [1, 2], granularity: layer}     # or values + own granularity
      skip: fp                      # a scalar: fixed value
    tail_layer:                     # the choices of each binary upsampler conv (tail binary_repeat)
      granularity: shared           # layer | shared
      skip: fp

A per-layer choice not listed is fixed at its neutral default (``ops.choices``). Granularity:
``layer`` = one value per conv (label ``body.<conv>.<choice>``, conv = 2*block + i), ``block`` = one
value per residual block shared by its 2 convs (``block.<b>.<choice>``), ``shared`` = one value
for the whole body (``shared.<choice>``). Tail convs: ``tail.<j>.<choice>`` or
``tail.shared.<choice>``. Architecture labels: ``arch.channels``, ``arch.blocks``, ``arch.head``,
``arch.global_skip``, ``arch.block_residual``, ``arch.body``, ``arch.residual_alignment``,
``arch.input_mean``, ``arch.image_skip``, ``arch.head_act``, ``tail.kind``, ``tail.conv_hr``,
``tail.stages``; a binary ``conv_hr``'s choices are ``tail.conv_hr.<choice>`` (granularity
layer; its own label whatever the number of stages) or ``tail.shared.<choice>``. (Newer fields
are suggested after the older architecture labels, so spaces that keep them single-valued
sample exactly as before.)

Conditional dimensions: ``tail_conv_hr`` and ``tail_stages`` exist only for the staged tails
(``spec.STAGED_TAILS``: ``fp_two_stage``, ``binary_repeat``). They are suggested after
``tail.kind``, and only when the sampled tail is staged; with ``fp_one_stage`` they take the
only values that tail allows (``none``, ``staged``), whatever the lists say, and are left out
of ``params_of``. So no invalid combination is ever sampled (define-by-run), and every valid one
is reachable. At x2 and x3 ``tail_stages = one`` builds the same network as ``staged`` under
another id (``space.spec``); the space counts both, since they are distinct specs (a preset may
carry either).

A dimension with a single allowed value is a constant: ``sample`` makes no suggest call for it and
``params_of`` leaves it out, so a params dict holds exactly the choices that vary.

Size (number of distinct ArchSpecs), with V_c the allowed values of choice c and
u(g, b) = 2b | b | 1 for granularity layer | block | shared (tail: n_tail | 1)::

    size = |channels| |head| |global_skip| |block_residual| |residual_alignment|
           * |input_mean| |image_skip| |head_act|
           * sum_{b in blocks} [ sum_{body} B(body, b) ] * [ sum_{tail} T(tail) ]
    B(binary, b) = prod_c |V_c|^u(g_c, b),   B(fp, b) = 1
    T(t) = sum_{hr in tail_conv_hr} sum_{st in tail_stages} U(n(t, st, hr))   t staged
    T(t) = U(n(t))                                                            t = fp_one_stage
    U(n) = prod_c |V_c|^(n | 1 for tail granularity layer | shared),  U(0) = 1
    n(t, st, hr) = spec.tail_conv_count(t, scale, st, hr)   (stage convs + a binary conv_hr)
"""
from __future__ import annotations

import math
import random as _random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import yaml

from ops.choices import CHOICES, validate_choice
from space.spec import (BODIES, CONVS_PER_BLOCK, HEAD_ACTS, HEADS, IMAGE_SKIPS, INPUT_MEANS,
                        OMIT_AT_DEFAULT, SCALES, STAGED_TAILS, TAIL_CONV_HRS, TAIL_STAGES, TAILS,
                        ArchSpec, LayerSpec, tail_conv_count, upsample_stages)

GRANULARITIES = ("layer", "block", "shared")
TAIL_GRANULARITIES = ("layer", "shared")
ARCH_DEFAULTS: Dict[str, Tuple[Any, ...]] = {
    "channels": (64,), "blocks": (16,), "head": ("conv3",), "tail": ("fp_two_stage",),
    "global_skip": (True,), "block_residual": (True,), "body": ("binary",),
    "residual_alignment": (1.0,), "input_mean": ("div2k",), "image_skip": ("none",),
    "head_act": ("none",), "tail_conv_hr": ("none",), "tail_stages": ("staged",),
}
ARCH_LABELS = {name: f"arch.{name}" for name in ARCH_DEFAULTS}
ARCH_LABELS.update(tail="tail.kind", tail_conv_hr="tail.conv_hr", tail_stages="tail.stages")
#: dimensions that exist only for the staged tails (fixed to their default otherwise)
TAIL_CONDITIONAL = ("tail_conv_hr", "tail_stages")
#: label of a binary conv_hr's choices with tail granularity layer
CONV_HR_LABEL = "tail.conv_hr"


def _pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


_ARCH_CHECKS = {
    "channels": (_pos_int, "positive ints"),
    "blocks": (_pos_int, "positive ints"),
    "head": (lambda v: v in HEADS, f"values of {list(HEADS)}"),
    "tail": (lambda v: v in TAILS, f"values of {list(TAILS)}"),
    "global_skip": (lambda v: isinstance(v, bool), "true / false"),
    "block_residual": (lambda v: isinstance(v, bool), "true / false"),
    "body": (lambda v: v in BODIES, f"values of {list(BODIES)}"),
    "residual_alignment": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                           and 0 < v < float("inf"), "finite numbers > 0"),
    "input_mean": (lambda v: v in INPUT_MEANS, f"values of {list(INPUT_MEANS)}"),
    "image_skip": (lambda v: v in IMAGE_SKIPS, f"values of {list(IMAGE_SKIPS)}"),
    "head_act": (lambda v: v in HEAD_ACTS, f"values of {list(HEAD_ACTS)}"),
    "tail_conv_hr": (lambda v: v in TAIL_CONV_HRS, f"values of {list(TAIL_CONV_HRS)}"),
    "tail_stages": (lambda v: v in TAIL_STAGES, f"values of {list(TAIL_STAGES)}"),
}


def _conditional_value(name: str, tail: str, values: Tuple[Any, ...]) -> "Tuple[Any, ...]":
    """The values a conditional dimension takes under ``tail``: its list for a staged tail,
    else the one value the tail allows (the field's default)."""
    return values if tail in STAGED_TAILS else (OMIT_AT_DEFAULT[name],)


@dataclass(frozen=True)
class Dimension:
    """One per-layer choice: its allowed values and granularity."""

    values: Tuple[Any, ...]
    granularity: str


def _as_values(where: str, raw: Any) -> Tuple[Any, ...]:
    values = tuple(raw) if isinstance(raw, (list, tuple)) else (raw,)
    if not values:
        raise ValueError(f"{where}: empty list; give at least one allowed value")
    for i, v in enumerate(values):
        if any(w == v and type(w) is type(v) for w in values[:i]):
            raise ValueError(f"{where}: value {v!r} listed twice; list each value once")
    return values


def _parse_section(where: str, raw: Any, allowed_g: Sequence[str]) -> Dict[str, Dimension]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping of choice -> values, got {raw!r}")
    default_g = raw.get("granularity", "layer")
    if default_g not in allowed_g:
        raise ValueError(f"{where}.granularity: invalid value {default_g!r}; "
                         f"allowed: {list(allowed_g)}")
    dims: Dict[str, Dimension] = {}
    for name in CHOICES:
        entry = raw.get(name, None)
        gran = default_g
        if entry is None:
            values: Tuple[Any, ...] = (CHOICES[name][0],)
        else:
            if isinstance(entry, Mapping):
                extra = sorted(set(entry) - {"values", "granularity"})
                if extra:
                    raise ValueError(f"{where}.{name}.{extra[0]}: unknown key; "
                                     f"allowed keys: ['granularity', 'values']")
                if "values" not in entry:
                    raise ValueError(f"{where}.{name}.values: missing; give the allowed values")
                gran = entry.get("granularity", default_g)
                if gran not in allowed_g:
                    raise ValueError(f"{where}.{name}.granularity: invalid value {gran!r}; "
                                     f"allowed: {list(allowed_g)}")
                entry = entry["values"]
            values = _as_values(f"{where}.{name}", entry)
            for i, v in enumerate(values):
                try:
                    validate_choice(name, v)
                except ValueError as exc:
                    raise ValueError(f"{where}.{name}[{i}]: {exc}") from None
        dims[name] = Dimension(values, gran)
    unknown = sorted(set(raw) - set(CHOICES) - {"granularity"})
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown choice; allowed: "
                         f"{['granularity'] + sorted(CHOICES)}")
    return dims


class _RandomTrial:
    """The one method of ``optuna.Trial`` that ``sample`` uses, drawing uniformly from ``rng``."""

    def __init__(self, rng: _random.Random):
        self.rng = rng

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.rng.choice(list(choices))


class SearchSpace:
    """Allowed values of every dimension of an ``ArchSpec`` (see the module docstring)."""

    def __init__(self, scale: int, arch: Mapping[str, Tuple[Any, ...]],
                 layer: Mapping[str, Dimension], tail_layer: Mapping[str, Dimension]):
        self.scale = scale
        self.arch = dict(arch)
        self.layer = dict(layer)
        self.tail_layer = dict(tail_layer)

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, where: str = "space") -> "SearchSpace":
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a mapping with keys scale/arch/layer/tail_layer, "
                             f"got {data!r}")
        top = ("scale", "arch", "layer", "tail_layer")
        unknown = sorted(set(data) - set(top))
        if unknown:
            raise ValueError(f"{where}.{unknown[0]}: unknown key; allowed keys: {list(top)}")
        if "scale" not in data:
            raise ValueError(f"{where}.scale: missing; allowed values: {list(SCALES)}")
        scale = data["scale"]
        if not (isinstance(scale, int) and not isinstance(scale, bool) and scale in SCALES):
            raise ValueError(f"{where}.scale: invalid value {scale!r}; allowed: {list(SCALES)}")
        raw_arch = data.get("arch") or {}
        if not isinstance(raw_arch, Mapping):
            raise ValueError(f"{where}.arch: expected a mapping, got {raw_arch!r}")
        unknown = sorted(set(raw_arch) - set(ARCH_DEFAULTS))
        if unknown:
            raise ValueError(f"{where}.arch.{unknown[0]}: unknown key; "
                             f"allowed keys: {list(ARCH_DEFAULTS)}")
        arch: Dict[str, Tuple[Any, ...]] = {}
        for name, default in ARCH_DEFAULTS.items():
            values = _as_values(f"{where}.arch.{name}", raw_arch.get(name, default))
            ok, allowed = _ARCH_CHECKS[name]
            for i, v in enumerate(values):
                if not ok(v):
                    raise ValueError(f"{where}.arch.{name}[{i}]: invalid value {v!r}; "
                                     f"allowed: {allowed}")
            if name == "residual_alignment":
                values = tuple(float(v) for v in values)
            arch[name] = values
        layer = _parse_section(f"{where}.layer", data.get("layer"), GRANULARITIES)
        tail_layer = _parse_section(f"{where}.tail_layer", data.get("tail_layer"),
                                    TAIL_GRANULARITIES)
        return cls(scale, arch, layer, tail_layer)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SearchSpace":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"search space file {str(path)!r} not found")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
        return cls.from_dict(data, where=str(path))

    # -- labels --------------------------------------------------------------------------
    @staticmethod
    def _body_label(gran: str, conv: int, name: str) -> str:
        if gran == "layer":
            return f"body.{conv}.{name}"
        if gran == "block":
            return f"block.{conv // CONVS_PER_BLOCK}.{name}"
        return f"shared.{name}"

    @staticmethod
    def _tail_label(gran: str, j: int, name: str, n_stages: int = 1 << 30) -> str:
        """Label of tail conv ``j``: ``tail.<j>.<choice>`` for upsampler stage j,
        ``tail.conv_hr.<choice>`` for the binary conv_hr (``j >= n_stages``), or
        ``tail.shared.<choice>``."""
        if gran != "layer":
            return f"tail.shared.{name}"
        return f"tail.{j}.{name}" if j < n_stages else f"{CONV_HR_LABEL}.{name}"

    def _tail_labeler(self, tail: str, tail_stages: str):
        """The label function of the tail convs of ``tail`` (stage convs, then conv_hr)."""
        n_stages = len(upsample_stages(self.scale, tail_stages)) if tail == "binary_repeat" else 0
        return lambda gran, j, name: self._tail_label(gran, j, name, n_stages)

    # -- sampling ------------------------------------------------------------------------
    @staticmethod
    def _pick(trial: Any, label: str, values: Tuple[Any, ...], memo: Dict[str, Any]) -> Any:
        if len(values) == 1:
            return values[0]
        if label not in memo:
            memo[label] = trial.suggest_categorical(label, list(values))
        return memo[label]

    def _layers(self, trial: Any, dims: Mapping[str, Dimension], n: int, label_fn,
                memo: Dict[str, Any]) -> Tuple[LayerSpec, ...]:
        return tuple(
            LayerSpec(**{name: self._pick(trial, label_fn(d.granularity, i, name), d.values, memo)
                         for name, d in dims.items()})
            for i in range(n)
        )

    def sample(self, trial: Any) -> ArchSpec:
        """Build a spec by ``trial.suggest_categorical`` calls (an optuna Trial/FixedTrial).
        ``tail.conv_hr`` / ``tail.stages`` are suggested only under a staged tail."""
        memo: Dict[str, Any] = {}
        a: Dict[str, Any] = {}
        for name, values in self.arch.items():
            if name in TAIL_CONDITIONAL:
                values = _conditional_value(name, a["tail"], values)
            a[name] = self._pick(trial, ARCH_LABELS[name], values, memo)
        n_body = a["blocks"] * CONVS_PER_BLOCK if a["body"] == "binary" else 0
        layers = self._layers(trial, self.layer, n_body, self._body_label, memo)
        n_tail = tail_conv_count(a["tail"], self.scale, a["tail_stages"], a["tail_conv_hr"])
        tail_layers = self._layers(trial, self.tail_layer, n_tail,
                                   self._tail_labeler(a["tail"], a["tail_stages"]), memo)
        return ArchSpec(scale=self.scale, layers=layers, tail_layers=tail_layers, **a)

    def random(self, rng: _random.Random) -> ArchSpec:
        """A spec drawn uniformly per dimension (not uniformly over architectures)."""
        return self.sample(_RandomTrial(rng))

    # -- inverse -------------------------------------------------------------------------
    def params_of(self, spec: ArchSpec) -> Dict[str, Any]:
        """The params dict that ``sample`` turns into ``spec`` (``FixedTrial(params)``,
        ``study.enqueue_trial(params)``). Raises ValueError naming the first field of ``spec``
        that lies outside the space."""
        if spec.scale != self.scale:
            raise ValueError(f"spec.scale = {spec.scale!r} is not in the space; allowed: "
                             f"[{self.scale}]")
        params: Dict[str, Any] = {}
        for name, values in self.arch.items():
            v = getattr(spec, name)
            if name in TAIL_CONDITIONAL:
                values = _conditional_value(name, spec.tail, values)
            if not any(v == x and type(v) is type(x) for x in values):
                where = f" with tail {spec.tail!r}" if name in TAIL_CONDITIONAL else ""
                raise ValueError(f"spec.{name} = {v!r} is not in the space; allowed{where}: "
                                 f"{list(values)}")
            if len(values) > 1:
                params[ARCH_LABELS[name]] = v
        self._invert(spec.layers, self.layer, self._body_label, "layers", params)
        self._invert(spec.tail_layers, self.tail_layer,
                     self._tail_labeler(spec.tail, spec.tail_stages), "tail_layers", params)
        return params

    @staticmethod
    def _invert(layers: Sequence[LayerSpec], dims: Mapping[str, Dimension], label_fn,
                field: str, params: Dict[str, Any]) -> None:
        first: Dict[str, Tuple[int, Any]] = {}
        for i, layer in enumerate(layers):
            for name, d in dims.items():
                v = getattr(layer, name)
                if not any(v == x and type(v) is type(x) for x in d.values):
                    raise ValueError(f"spec.{field}[{i}].{name} = {v!r} is not in the space; "
                                     f"allowed: {list(d.values)}")
                label = label_fn(d.granularity, i, name)
                if label in first and first[label][1] != v:
                    j = first[label][0]
                    raise ValueError(
                        f"spec.{field}[{i}].{name} = {v!r} differs from {field}[{j}].{name} = "
                        f"{first[label][1]!r}, but the space chooses {name} per "
                        f"{d.granularity} (label {label!r})")
                first.setdefault(label, (i, v))
                if len(d.values) > 1:
                    params[label] = v

    def contains(self, spec: ArchSpec) -> bool:
        try:
            self.params_of(spec)
        except ValueError:
            return False
        return True

    # -- counting ------------------------------------------------------------------------
    @staticmethod
    def _count(dims: Mapping[str, Dimension], units: Mapping[str, int]) -> int:
        return math.prod(len(d.values) ** units[d.granularity] for d in dims.values())

    def size(self) -> int:
        """Exact number of distinct ArchSpecs in the space (formula in the module docstring)."""
        a = self.arch
        outer = (len(a["channels"]) * len(a["head"]) * len(a["global_skip"])
                 * len(a["block_residual"]) * len(a["residual_alignment"])
                 * len(a["input_mean"]) * len(a["image_skip"]) * len(a["head_act"]))
        body_sum = 0
        for b in a["blocks"]:
            for body in a["body"]:
                if body == "binary":
                    units = {"layer": CONVS_PER_BLOCK * b, "block": b, "shared": 1}
                    body_sum += self._count(self.layer, units)
                else:
                    body_sum += 1
        tail_sum = 0
        for t in a["tail"]:
            for hr in _conditional_value("tail_conv_hr", t, a["tail_conv_hr"]):
                for st in _conditional_value("tail_stages", t, a["tail_stages"]):
                    n = tail_conv_count(t, self.scale, st, hr)
                    tail_sum += self._count(self.tail_layer, {"layer": n, "shared": 1}) if n else 1
        return outer * body_sum * tail_sum

    def labels(self, spec: ArchSpec) -> List[str]:
        """The labels ``sample`` suggests for ``spec`` (the keys of ``params_of(spec)``)."""
        return list(self.params_of(spec))

    def __repr__(self) -> str:
        return f"SearchSpace(scale={self.scale}, size={self.size()})"
