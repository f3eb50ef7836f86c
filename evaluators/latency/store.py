"""Storage of a latency table: the JSON file, its session records and the cache path.

File layout (``format`` = ``bsrnas-latency-table/3``; version 3 entries are timed in rotation
with hot inputs, single calls, figure ``min_ms``: see ``timing``; files of versions 1 and 2,
timed another way, are refused)::

    {
      "format": "bsrnas-latency-table/3",
      "context": {"cpu": "AMD EPYC", "isa": "avx2", "native": "<sha1[:12] of the extension>",
                  "threads": 2, "torch": "2.13.0+cpu",
                  "input_size": [3, 64, 64], "clock": "wall", "heap": "steady", "pool": "openmp"},
      "measured": [{"id": "<hex>", "started": "2025-01-31T09:15:02.113+00:00",
                    "finished": "2025-01-31T09:21:40.905+00:00",
                    "load_1min_start": 0.42, "load_1min_end": 1.07, "entries": 412,
                    "host": "node-3", "pid": 12345,
                    "busy": false, "canary": {"<canonical key>": 0.081, ...},
                    "contention": {"windows": 12, "busy": 0, "retries": 0, "kept_busy": 0,
                                   "max_wait": 0.004, "max_steal": 0.0, "max_drift": 0.02,
                                   "reasons": []}}, ...],
      "calibration": {...},                        (optional: ``calibration.Calibration``)
      "entries": {"<canonical key>": {"median_ms": .., "min_ms": .., "q1_ms": .., "q3_ms": ..,
                                      "max_ms": .., "repeats": 25, "number": 1,
                                      "session": "<hex>"}, ...}
    }

The context is defined in ``context`` (``CONTEXT_FIELDS``, ``check_context``): a table measured
in one context is refused in another.

``measured`` is metadata, not context: when the entries were timed and under what load. One
record per measuring session (a ``Measurer`` that measured entries: one process, one ``bsrnas
lut build`` run; a table file may be extended by several), with its UTC start and end (ISO
8601), the 1-minute load average (``os.getloadavg()[0]``, ``None`` where the OS has none) when
it started and when it last measured, the count of unit measurements it made (re-measurements
included) and its host and pid; since issue 16 also whether the machine was found busy while it
measured (``busy``: a chunk still busy after its retries was kept), the figures of the
session's canary units (``canary``: the reference the table is checked against before use) and
its contention tally (``contention``, see ``contention.Tally``). Those three are optional (older
records lack them: ``None``). Each entry names the session that measured it (``session``;
absent in older files). Files written before the record existed have no ``measured`` field
(``read`` gives ``None``: unknown); when such a table is extended, its earlier entries are kept
under one record with ``id`` ``"legacy"`` and ``started`` ``None``.

Files are written atomically (temporary file + ``os.replace``) so an interrupted build never
leaves a truncated table.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from evaluators.latency.context import CONTEXT_FIELDS, context_slug
from evaluators.latency.keys import key_dict
from evaluators.latency.timing import TimingStats
from space.files import atomic_write

FORMAT = "bsrnas-latency-table/3"
FORMAT_TAG = "v3"  # in default file names, so caches of older formats are left alone
#: fields of one record of ``measured`` (see the module docstring)
SESSION_FIELDS = ("id", "started", "finished", "load_1min_start", "load_1min_end", "entries",
                  "host", "pid")
#: optional fields of a record (issue 16; ``None`` when absent)
SESSION_EXTRA = ("busy", "canary", "contention")
LEGACY_SESSION = "legacy"


def cache_dir() -> Path:
    """``$BSRNAS_CACHE/latency`` if set, else ``$XDG_CACHE_HOME/bsrnas/latency``, else
    ``~/.cache/bsrnas/latency``."""
    root = os.environ.get("BSRNAS_CACHE")
    if root:
        return Path(root).expanduser() / "latency"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "bsrnas" / "latency"


def default_path(context: Mapping[str, Any]) -> Path:
    """``<cache_dir>/<context slug>-v3.json`` (``context.context_slug``: CPU, ISA, build,
    threads, input size, clock and heap; ``v3`` the file format): a rebuilt kernel gets a new
    file."""
    return cache_dir() / f"{context_slug(context)}-{FORMAT_TAG}.json"


def legacy_session(entries: int) -> Dict[str, Any]:
    """The record standing for ``entries`` entries of a file written before sessions were
    recorded: when and under what load they were measured is unknown."""
    return {"id": LEGACY_SESSION, "started": None, "finished": None, "load_1min_start": None,
            "load_1min_end": None, "entries": int(entries), "host": None, "pid": None,
            "busy": None, "canary": None, "contention": None}


def _check_session(path: Path, i: int, rec: Any) -> Dict[str, Any]:
    where = f"latency table {path}: measured[{i}]"
    if not isinstance(rec, dict):
        raise ValueError(f"{where} must be an object with the fields {list(SESSION_FIELDS)}, "
                         f"got {rec!r}")
    missing = [f for f in SESSION_FIELDS if f not in rec]
    if missing:
        raise ValueError(f"{where} lacks the field(s) {missing}; a record holds "
                         f"{list(SESSION_FIELDS)}")
    kinds = {"id": (str,), "started": (str, type(None)), "finished": (str, type(None)),
             "load_1min_start": (int, float, type(None)), "load_1min_end": (int, float, type(None)),
             "entries": (int,), "host": (str, type(None)), "pid": (int, type(None))}
    for name, allowed in kinds.items():
        value = rec[name]
        if isinstance(value, bool) or not isinstance(value, allowed):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise ValueError(f"{where}.{name} is {value!r}; allowed: {names}")
    if rec["entries"] < 0:
        raise ValueError(f"{where}.entries is {rec['entries']!r}; allowed: an integer >= 0")
    out = dict(rec)
    for name, allowed in (("busy", (bool,)), ("canary", (dict,)), ("contention", (dict,))):
        value = out.setdefault(name, None)
        if value is not None and not isinstance(value, allowed):
            raise ValueError(f"{where}.{name} is {value!r}; allowed: "
                             f"{allowed[0].__name__} or null")
    for key, ms in (out["canary"] or {}).items():
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms <= 0:
            raise ValueError(f"{where}.canary[{key!r}] is {ms!r}; allowed: a positive number (ms)")
    return out


def read(path: Path) -> Dict[str, Any]:
    """Read a table file: ``dict(context=..., entries={key: TimingStats}, measured=[records] or
    None, sessions={key: session id}, calibration=dict or None)`` (``measured`` ``None``: a file
    written before measurement sessions were recorded; ``sessions`` lists only the entries that
    name theirs). Malformed files raise ``ValueError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"latency table {path} does not exist") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"latency table {path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"latency table {path} has format {got!r}; expected {FORMAT!r} (older "
                         "tables were timed another way: rebuild it with `bsrnas lut build`)")
    context = data.get("context")
    if isinstance(context, dict) and "pool" not in context:
        context["pool"] = "own"  # tables from before the pool field: the extension's own pool
    if not isinstance(context, dict) or any(f not in context for f in CONTEXT_FIELDS):
        raise ValueError(f"latency table {path}: 'context' must hold the fields {list(CONTEXT_FIELDS)}")
    raw = data.get("entries")
    if not isinstance(raw, dict):
        raise ValueError(f"latency table {path}: 'entries' must be an object of key -> timing")
    entries, sessions = {}, {}
    for key, value in raw.items():
        key_dict(key)
        if not isinstance(value, dict):
            raise ValueError(f"latency table {path}: entry {key} must be an object, got {value!r}")
        entries[key] = TimingStats.from_dict(value)
        if isinstance(value.get("session"), str):
            sessions[key] = value["session"]
    calibration = data.get("calibration")
    if calibration is not None and not isinstance(calibration, dict):
        raise ValueError(f"latency table {path}: 'calibration' is {calibration!r}; allowed: an "
                         "object or null")
    measured = data.get("measured")
    if measured is not None:
        if not isinstance(measured, list):
            raise ValueError(f"latency table {path}: 'measured' is {measured!r}; allowed: a list "
                             f"of session records")
        measured = [_check_session(path, i, rec) for i, rec in enumerate(measured)]
    return {"context": context, "entries": entries, "measured": measured, "sessions": sessions,
            "calibration": calibration}


