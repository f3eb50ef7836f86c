"""``bsrnas lut``: build or inspect the latency table of the packed runtime.

    bsrnas lut build --space configs/space/default.yaml --input 3x64x64 [--threads N] [--out FILE]
                     [--limit N | --sample N] [--seed S] [--repeats R] [--warmup W] [--force]
                     [--clock wall|cpu] [--calibrate N] [--on-contention keep|refuse]
    bsrnas lut show FILE

``build`` enumerates every distinct unit (layer configuration) the space can produce from the
space definition (``evaluators.latency.enumeration.space_keys``), measures those the table lacks
on the packed runtime in rotation (``R`` timed passes over the units, each unit once per pass,
its figure the fastest call; see ``evaluators.latency.measure``; tqdm bar), then fits the
table's calibration on ``--calibrate N`` whole networks drawn from the space (``--seed``; 0
skips it; see ``evaluators.latency.calibration``; the networks' timing rounds run between
the chunks of units, so both see the same machine) and writes the table — by default to the
cache path the search reuses (``~/.cache/bsrnas/latency/<cpu>-<isa>-<build>-t<threads>-<CxHxW>-v3.json``,
``$BSRNAS_CACHE`` overrides the cache folder). The table is saved every ``SAVE_EVERY``
entries (every chunk of units when it calibrates), so an interrupted build keeps what it
measured and a rerun continues; an existing table is first checked against its canary, and
the sessions that drifted are measured again. While measuring, a chunk of units timed while
the machine was busy is re-measured; one still busy after the retries is kept and its session
flagged, or with ``--on-contention refuse`` the build stops (exit status 2). ``--limit N`` measures only the first N missing units (in key
order); ``--sample N`` measures N missing units drawn at random (``--seed``); either way the
count of the whole set is printed first. ``show`` prints the context, when and under what load
the entries were measured (one line per measuring session: UTC start and end, 1-minute load
average at both, entries measured, host and pid, then whether the machine was found busy and
the contention signals; see ``evaluators.latency.store``), the calibration, and the per-kind
counts and fastest / median / slowest unit figures of a table file.
"""
from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Dict, List

HELP = "build (measure every distinct layer configuration of a space) or show a latency table"
SAVE_EVERY = 25


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="lut_command", metavar="ACTION")
    b = sub.add_parser("build", help="measure the distinct units of a search space into a table")
    b.add_argument("--space", default="configs/space/default.yaml", help="search space YAML")
    b.add_argument("--input", default="3x64x64",
                   help="LR input size CxHxW the table is measured for (default 3x64x64)")
    b.add_argument("--threads", type=int, default=None,
                   help="thread count (default: torch.get_num_threads())")
    b.add_argument("--out", default=None, help="table file (default: the cache path)")
    b.add_argument("--limit", type=int, default=None, help="measure at most N missing units")
    b.add_argument("--sample", type=int, default=None,
                   help="measure N missing units drawn at random instead of all")
    b.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    b.add_argument("--repeats", type=int, default=25,
                   help="timed passes over the units: single-call samples per unit (default 25)")
    b.add_argument("--warmup", type=int, default=2, help="untimed passes first (default 2)")
    b.add_argument("--force", action="store_true", help="re-measure units already in the table")
    b.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                   help="wall time (default) or process CPU time (one thread only; robust on a "
                        "busy shared machine)")
    b.add_argument("--calibrate", type=int, default=8,
                   help="whole networks of the space timed to fit the calibration (default 8; "
                        "0: none)")
    b.add_argument("--on-contention", default="keep", choices=("keep", "refuse"),
                   help="a chunk still busy after its retries: keep it, flagged (default), or "
                        "refuse to build")
    s = sub.add_parser("show", help="print a summary of a table file")
    s.add_argument("file", help="latency table JSON")


def _positive(name: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"--{name}: {value!r} given; allowed: a positive integer")


