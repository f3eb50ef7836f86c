"""``LayerSpec`` and ``ArchSpec``: a whole binary SR network as a frozen, serialisable value.

An ``ArchSpec`` is the only description of an architecture that crosses package boundaries
(see ``docs/design.md``). It is built from plain values only (int, float, bool, str, tuples of
``LayerSpec``), round-trips exactly through JSON and YAML, and has a stable ``id``::

    id = sha1(canonical_json).hexdigest()[:12]
    canonical_json = json.dumps(to_dict(), sort_keys=True, separators=(",", ":"))

The network it describes (built by ``space.builder``; counted by ``evaluators.cost``)::

    m  = MEAN if input_mean == "div2k" else 0       # MEAN = DIV2K RGB mean (builder.RGB_MEAN)
    k  = residual_alignment                         # the input scale k
    x  = (rgb - m) * k                              # input normalisation
    h  = head(x)                                    # one FP conv 3 -> C, k = 3 (conv3) or 5 (conv5)
    h  = LeakyReLU_0.1(h)      if head_act == "leaky_relu"
    y  = body(h)                                    # `blocks` blocks, 2 convs each:
                                                    #   z = conv2(conv1(z)) (+ z if block_residual)
    y  = y + h                 if global_skip       # long skip (SRResNet / E2FIF)
    o  = tail(y)                                    # upsampler -> 3 x (s H) x (s W) (stages,
                                                    #   [conv_hr + LeakyReLU], conv C -> 3)
    o  = o + up(x)             if image_skip != none  # image-level skip, on the normalised x
    sr = o / k + m

so with a tail that outputs 0, ``sr = up(x) / k + m = up(rgb)`` (``up`` is linear and keeps
constants): the network learns the residual over ``up(rgb)``.

Input normalisation (``input_mean``, ``residual_alignment``):

* ``input_mean = "div2k"`` (default) subtracts the DIV2K mean (EDSR / BasicSR); ``"none"`` feeds
  the raw image, as BBCU's code does (Zj-BinXia/BBCU ``bbcul_arch.py`` scales the raw image).
* ``residual_alignment`` is the input scale k: the normalised image is multiplied by k before the
  head and the output divided by k after the tail, so the FP residual paths carry much larger
  values than a binary conv's output. 1.0 is today's default; E2FIF's code (pppLang/E2FIF,
  ``rgb_range = 255`` with ``MeanShift``) is ``input_mean = "div2k"``, k = 255; BBCU-L is
  ``input_mean = "none"``, k = 130 (BBCU's "residual alignment", Xia et al., ICLR 2023).

``image_skip`` (``up`` above, s = scale; every mode is torch ``F.interpolate`` semantics):

* ``none``      no image-level skip (default).
* ``nearest``   nearest-neighbour upsampling (each LR pixel copied to its s x s block). Tail
  ``fp_one_stage``: added to the pre-shuffle tensor, the conv output C -> 3 s^2, as the input
  repeated s^2 times along channels in PixelShuffle's channel order
  (``x.repeat_interleave(s * s, dim=1)``: pre-shuffle channel c s^2 + i s + j holds image
  channel c, for every sub-pixel offset (i, j)), which after PixelShuffle(s) is exactly
  nearest upsampling (the mobile-SR "anchor": no MACs). Tails ``fp_two_stage`` and
  ``binary_repeat`` end with an FP conv C -> 3 after the shuffles, so there
  ``F.interpolate(x, scale_factor=s, mode="nearest")`` is added to that conv's output. Both give
  the same values (PixelShuffle only moves elements).
* ``bilinear``  ``F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)`` added
  to the tail output (BBCU-L: sr = net(x) + bilinear(x)).
* ``bicubic``   the same with ``mode="bicubic"`` (PyTorch's cubic kernel, a = -0.75; not MATLAB's
  antialiased imresize).

Head and tail options of the published designs (``docs/reference_designs.md``):

* ``head_act``: ``none`` (default) | ``leaky_relu``: ``h = LeakyReLU_0.1(conv(x))`` (BBCU,
  MSRResNet apply it after the FP head conv). The global skip adds this ``h``.
* ``tail_conv_hr``: ``none`` (default) | ``fp`` | ``binary``: one more conv C -> C at the SR
  size, before the final FP conv C -> 3 of the staged tails (``fp_two_stage``,
  ``binary_repeat``), followed by LeakyReLU(0.1) (BasicSR's / BBCU's ``conv_hr``):
  ``fp`` = FP 3x3 conv with bias (BBCU-L, MSRResNet); ``binary`` = a binary 3x3 conv C -> C
  configured by the *last* entry of ``tail_layers`` (BBCU-M; its ``skip = "fp"`` adds its
  input). ``fp_one_stage`` has no final conv C -> 3, so it allows only ``none``.
* ``tail_stages``: ``staged`` (default) | ``one``: the PixelShuffle factors of the staged
  tails, ``staged`` = (2,) x2, (3,) x3, (2, 2) x4; ``one`` = (s,) at every scale (E2FIF's
  repeat-tail ``UpSamper``: one conv C -> 16 C and PixelShuffle(4) at x4). At x2 and x3 both
  values build the same network (same modules, cost and latency keys) under two ids: the
  value is kept as given so that ``replace(scale=4)`` keeps the intent. ``fp_one_stage`` is one
  stage by definition and allows only ``staged`` (the default).
  A field rather than a new tail kind: the stage layout is independent of what a stage holds
  (binary or FP), so one field serves both staged tails without a kind per combination.

Fields added after the first release (``input_mean``, ``image_skip``, ``head_act``,
``tail_conv_hr``, ``tail_stages``) are left out of ``to_dict`` / the canonical JSON while they
hold their defaults, so every spec that existed before keeps its JSON and its id; a spec JSON
without them loads with the defaults.

``body = "binary"``: every body conv is a binary conv configured by one ``LayerSpec``
(``layers[2 b]`` and ``layers[2 b + 1]`` are the two convs of block ``b``).
``body = "fp"``: the full-precision reference (MSRResNet block conv3-ReLU-conv3, plus the block
input when ``block_residual``); ``layers`` is then empty. ``block_residual`` is the SRResNet
block-level skip; designs with an FP skip over every conv (E2FIF, BBCU) turn it off.

``tail`` (upsampler) kinds and their binary convs (``tail_layers``):

* ``fp_two_stage``  SRResNet: per stage FP conv C -> r^2 C + PixelShuffle(r) + LeakyReLU(0.1),
  stages r = (2,) for x2, (3,) for x3, (2, 2) for x4; then an FP conv C -> 3. No binary conv.
* ``fp_one_stage``  ESPCN: FP conv C -> 3 s^2 + PixelShuffle(s). No binary conv.
* ``binary_repeat`` E2FIF/BBCU: per stage (same r as above) a binary conv C -> r^2 C configured by
  ``tail_layers[j]`` (its ``skip = "fp"`` adds the input repeated r^2 times along channels) +
  PixelShuffle(r); then an FP conv C -> 3.

``tail_layers`` holds, in order, one LayerSpec per binary upsampler stage (``binary_repeat``)
and then one for a binary ``conv_hr`` (``tail_conv_count``). The units each field builds are
listed by ``space.layout.layout(spec)``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Tuple

import yaml

from ops.choices import CHOICES, validate_choice

SCALES = (2, 3, 4)
HEADS = ("conv3", "conv5")
TAILS = ("fp_two_stage", "fp_one_stage", "binary_repeat")
BODIES = ("binary", "fp")
INPUT_MEANS = ("div2k", "none")
IMAGE_SKIPS = ("none", "nearest", "bilinear", "bicubic")
HEAD_ACTS = ("none", "leaky_relu")
TAIL_CONV_HRS = ("none", "fp", "binary")
TAIL_STAGES = ("staged", "one")
#: tails that end with an FP conv C -> 3 after their stages (the ones tail_conv_hr and
#: tail_stages apply to)
STAGED_TAILS = ("fp_two_stage", "binary_repeat")
#: fields left out of ``to_dict`` (and so of the id) while they hold their default value
OMIT_AT_DEFAULT = {"input_mean": "div2k", "image_skip": "none", "head_act": "none",
                   "tail_conv_hr": "none", "tail_stages": "staged"}
CONVS_PER_BLOCK = 2


def upsample_stages(scale: int, tail_stages: str = "staged") -> Tuple[int, ...]:
    """PixelShuffle factors of a staged upsampler: ``staged``: x2 -> (2,), x3 -> (3,),
    x4 -> (2, 2); ``one``: (scale,)."""
    if scale not in SCALES:
        raise ValueError(f"invalid scale {scale!r}; allowed values: {list(SCALES)}")
    if tail_stages not in TAIL_STAGES:
        raise ValueError(f"invalid tail_stages {tail_stages!r}; allowed: {list(TAIL_STAGES)}")
    return (2, 2) if scale == 4 and tail_stages == "staged" else (scale,)


def tail_conv_count(tail: str, scale: int, tail_stages: str = "staged",
                    tail_conv_hr: str = "none") -> int:
    """Number of binary convs of a tail (the length of ``tail_layers``): one per stage for
    ``binary_repeat`` (0 for FP tails), plus one for ``tail_conv_hr = "binary"``."""
    stages = len(upsample_stages(scale, tail_stages)) if tail == "binary_repeat" else 0
    return stages + (1 if tail_conv_hr == "binary" else 0)


def _d(name: str) -> Any:
    return CHOICES[name][0]


@dataclass(frozen=True)
class LayerSpec:
    """The choices of one binary conv: exactly the entries of ``ops.choices.CHOICES``
    (same names, same neutral defaults, validated by ``ops.choices.validate_choice``)."""

    threshold: str = _d("threshold")
    threshold_kernel: int = _d("threshold_kernel")
    parts: int = _d("parts")
    act_estimator: str = _d("act_estimator")
    weight_scale: str = _d("weight_scale")
    weight_estimator: str = _d("weight_estimator")
    rescale: str = _d("rescale")
    bam_depth: int = _d("bam_depth")
    skip: str = _d("skip")
    norm: str = _d("norm")
    nonlinearity: str = _d("nonlinearity")
    nonlinearity_at: str = _d("nonlinearity_at")
    bias: bool = _d("bias")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            validate_choice(f.name, getattr(self, f.name))

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "layer") -> "LayerSpec":
        """Build from a mapping; missing keys take the neutral default. Errors name ``where``."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a mapping of choices, got {data!r}")
        unknown = sorted(set(data) - set(CHOICES))
        if unknown:
            raise ValueError(
                f"{where}.{unknown[0]}: unknown choice (value {data[unknown[0]]!r}); "
                f"allowed choices: {sorted(CHOICES)}"
            )
        for name, value in data.items():
            try:
                validate_choice(name, value)
            except ValueError as exc:
                raise ValueError(f"{where}.{name}: {exc}") from None
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "LayerSpec":
        return dataclasses.replace(self, **changes)


