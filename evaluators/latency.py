"""``LatencyTable``: latency of a spec on the packed runtime, predicted from per-unit entries.

A network is cut into timed units (``evaluators.latency_keys.decompose``: the runtime's fixed
call overhead, the FP head with the input normalisation, every binary conv with the choices that
change its work, the residual and global-skip adds, the tail's stages, the output
de-normalisation). Each distinct unit is measured once on the packed runtime
(``evaluators.latency_probes``) and stored under its canonical key with its spread (min,
quartiles, median, max). The figure of a unit, and of a network, is its fastest single call
(``min_ms``; ``evaluators.latency_timing`` says why). Then::

    predict(spec) = sum over u in entries(spec) of min_ms(u)            (milliseconds, batch 1)
    measure(spec) = fastest of ``repeats`` single calls of ops.native.compile(build(spec))
                    on a random image, after ``warmup`` calls (the table's clock)

Units are timed in rotation (``latency_timing.time_rotation``, up to ``ROTATION_CHUNK`` units at
a time): ``warmup`` untimed passes, then ``repeats`` passes that each call every unit once in a
new order, so a unit is timed in the state it has inside a network: its weights cold, not hot
from a call of itself, and its inputs hot, rewritten just before the call (untimed) as the layer
before it would have written them. Binary convs rotate among binary convs (in a network they run
in long runs, one after another, so their code path is warm); every other unit rotates among
other FP units with an untimed binary conv run just before each of its calls (its ``lead``: the
head, the adds and the tail follow binary convs in a network). Measured on 50 random specs of
the default space (Intel Xeon, avx512, 64x64): one rotation mixing every kind made 32-channel
binary convs 10-15 % slower than inside a network, and predictions of 32-channel networks up to
+10 % high. Units a spec needs that the table lacks are measured on demand and the table is saved,
or, with ``strict=True``, ``predict`` raises ``ValueError`` naming the first missing key. A
table knows its context — CPU model, ISA path and build of the native kernel, thread count,
torch version, LR input size, clock, heap policy of the runtime — and refuses a file measured in another one
(``evaluators.latency_store``). Measurements run with ``torch.set_num_threads(threads)`` (the
previous count is restored afterwards). The file also records, per measuring session (this
object, in this process), when the entries were measured (UTC, ISO 8601) and the 1-minute load
average at its start and end (``measured``, see ``evaluators.latency_store``): metadata for
judging the figures, not part of the context.

Default file: ``<cache>/latency/<cpu>-<isa>-<build>-t<threads>-<CxHxW>.json`` where ``<cache>`` is
``$BSRNAS_CACHE`` or ``~/.cache/bsrnas`` (so searches on one machine share their tables).
"""
from __future__ import annotations

import datetime
import hashlib
import os
import socket
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import torch

from evaluators import latency_store as store
from evaluators.latency_keys import decompose
from evaluators.latency_probes import make_probe
from evaluators.latency_timing import (MIN_ROTATION, TimingStats, clock_for, cpu_model,
                                       threads as threads_ctx, time_callable,
                                       time_rotation)

PathLike = Union[str, Path]

#: most units timed in one rotation (bounds the memory of their probes and inputs)
ROTATION_CHUNK = 64


def utc_now() -> str:
    """The current UTC time, ISO 8601 with milliseconds (``2025-01-31T09:15:02.113+00:00``)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def load_1min() -> Optional[float]:
    """The 1-minute load average (``os.getloadavg()[0]``); ``None`` where the OS has none."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return None