def _build(args) -> int:
    from tqdm import tqdm

    from evaluators.latency import LatencyTable
    from evaluators.latency.context import format_input_size, parse_input_size
    from evaluators.latency.enumeration import space_keys
    from space.space import SearchSpace

    size = parse_input_size(args.input, field="--input")
    for name in ("threads", "limit", "sample"):
        _positive(name, getattr(args, name))
    _positive("repeats", args.repeats, allow_none=False)
    if args.warmup is None or args.warmup < 0:
        raise ValueError(f"--warmup: {args.warmup!r} given; allowed: an integer >= 0")
    if args.limit is not None and args.sample is not None:
        raise ValueError("--limit and --sample: give at most one of them")
    if args.calibrate is None or args.calibrate < 0:
        raise ValueError(f"--calibrate: {args.calibrate!r} given; allowed: an integer >= 0")
    space = SearchSpace.from_yaml(args.space)
    table = LatencyTable(size, path=args.out, threads=args.threads, warmup=args.warmup,
                         repeats=args.repeats, autosave=False, clock=args.clock,
                         calibrate=False, on_contention=args.on_contention)
    check = table.check_result
    if check and check["drifted"]:
        ratios = ", ".join(f"{check['ratios'][i]:.2f}" for i in check["drifted"])
        print(f"canary check: {len(check['drifted'])} session(s) of {table.path} drifted "
              f"(stored / now: {ratios}); their {len(check['dropped'])} entries are measured again")
    keys = space_keys(space, size)
    todo = keys if args.force else [k for k in keys if k not in table]
    print(f"space {args.space}: {len(keys)} distinct units at input {format_input_size(size)}; "
          f"{len(keys) - len(todo)} already in {table.path}, {len(todo)} to measure")
    if args.limit is not None:
        todo = todo[:args.limit]
    elif args.sample is not None:
        todo = sorted(random.Random(args.seed).sample(todo, min(args.sample, len(todo))))
    if args.limit is not None or args.sample is not None:
        print(f"measuring {len(todo)} of them (--limit/--sample)")
    if args.calibrate and (todo or table.calibration is None):
        # the units and the calibration's networks in one session, the networks' timing rounds
        # spread over the units' chunks (``Measurer.calibrate``); saved after every chunk
        specs = [space.random(random.Random(args.seed + i)) for i in range(args.calibrate)]
        if args.force:
            table.drop(todo)
        print(f"calibrating on {len(specs)} whole networks of the space, timed between the "
              "chunks of units")
        with tqdm(total=len(set(todo) | {k for s in specs for k in table.entries(s)
                                         if k not in table}),
                  unit="unit", desc="lut build") as bar:
            cal = table.measurer.calibrate(specs, keys=todo, progress=lambda _k: bar.update(1),
                                           after_chunk=lambda _d, _t: table.save())
        print(calibration_line(cal.to_dict()).strip())
    else:
        with tqdm(total=len(todo), unit="unit", desc="lut build") as bar:
            for start in range(0, len(todo), SAVE_EVERY):
                chunk = todo[start:start + SAVE_EVERY]
                table.measurer.measure_entries(chunk, force=args.force,
                                               progress=lambda _k: bar.update(1))
                table.save()
    path = table.save()
    session = table.measurer.session
    if session is not None and session["busy"]:
        print("warning: the machine was busy while measuring (" +
              "; ".join(session["contention"]["reasons"]) + "); the session is flagged, and "
              "its entries are re-measured when a later check finds them drifted")
    print(f"latency table: {path} ({len(table)} entries, threads={table.threads}, "
          f"isa={table.context['isa']})")
    print(f"next: bsrnas lut show {path}")
    return 0


UNKNOWN_TIMES = "unknown (table written before measurement times were recorded)"


