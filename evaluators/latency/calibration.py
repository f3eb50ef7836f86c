"""Calibration: what the sum of separately timed units misses in a whole network.

Units are timed one at a time (``measure``); a network runs them back to back, and may lose
time the units do not show (at 2 threads: the hand-off of every layer between the calling
thread, the kernel's pool and torch's OpenMP workers). The model scales the raw sum by one
factor fitted per table (so per CPU, thread count, input size, kernel build)::

    predict = factor * sum_units                                              (ms)

``factor`` is the median over whole reference networks of measured / sum of their units
(``reference_specs``: ``N_REFERENCE`` random specs of ``REFERENCE_SPACE``, a fixed seed; or the
specs a caller gives, e.g. ``bsrnas lut build`` draws them from its space), timed whole in
rounds spread over the measurement of the units (``measure.Measurer.calibrate``), each timing
judged and retried like a chunk of units, so the networks and the units they are related to
see the same machine. One
factor and a median, not a least-squares fit of one factor per family of units: on 8 networks
whose timings a shared machine disturbs, two collinear factors came out at +28 % / -23 % where
the validation networks needed +2 % / 0 % (a pilot run of 20 specs, 1 thread, on the busy
2-vCPU Intel Xeon VM; the per-family fit is kept as a diagnosis in
``benchmarks.latency_accuracy``). The factor is kept within ``BOUNDS``. The fit's residuals on the reference
networks are stored with it (``fit_error``); the validation on other networks is
``benchmarks.latency_accuracy``.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from evaluators.latency.keys import key_dict
from evaluators.latency.timing import TimingStats

#: a calibrated prediction stays within these factors of the raw sum
BOUNDS = (0.5, 2.0)
N_REFERENCE = 12
REFERENCE_SEED = 1016
#: the space the reference networks are drawn from: every architecture of a x2 binary SR
#: network (widths, depths, heads, tails) and the per-conv choices that change the work most
REFERENCE_SPACE: Dict[str, Any] = {
    "scale": 2,
    "arch": {"channels": [32, 64], "blocks": [4, 8, 16], "head": ["conv3", "conv5"],
             "tail": ["fp_two_stage", "fp_one_stage", "binary_repeat"],
             "global_skip": [True, False], "block_residual": [True, False],
             "image_skip": ["none", "bilinear"], "tail_conv_hr": ["none", "fp", "binary"]},
    "layer": {"threshold": ["zero", "local_mean"], "parts": [1, 2, 3, 4],
              "rescale": ["none", "spatial"], "bam_depth": [0, 2], "skip": ["none", "fp"],
              "nonlinearity": ["none", "prelu", "rprelu"]},
    "tail_layer": {"parts": [1, 2], "skip": ["none", "fp"]},
}


def reference_specs(input_size=None, n: int = N_REFERENCE, seed: int = REFERENCE_SEED,
                    space: Any = None) -> List[Any]:
    """``n`` random specs (``random.Random(seed)``) of ``space`` (a ``SearchSpace``: the space
    a table will predict for, what a search passes), else of ``REFERENCE_SPACE``. Networks of
    the space itself calibrate best: on AMD Zen 5 at 2 threads, 8 networks of
    ``REFERENCE_SPACE`` gave a factor of 0.97 where networks of the default space needed 1.06
    (their rescale and image-skip choices, absent from ``REFERENCE_SPACE``, cost more whole than
    as units)."""
    from space.space import SearchSpace

    if space is None:
        space = SearchSpace.from_dict(REFERENCE_SPACE, where="REFERENCE_SPACE")
    rng = random.Random(seed)
    return [space.random(rng) for _ in range(n)]


def features(keys: Sequence[str], entries: Mapping[str, TimingStats]) -> Dict[str, float]:
    """``sum_ms`` (the raw sum of the figures of ``keys``, one per occurrence, what the model
    reads) and, for diagnosis, the summed figures of the binary convs (``bconv_ms``) and of the
    other units but the call overhead (``fp_ms``) and their counts ``n_bconv``, ``n_fp``."""
    total, bconv, fp, n_bconv, n_fp = 0.0, 0.0, 0.0, 0, 0
    for key in keys:
        ms = entries[key].min_ms
        total += ms
        kind = key_dict(key)["kind"]
        if kind == "bconv":
            bconv += ms
            n_bconv += 1
        elif kind != "overhead":
            fp += ms
            n_fp += 1
    return {"sum_ms": total, "bconv_ms": bconv, "fp_ms": fp, "n_bconv": float(n_bconv),
            "n_fp": float(n_fp)}


@dataclass(frozen=True)
class Calibration:
    """``predict = factor * sum_ms`` (see the module docstring)."""

    factor: float
    networks: int
    threads: int
    session: Optional[str] = None  # the measuring session that timed the reference networks
    busy: bool = False  # the machine was busy while the networks were timed
    fit_error: Dict[str, float] = field(default_factory=dict)  # residuals: mean, max |.|, before

    def apply(self, feats: Mapping[str, float]) -> float:
        """The calibrated prediction (the factor is kept within ``BOUNDS``)."""
        return feats["sum_ms"] * min(max(self.factor, BOUNDS[0]), BOUNDS[1])

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Calibration":
        try:
            return cls(factor=float(data["factor"]), networks=int(data["networks"]),
                       threads=int(data["threads"]), session=data.get("session"),
                       busy=bool(data.get("busy", False)),
                       fit_error={k: float(v) for k, v in dict(data.get("fit_error", {})).items()})
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(f"latency calibration {dict(data)!r} must hold factor, networks and "
                             "threads") from None


def fit(feats: Sequence[Mapping[str, float]], measured: Sequence[float], threads: int,
        session: Optional[str] = None, busy: bool = False) -> Calibration:
    """The median over the reference networks of measured / raw sum (``feats`` from
    ``features``, ``measured`` in ms), with the residuals it leaves on them."""
    if len(feats) != len(measured) or not feats:
        raise ValueError(f"calibration: {len(feats)} networks and {len(measured)} measured "
                         "times; give at least one network with its measured time")
    ratios = [m / f["sum_ms"] for f, m in zip(feats, measured)]
    factor = float(np.median(ratios))
    before = [1.0 / r - 1.0 for r in ratios]
    after = [factor / r - 1.0 for r in ratios]
    err = {"mean_before": float(np.mean(before)), "mean": float(np.mean(after)),
           "max_abs": float(np.max(np.abs(after)))}
    return Calibration(factor=factor, networks=len(feats), threads=threads, session=session,
                       busy=busy, fit_error=err)