def load(path: Path) -> Tuple[Dict[str, Any], Dict[str, TimingStats]]:
    """Read a table file; return (context, entries). Malformed files raise ``ValueError``."""
    data = read(path)
    return data["context"], data["entries"]


def save(path: Path, context: Mapping[str, Any], entries: Mapping[str, TimingStats],
         measured: Optional[Sequence[Mapping[str, Any]]] = None,
         sessions: Optional[Mapping[str, str]] = None,
         calibration: Optional[Mapping[str, Any]] = None) -> Path:
    """Write the table atomically; return the path. ``measured``: the session records (see the
    module docstring; ``None`` writes none); ``sessions``: the session id of each entry that has
    one; ``calibration``: the calibration's dict (``None`` writes none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ctx = dict(context)
    ctx["input_size"] = list(ctx["input_size"])
    data: Dict[str, Any] = {"format": FORMAT, "context": ctx}
    if measured is not None:
        data["measured"] = [{f: rec.get(f) for f in SESSION_FIELDS + SESSION_EXTRA}
                            for rec in measured]
    if calibration is not None:
        data["calibration"] = dict(calibration)
    sessions = sessions or {}
    data["entries"] = {k: dict(entries[k].to_dict(), **({"session": sessions[k]} if k in sessions
                                                         else {}))
                       for k in sorted(entries)}
    return atomic_write(path, json.dumps(data, indent=1) + "\n")