def _load_text(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _entries_text(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def contention_line(r) -> "str | None":
    """The line under a session of ``show``: was the machine busy while it measured (None for a
    record written before this was recorded)."""
    c = r.get("contention")
    if r.get("busy") is None and c is None:
        return None
    if r.get("busy"):
        kept = c.get("kept_busy", "?") if c else "?"
        text = f"      contention: BUSY, {kept} chunk(s) kept busy after their retries (flagged)"
    else:
        text = "      contention: none kept (every chunk measured in a quiet window)"
    if c:
        text += (f"; {c['windows']} checks, {c['busy']} busy, {c['retries']} retries; worst "
                 f"wait for a core {100 * c['max_wait']:.1f} %, steal {100 * c['max_steal']:.1f} %, "
                 f"canary drift {100 * c['max_drift']:.1f} %"
                 + (f", other processes {100 * c['max_foreign']:.1f} % of the CPUs"
                    if "max_foreign" in c else "")
                 + (f" ({'; '.join(c['reasons'])})" if c.get("reasons") else ""))
    return text


def calibration_line(cal) -> str:
    """The ``calibration`` line of ``show`` for a table's calibration dict (or None)."""
    if cal is None:
        return f"  {'calibrated':<10} no (predictions are the plain sum of the units)"
    err = cal.get("fit_error") or {}
    return (f"  {'calibrated':<10} on {cal['networks']} networks: factor {cal['factor']:.3f} "
            f"on the sum of the units"
            + (f" (fit: mean error {100 * err['mean_before']:+.1f} % -> {100 * err['mean']:+.1f} %, "
               f"max |error| {100 * err['max_abs']:.1f} %)" if err else "")
            + ("; the machine was busy while fitting" if cal.get("busy") else ""))


def measured_lines(measured) -> List[str]:
    """The ``measured`` lines of ``show`` for the session records of a table (``None``: a file
    written before they were recorded)."""
    if measured is None:
        return [f"  {'measured':<10} {UNKNOWN_TIMES}"]
    if not measured:
        return [f"  {'measured':<10} nothing yet"]
    total = sum(r["entries"] for r in measured)
    lines = [f"  {'measured':<10} {len(measured)} session{'s' if len(measured) != 1 else ''}, "
             f"{total} unit measurements (UTC; load = 1-minute load average at start -> end)"]
    for r in measured:
        if r["started"] is None:
            lines.append(f"    {UNKNOWN_TIMES}: {_entries_text(r['entries'])}")
            continue
        where = f"{r['host'] or '?'} pid {r['pid'] if r['pid'] is not None else '?'}"
        lines.append(f"    {r['started']} .. {r['finished'] or '?'}  load "
                     f"{_load_text(r['load_1min_start'])} -> {_load_text(r['load_1min_end'])}  "
                     f"{_entries_text(r['entries'])}  {where}")
        extra = contention_line(r)
        if extra is not None:
            lines.append(extra)
    return lines


def _show(args) -> int:
    from evaluators.latency.context import format_input_size
    from evaluators.latency.keys import key_dict
    from evaluators.latency.store import read

    path = Path(args.file)
    data = read(path)
    context, entries = data["context"], data["entries"]
    print(f"latency table {path}")
    for name in ("cpu", "isa", "native", "threads", "torch", "clock"):
        print(f"  {name:<10} {context[name]}")
    print(f"  {'input':<10} {format_input_size(tuple(context['input_size']))}")
    print(f"  {'entries':<10} {len(entries)}")
    for line in measured_lines(data["measured"]):
        print(line)
    print(calibration_line(data["calibration"]))
    per_kind: Dict[str, List[float]] = {}
    for key, stats in entries.items():
        per_kind.setdefault(key_dict(key)["kind"], []).append(stats.min_ms)
    if per_kind:
        print("  per kind, over its units' figures (fastest call, ms):")
        print(f"  {'kind':<10} {'count':>6} {'fastest':>10} {'median':>10} {'slowest':>10}")
        for kind in sorted(per_kind):
            v = sorted(per_kind[kind])
            print(f"  {kind:<10} {len(v):>6} {v[0]:>10.4f} {statistics.median(v):>10.4f} {v[-1]:>10.4f}")
    return 0


def run(args) -> int:
    if args.lut_command == "build":
        return _build(args)
    if args.lut_command == "show":
        return _show(args)
    raise ValueError(f"lut: action {args.lut_command!r} given; allowed: build, show")
