"""``LatencyTable``: the predicting part of the latency model (entries in, milliseconds out).

A table holds, for one measurement context (``context``), the figure of every unit it knows
(``TimingStats``, its fastest single call ``min_ms``), the session records of the measurements
(``store``), the session of each entry, and optionally a calibration (``calibration``). Then::

    raw(spec)     = sum over u in entries(spec) of min_ms(u)                  (ms, batch 1)
    predict(spec) = calibration(raw parts of spec)   (= raw(spec) when the table has none)

What it lacks is measured by its measuring part, ``table.measurer`` (``measure.Measurer``),
created with the table unless ``strict=True``: then a missing unit raises ``ValueError`` naming
the first missing key instead. Opening a table on an existing file checks its context
(``context.check_context``: a file measured elsewhere is refused) and, with ``check=True`` (the
default, when measuring is allowed), its canary (``Measurer.check``): sessions that drifted are
re-measured before the first prediction. Measurements run with ``torch.set_num_threads(threads)``
(the previous count is restored afterwards).

Default file: ``<cache>/latency/<context slug>-v3.json`` where ``<cache>`` is
``$BSRNAS_CACHE`` or ``~/.cache/bsrnas`` (so searches on one machine share their tables).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import torch

from evaluators.latency import store
from evaluators.latency.calibration import Calibration, features
from evaluators.latency.context import check_context, current_context, parse_input_size
from evaluators.latency.keys import canonical_key, decompose, key_dict
from evaluators.latency.timing import TimingStats, clock_for

PathLike = Union[str, Path]


def known_sessions(data: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The session records of a table file read by ``store.read``; a file written before
    sessions were recorded gives one ``legacy`` record for its entries (none if it has none)."""
    if data["measured"] is not None:
        return [dict(rec) for rec in data["measured"]]
    return [store.legacy_session(len(data["entries"]))] if data["entries"] else []


