"""``Measurer``: the measuring part of the latency model (units, whole networks, canary,
calibration), for one ``LatencyTable``.

**Units.** Each distinct unit (``keys``) is timed on the packed runtime by its probe (``probes``)
in rotation (``timing.time_rotation``, up to ``ROTATION_CHUNK`` units at a time): ``warmup``
untimed passes, then ``repeats`` passes that each call every unit once in a new order, so a unit
is timed in the state it has inside a network: its weights cold, not hot from a call of itself,
and its inputs hot, rewritten just before the call (untimed) as the layer before it would have
written them. Binary convs rotate among binary convs (in a network they run in long runs, one
after another, so their code path is warm); every other unit rotates among other FP units with
an untimed binary conv run just before each of its calls (its ``lead``: the head, the adds and
the tail follow binary convs in a network). Measured on 50 random specs of the default space
(Intel Xeon, avx512, 64x64): one rotation mixing every kind made 32-channel binary convs 10-15 %
slower than inside a network.

**Contention** (``contention``). Each rotation chunk is a window, and so is each timing of a
whole network (``time_networks``): the time this process's threads waited for a core, the
hypervisor's steal time, other processes' CPU time and the canary (the reference units of
``canary_keys``, called back to back, ``time_canary``) re-timed just before and just after the
window, over its best figures (``best_canary``: the fastest of a few timings at the start,
then of every re-timing), decide whether the machine was busy (``contention.judge``). A busy
window is measured again after a pause (``backoff``: twice the window's time, doubled at each
retry, at most ``pause_s``), up to ``retries`` times, every attempt's samples kept (each
figure is the fastest call over all of them); once ``PERSISTENT`` windows in a row stayed busy
by a local load (a process of this machine) through their retries, the machine is taken as
busy for good and later windows are not retried until one is idle again (a window busy by the
canary's drift alone, another guest's burst, is always retried). A chunk still busy is kept
and the session flagged ``busy`` (``on_contention="keep"``) or the measurement refused with ``ContentionError``
(``on_contention="refuse"``).

**Canary check** (``check``): before a cached table is used, its canary units are timed now;
a session whose canary figures differ by more than the drift limit from now, while the machine
is idle now, was measured under other conditions (a busy machine, another clock), and so was a
session flagged busy while it measured: their entries are dropped, so they are measured again
when needed, and a calibration they fitted with them.

**Calibration** (``calibrate``): whole reference networks are timed beside the sum of their
units and a ``calibration.Calibration`` is fitted (see there for the model and why).

**Sessions.** What this measurer measured is one session: its record (``session``, see
``store``) says when (UTC), under what load (1-minute load average at the start and the end),
how many unit measurements, whether the machine was busy and the canary figures.
"""
from __future__ import annotations

import os
import random
import socket
import time
import uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch

from evaluators.latency import contention as C
from evaluators.latency.calibration import Calibration, fit, reference_specs
from evaluators.latency.context import load_1min, utc_now
from evaluators.latency.keys import canonical_key, family, key_dict
from evaluators.latency.probes import make_probe
from evaluators.latency.timing import (MIN_ROTATION, TimingStats, clock_for, combine_rounds,
                                       threads as threads_ctx, time_callable, time_rotation)

#: most units timed in one rotation (bounds the memory of their probes and inputs)
ROTATION_CHUNK = 64
#: what ``on_contention`` allows
ON_CONTENTION = ("keep", "refuse")
#: chunks kept busy after their retries, after which a session stops retrying
PERSISTENT = 2


def backoff(attempt: int, wall_s: float, cap_s: float) -> float:
    """The pause (s) before re-measuring a busy window: twice the window's time (at least 0.05
    s), doubled on each further attempt, at most ``cap_s``. Other tenants of a shared VM come in
    episodes of seconds (measured on the AMD Zen 5 VM: the canary units 2x slower for 5-15 s at a
    time, with no steal time reported), so a fixed short pause would re-measure inside the
    same episode."""
    return min(float(cap_s), max(0.05, 2.0 * wall_s) * 2.0 ** attempt)