def known_sessions(data: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The session records of a table file read by ``latency_store.read``; a file written before
    sessions were recorded gives one ``legacy`` record for its entries (none if it has none)."""
    if data["measured"] is not None:
        return [dict(rec) for rec in data["measured"]]
    return [store.legacy_session(len(data["entries"]))] if data["entries"] else []


def filler_keys(input_size: Tuple[int, int, int]) -> Dict[str, List[Dict[str, Any]]]:
    """Typical units of a small network at this input size, per family (``bconv``: binary
    convs; ``fp``: everything else). They run untimed: as fillers of a rotation of fewer than
    ``MIN_ROTATION`` units of their family, and (the ``bconv`` ones) as the lead of each FP unit
    call (see ``measure_entries``)."""
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


def family(key: str) -> str:
    """``bconv`` for a binary conv's key, ``fp`` for every other unit."""
    return "bconv" if store.key_dict(key)["kind"] == "bconv" else "fp"


def native_isa() -> str:
    """The ISA path the native kernel uses here (``ops.native.info()['isa']``); ``reference``
    when the extension is not built (then every binary conv runs the slow Python reference)."""
    import ops.native

    info = ops.native.info()
    if not info.get("built"):
        return "reference"
    isa = str(info.get("isa"))
    if isa.startswith("error"):
        raise ValueError(f"native runtime: {isa}")
    return isa


def native_build() -> str:
    """First 12 hex digits of the sha1 of the native extension's file (``reference`` when it is
    not built): a rebuilt kernel times differently, so a table names the build it measured."""
    from ops.native import kernels

    ext = getattr(kernels, "_ext", None)
    path = getattr(ext, "__file__", None)
    if not path:
        return "reference"
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def current_context(input_size: Tuple[int, int, int], threads: int, clock: str = "wall") -> Dict[str, Any]:
    """The context a table measured here and now would be valid for. ``heap``: the packed
    runtime's allocation policy (``ops.native.heap``, applied here as ``compile`` would):
    ``steady`` or ``default`` (``BSRNAS_STEADY_HEAP=0``), which changes every network's time."""
    from ops.native.heap import steady_heap

    heap = "steady" if steady_heap() else "default"
    return {"cpu": cpu_model(), "isa": native_isa(), "native": native_build(), "threads": threads,
            "torch": torch.__version__, "input_size": tuple(input_size), "clock": clock,
            "heap": heap}


class LatencyTable:
    """Per-unit latency entries for one context, and the spec-level predictions they give.

    ``input_size``: the LR input ``(3, H, W)`` (or ``'3xHxW'``); ``path``: the JSON file (default:
    the cache path of this context; loaded when it exists, refused when measured elsewhere);
    ``threads``: thread count to measure and predict for (default ``torch.get_num_threads()``);
    ``strict``: raise on missing entries instead of measuring them; ``warmup``/``repeats``: untimed
    and timed passes of the rotation over the units (``repeats`` single-call samples per unit),
    and untimed calls / single-call samples of a whole network in ``measure``; ``autosave``:
    save after on-demand measurements; ``clock``: ``wall`` (default) or ``cpu`` (process CPU
    time, one thread only: robust on an overloaded shared machine, see ``latency_timing``).
    """

    def __init__(self, input_size: Any = (3, 64, 64), path: Optional[PathLike] = None,
                 threads: Optional[int] = None, strict: bool = False, warmup: int = 2,
                 repeats: int = 25, autosave: bool = True, clock: str = "wall"):
        self.input_size = store.parse_input_size(input_size, field="input_size")
        if threads is None:
            threads = torch.get_num_threads()
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"invalid threads {threads!r}; allowed: a positive integer")
        self.threads = threads
        self.clock = clock
        self._clock = clock_for(clock, threads)
        self.strict = bool(strict)
        self.warmup, self.repeats, self.autosave = warmup, repeats, autosave
        for name, value, least in (("warmup", warmup, 0), ("repeats", repeats, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"invalid {name} {value!r}; allowed: an integer >= {least}")
        self.context = current_context(self.input_size, threads, clock)
        self.path = Path(path) if path is not None else store.default_path(self.context)
        self._entries: Dict[str, TimingStats] = {}
        self._fillers: Dict[str, List[Callable[[], Any]]] = {}
        self._session: Optional[Dict[str, Any]] = None  # this object's session, once it measured
        self._sessions: List[Dict[str, Any]] = []  # the other sessions known (from the file)
        if self.path.exists():
            data = store.read(self.path)
            store.check_context(self.path, data["context"], self.context)
            self._entries = data["entries"]
            self._sessions = known_sessions(data)

    # -- the table -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def keys(self) -> List[str]:
        return sorted(self._entries)

    def stats(self, key: str) -> TimingStats:
        """The stored timing of ``key`` (measured now unless strict; see ``predict``)."""
        if key not in self._entries:
            if self.strict:
                raise ValueError(
                    f"latency table {self.path} has no entry {key}; strict mode does not measure "
                    f"missing entries — run `bsrnas lut build` for this space or use strict=False"
                )
            self.measure_entries([key])
        return self._entries[key]

    def fillers(self, fam: str) -> List[Callable[[], Any]]:
        """The untimed filler probes of family ``fam`` (``filler_keys``), built once."""
        if fam not in self._fillers:
            self._fillers[fam] = [make_probe(k, self.threads) for k in filler_keys(self.input_size)[fam]]
        return self._fillers[fam]

    def measure_entries(self, keys: Iterable[str], force: bool = False, progress=None) -> int:
        """Measure every key not in the table (all of them with ``force``); return the count.
        The keys are timed in rotation, ``ROTATION_CHUNK`` at a time and one family at a time
        (see the module docstring): binary convs among binary convs, and every other unit with
        an untimed binary conv run just before each of its calls (its lead).
        ``progress``: an optional callable called with each key once it is measured (e.g. a
        tqdm bar's update). Saves the table when ``autosave`` and something was measured.
        What is measured is added to this object's session record (``measured``, see
        ``evaluators.latency_store``), also when the call is interrupted."""
        todo = [k for k in dict.fromkeys(keys) if force or k not in self._entries]
        by_family: Dict[str, List[str]] = {"bconv": [], "fp": []}
        for key in todo:
            by_family[family(key)].append(key)
        started, load_start, done = utc_now(), load_1min(), 0
        try:
            with threads_ctx(self.threads):
                for fam, fam_keys in by_family.items():
                    for start in range(0, len(fam_keys), ROTATION_CHUNK):
                        chunk = fam_keys[start:start + ROTATION_CHUNK]
                        probes = {k: make_probe(store.key_dict(k), self.threads) for k in chunk}
                        if fam == "fp":
                            leads = self.fillers("bconv")
                            for i, probe in enumerate(probes.values()):
                                probe.lead = leads[i % len(leads)]
                        fillers = self.fillers(fam) if len(chunk) < MIN_ROTATION else ()
                        stats = time_rotation(probes, samples=self.repeats, warmup=self.warmup,
                                              clock=self._clock, fillers=fillers,
                                              seed=start + len(fam_keys))
                        for key in chunk:
                            self._entries[key] = stats[key]
                            done += 1
                            if progress is not None:
                                progress(key)
        finally:
            if done:
                self._record_session(started, load_start, done)
        if todo and self.autosave:
            self.save()
        return len(todo)

    def _record_session(self, started: str, load_start: Optional[float], count: int) -> None:
        """Add ``count`` measurements, begun at ``started`` under ``load_start``, to this
        object's session; a first measurement (or the first one in a forked process) opens it."""
        if self._session is not None and self._session["pid"] != os.getpid():
            self._sessions.append(self._session)  # a copy made before a fork: the parent's
            self._session = None
        if self._session is None:
            self._session = {"id": uuid.uuid4().hex[:16], "started": started, "finished": None,
                             "load_1min_start": load_start, "load_1min_end": None, "entries": 0,
                             "host": socket.gethostname(), "pid": os.getpid()}
        self._session.update(finished=utc_now(), load_1min_end=load_1min(),
                             entries=self._session["entries"] + count)

    def measured(self) -> List[Dict[str, Any]]:
        """The session records of this table (see ``evaluators.latency_store``), oldest first:
        those of its file, then this object's own (once it measured)."""
        records = list(self._sessions) + ([self._session] if self._session else [])
        return sorted((dict(r) for r in records),
                      key=lambda r: (r["started"] is not None, r["started"] or ""))

    def set_stats(self, key: str, stats: TimingStats) -> None:
        """Store ``stats`` as the entry of ``key`` (e.g. combined from several measurement rounds)."""
        store.key_dict(key)
        if not isinstance(stats, TimingStats):
            raise ValueError(f"stats for {key}: {type(stats).__name__} given; allowed: TimingStats")
        self._entries[key] = stats

    def save(self, path: Optional[PathLike] = None) -> Path:
        """Write the table (atomically) to ``path`` or its own path; return the path. Entries
        another process saved to the same file meanwhile (same context) are kept: the file holds
        the union, this table's own measurements winning on a shared key; so are the session
        records (``measured``) of both."""
        target = Path(path) if path is not None else self.path
        merged = dict(self._entries)
        if target.exists():
            try:
                data = store.read(target)
                store.check_context(target, data["context"], self.context)
            except ValueError:
                data = None  # unreadable or another context: overwritten by this table
            if data is not None:
                for key, stats in data["entries"].items():
                    merged.setdefault(key, stats)
                    self._entries.setdefault(key, stats)
                # sessions: the file's copy of another session is the newer one
                by_id = {r["id"]: r for r in self._sessions}
                by_id.update((r["id"], r) for r in known_sessions(data))
                if self._session is not None:
                    by_id.pop(self._session["id"], None)
                self._sessions = list(by_id.values())
        return store.save(target, self.context, merged, measured=self.measured())

    # -- specs -----------------------------------------------------------------------------
    def entries(self, spec: Any) -> List[str]:
        """The canonical keys of the units of ``spec``, in execution order, one per occurrence."""
        return [store.canonical_key(k) for k in decompose(spec, self.input_size)]

    def predict(self, spec: Any) -> float:
        """Predicted latency (ms) of ``spec``: the sum of its entries' figures (``min_ms``)."""
        keys = self.entries(spec)
        missing = [k for k in dict.fromkeys(keys) if k not in self._entries]
        if missing:
            if self.strict:
                self.stats(missing[0])  # raises naming the key
            self.measure_entries(missing)
        total = 0.0
        for key in keys:
            total += self._entries[key].min_ms
        return total

    def network_probe(self, spec: Any) -> Callable[[], Any]:
        """A zero-argument callable running the whole network of ``spec`` once on the packed
        runtime: ``ops.native.compile(build(spec))`` on a random [0, 1] image of this input size."""
        import ops.native
        from space.builder import build

        compiled = ops.native.compile(build(spec).eval(), threads=self.threads)
        x = torch.rand(1, *self.input_size, generator=torch.Generator().manual_seed(0))
        return lambda: compiled(x)

    def time_probe(self, probe: Callable[[], Any], warmup: Optional[int] = None,
                   repeats: Optional[int] = None) -> TimingStats:
        """Time ``probe`` in single calls with this table's threads and clock:
        ``warmup`` untimed calls, then ``repeats`` timed ones (the table's defaults)."""
        with threads_ctx(self.threads):
            return time_callable(probe, warmup=self.warmup if warmup is None else warmup,
                                 repeats=self.repeats if repeats is None else repeats,
                                 min_sample_ms=0.0, clock=self._clock)

    def measure_stats(self, spec: Any, warmup: Optional[int] = None,
                      repeats: Optional[int] = None) -> TimingStats:
        """Time the whole network of ``spec`` on the packed runtime (batch 1, this input size)."""
        with threads_ctx(self.threads):
            probe = self.network_probe(spec)
        return self.time_probe(probe, warmup, repeats)

    def measure(self, spec: Any, warmup: Optional[int] = None, repeats: Optional[int] = None) -> float:
        """Measured latency (ms) of the whole network of ``spec``: its fastest single call."""
        return self.measure_stats(spec, warmup, repeats).min_ms

    def summary(self) -> Dict[str, Any]:
        """Counts per kind and the context, for ``bsrnas lut show``."""
        kinds: Dict[str, int] = {}
        for key in self._entries:
            kind = store.key_dict(key)["kind"]
            kinds[kind] = kinds.get(kind, 0) + 1
        return {"path": str(self.path), "context": dict(self.context), "entries": len(self),
                "kinds": kinds, "measured": self.measured()}