class LatencyTable:
    """Per-unit latency entries for one context, and the spec-level predictions they give.

    ``input_size``: the LR input ``(3, H, W)`` (or ``'3xHxW'``); ``path``: the JSON file (default:
    the cache path of this context; loaded when it exists, refused when measured elsewhere);
    ``threads``: thread count to measure and predict for (default ``torch.get_num_threads()``);
    ``strict``: raise on missing entries instead of measuring them (no measuring part);
    ``warmup``/``repeats``/``clock``/``on_contention``/``retries``: settings of the measuring
    part (``measure.Measurer``); ``autosave``: save after on-demand measurements; ``check``: check
    a loaded table's canary before use and re-measure the sessions that drifted;
    ``calibrate``: fit a calibration (``calibration``) on the reference networks when the
    table is first asked to predict and has none (measuring tables only); they are random
    networks of ``calibration_space`` (a ``SearchSpace``) when given.
    """

    def __init__(self, input_size: Any = (3, 64, 64), path: Optional[PathLike] = None,
                 threads: Optional[int] = None, strict: bool = False, warmup: int = 2,
                 repeats: int = 25, autosave: bool = True, clock: str = "wall",
                 check: bool = True, calibrate: bool = True, on_contention: str = "keep",
                 retries: int = 4, calibration_space: Any = None):
        self.input_size = parse_input_size(input_size, field="input_size")
        if threads is None:
            threads = torch.get_num_threads()
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"invalid threads {threads!r}; allowed: a positive integer")
        self.threads = threads
        self.clock = clock
        clock_for(clock, threads)  # refuse a bad clock before anything else
        self.strict = bool(strict)
        self.autosave = autosave
        self.auto_calibrate = bool(calibrate) and not self.strict
        #: the SearchSpace whose random networks the calibration is fitted on (None: the fixed
        #: ``calibration.REFERENCE_SPACE``); a search passes its own space
        self.calibration_space = calibration_space
        self.context = current_context(self.input_size, threads, clock)
        self.path = Path(path) if path is not None else store.default_path(self.context)
        self._entries: Dict[str, TimingStats] = {}
        self._session_of: Dict[str, str] = {}  # entry -> id of the session that measured it
        self._sessions: List[Dict[str, Any]] = []  # the session records known (from the file)
        self.calibration: Optional[Calibration] = None
        self.check_result: Optional[Dict[str, Any]] = None  # what the canary check found
        from evaluators.latency.measure import Measurer

        self.measurer: Optional[Measurer] = None if self.strict else Measurer(
            self, warmup=warmup, repeats=repeats, on_contention=on_contention, retries=retries)
        if self.path.exists():
            data = store.read(self.path)
            check_context(self.path, data["context"], self.context)
            self._entries = data["entries"]
            self._session_of = dict(data["sessions"])
            self._sessions = known_sessions(data)
            if data["calibration"] is not None:
                self.calibration = Calibration.from_dict(data["calibration"])
            if check and self.measurer is not None and self._entries:
                self.check_result = self.measurer.check()

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
            self._require([key])
        return self._entries[key]

    def session_of(self, key: str) -> Optional[str]:
        """The id of the session that measured ``key`` (None: unknown, an older file)."""
        return self._session_of.get(key)

    def put(self, key: str, stats: TimingStats, session: Optional[str] = None) -> None:
        """Store ``stats`` as the entry of ``key`` (measured by ``session``, when known)."""
        key_dict(key)
        if not isinstance(stats, TimingStats):
            raise ValueError(f"stats for {key}: {type(stats).__name__} given; allowed: TimingStats")
        self._entries[key] = stats
        if session is None:
            self._session_of.pop(key, None)
        else:
            self._session_of[key] = session

    def drop(self, keys: Iterable[str]) -> int:
        """Forget the entries ``keys`` (they are measured again when needed); return the count."""
        n = 0
        for key in keys:
            if self._entries.pop(key, None) is not None:
                n += 1
            self._session_of.pop(key, None)
        return n

    def sessions(self) -> List[Dict[str, Any]]:
        """The session records this table knows besides its measurer's own (from its file)."""
        return self._sessions

    def measured(self) -> List[Dict[str, Any]]:
        """The session records of this table (see ``store``), oldest first: those of its file,
        then its measurer's own (once it measured)."""
        own = self.measurer.session if self.measurer is not None else None
        records = list(self._sessions) + ([own] if own else [])
        return sorted((dict(r) for r in records),
                      key=lambda r: (r["started"] is not None, r["started"] or ""))

    def save(self, path: Optional[PathLike] = None) -> Path:
        """Write the table (atomically) to ``path`` or its own path; return the path. Entries
        another process saved to the same file meanwhile (same context) are kept: the file holds
        the union, this table's own measurements winning on a shared key; so are the session
        records (``measured``) of both. The calibration written is this table's (or the
        file's, when this table has none)."""
        target = Path(path) if path is not None else self.path
        if target.exists():
            try:
                data = store.read(target)
                check_context(target, data["context"], self.context)
            except ValueError:
                data = None  # unreadable or another context: overwritten by this table
            if data is not None:
                for key, stats in data["entries"].items():
                    if key not in self._entries and key not in self._dropped():
                        self._entries[key] = stats
                        if key in data["sessions"]:
                            self._session_of[key] = data["sessions"][key]
                # sessions: the file's copy of another session is the newer one
                by_id = {r["id"]: r for r in self._sessions}
                by_id.update((r["id"], r) for r in known_sessions(data))
                for gone in (self.check_result or {}).get("drifted", ()):
                    by_id.pop(gone, None)  # re-measured: its figures are no longer in the table
                own = self.measurer.session if self.measurer is not None else None
                if own is not None:
                    by_id.pop(own["id"], None)
                self._sessions = list(by_id.values())
                # a calibration the canary check dropped is not merged back from the file
                dropped = (self.check_result or {}).get("calibration_dropped", False)
                if self.calibration is None and data["calibration"] is not None and not dropped:
                    self.calibration = Calibration.from_dict(data["calibration"])
        return store.save(target, self.context, self._entries, measured=self.measured(),
                          sessions=self._session_of,
                          calibration=None if self.calibration is None else self.calibration.to_dict())

    def forget_sessions(self, ids: Iterable[str]) -> None:
        """Drop the records of the sessions ``ids`` (their entries were dropped)."""
        gone = set(ids)
        self._sessions = [r for r in self._sessions if r["id"] not in gone]

    def _dropped(self) -> set:
        """Keys this table re-measures because their session drifted (not merged back)."""
        return set(self.check_result["dropped"]) if self.check_result else set()

    # -- specs -----------------------------------------------------------------------------
    def entries(self, spec: Any) -> List[str]:
        """The canonical keys of the units of ``spec``, in execution order, one per occurrence."""
        return [canonical_key(k) for k in decompose(spec, self.input_size)]

    def _require(self, keys: Iterable[str]) -> None:
        missing = [k for k in dict.fromkeys(keys) if k not in self._entries]
        if not missing:
            return
        if self.measurer is None:
            raise ValueError(
                f"latency table {self.path} has no entry {missing[0]}; strict mode does not "
                f"measure missing entries — run `bsrnas lut build` for this space or use "
                f"strict=False"
            )
        self.measurer.measure_entries(missing)

    def raw(self, spec: Any) -> float:
        """The sum of the figures (``min_ms``) of ``spec``'s entries (ms), uncalibrated."""
        keys = self.entries(spec)
        self._require(keys)
        total = 0.0
        for key in keys:
            total += self._entries[key].min_ms
        return total

    def features(self, spec: Any) -> Dict[str, float]:
        """What the calibration reads of ``spec`` (``calibration.features``)."""
        keys = self.entries(spec)
        self._require(keys)
        return features(keys, self._entries)

    def predict(self, spec: Any) -> float:
        """Predicted latency (ms) of ``spec``: the calibration applied to its entries' figures,
        or their plain sum when the table has no calibration (see the module docstring)."""
        if self.calibration is None and self.auto_calibrate and self.measurer is not None:
            self.measurer.calibrate()
        if self.calibration is None:
            return self.raw(spec)
        return self.calibration.apply(self.features(spec))

    def summary(self) -> Dict[str, Any]:
        """Counts per kind and the context, for ``bsrnas lut show``."""
        kinds: Dict[str, int] = {}
        for key in self._entries:
            kind = key_dict(key)["kind"]
            kinds[kind] = kinds.get(kind, 0) + 1
        return {"path": str(self.path), "context": dict(self.context), "entries": len(self),
                "kinds": kinds, "measured": self.measured(),
                "calibration": None if self.calibration is None else self.calibration.to_dict()}