def filler_keys(input_size) -> Dict[str, List[Dict[str, Any]]]:
    """Typical units of a small network at this input size, per family (``bconv``: binary
    convs; ``fp``: everything else). They run untimed: as fillers of a rotation of fewer than
    ``MIN_ROTATION`` units of their family, and (the ``bconv`` ones) as the lead of each FP unit
    call (see ``Measurer.measure_entries``)."""
    _, h, w = input_size
    conv = {"kind": "bconv", "in": 32, "out": 32, "k": 3, "h": h, "w": w, "threshold": "static",
            "lm_k": 0, "parts": 1, "bam": 0, "spatial": False, "skip": True, "nonlin": "prelu",
            "nonlin_at": "after_skip"}
    return {
        "bconv": [conv, dict(conv, parts=2), dict(conv, threshold="local_mean", lm_k=3),
                  dict(conv, nonlin="none", spatial=True), dict(conv, **{"in": 64, "out": 64}),
                  dict(conv, bam=2), dict(conv, skip=False, nonlin="rprelu"),
                  dict(conv, **{"in": 64, "out": 64, "parts": 3})],
        "fp": [{"kind": "head", "head": "conv3", "out": 32, "h": h, "w": w},
               {"kind": "add", "c": 32, "h": h, "w": w},
               {"kind": "fp_conv", "in": 32, "out": 3, "k": 3, "h": h, "w": w},
               {"kind": "output", "h": 2 * h, "w": 2 * w},
               {"kind": "espcn", "c": 32, "s": 2, "h": h, "w": w},
               {"kind": "shuffle", "c": 32, "r": 2, "h": h, "w": w},
               {"kind": "add", "c": 64, "h": h, "w": w}],
    }


def canary_keys(input_size) -> List[str]:
    """The reference units of a table (canonical keys): a 32- and a 64-channel binary conv,
    the FP head and the runtime's call overhead (Python and dispatch: the part of a network that
    a slower core front end slows most), at the table's input size."""
    f = filler_keys(input_size)
    _, h, w = input_size
    return [canonical_key(f["bconv"][0]), canonical_key(f["bconv"][4]), canonical_key(f["fp"][0]),
            canonical_key({"kind": "overhead", "h": h, "w": w})]


#: the canary protocol: each unit called back to back, ``CANARY_WARMUP`` untimed calls then
#: ``CANARY_SAMPLES`` timed ones, its figure the fastest (a hot call: on an idle machine the
#: same within 1-2 % from one timing to the next, AMD Zen 4 VM); a baseline is the fastest of
#: ``BASELINE_TIMINGS`` timings ``BASELINE_GAP_S`` apart (a burst of another guest lasts
#: 0.3-2 s there: one of the timings falls outside it)
CANARY_WARMUP = 3
CANARY_SAMPLES = 15
BASELINE_TIMINGS = 3
BASELINE_GAP_S = 0.25


