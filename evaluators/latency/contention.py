"""Is the machine busy? Signals of interference while measuring, and the rule that decides.

A table measured while other processes hold the cores is poisoned: its figures are those of a
busy machine and predict every network too slow once the machine is idle (on a 2-core VM with
two busy loops, issue 16: a median factor 1.65). Three kinds of signal, each cheap to read:

* **waiting for a core** (``wait``): the time this process's threads were runnable but not
  running, the second field of ``/proc/self/task/<tid>/schedstat`` (the scheduler's run delay),
  summed over the threads and divided by the wall time of the window times the thread count
  of the measurement. Zero-ish on an idle machine
  (a woken worker waits a few microseconds); a busy loop on a core this process needs makes it
  tens of percent (with more threads, the wake-up of the kernel pool's workers waits a little
  even on an idle machine: ``limits_for``). Linux only (``None`` elsewhere).
* **stolen by the hypervisor** (``steal``): the ``steal`` column of ``/proc/stat`` over the
  window, as a fraction of the window's wall time times the CPU count: another guest holds the
  physical core this VM's vCPU runs on (invisible to the load average inside the VM).
* **other processes on the CPUs** (``foreign``): the busy time of all CPUs (``/proc/stat``:
  everything but idle and iowait) minus this process's own CPU time over the window, as a
  fraction of the window's wall time times the CPU count. The run-queue wait misses a process
  that runs on the *other* vCPU: on the 2-vCPU Intel Xeon VM the two vCPUs are SMT siblings of
  one physical core, so a job there slowed 1-thread units by up to ~12 % while this process
  never waited (issue 16: a 1-thread run measured beside a 1-thread training predicted +12 %
  on average). Judged only over windows of at least ``FOREIGN_MIN_S`` (the counters tick at
  ``SC_CLK_TCK``, 100 Hz).
* **reference units re-timed** (``drift``): the canary units (a 32- and a 64-channel binary
  conv, the FP head, the runtime's call overhead), each called back to back and taken at its
  fastest call, are re-timed just before and just after every window; the drift is their
  median ratio to their best figures of the session (``canary_slowdown``), the larger of the
  two ends. Catches what the scheduler does not show: another guest on the host's core
  under a vCPU (on the 2-vCPU AMD Zen 4 VM: bursts of 0.3-2 s in which even a hot call is 1.2-2x slower,
  and states of seconds in which 2-thread work is 7-20 % slower while 1-thread work is not),
  a busy sibling hyperthread, a lower clock, memory bandwidth taken by the other core. One
  way only: a reference faster than its best so far is a better baseline, not contention.

``judge(window, limits)`` is the decision rule, a pure function of these numbers (unit-tested
with injected values): a window is **busy** when any signal passes its limit (``LIMITS``: wait
5 % (plus 10 % per thread beyond the first, ``limits_for``), steal 5 %, drift +5 %,
foreign 10 %); the
reasons name each signal that did. The measuring side
(``measure.Measurer``) opens a window per rotation chunk; a busy chunk is re-measured after a
pause (``retries``), and a chunk still busy after its retries is kept and flagged (the
session's record says so) or refused (``ContentionError``), as the caller asks. The canary is
checked again when a cached table is used (``canary_drift``): a session whose canary figures
differ from the canary timed now, on a machine that is idle now, is re-measured.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

#: limits of the decision rule (fractions): wait and steal of the window's wall time, drift of
#: the reference units above their best (a window: on an idle machine the median ratio stays
#: within 1-2 %, 99th percentile 2.3 %, AMD Zen 4 VM, 150 timings); ``stale``: at a cached
#: table's check, the canary's drift either way (``drifted``); ``limits_for`` raises the wait
#: limit with the thread count
LIMITS: Dict[str, float] = {"wait": 0.05, "steal": 0.05, "drift": 0.05, "foreign": 0.10,
                            "stale": 0.08}
#: shortest window over which the foreign-load signal is judged (seconds; 100 Hz counters)
FOREIGN_MIN_S = 0.5
#: the wait limit grows by this much per thread beyond the first (see ``limits_for``)
WAIT_PER_THREAD = 0.10


def limits_for(threads: int) -> Dict[str, float]:
    """``LIMITS`` for a measurement on ``threads`` threads. With more than one thread a woken
    worker waits for its core even on an idle machine: measured on the 2-vCPU Intel Xeon VM,
    2 threads waited 7-9 % of their time idle, 41-46 % with one busy loop and ~50 % with two
    (1 thread: 0 %, 19-43 % with two busy loops), so the wait limit is 5 % plus 10 % per
    thread beyond the first."""
    return dict(LIMITS, wait=LIMITS["wait"] + WAIT_PER_THREAD * max(threads - 1, 0))


class ContentionError(ValueError):
    """Measuring was refused: the machine stayed busy through every retry (a ``ValueError``, so
    the command line reports it as an error of its input, exit status 2)."""


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("ascii", "replace")
    except OSError:
        return None


def run_delay_ns() -> Optional[int]:
    """Sum over this process's threads of the time they waited on a run queue (ns), or None
    where ``/proc/self/task/*/schedstat`` is not available."""
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    total, seen = 0, False
    for tid in tids:
        text = _read(f"/proc/self/task/{tid}/schedstat")
        if text is None:
            continue  # a thread that just exited
        parts = text.split()
        if len(parts) >= 2:
            total += int(parts[1])
            seen = True
    return total if seen else None


def _cpu_line() -> Optional[List[int]]:
    text = _read("/proc/stat")
    if not text:
        return None
    first = text.split("\n", 1)[0].split()
    if len(first) < 9 or first[0] != "cpu":
        return None
    try:
        return [int(v) for v in first[1:]]
    except ValueError:
        return None


def _tick_ns() -> int:
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return 1_000_000_000 // hz


def busy_ns() -> Optional[int]:
    """Busy time of all CPUs (ns; ``/proc/stat``: user, nice, system, irq, softirq, steal; not
    idle or iowait), or None."""
    f = _cpu_line()
    if f is None:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = f[:8]
    return (user + nice + system + irq + softirq + steal) * _tick_ns()


def steal_ns() -> Optional[int]:
    """Hypervisor steal time summed over the CPUs (ns; ``/proc/stat``), or None."""
    text = _read("/proc/stat")
    if not text:
        return None
    first = text.split("\n", 1)[0].split()
    if len(first) < 9 or first[0] != "cpu":
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return int(first[8]) * 1_000_000_000 // hz


@dataclass(frozen=True)
class Snapshot:
    """The counters at one moment (``snapshot()``)."""

    wall_ns: int
    wait_ns: Optional[int]
    steal_ns: Optional[int]
    busy_ns: Optional[int] = None  # all CPUs' busy time
    own_ns: Optional[int] = None  # this process's CPU time


def snapshot() -> Snapshot:
    return Snapshot(time.perf_counter_ns(), run_delay_ns(), steal_ns(), busy_ns(),
                    time.process_time_ns())


@dataclass(frozen=True)
class Window:
    """What happened during one measurement window: fractions of its wall time, and the
    reference unit's figure over its baseline (None: not re-timed)."""

    wall_s: float
    wait: Optional[float] = None
    steal: Optional[float] = None
    drift: Optional[float] = None  # ratio: reference now / reference baseline
    foreign: Optional[float] = None  # other processes' CPU time / (wall x CPUs)

    def to_dict(self) -> Dict[str, Optional[float]]:
        return {"wall_s": self.wall_s, "wait": self.wait, "steal": self.steal, "drift": self.drift,
                "foreign": self.foreign}


def window(start: Snapshot, end: Snapshot, drift: Optional[float] = None,
           cpus: Optional[int] = None, threads: int = 1) -> Window:
    """The window between two snapshots (``drift``: the reference unit's ratio, if re-timed;
    ``threads``: the threads the measurement runs on, over which the wait is averaged)."""
    wall = max(end.wall_ns - start.wall_ns, 1)
    cpus = cpus or os.cpu_count() or 1
    wait = None if start.wait_ns is None or end.wait_ns is None else \
        max(end.wait_ns - start.wait_ns, 0) / (wall * max(threads, 1))
    steal = None if start.steal_ns is None or end.steal_ns is None else \
        max(end.steal_ns - start.steal_ns, 0) / (wall * cpus)
    foreign = None
    if (None not in (start.busy_ns, end.busy_ns, start.own_ns, end.own_ns)
            and wall >= FOREIGN_MIN_S * 1e9):
        other = (end.busy_ns - start.busy_ns) - (end.own_ns - start.own_ns)
        foreign = max(other, 0) / (wall * cpus)
    return Window(wall / 1e9, wait, steal, drift, foreign)


@dataclass(frozen=True)
class Verdict:
    """``busy``: any signal past its limit; ``reasons``: one line per signal that was;
    ``local``: one of them was a load this machine's own scheduler sees (waiting for a core,
    steal, other processes' CPU time), not only the canary's drift (``Measurer._retried``
    stops retrying after a streak of those: a local load, such as a training beside the
    measurement, does not pass in seconds as another guest's burst does)."""

    busy: bool
    reasons: Tuple[str, ...] = ()
    local: bool = False


def judge(w: Window, limits: Mapping[str, float] = LIMITS) -> Verdict:
    """The decision rule (see the module docstring): busy when a signal passes its limit."""
    reasons: List[str] = []
    local = False
    if w.wait is not None and w.wait > limits["wait"]:
        reasons.append(f"threads waited for a core {100 * w.wait:.0f} % of the time")
        local = True
    if w.steal is not None and w.steal > limits["steal"]:
        reasons.append(f"hypervisor steal {100 * w.steal:.0f} %")
        local = True
    if w.drift is not None and w.drift - 1.0 > limits["drift"]:
        reasons.append(f"reference unit {100 * (w.drift - 1):+.0f} % from its baseline")
    if w.foreign is not None and w.foreign > limits.get("foreign", 1.0):
        reasons.append(f"other processes used {100 * w.foreign:.0f} % of the CPUs")
        local = True
    return Verdict(bool(reasons), tuple(reasons), local)


@dataclass
class Tally:
    """Summary of the windows of one measuring session (stored in its record as ``contention``)."""

    windows: int = 0
    busy: int = 0
    retries: int = 0
    kept_busy: int = 0  # chunks still busy after their retries, kept
    max_wait: float = 0.0
    max_steal: float = 0.0
    max_drift: float = 0.0  # largest |ratio - 1| of the reference unit
    max_foreign: float = 0.0
    reasons: List[str] = field(default_factory=list)

    def add(self, w: Window, v: Verdict) -> None:
        self.windows += 1
        self.busy += int(v.busy)
        self.max_wait = max(self.max_wait, w.wait or 0.0)
        self.max_steal = max(self.max_steal, w.steal or 0.0)
        self.max_foreign = max(self.max_foreign, w.foreign or 0.0)
        if w.drift is not None:
            self.max_drift = max(self.max_drift, abs(w.drift - 1.0))
        for r in v.reasons:
            if len(self.reasons) < 5 and r not in self.reasons:
                self.reasons.append(r)

    def to_dict(self) -> Dict[str, object]:
        return {"windows": self.windows, "busy": self.busy, "retries": self.retries,
                "kept_busy": self.kept_busy, "max_wait": round(self.max_wait, 4),
                "max_steal": round(self.max_steal, 4), "max_drift": round(self.max_drift, 4),
                "max_foreign": round(self.max_foreign, 4),
                "reasons": list(self.reasons)}


def _median_ratio(num: Mapping[str, float], den: Mapping[str, float]) -> Optional[float]:
    """The median of num[k] / den[k] over the keys both hold (den[k] > 0); None when none."""
    ratios = sorted(num[k] / den[k] for k in num if k in den and den[k] > 0)
    if not ratios:
        return None
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else 0.5 * (ratios[mid - 1] + ratios[mid])


def canary_drift(stored: Mapping[str, float], now: Mapping[str, float]) -> Optional[float]:
    """The ratio stored / now of a session's canary figures against the canary timed now: the
    median over the canary units both know (None when they share none). Above 1: the table
    was measured slower than the machine runs now (measured while busy); below 1: faster."""
    return _median_ratio(stored, now)


def canary_slowdown(now: Mapping[str, float], best: Mapping[str, float]) -> Optional[float]:
    """The drift of a window: the median ratio now / best over the canary units both know
    (None when they share none). The median, not the largest: each unit's best is the lowest
    of many timings, so the largest of four ratios sat 4 % above 1 on an idle machine (the FP
    head's figure is the noisiest), while the median stays within 1-2 %; at 2 threads a
    contended vCPU slows the three threaded units (7-18 %) and not the call overhead, which
    the median still sees."""
    return _median_ratio(now, best)


def drifted(ratio: Optional[float], limit: float = LIMITS["stale"]) -> bool:
    """Whether a canary ratio (``canary_drift``) says the session must be re-measured."""
    return ratio is not None and abs(ratio - 1.0) > limit