# The dataclass must mirror the choice table exactly (names and defaults).
assert [f.name for f in dataclasses.fields(LayerSpec)] == list(CHOICES), "LayerSpec != CHOICES"
assert all(f.default == CHOICES[f.name][0] for f in dataclasses.fields(LayerSpec))


def _check(field_name: str, value: Any, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"invalid {field_name} {value!r}; allowed: {allowed}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class ArchSpec:
    """A whole network (see the module docstring for what every field builds)."""

    scale: int
    channels: int
    blocks: int
    head: str = "conv3"
    tail: str = "fp_two_stage"
    global_skip: bool = True
    block_residual: bool = True
    body: str = "binary"
    residual_alignment: float = 1.0
    input_mean: str = "div2k"
    image_skip: str = "none"
    head_act: str = "none"
    tail_conv_hr: str = "none"
    tail_stages: str = "staged"
    layers: Tuple[LayerSpec, ...] = field(default=())
    tail_layers: Tuple[LayerSpec, ...] = field(default=())

    def __post_init__(self) -> None:
        _check("scale", self.scale, _is_int(self.scale) and self.scale in SCALES, f"{list(SCALES)}")
        _check("channels", self.channels, _is_int(self.channels) and self.channels >= 1,
               "a positive int")
        _check("blocks", self.blocks, _is_int(self.blocks) and self.blocks >= 1, "a positive int")
        _check("head", self.head, self.head in HEADS, f"{list(HEADS)}")
        _check("tail", self.tail, self.tail in TAILS, f"{list(TAILS)}")
        _check("global_skip", self.global_skip, isinstance(self.global_skip, bool), "true or false")
        _check("block_residual", self.block_residual, isinstance(self.block_residual, bool),
               "true or false")
        _check("body", self.body, self.body in BODIES, f"{list(BODIES)}")
        ra = self.residual_alignment
        _check("residual_alignment", ra,
               isinstance(ra, (int, float)) and not isinstance(ra, bool) and ra > 0
               and ra != float("inf"),
               "a finite number > 0 (the input scale k: 1.0 = off, E2FIF uses 255, BBCU 130)")
        # normalise int -> float so 130 and 130.0 give the same spec and id
        object.__setattr__(self, "residual_alignment", float(ra))
        _check("input_mean", self.input_mean, self.input_mean in INPUT_MEANS,
               f"{list(INPUT_MEANS)}")
        _check("image_skip", self.image_skip, self.image_skip in IMAGE_SKIPS,
               f"{list(IMAGE_SKIPS)}")
        _check("head_act", self.head_act, self.head_act in HEAD_ACTS, f"{list(HEAD_ACTS)}")
        _check("tail_conv_hr", self.tail_conv_hr, self.tail_conv_hr in TAIL_CONV_HRS,
               f"{list(TAIL_CONV_HRS)}")
        _check("tail_stages", self.tail_stages, self.tail_stages in TAIL_STAGES,
               f"{list(TAIL_STAGES)}")
        if self.tail not in STAGED_TAILS:
            _check("tail_conv_hr", self.tail_conv_hr, self.tail_conv_hr == "none",
                   f"['none'] with tail {self.tail!r} (it has no final conv C -> 3); "
                   f"{list(TAIL_CONV_HRS)} with tail {list(STAGED_TAILS)}")
            _check("tail_stages", self.tail_stages, self.tail_stages == "staged",
                   f"['staged'] with tail {self.tail!r} (always one stage); "
                   f"{list(TAIL_STAGES)} with tail {list(STAGED_TAILS)}")
        for name in ("layers", "tail_layers"):
            seq = getattr(self, name)
            if isinstance(seq, list):
                seq = tuple(seq)
                object.__setattr__(self, name, seq)
            _check(name, seq, isinstance(seq, tuple), "a tuple of LayerSpec")
            for i, layer in enumerate(seq):
                if not isinstance(layer, LayerSpec):
                    raise ValueError(f"invalid {name}[{i}] {layer!r}; allowed: a LayerSpec")
        want = self.blocks * CONVS_PER_BLOCK if self.body == "binary" else 0
        if len(self.layers) != want:
            raise ValueError(
                f"invalid layers: {len(self.layers)} LayerSpecs given; body={self.body!r} with "
                f"blocks={self.blocks} needs exactly {want} (2 binary convs per block, 0 for fp)"
            )
        want_tail = tail_conv_count(self.tail, self.scale, self.tail_stages, self.tail_conv_hr)
        if len(self.tail_layers) != want_tail:
            extra = (f", tail_stages={self.tail_stages!r}" if self.tail_stages != "staged" else "")
            extra += (f", tail_conv_hr={self.tail_conv_hr!r}" if self.tail_conv_hr != "none" else "")
            raise ValueError(
                f"invalid tail_layers: {len(self.tail_layers)} LayerSpecs given; tail={self.tail!r} "
                f"at scale {self.scale}{extra} needs exactly {want_tail} (one per binary "
                f"upsampler stage, then one for tail_conv_hr='binary')"
            )

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """Every field, except those of ``OMIT_AT_DEFAULT`` at their default (stable ids)."""
        out: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in OMIT_AT_DEFAULT and value == OMIT_AT_DEFAULT[f.name]:
                continue
            if f.name in ("layers", "tail_layers"):
                value = [layer.to_dict() for layer in value]
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ArchSpec":
        if not isinstance(data, Mapping):
            raise ValueError(f"spec: expected a mapping, got {type(data).__name__} {data!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"spec.{unknown[0]}: unknown field; allowed fields: {names}")
        missing = [n for n in ("scale", "channels", "blocks") if n not in data]
        if missing:
            raise ValueError(f"spec.{missing[0]}: required field missing")
        kwargs = dict(data)
        for name in ("layers", "tail_layers"):
            seq = kwargs.get(name, [])
            if not isinstance(seq, (list, tuple)):
                raise ValueError(f"spec.{name}: expected a list of layer mappings, got {seq!r}")
            kwargs[name] = tuple(
                item if isinstance(item, LayerSpec)
                else LayerSpec.from_dict(item, where=f"spec.{name}[{i}]")
                for i, item in enumerate(seq)
            )
        return cls(**kwargs)

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"spec JSON: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> "ArchSpec":
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"spec YAML: not valid YAML ({exc})") from None
        return cls.from_dict(data)

    @property
    def id(self) -> str:
        """First 12 hex digits of sha1 of the canonical JSON (sorted keys, no whitespace)."""
        return hashlib.sha1(self.canonical_json().encode("utf-8")).hexdigest()[:12]

    # -- helpers -------------------------------------------------------------------------
    def replace(self, **changes: Any) -> "ArchSpec":
        return dataclasses.replace(self, **changes)

    def block_layers(self, block: int) -> Tuple[LayerSpec, ...]:
        """The LayerSpecs of residual block ``block`` (empty for an fp body)."""
        c = CONVS_PER_BLOCK
        return self.layers[block * c:(block + 1) * c]


def uniform(scale: int, channels: int, blocks: int, layer: LayerSpec = LayerSpec(),
            tail_layer: LayerSpec = LayerSpec(), **arch: Any) -> ArchSpec:
    """An ArchSpec whose body convs all use ``layer`` (and binary tail convs ``tail_layer``)."""
    body = arch.get("body", "binary")
    tail = arch.get("tail", "fp_two_stage")
    n = blocks * CONVS_PER_BLOCK if body == "binary" else 0
    n_tail = tail_conv_count(tail, scale, arch.get("tail_stages", "staged"),
                             arch.get("tail_conv_hr", "none"))
    return ArchSpec(scale=scale, channels=channels, blocks=blocks,
                    layers=(layer,) * n, tail_layers=(tail_layer,) * n_tail, **arch)