class Measurer:
    """Measures what ``table`` (a ``LatencyTable``) lacks; see the module docstring.

    ``warmup``/``repeats``: untimed and timed passes of the rotation over the units
    (``repeats`` single-call samples per unit), and untimed calls / single-call samples of a
    whole network in ``measure``; ``on_contention``: ``keep`` (default) or ``refuse`` a chunk
    still busy after ``retries`` re-measurements, each after a pause (``backoff``) of twice the
    chunk's time, doubled at each retry
    (at least 0.05 s, at most ``pause_s``); ``limits``: of ``contention.judge`` (default
    ``contention.limits_for(threads)``).
    """

    def __init__(self, table, warmup: int = 2, repeats: int = 25, on_contention: str = "keep",
                 retries: int = 4, pause_s: float = 8.0,
                 limits: Optional[Dict[str, float]] = None):
        for name, value, least in (("warmup", warmup, 0), ("repeats", repeats, 1),
                                   ("retries", retries, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"invalid {name} {value!r}; allowed: an integer >= {least}")
        if on_contention not in ON_CONTENTION:
            raise ValueError(f"invalid on_contention {on_contention!r}; allowed: {list(ON_CONTENTION)}")
        self.table = table
        self.threads = table.threads
        self.warmup, self.repeats = warmup, repeats
        self.on_contention, self.retries, self.pause_s = on_contention, retries, float(pause_s)
        self.limits = dict(C.limits_for(table.threads), **(limits or {}))
        self._clock = clock_for(table.clock, table.threads)
        self._fillers: Dict[str, List[Callable[[], Any]]] = {}
        self._canary: Optional[Dict[str, Callable[[], Any]]] = None  # key -> probe
        self._best: Optional[Dict[str, float]] = None  # the fastest canary figures seen
        self._streak = 0  # consecutive windows kept busy after their retries (``PERSISTENT``)
        self.session: Optional[Dict[str, Any]] = None  # this measurer's session, once it measured
        self.tally = C.Tally()
        self.network_tally = C.Tally()  # the whole-network timings (``time_networks``)

    # -- probes ----------------------------------------------------------------------------
    def fillers(self, fam: str) -> List[Callable[[], Any]]:
        """The untimed filler probes of family ``fam`` (``filler_keys``), built once."""
        if fam not in self._fillers:
            self._fillers[fam] = [make_probe(k, self.threads)
                                  for k in filler_keys(self.table.input_size)[fam]]
        return self._fillers[fam]

    def _probes(self, keys: Sequence[str], fam: str) -> Dict[str, Callable[[], Any]]:
        probes = {k: make_probe(key_dict(k), self.threads) for k in keys}
        if fam == "fp":
            leads = self.fillers("bconv")
            for i, probe in enumerate(probes.values()):
                probe.lead = leads[i % len(leads)]
        return probes

    def _rotation(self, probes: Dict[str, Callable[[], Any]], samples: int, warmup: int,
                  seed: int, fam: str) -> Dict[str, TimingStats]:
        fillers = self.fillers(fam) if len(probes) < MIN_ROTATION else ()
        return time_rotation(probes, samples=samples, warmup=warmup, clock=self._clock,
                             fillers=fillers, seed=seed)

    def time_canary(self, samples: int = CANARY_SAMPLES) -> Dict[str, float]:
        """The canary units (``canary_keys``) timed now: each called back to back
        (``CANARY_WARMUP`` untimed calls, then ``samples`` timed), key -> fastest call (ms)."""
        keys = canary_keys(self.table.input_size)
        with threads_ctx(self.threads):
            if self._canary is None:
                self._canary = {k: make_probe(key_dict(k), self.threads) for k in keys}
            return {k: time_callable(p, warmup=CANARY_WARMUP, repeats=samples, min_sample_ms=0.0,
                                     clock=self._clock).min_ms
                    for k, p in self._canary.items()}

    def canary_baseline(self, timings: int = BASELINE_TIMINGS,
                        gap_s: float = BASELINE_GAP_S) -> Dict[str, float]:
        """The canary's figures on this machine as it runs at its fastest now: per unit, the
        fastest of ``timings`` timings (``time_canary``) ``gap_s`` apart."""
        best: Dict[str, float] = {}
        for i in range(max(1, timings)):
            if i:
                time.sleep(gap_s)
            for k, v in self.time_canary().items():
                best[k] = min(best.get(k, v), v)
        return best

    # -- sessions --------------------------------------------------------------------------
    def _open_session(self) -> Dict[str, Any]:
        """This measurer's session record; a first measurement (or the first one in a forked
        process) opens it, with its canary baseline (the measurer's best figures, updated as
        the session re-times its canary)."""
        if self.session is not None and self.session["pid"] != os.getpid():
            self.table.sessions().append(self.session)  # a copy made before a fork: the parent's
            self.session = None
            self._best = None
        if self.session is None:
            self.tally = C.Tally()
            self.session = {"id": uuid.uuid4().hex[:16], "started": utc_now(), "finished": None,
                            "load_1min_start": load_1min(), "load_1min_end": None, "entries": 0,
                            "host": socket.gethostname(), "pid": os.getpid(), "busy": False,
                            "canary": self.best_canary(), "contention": None}
        return self.session

    def _close_window(self, count: int) -> None:
        s = self.session
        s.update(finished=utc_now(), load_1min_end=load_1min(), entries=s["entries"] + count,
                 contention=self.tally.to_dict())

    def best_canary(self) -> Dict[str, float]:
        """The fastest canary figures this measurer has seen (``canary_baseline`` on first use,
        then lowered by every re-timing, ``drift``); the session record holds the same dict."""
        if self._best is None:
            self._best = self.canary_baseline()
        return self._best

    def drift(self) -> Optional[float]:
        """The canary re-timed now over the best figures so far (``contention.canary_slowdown``:
        the median ratio over its units); the best figures are then updated."""
        best = self.best_canary()
        now = self.time_canary()
        ratio = C.canary_slowdown(now, best)
        for k, v in now.items():
            best[k] = min(best.get(k, v), v)
        return ratio

    def wait_quiet(self, timeout_s: float, checks: int = 8, gap_s: float = 0.25):
        """Wait until the machine is quiet: the canary re-timed ``checks`` times in a row,
        ``gap_s`` apart, each time judged idle (within the drift limit of its best, no local
        load), for at most ``timeout_s`` seconds. Returns (seconds waited, quiet or not)."""
        start = time.monotonic()
        run = 0
        with threads_ctx(self.threads):
            while True:
                before = C.snapshot()
                drift = self.drift()
                window = C.window(before, C.snapshot(), drift=drift, threads=self.threads)
                run = 0 if C.judge(window, self.limits).busy else run + 1
                waited = time.monotonic() - start
                if run >= checks:
                    return waited, True
                if waited >= timeout_s:
                    return waited, False
                time.sleep(gap_s)

    def _judged(self, work: Callable[[], Any], tally: "C.Tally"):
        """Run ``work`` as one window: the canary re-timed just before and just after it (the
        window's drift: the larger), the scheduler's counters around it; returns what
        ``work`` returned and the verdict (``contention.judge``), counted in ``tally``."""
        before = self.drift()
        start = C.snapshot()
        out = work()
        end = C.snapshot()
        after = self.drift()
        drifts = [d for d in (before, after) if d is not None]
        window = C.window(start, end, drift=max(drifts) if drifts else None, threads=self.threads)
        verdict = C.judge(window, self.limits)
        tally.add(window, verdict)
        return out, verdict, window

    # -- units -----------------------------------------------------------------------------
    def measure_entries(self, keys: Iterable[str], force: bool = False, progress=None,
                        after_chunk: Optional[Callable[[int, int], None]] = None) -> int:
        """Measure every key the table lacks (all of them with ``force``); return the count.
        The keys are timed in rotation, ``ROTATION_CHUNK`` at a time and one family at a time
        (see the module docstring), each chunk judged for contention (re-measured, kept and
        flagged, or refused). ``progress``: an optional callable called with each key once it
        is measured; ``after_chunk``: one called with (chunks done, chunks in all) after each
        chunk (``calibrate`` times its networks there). Saves the table when its ``autosave``
        is on and something was measured. What is measured is added to this measurer's session
        record, also when interrupted."""
        table = self.table
        todo = [k for k in dict.fromkeys(keys) if force or k not in table]
        by_family: Dict[str, List[str]] = {"bconv": [], "fp": []}
        for key in todo:
            by_family[family(key)].append(key)
        if not todo:
            return 0
        chunks = [(fam, fam_keys[start:start + ROTATION_CHUNK], start + len(fam_keys))
                  for fam, fam_keys in by_family.items()
                  for start in range(0, len(fam_keys), ROTATION_CHUNK)]
        with threads_ctx(self.threads):
            session = self._open_session()
            for done, (fam, chunk, seed) in enumerate(chunks, 1):
                stats = self._judged_chunk(chunk, fam, seed=seed)
                for key in chunk:
                    table.put(key, stats[key], session["id"])
                    if progress is not None:
                        progress(key)
                self._close_window(len(chunk))
                if after_chunk is not None:
                    after_chunk(done, len(chunks))
        if table.autosave:
            table.save()
        return len(todo)

    def _retried(self, work: Callable[[], Any], tally: "C.Tally"):
        """Run ``work`` as judged windows (``_judged``) until one is idle: a busy one is run
        again after a pause (``backoff``), up to ``retries`` times, or not at all once
        ``PERSISTENT`` windows in a row stayed busy through their retries (the machine is
        busy for good; an idle window ends that). Returns the results of every attempt and
        the last window's verdict (busy: counted in ``tally.kept_busy``). The
        streak counts only windows kept busy by a local load (``Verdict.local``: a process of
        this machine holding the cores does not go away in seconds); a window busy by the
        canary's drift alone (another guest of the host, in bursts of seconds) is always
        retried."""
        retries = self.retries if self._streak < PERSISTENT else 0
        results: List[Any] = []
        attempt = 0
        while True:
            out, verdict, window = self._judged(work, tally)
            results.append(out)
            if not verdict.busy:
                self._streak = 0
                return results, verdict
            if not verdict.local:
                retries = self.retries  # bursts pass: a busy streak by drift alone keeps retrying
            if attempt >= retries:
                break
            tally.retries += 1
            time.sleep(backoff(attempt, window.wall_s, self.pause_s))
            attempt += 1
        tally.kept_busy += 1
        self._streak = self._streak + 1 if verdict.local else 0
        return results, verdict

    def _judged_chunk(self, chunk: Sequence[str], fam: str, seed: int) -> Dict[str, TimingStats]:
        probes = self._probes(chunk, fam)
        attempts, verdict = self._retried(
            lambda: self._rotation(probes, self.repeats, self.warmup, seed, fam), self.tally)
        # every attempt's samples count (a figure is a fastest call: more samples taken at
        # other moments can only bring it closer to the idle machine's)
        stats = {k: combine_rounds([a[k] for a in attempts]) for k in chunk}
        if not verdict.busy:
            return stats
        if self.on_contention == "refuse":
            self._close_window(0)
            raise C.ContentionError(
                f"latency table {self.table.path}: the machine stayed busy while measuring "
                f"({'; '.join(verdict.reasons)}) through {self.retries} retries; measure when "
                f"it is idle, or pass on_contention='keep' to keep busy figures (flagged)")
        self.session["busy"] = True
        return stats

    # -- the canary check of a cached table ------------------------------------------------
    def check(self, attempts: int = 3, pause_s: float = 1.0) -> Dict[str, Any]:
        """Check the table's sessions against its canary timed now (see the module docstring);
        drop the entries of the sessions that drifted, and the calibration with them (or when
        it was fitted on a busy machine). The canary is
        timed up to ``attempts`` times, ``pause_s`` apart, until the machine is idle while it
        runs. Returns what it found: ``busy_now`` (the machine stayed busy: nothing is judged),
        ``canary_ms``, ``ratios`` (session id -> stored / now), ``drifted`` (session ids),
        ``unchecked`` (sessions without canary figures), ``dropped`` (keys) and
        ``calibration_dropped`` (the calibration is fitted again before the next prediction)."""
        table = self.table
        for attempt in range(max(1, attempts)):
            if attempt:
                time.sleep(pause_s)
            start = C.snapshot()
            now = self.canary_baseline()
            verdict = C.judge(C.window(start, C.snapshot(), threads=self.threads), self.limits)
            if not verdict.busy:
                break
        if not verdict.busy and self._best is None:
            # the baseline of a session that measures now: the fastest of the canary now and
            # the canary figures the table's sessions recorded (same context: CPU, ISA, build,
            # threads). A machine still slow after a load (a VM's host throttles a guest that
            # held its cores: 10-17 % slower canary, units up to 1.5x slower for minutes after
            # two busy loops stopped; AMD Zen 4, 2 threads) then judges its re-measurements
            # busy and retries them instead of taking the slow figures for idle ones.
            best = dict(now)
            for rec in table.sessions():
                for k, v in (rec.get("canary") or {}).items():
                    if k in best and v > 0:
                        best[k] = min(best[k], float(v))
            self._best = best
        out: Dict[str, Any] = {"busy_now": verdict.busy, "reasons": list(verdict.reasons),
                               "canary_ms": now, "ratios": {}, "drifted": [], "unchecked": [],
                               "dropped": [], "calibration_dropped": False}
        if verdict.busy:
            return out
        for rec in table.sessions():
            if not rec.get("canary"):
                out["unchecked"].append(rec["id"])
                continue
            ratio = C.canary_drift(rec["canary"], now)
            out["ratios"][rec["id"]] = ratio
            # a session flagged busy while it measured is re-measured on an idle machine even
            # when its canary agrees: its canary baseline was taken under the same load
            if C.drifted(ratio, self.limits.get("stale", C.LIMITS["stale"])) or rec.get("busy"):
                out["drifted"].append(rec["id"])
        gone = set(out["drifted"])
        if gone:
            keys = [k for k in table.keys() if table.session_of(k) in gone]
            out["dropped"] = keys
            table.drop(keys)
            table.forget_sessions(gone)
        # the calibration relates whole networks to the entries: it goes with any entry that is
        # measured again, and a fit whose networks were timed on a busy machine goes now that
        # the machine is idle (a table measured under load kept its calibration before, and
        # predicted 14 % low at idle after its entries were measured again: AMD Zen 5, 2 threads)
        cal = table.calibration
        if cal is not None and (gone or cal.busy):
            table.calibration = None
            out["calibration_dropped"] = True  # table.save does not merge it back from the file
        return out

    # -- whole networks --------------------------------------------------------------------
    def network_probe(self, spec: Any) -> Callable[[], Any]:
        """A zero-argument callable running the whole network of ``spec`` once on the packed
        runtime: ``ops.native.compile(build(spec))`` on a random [0, 1] image of this input size."""
        import ops.native
        from space.builder import build

        with threads_ctx(self.threads):
            compiled = ops.native.compile(build(spec).eval(), threads=self.threads)
        x = torch.rand(1, *self.table.input_size, generator=torch.Generator().manual_seed(0))
        return lambda: compiled(x)

    def time_probe(self, probe: Callable[[], Any], warmup: Optional[int] = None,
                   repeats: Optional[int] = None) -> TimingStats:
        """Time ``probe`` in single calls with this table's threads and clock:
        ``warmup`` untimed calls, then ``repeats`` timed ones (the measurer's defaults)."""
        with threads_ctx(self.threads):
            return time_callable(probe, warmup=self.warmup if warmup is None else warmup,
                                 repeats=self.repeats if repeats is None else repeats,
                                 min_sample_ms=0.0, clock=self._clock)

    def measure_stats(self, spec: Any, warmup: Optional[int] = None,
                      repeats: Optional[int] = None) -> TimingStats:
        """Time the whole network of ``spec`` on the packed runtime (batch 1, this input size)."""
        return self.time_probe(self.network_probe(spec), warmup, repeats)

    def measure(self, spec: Any, warmup: Optional[int] = None, repeats: Optional[int] = None) -> float:
        """Measured latency (ms) of the whole network of ``spec``: its fastest single call."""
        return self.measure_stats(spec, warmup, repeats).min_ms

    def time_networks(self, probes: Sequence[Callable[[], Any]], rounds: int = 3,
                      repeats: int = 10, seed: int = 0) -> List[TimingStats]:
        """Whole networks (``network_probe``) timed in ``rounds`` rounds (``network_round``),
        each network's figure its fastest call over every attempt of every round
        (``combine_rounds``)."""
        runs: List[List[TimingStats]] = [[] for _ in probes]
        order = random.Random(seed)
        for _ in range(rounds):
            self.network_round(probes, runs, repeats, order)
        return [combine_rounds(r) for r in runs]

    def network_round(self, probes: Sequence[Callable[[], Any]], runs: List[List[TimingStats]],
                      repeats: int, order: random.Random) -> List[bool]:
        """One round: every network timed once, in a new order (``order.shuffle``), ``repeats``
        single calls after one untimed, as one window judged like a chunk of units
        (``_retried``: the canary re-timed before and after, a busy timing taken again after a
        pause; counted in ``network_tally``, ``kept_busy``: timings still busy after their
        retries). Every attempt's timing is appended to ``runs[i]``; returns per network
        whether its timing was idle."""
        idx = list(range(len(probes)))
        order.shuffle(idx)
        idle = [False] * len(probes)
        with threads_ctx(self.threads):
            for i in idx:
                attempts, verdict = self._retried(
                    lambda: self.time_probe(probes[i], warmup=1, repeats=repeats),
                    self.network_tally)
                runs[i].extend(attempts)
                idle[i] = not verdict.busy
        return idle

    # -- calibration -----------------------------------------------------------------------
    def calibrate(self, specs: Optional[Sequence[Any]] = None, rounds: int = 8,
                  network_repeats: int = 10, keys: Iterable[str] = (),
                  progress=None, after_chunk=None) -> Calibration:
        """Fit and set the table's calibration on ``specs`` (default: ``reference_specs``):
        their units are measured (those the table lacks, with ``keys``, further units to
        measure in the same session; ``progress`` and ``after_chunk``, called after each chunk
        of units (``lut build`` saves the table there), as in ``measure_entries``) and the whole
        networks are timed in ``rounds`` rounds of ``network_repeats`` single calls
        (``network_round``: the statistic a network is validated with, its fastest call; eight
        rounds by default, more than a validation's five, because the factor carries the
        error of every one of its networks' figures into every prediction). The rounds are spread
        over the measurement of the units, one after every few chunks (the rest, all of them
        when nothing is left to measure, after it), so the networks and the units they are
        related to see the same machine: on a shared VM whose speed changes for seconds to
        minutes at a time (the AMD Zen 4 VM at 2 threads), rounds run back to back after the
        units measured the networks in one state and the units in others, and the factor
        followed the state of those seconds (1.064-1.184 across runs). ``calibration.fit``
        relates the networks' figures to the table's entries; the fit is flagged ``busy`` when
        a network had no idle timing in any round. Saves the table when its ``autosave`` is
        on."""
        table = self.table
        if specs is None:
            specs = reference_specs(table.input_size, space=getattr(table, "calibration_space", None))
        specs = list(specs)
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"invalid rounds {rounds!r}; allowed: an integer >= 1")
        probes = [self.network_probe(s) for s in specs]
        runs: List[List[TimingStats]] = [[] for _ in specs]
        idle = [False] * len(specs)
        order = random.Random(0)
        done_rounds = [0]

        def timed_round() -> None:
            for i, ok in enumerate(self.network_round(probes, runs, network_repeats, order)):
                idle[i] = idle[i] or ok
            done_rounds[0] += 1

        def between(done: int, total: int) -> None:
            if after_chunk is not None:
                after_chunk(done, total)
            # round r (1-based) runs after chunk ceil(r * total / rounds), the last one excepted
            while done_rounds[0] < rounds - 1 and done * rounds >= (done_rounds[0] + 1) * total:
                timed_round()

        keys = list(keys) + [k for s in specs for k in table.entries(s)]
        self.measure_entries(keys, progress=progress, after_chunk=between)
        while done_rounds[0] < rounds:
            timed_round()
        measured = [combine_rounds(r).min_ms for r in runs]
        feats = [table.features(s) for s in specs]
        session = self._open_session()
        cal = fit(feats, measured, session=session["id"], threads=self.threads,
                  busy=not all(idle))
        self._close_window(0)
        table.calibration = cal
        if table.autosave:
            table.save()
        return cal
