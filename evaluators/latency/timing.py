"""Timing utilities of the latency model: reproducible latencies on a noisy, shared machine.

The latency of a piece of work is the **fastest of many single-call samples** (``min_ms``), the
figure that stays put when other processes slow some calls down (Python's ``timeit`` documents
the same choice). Median and quartiles are kept beside it to show the spread. Two protocols:

``time_rotation(probes, samples, warmup)`` — the units of the latency table
    The probes are called in passes: ``warmup`` untimed passes, then ``samples`` timed passes;
    each pass calls every probe once, in a new random order, and times each call on its own. So
    every timed call of a unit follows other units' work, as it does inside a network: its
    weights are as cold as there, not hot from calling it again. Fewer than ``MIN_ROTATION``
    probes are padded with untimed filler probes to keep that true. Just before each call,
    untimed, a probe's ``prepare()`` (when it has one) rewrites the unit's inputs in place, so
    they are hot in the caches as the previous unit's output is inside a network, and runs its
    lead (``probes.Probe``). Which units share a rotation is the caller's choice
    (``measure.Measurer`` rotates each family apart). Measured on 50 random specs (64x64 input, one thread; BENCHMARKS.md
    ``latency_accuracy``): timing a unit back to back made it 5-10 % faster than inside a
    network (AMD Zen 3: predictions 5-9 % low); one rotation of every unit with cold inputs
    made it slower (Intel Xeon with AVX-512: predictions 5-7 % high on average, up to +15 % for
    small networks).

``time_callable(fn, warmup, repeats)`` — a whole network, or any callable
    ``warmup`` untimed calls, then ``repeats`` timed samples, each the mean over ``number`` calls
    back to back (``number`` = 1 unless ``min_sample_ms`` asks for longer samples).

Quartiles use linear interpolation between order statistics (numpy's default ``linear`` rule):
``q(p) = x[floor(h)] + (h - floor(h)) * (x[floor(h)+1] - x[floor(h)])`` with ``h = (n-1) p`` on
the sorted samples ``x``. ``combine_rounds`` merges measurements of one unit taken at different
times: min and max over every sample, median and quartiles of the per-round medians.

Clocks (``CLOCKS``): ``wall`` = ``time.perf_counter_ns`` (the latency a user sees on an idle
machine); ``cpu`` = ``time.process_time_ns``, the CPU time of this process. With one thread
(torch and the native kernel both run inline in the calling thread) CPU time equals wall time
on an idle core, but it does not count the time the process waits while other processes hold
the core, so it is the robust choice on a shared, overloaded machine; with more threads it
would add the threads' times up, so ``cpu`` is allowed only with one thread.

Allocation: the packed runtime and torch allocate every activation anew. The runtime makes the
process heap steady (``ops.native.heap``: glibc keeps freed memory for reuse), and the table
applies the same policy before it measures, so units and networks are timed without the page
faults that glibc's default policy adds to a forward in a way no per-unit table can predict
(measured: ~1,450 faults and +36 % on one small network). The policy is part of a table's
context.

``threads(n)`` is a context manager that sets ``torch.set_num_threads(n)`` for the measurement
and restores the previous count afterwards (the native runtime defaults to the same count).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from evaluators.threads import torch_threads


CLOCKS = {"wall": time.perf_counter_ns, "cpu": time.process_time_ns}


def clock_for(name: str, threads: int):
    """The clock function of ``name`` (see the module docstring); raises for ``cpu`` with more
    than one thread."""
    if name not in CLOCKS:
        raise ValueError(f"invalid clock {name!r}; allowed: {sorted(CLOCKS)}")
    if name == "cpu" and threads != 1:
        raise ValueError(f"clock 'cpu' needs threads=1 (CPU time sums the threads), got threads={threads}")
    return CLOCKS[name]


@dataclass(frozen=True)
class TimingStats:
    """Spread of one measurement, every figure in milliseconds per call."""

    median_ms: float
    min_ms: float
    q1_ms: float
    q3_ms: float
    max_ms: float
    repeats: int
    number: int

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, float]) -> "TimingStats":
        fields = ("median_ms", "min_ms", "q1_ms", "q3_ms", "max_ms", "repeats", "number")
        missing = [f for f in fields if f not in data]
        if missing:
            raise ValueError(f"timing entry {data!r} lacks field(s) {missing}; expected {list(fields)}")
        return cls(**{f: data[f] for f in fields})


def quantile(values: Sequence[float], p: float) -> float:
    """Quantile ``p`` in [0, 1] of ``values`` by linear interpolation between order statistics."""
    if not values:
        raise ValueError("quantile of an empty sequence")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"quantile p={p!r} is outside [0, 1]")
    xs = sorted(values)
    h = (len(xs) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def summarize(samples_ms: Sequence[float], number: int = 1) -> TimingStats:
    """Median, min, quartiles and max of per-call samples (ms)."""
    return TimingStats(
        median_ms=quantile(samples_ms, 0.5),
        min_ms=min(samples_ms),
        q1_ms=quantile(samples_ms, 0.25),
        q3_ms=quantile(samples_ms, 0.75),
        max_ms=max(samples_ms),
        repeats=len(samples_ms),
        number=number,
    )


def combine_rounds(rounds: Sequence[TimingStats]) -> TimingStats:
    """One entry from several measurement rounds of the same unit taken at different times:
    median and quartiles of the per-round medians, min and max over every sample."""
    if not rounds:
        raise ValueError("combine_rounds: no rounds given")
    if len(rounds) == 1:
        return rounds[0]
    medians = [r.median_ms for r in rounds]
    return TimingStats(median_ms=quantile(medians, 0.5), min_ms=min(r.min_ms for r in rounds),
                       q1_ms=quantile(medians, 0.25), q3_ms=quantile(medians, 0.75),
                       max_ms=max(r.max_ms for r in rounds),
                       repeats=sum(r.repeats for r in rounds), number=rounds[0].number)


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def time_callable(
    fn: Callable[[], object],
    warmup: int = 3,
    repeats: int = 15,
    min_sample_ms: float = 2.0,
    max_number: int = 1000,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> TimingStats:
    """Time ``fn()`` as described in the module docstring; return its :class:`TimingStats`."""
    _check_positive("repeats", repeats)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    for _ in range(warmup):
        fn()
    # calibrate the number of calls per sample from one timed call
    start = clock()
    fn()
    one_ms = (clock() - start) / 1e6
    number = 1
    if one_ms < min_sample_ms:
        number = int(min(max_number, max(1, math.ceil(min_sample_ms / max(one_ms, 1e-6)))))
    samples: List[float] = []
    for _ in range(repeats):
        start = clock()
        for _ in range(number):
            fn()
        samples.append((clock() - start) / 1e6 / number)
    return summarize(samples, number)


#: fewest probes a rotation pass holds (fillers are added below it; see the module docstring)
MIN_ROTATION = 8


def time_rotation(
    probes: Mapping[str, Callable[[], object]],
    samples: int = 25,
    warmup: int = 2,
    clock: Callable[[], int] = time.perf_counter_ns,
    fillers: Sequence[Callable[[], object]] = (),
    seed: int = 0,
    progress: Optional[Callable[[int], None]] = None,
) -> Dict[str, TimingStats]:
    """Time every probe in rotation (see the module docstring); return its statistics by name.

    ``samples`` timed passes after ``warmup`` untimed ones, each pass in a new order drawn from
    ``random.Random(seed)``; ``fillers`` are extra callables run untimed in every pass (used only
    when there are fewer than ``MIN_ROTATION`` probes; pass enough of them); a probe's optional
    ``prepare()`` runs untimed before each of its calls. ``progress`` is
    called with the number of the pass just finished (1 .. warmup + samples)."""
    _check_positive("samples", samples)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    names = list(probes)
    if not names:
        return {}
    slots: List[Optional[str]] = list(names)
    if len(names) < MIN_ROTATION:
        slots += [None] * min(len(fillers), MIN_ROTATION - len(names))
    times: Dict[str, List[float]] = {n: [] for n in names}
    rng = random.Random(seed)
    for done in range(1, warmup + samples + 1):
        rng.shuffle(slots)
        filler = 0
        for name in slots:
            if name is None:
                fillers[filler]()
                filler += 1
                continue
            fn = probes[name]
            prepare = getattr(fn, "prepare", None)
            if prepare is not None:
                prepare()
            start = clock()
            fn()
            elapsed = clock() - start
            if done > warmup:
                times[name].append(elapsed / 1e6)
        if progress is not None:
            progress(done)
    return {n: summarize(times[n]) for n in names}


#: ``threads(n)``: torch's thread count ``n`` for the body (``evaluators.threads``).
threads = torch_threads
