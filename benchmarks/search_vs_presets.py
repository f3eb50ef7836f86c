"""Search vs presets: the searched networks against the published designs, retrained the same way.

    python -m benchmarks.search_vs_presets --data-root ../shared/datasets [--quick]
        [--eval-root DIR2 --eval-sets A,B] [--json FILE] [--run-dir DIR3] [--jobs 2]
        [--presets e2fif,bbcu_l,...] [--no-write]

What it does (section ``search_vs_presets`` of BENCHMARKS.md; issue 14):

1. **Latency table.** ``bsrnas lut build`` of ``configs/space/study.yaml`` at the search's
   latency context (3x64x64 LR, one thread), alone on the machine, so that no unit is measured
   while a training runs beside it.
2. **Search.** One ``bsrnas search --config configs/search/study.yaml`` (multi-fidelity: rungs
   100/300/900 steps, eta 3; T91 + BSD200, Set5; every binary preset enqueued first), in its
   own process with one torch thread. Meanwhile the other slot retrains the presets.
3. **Presets.** Every binary preset (``space.presets.names()`` less ``fp``) at the study's size:
   the space's scale (x2) and its first listed channels / blocks (16 x 2).
4. **Match** of a preset: the member of the search's front (``nas.pareto.front``: the top rung
   of the multi-fidelity search) with the best search-time PSNR whose predicted latency is at
   most the preset's (both predicted by the search's own table; ties: lower latency, then lower
   trial). None when no front member is that fast. The match may be the preset itself (the
   presets are candidates of the search): the table says so, and such a match does not count as
   dominating (see 7).
5. **Retraining.** Every preset and every match (each distinct spec once) by ``bsrnas retrain
   --config configs/train/study.yaml`` (one schedule for all), two at a time with one thread
   each (``--jobs``), then scored by it on Set5, Set14 and B100 (bicubic beside); every set of
   ``--eval-sets`` under ``--eval-root`` is then scored from the checkpoint the same way
   (``evaluators.evaluate``: PSNR_Y, crop = scale).
6. **Timing.** Every retrained network compiled on the packed runtime (``ops.native.compile``
   of the retrained model, one thread) and timed whole, all of them in the same rounds
   (``Measurer.time_networks``: 5 rounds in a new random order each, 20 single calls each
   round after one untimed; figure: the fastest call), alone on the machine.
7. **Report.** Per preset: its measured and predicted latency and PSNR per set; its match's
   trial, latencies and PSNR per set; delta PSNR per set (match - preset); delta measured
   latency; and whether the match dominates: PSNR at least equal on every scored set at no
   more *measured* latency, and a different network (a preset that is its own match is not
   dominated by anything the search found). Kendall tau-b between the search-time PSNR (each
   network's PSNR at the highest rung it reached in the search) and the retrained Set5 PSNR
   over every retrained network the search scored (and at rung 0, the one fidelity all share),
   and the study's wall time (all sessions of a resumed study added up). Files in the run
   folder: ``table.md``, ``results.json`` (the ``--json`` schema), ``pareto_retrained.png``
   (retrained Set5 PSNR vs measured latency, an arrow from each preset to its match),
   ``store.json`` (everything measured, as it comes), ``search/`` (the search's run folder),
   ``retrain/<spec id>/`` (each retraining: checkpoint, results, TensorBoard), ``logs/``.

``--json FILE`` writes ``{"presets": [{"name", "latency_ms", "psnr": {set: dB}, "match":
{"trial", "spec", "latency_ms", "psnr": {set: dB}} or null, "dominates": bool}],
"kendall_tau": float or null, "bicubic": {set: dB}}``; ``latency_ms`` there is the measured
whole-network latency (step 6).

Resumable: the search (``bsrnas search --resume``), each retraining (``bsrnas retrain
--resume``, from its last checkpoint) and every score and timing (``store.json``, written as
they come) survive a kill (SIGTERM, SIGINT, SIGKILL of this process: the child processes are
stopped with it); the same command again continues. A run folder made with other settings is
refused (exit 2).

``--quick``: the same pipeline smaller (``QUICK``: fewer search trials, shorter rungs, a
retraining of the same schedule shape cut to fewer steps via ``bsrnas retrain --steps``); its
default run folder is ``runs/search_vs_presets-quick`` and it never writes BENCHMARKS.md or
``benchmarks/figures/``. The full study (no ``--quick``) rewrites the ``search_vs_presets``
section of BENCHMARKS.md and ``benchmarks/figures/search_vs_presets.png`` (unless ``--no-write``).
Without ``--data-root`` the embedded default images are used (a smoke test: the 4 training
photographs, the 2 validation crops as the only scored set). ``--trials``, ``--rungs``,
``--retrain-steps`` and ``--latency-input`` override the budget (smoke tests).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from ops.native.tune import cpu_model

SECTION = "search_vs_presets"
REPO = Path(__file__).resolve().parents[1]
SEARCH_CONFIG = REPO / "configs" / "search" / "study.yaml"
SPACE_CONFIG = REPO / "configs" / "space" / "study.yaml"
TRAIN_CONFIG = REPO / "configs" / "train" / "study.yaml"
STANDARD_SETS = ("Set5", "Set14", "B100")
STORE_FORMAT = "bsrnas-search-vs-presets-1"
#: the --quick budget (see the pilot figures in configs/search/study.yaml and configs/train/study.yaml)
QUICK = {"trials": 24, "rungs": [100, 400], "retrain_steps": 300}
TIMING = {"rounds": 5, "repeats": 20}
STATUS_EVERY_S = 60.0


class InputError(ValueError):
    """Bad input of the user: reported in one line, exit status 2."""


class Stop(Exception):
    """SIGTERM / SIGHUP received: stop the children and leave the study resumable."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------ pure parts

def select_match(preset_latency: float, front: Sequence[Mapping[str, Any]],
                 cost_key: str = "latency_ms") -> Optional[Mapping[str, Any]]:
    """The front member with the highest ``psnr_y`` whose ``cost_key`` is at most
    ``preset_latency`` (ties: lower cost, then lower trial number); None if there is none."""
    fits = [m for m in front if float(m[cost_key]) <= float(preset_latency)]
    if not fits:
        return None
    return min(fits, key=lambda m: (-float(m["psnr_y"]), float(m[cost_key]), int(m["trial"])))


def dominates(match: Mapping[str, Any], preset: Mapping[str, Any], sets: Sequence[str]) -> bool:
    """``match`` dominates ``preset``: a different network (spec id), PSNR at least equal on
    every set of ``sets`` and measured latency at most the preset's. Each argument holds
    ``spec_id``, ``latency_ms`` (measured) and ``psnr`` ({set: dB}); a missing figure (a failed
    retraining, an untimed network) never dominates."""
    if match is None or match.get("spec_id") == preset.get("spec_id"):
        return False
    try:
        lat_ok = float(match["latency_ms"]) <= float(preset["latency_ms"])
        psnr_ok = all(float(match["psnr"][s]) >= float(preset["psnr"][s]) for s in sets)
    except (KeyError, TypeError):
        return False
    return bool(sets) and lat_ok and psnr_ok


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    """Kendall's tau-b of two paired sequences (ties in either counted as in tau-b):
    ``(C - D) / sqrt((n0 - n1) (n0 - n2))`` with ``n0 = n (n - 1) / 2`` pairs, ``C`` / ``D`` the
    concordant / discordant pairs and ``n1`` / ``n2`` the pairs tied in x / in y. None when
    undefined (fewer than 2 pairs, or one sequence constant)."""
    if len(x) != len(y):
        raise ValueError(f"kendall_tau: {len(x)} x values and {len(y)} y values")
    n = len(x)
    conc = disc = tie_x = tie_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0:
                tie_x += 1
            if dy == 0:
                tie_y += 1
            if dx * dy > 0:
                conc += 1
            elif dx * dy < 0:
                disc += 1
    n0 = n * (n - 1) // 2
    denom = math.sqrt((n0 - tie_x) * (n0 - tie_y))
    if n < 2 or denom == 0:
        return None
    return (conc - disc) / denom


def json_report(rows: Sequence[Mapping[str, Any]], tau: Optional[float],
                bicubic: Mapping[str, float]) -> Dict[str, Any]:
    """The ``--json`` document (module docstring) from the report rows."""
    out = []
    for r in rows:
        m = r.get("match")
        out.append({
            "name": r["name"],
            "latency_ms": r["latency_ms"],
            "psnr": dict(r["psnr"]),
            "match": None if m is None else {"trial": m["trial"], "spec": m["spec"],
                                             "latency_ms": m["latency_ms"], "psnr": dict(m["psnr"])},
            "dominates": bool(r["dominates"]),
        })
    return {"presets": out, "kendall_tau": tau, "bicubic": dict(bicubic)}


class Store:
    """``store.json`` of a run folder: the study's settings and everything measured, written
    atomically after every change. A store made with other settings is refused."""

    def __init__(self, path: Path, settings: Mapping[str, Any]):
        self.path = Path(path)
        self.data: Dict[str, Any] = {"format": STORE_FORMAT, "settings": dict(settings), "sessions": [],
                                     "search": {}, "retrain": {}, "timing": {}, "extra": {}}
        if self.path.is_file():
            try:
                old = json.loads(self.path.read_text())
            except ValueError:
                raise InputError(f"{self.path}: not a readable study store; remove it or choose another --run-dir") from None
            if not isinstance(old, dict) or old.get("format") != STORE_FORMAT:
                raise InputError(f"{self.path}: not a search_vs_presets store (format "
                                 f"{old.get('format') if isinstance(old, dict) else None!r})")
            if old.get("settings") != self.data["settings"]:
                diff = sorted(k for k in set(old.get("settings", {})) | set(settings)
                              if old.get("settings", {}).get(k) != settings.get(k))
                raise InputError(f"run dir {str(self.path.parent)!r} holds a study with other settings "
                                 f"({', '.join(diff)} differ); rerun with the same options or choose "
                                 f"another --run-dir")
            for k, v in self.data.items():
                old.setdefault(k, v)
            self.data = old

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def save(self) -> None:
        from space.files import atomic_write

        atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")

    def wall_s(self) -> float:
        return float(sum(max(0.0, s["end"] - s["start"]) for s in self.data["sessions"]))


# ------------------------------------------------------------------------------ settings

def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.search_vs_presets",
                                description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None,
                   help="folder with train/T91, train/BSD200, Set5/Set14/B100 (default: embedded images)")
    p.add_argument("--quick", action="store_true", help="the same pipeline smaller (QUICK)")
    p.add_argument("--eval-root", default=None, help="folder holding the --eval-sets (<Set>/HR/*.png)")
    p.add_argument("--eval-sets", default=None, help="comma-separated sets under --eval-root, scored too")
    p.add_argument("--json", default=None, metavar="FILE", help="write the result as JSON (schema in the doc)")
    p.add_argument("--run-dir", default=None, help="study folder (default runs/search_vs_presets[-quick])")
    p.add_argument("--jobs", type=int, default=2, help="processes at once, one thread each (default 2)")
    p.add_argument("--presets", default=None, help="comma-separated presets (default: every binary preset)")
    p.add_argument("--trials", type=int, default=None, help="override the search's trials")
    p.add_argument("--rungs", default=None, help="override the search's rungs, e.g. 100,300,900")
    p.add_argument("--retrain-steps", type=int, default=None, help="override the retraining's steps")
    p.add_argument("--latency-input", default=None, help="override the latency input, e.g. 3x64x64")
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help=argparse.SUPPRESS)
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md / benchmarks/figures")
    return p.parse_args(argv)


def _positive(name: str, value: Optional[int]) -> None:
    if value is not None and value < 1:
        raise InputError(f"{name}: {value}; allowed: an integer >= 1")


def check_inputs(args) -> Dict[str, Any]:
    """Validate the options (``InputError`` names the bad one); returns the resolved inputs."""
    from space import presets as preset_mod

    _positive("--jobs", args.jobs)
    _positive("--trials", args.trials)
    _positive("--retrain-steps", args.retrain_steps)
    train_cfg = yaml.safe_load(TRAIN_CONFIG.read_text())
    std_sets = list(train_cfg["eval"]["sets"])
    data_root = None
    if args.data_root is not None:
        data_root = os.path.abspath(args.data_root)
        if not os.path.isdir(data_root):
            raise InputError(f"--data-root: folder {args.data_root!r} not found (expected train/T91, "
                             f"train/BSD200 and {', '.join(s + '/HR' for s in std_sets)})")
        need = [os.path.join(data_root, "train", "T91"), os.path.join(data_root, "train", "BSD200")]
        need += [os.path.join(data_root, s, "HR") for s in std_sets]
        missing = [os.path.relpath(d, data_root) for d in need if not os.path.isdir(d)]
        if missing:
            raise InputError(f"--data-root {args.data_root!r}: missing folder(s) {', '.join(missing)}")
    eval_sets: List[str] = []
    eval_root = None
    if args.eval_sets is not None or args.eval_root is not None:
        eval_root = os.path.abspath(args.eval_root or args.data_root or "")
        if args.eval_root is None and data_root is None:
            raise InputError("--eval-sets: give --eval-root (the folder holding <Set>/HR/*.png)")
        if not os.path.isdir(eval_root):
            raise InputError(f"--eval-root: folder {args.eval_root!r} not found")
        from evaluators.data import list_sets

        found = list_sets(eval_root)
        if args.eval_sets is None:
            eval_sets = found
        else:
            eval_sets = [s.strip() for s in args.eval_sets.split(",") if s.strip()]
        if not eval_sets:
            raise InputError(f"--eval-sets: no sets given and none found under {eval_root!r}")
        for s in eval_sets:
            folder = Path(eval_root) / s / "HR"
            if not folder.is_dir() or not any(folder.glob("*.png")):
                raise InputError(f"--eval-sets: unknown set {s!r}: no {folder}/*.png; sets found under "
                                 f"{eval_root}: {', '.join(found) if found else 'none'}")
        if len(set(eval_sets)) != len(eval_sets):
            raise InputError(f"--eval-sets: a set is named twice in {args.eval_sets!r}")
    binary = [n for n in preset_mod.names() if n != "fp"]
    if args.presets is None:
        names = binary
    else:
        names = [n.strip() for n in args.presets.split(",") if n.strip()]
        bad = [n for n in names if n not in binary]
        if bad or not names:
            raise InputError(f"--presets: unknown or full-precision preset(s) {bad or names}; allowed: {binary}")
    rungs = None
    if args.rungs is not None:
        try:
            rungs = [int(v) for v in args.rungs.split(",")]
        except ValueError:
            raise InputError(f"--rungs: {args.rungs!r}; allowed: increasing integers, e.g. 100,300,900") from None
        if not rungs or any(b <= a for a, b in zip(rungs, rungs[1:])) or rungs[0] < 1:
            raise InputError(f"--rungs: {args.rungs!r}; allowed: increasing integers >= 1")
    lat_input = None
    if args.latency_input is not None:
        try:
            lat_input = [int(v) for v in args.latency_input.lower().split("x")]
            assert len(lat_input) == 3 and lat_input[0] == 3 and min(lat_input) >= 1
        except (ValueError, AssertionError):
            raise InputError(f"--latency-input: {args.latency_input!r}; allowed: 3xHxW, e.g. 3x64x64") from None
    return {"data_root": data_root, "eval_root": eval_root, "eval_sets": eval_sets, "presets": names,
            "rungs": rungs, "latency_input": lat_input}


def search_config(args, inp) -> Dict[str, Any]:
    """The search config of this study (configs/search/study.yaml with this run's settings)."""
    cfg = yaml.safe_load(SEARCH_CONFIG.read_text())
    cfg["space"] = str(SPACE_CONFIG)
    cfg["data"] = {"root": inp["data_root"]}
    if inp["data_root"] is None:
        cfg["evaluator"]["val_set"] = None  # the embedded validation split
    if args.quick:
        cfg["engine"]["trials"] = QUICK["trials"]
        cfg["evaluator"]["rungs"] = list(QUICK["rungs"])
    if args.trials is not None:
        cfg["engine"]["trials"] = args.trials
    if inp["rungs"] is not None:
        cfg["evaluator"]["rungs"] = inp["rungs"]
    if inp["latency_input"] is not None:
        cfg["latency"]["input_size"] = inp["latency_input"]
    return cfg


def retrain_steps(args) -> int:
    if args.retrain_steps is not None:
        return int(args.retrain_steps)
    steps = int(yaml.safe_load(TRAIN_CONFIG.read_text())["train"]["steps"])
    return QUICK["retrain_steps"] if args.quick else steps


def settings_of(args, inp, cfg) -> Dict[str, Any]:
    """What decides the study's figures: a store with other settings is refused."""
    return {"quick": bool(args.quick), "data_root": inp["data_root"], "presets": inp["presets"],
            "search": {k: cfg[k] for k in ("space", "objectives", "constraints", "evaluator", "latency",
                                           "engine", "seed")},
            "space_def": yaml.safe_load(SPACE_CONFIG.read_text()),
            "train_def": yaml.safe_load(TRAIN_CONFIG.read_text()), "retrain_steps": retrain_steps(args)}


# ------------------------------------------------------------------------------ processes

def _child_setup() -> None:
    """In a child: die with this process (PR_SET_PDEATHSIG), and take SIGINT as
    KeyboardInterrupt (a background shell job starts with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Job:
    def __init__(self, name: str, cmd: List[str], log_path: Path, key: str, kind: str):
        self.name, self.cmd, self.log_path, self.key, self.kind = name, cmd, log_path, key, kind
        self.proc: Optional[subprocess.Popen] = None
        self.started = 0.0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.log_path, "a")
        fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.cmd)}\n")
        fh.flush()
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen(self.cmd, cwd=str(REPO), env=env, stdout=fh, stderr=subprocess.STDOUT,
                                     preexec_fn=_child_setup)
        fh.close()
        self.started = time.time()

    def log_tail(self, n: int = 6) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join("    " + ln for ln in lines[-n:])


def stop_children(jobs: Sequence[Job], grace_s: float = 20.0) -> None:
    """SIGINT to every running child (the search writes its outputs, a retraining stops), then
    SIGKILL whatever still runs after ``grace_s``. Both leave the study resumable."""
    live = [j for j in jobs if j.proc is not None and j.proc.poll() is None]
    for j in live:
        try:
            j.proc.send_signal(signal.SIGINT)
        except OSError:
            pass
    end = time.time() + grace_s
    for j in live:
        try:
            j.proc.wait(timeout=max(0.1, end - time.time()))
        except subprocess.TimeoutExpired:
            j.proc.kill()
            j.proc.wait()


def run_command_alone(cmd: List[str], log_path: Path, what: str) -> None:
    job = Job(what, cmd, log_path, what, "alone")
    job.start()
    try:
        rc = job.proc.wait()
    except BaseException:
        stop_children([job])
        raise
    if rc != 0:
        raise RuntimeError(f"{what} failed (exit {rc}); log {log_path}:\n{job.log_tail()}")


# ------------------------------------------------------------------------------ the study

class Study:
    def __init__(self, args, inp, run_dir: Path):
        self.args, self.inp, self.run = args, inp, run_dir
        self.cfg = search_config(args, inp)
        self.steps = retrain_steps(args)
        self.store = Store(run_dir / "store.json", settings_of(args, inp, self.cfg))
        self.search_dir = run_dir / "search"
        self.jobs: List[Job] = []
        self.session = {"start": time.time(), "end": time.time()}
        self.store["sessions"].append(self.session)

    # -- bookkeeping ----------------------------------------------------------------------
    def touch(self) -> None:
        self.session["end"] = time.time()
        self.store.save()

    def preset_specs(self) -> List[Tuple[str, Any]]:
        from space import presets
        from space.space import SearchSpace

        space = SearchSpace.from_yaml(str(SPACE_CONFIG))
        channels, blocks = space.arch["channels"][0], space.arch["blocks"][0]
        return [(n, presets.get(n, scale=space.scale, channels=channels, blocks=blocks))
                for n in self.inp["presets"]]

    def spec_file(self, spec) -> Path:
        path = self.run / "specs" / f"{spec.id}.json"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(spec.to_json(indent=2) + "\n")
        return path

    def retrain_dir(self, spec_id: str) -> Path:
        return self.run / "retrain" / spec_id

    def retrain_done(self, spec_id: str) -> bool:
        rec = self.store["retrain"].get(spec_id)
        return rec is not None and (rec.get("status") == "done" or rec.get("status") == "failed")

    # -- phases ---------------------------------------------------------------------------
    def build_latency_table(self) -> None:
        if self.store["search"].get("lut_built"):
            return
        size = "x".join(str(v) for v in self.cfg["latency"]["input_size"])
        log(f"latency table: bsrnas lut build --space {SPACE_CONFIG.relative_to(REPO)} --input {size} "
            f"--threads {self.cfg['latency']['threads']} (alone on the machine)")
        t = time.time()
        run_command_alone([sys.executable, "-m", "nas.cli", "lut", "build", "--space", str(SPACE_CONFIG),
                           "--input", size, "--threads", str(self.cfg["latency"]["threads"])],
                          self.run / "logs" / "lut.log", "latency table")
        self.store["search"]["lut_built"] = True
        self.touch()
        log(f"latency table ready ({time.time() - t:.0f} s)")

    def search_job(self) -> Optional[Job]:
        if self.store["search"].get("done"):
            return None
        cfg_path = self.run / "search.yaml"
        cfg_path.write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        cmd = [sys.executable, "-m", "nas.cli", "search", "--config", str(cfg_path), "--run-dir",
               str(self.search_dir), "--no-progress"]
        from nas.runfolder import RunFolder

        if RunFolder(str(self.search_dir)).exists():
            cmd.append("--resume")
        return Job("search", cmd, self.run / "logs" / "search.log", "search", "search")

    def retrain_job(self, label: str, spec) -> Optional[Job]:
        if self.retrain_done(spec.id):
            return None
        d = self.retrain_dir(spec.id)
        cmd = [sys.executable, "-m", "nas.cli", "retrain", "--spec", str(self.spec_file(spec)), "--config",
               str(TRAIN_CONFIG), "--run-dir", str(d), "--no-progress"]
        if self.steps != int(yaml.safe_load(TRAIN_CONFIG.read_text())["train"]["steps"]):
            cmd += ["--steps", str(self.steps)]
        if self.inp["data_root"] is not None:
            cmd += ["--data-root", self.inp["data_root"]]
        if (d / "checkpoint.pt").is_file():
            cmd.append("--resume")
        return Job(f"retrain {label} ({spec.id})", cmd, self.run / "logs" / f"retrain-{spec.id}.log",
                   spec.id, "retrain")

    def search_records(self) -> List[Dict[str, Any]]:
        from nas.runfolder import RunFolder, records

        run = RunFolder(str(self.search_dir))
        return records(run.load_study(), run)

    def compute_matches(self, presets: Sequence[Tuple[str, Any]]) -> Dict[str, Any]:
        """Match of every preset (module doc, 4), stored under ``search.matches``."""
        from nas import pareto
        from space.spec import ArchSpec

        recs = self.search_records()
        front = pareto.front(recs, "latency_ms")
        table = None
        out = {}
        for name, spec in presets:
            own = [r for r in recs if r.get("spec") and ArchSpec.from_dict(r["spec"]).id == spec.id]
            if own:
                lat = float(own[0]["latency_ms"])
            else:  # not a candidate of the search: predicted by a table of the same context
                if table is None:
                    table = self.latency_table()
                lat = float(table.predict(spec))
            m = select_match(lat, front)
            out[name] = {"preset_latency_pred_ms": lat, "match": None if m is None else {
                "trial": int(m["trial"]), "spec": m["spec"], "spec_id": ArchSpec.from_dict(m["spec"]).id,
                "latency_pred_ms": float(m["latency_ms"]), "psnr_search": float(m["psnr_y"]),
                "rung": m.get("rung")}}
        self.store["search"]["matches"] = out
        self.store["search"]["front"] = [{"trial": int(m["trial"]), "psnr_y": float(m["psnr_y"]),
                                          "latency_ms": float(m["latency_ms"]), "rung": m.get("rung"),
                                          "preset": m.get("preset")} for m in front]
        self.store["search"]["trials"] = len(recs)
        self.touch()
        return out

    def latency_table(self):
        from evaluators.latency import LatencyTable

        lat = self.cfg["latency"]
        return LatencyTable(input_size=tuple(lat["input_size"]), threads=int(lat["threads"]))

    def match_jobs(self, presets) -> List[Job]:
        from space.spec import ArchSpec

        jobs: List[Job] = []
        for name, info in self.store["search"]["matches"].items():
            m = info["match"]
            if m is not None and all(j.key != m["spec_id"] for j in jobs):
                job = self.retrain_job(f"match of {name} (trial {m['trial']})", ArchSpec.from_dict(m["spec"]))
                if job is not None:
                    jobs.append(job)
        return jobs

    def finish_retrain(self, job: Job, rc: int) -> None:
        d = self.retrain_dir(job.key)
        res = d / "results.json"
        if rc == 0 and res.is_file():
            data = json.loads(res.read_text())
            self.store["retrain"][job.key] = {
                "status": "done", "steps": data["train"]["steps"], "train_s": data["train"]["seconds"],
                "wall_s": time.time() - job.started,
                "psnr": {s: r["psnr_y"] for s, r in data["sets"].items()},
                "ssim": {s: r["ssim_y"] for s, r in data["sets"].items()},
                "bicubic": {s: r["bicubic_psnr_y"] for s, r in data["sets"].items()},
                "checkpoint": str(d / "checkpoint.pt")}
            log(f"done {job.name}: " + ", ".join(f"{s} {v:.2f}" for s, v in self.store['retrain'][job.key]['psnr'].items())
                + f" dB ({time.time() - job.started:.0f} s)")
        elif rc == 130 or rc < 0:
            log(f"{job.name} interrupted (exit {rc}); the next run resumes it")
        else:  # an error of the training itself (e.g. diverged): recorded, not retried
            self.store["retrain"][job.key] = {"status": "failed", "rc": rc, "log": str(job.log_path)}
            log(f"FAILED {job.name} (exit {rc}); log {job.log_path}:\n{job.log_tail()}")
        self.touch()

    def status_line(self, running: Sequence[Job], queued: int) -> str:
        parts = []
        for j in running:
            el = time.time() - j.started
            if j.kind == "search":
                trials = self.search_dir / "trials"
                n = len(list(trials.glob("*/metrics.json"))) if trials.is_dir() else 0
                promoted = len(list(trials.glob("*/rung-*/result.json"))) if trials.is_dir() else 0
                parts.append(f"search {el / 60:.1f} min ({n} trials, {promoted} promotions done)")
            else:
                parts.append(f"{j.name} {el / 60:.1f} min")
        done = sum(1 for r in self.store["retrain"].values() if r.get("status") == "done")
        return (f"running: {'; '.join(parts) or 'nothing'} | retrained {done}, queued {queued} | "
                f"study wall {self.store.wall_s() / 60:.1f} min")

    def run_jobs(self, presets) -> None:
        """Run the search and the retrainings, ``--jobs`` processes at once."""
        queue: List[Job] = []
        sj = self.search_job()
        if sj is not None:
            queue.append(sj)
        for name, spec in presets:
            j = self.retrain_job(name, spec)
            if j is not None and all(q.key != j.key for q in queue):
                queue.append(j)
        if sj is None:
            self.compute_matches(presets)
            queue += [j for j in self.match_jobs(presets) if all(q.key != j.key for q in queue)]
        running: List[Job] = []
        self.jobs = running
        last_status = time.time()
        interrupted = False
        while queue or running:
            while queue and len(running) < self.args.jobs:
                job = queue.pop(0)
                job.start()
                running.append(job)
                log(f"start {job.name}: log {job.log_path.relative_to(self.run)}")
            time.sleep(1.0)
            for job in list(running):
                rc = job.proc.poll()
                if rc is None:
                    continue
                running.remove(job)
                if job.kind == "search":
                    self.store["search"]["wall_s"] = self.store["search"].get("wall_s", 0.0) + time.time() - job.started
                    self.touch()
                    if rc == 0:
                        self.store["search"]["done"] = True
                        self.touch()
                        matches = self.compute_matches(presets)
                        log("search done (%.1f min); matches: %s" % (
                            (time.time() - job.started) / 60,
                            ", ".join(f"{n} -> {'none' if i['match'] is None else 'trial %d' % i['match']['trial']}"
                                      for n, i in matches.items())))
                        busy = {j.key for j in running} | {q.key for q in queue}
                        queue += [j for j in self.match_jobs(presets) if j.key not in busy]
                    elif rc == 130 or rc < 0:
                        interrupted = True
                        log(f"search interrupted (exit {rc}); the next run resumes it")
                    else:
                        raise RuntimeError(f"the search failed (exit {rc}); log {job.log_path}:\n{job.log_tail()}")
                else:
                    if rc == 130 or rc < 0:
                        interrupted = True
                    self.finish_retrain(job, rc)
            if time.time() - last_status >= STATUS_EVERY_S:
                last_status = time.time()
                self.touch()
                log(self.status_line(running, len(queue)))
            if interrupted:  # a child was stopped from outside: stop the rest, stay resumable
                stop_children(running)
                raise Stop("a child process was interrupted")

    def retrained_specs(self, presets) -> Dict[str, Any]:
        """spec id -> spec of every network that should be retrained (presets, then matches)."""
        from space.spec import ArchSpec

        out = {spec.id: spec for _, spec in presets}
        for info in self.store["search"].get("matches", {}).values():
            if info["match"] is not None:
                s = ArchSpec.from_dict(info["match"]["spec"])
                out.setdefault(s.id, s)
        return out

    def time_networks(self, specs: Mapping[str, Any]) -> None:
        """Measured whole-network latency of every retrained network (module doc, 6)."""
        ok = {sid: s for sid, s in specs.items() if self.store["retrain"].get(sid, {}).get("status") == "done"}
        if not ok or all(sid in self.store["timing"] for sid in ok):
            return
        from evaluators.threads import torch_threads

        threads = int(self.cfg["latency"]["threads"])
        log(f"timing {len(ok)} retrained networks on the packed runtime ({threads} thread(s), "
            f"{TIMING['rounds']} rounds x {TIMING['repeats']} calls, alone on the machine)")
        table = self.latency_table()
        with torch_threads(threads):
            self._time(ok, table, threads)

    def _time(self, ok, table, threads) -> None:
        import torch

        import ops.native
        from evaluators.checkpoint import load_model

        x = torch.rand(1, *self.cfg["latency"]["input_size"], generator=torch.Generator().manual_seed(0))
        ids, probes = [], []
        for sid in sorted(ok):
            _, model = load_model(self.store["retrain"][sid]["checkpoint"])
            compiled = ops.native.compile(model.eval(), threads=threads)
            with torch.no_grad():
                compiled(x)
            probes.append(lambda c=compiled: c(x))
            ids.append(sid)
        with torch.no_grad():
            stats = table.measurer.time_networks(probes, rounds=TIMING["rounds"], repeats=TIMING["repeats"])
        for sid, st in zip(ids, stats):
            self.store["timing"][sid] = {"min_ms": st.min_ms, "median_ms": st.median_ms,
                                         "predicted_ms": float(table.predict(ok[sid]))}
        tally = table.measurer.network_tally
        self.store["search"]["timing_busy"] = getattr(tally, "kept_busy", None)
        self.touch()

    def score_extra(self, specs: Mapping[str, Any]) -> None:
        """Every --eval-sets set for every retrained network (stored as it comes)."""
        if not self.inp["eval_sets"]:
            return
        from evaluators.threads import torch_threads

        with torch_threads(1):
            self._score_extra(specs)

    def _score_extra(self, specs: Mapping[str, Any]) -> None:
        import torch

        from evaluators.checkpoint import load_model
        from evaluators.data import validation_set
        from evaluators.evaluate import bicubic_sr_fn, evaluate, model_sr_fn

        root = self.inp["eval_root"]
        cache: Dict[str, Any] = {}
        for name in self.inp["eval_sets"]:
            label = self.extra_label(name)
            key = f"{root}::{name}"
            for sid in sorted(specs):
                rec = self.store["retrain"].get(sid, {})
                if rec.get("status") != "done" or key in self.store["extra"].get(sid, {}):
                    continue
                spec, model = load_model(rec["checkpoint"])
                if name not in cache:
                    log(f"scoring {label} ({root}) for the retrained networks")
                    cache[name] = list(validation_set(root, scale=int(spec.scale), name=name))
                with torch.no_grad():
                    r = evaluate(model_sr_fn(model), cache[name], int(spec.scale))
                self.store["extra"].setdefault(sid, {})[key] = {"label": label, "psnr_y": float(r["psnr_y"])}
                self.touch()
            bkey = f"bicubic::{key}"
            if bkey not in self.store["extra"] and specs:
                scale = int(next(iter(specs.values())).scale)
                if name not in cache:
                    cache[name] = list(validation_set(root, scale=scale, name=name))
                self.store["extra"][bkey] = {"label": label, "psnr_y": float(
                    evaluate(bicubic_sr_fn(scale), cache[name], scale)["psnr_y"])}
                self.touch()

    def extra_label(self, name: str) -> str:
        std = set(yaml.safe_load(TRAIN_CONFIG.read_text())["eval"]["sets"])
        return f"{name} (eval-root)" if name in std and self.inp["data_root"] is not None else name

    # -- report ---------------------------------------------------------------------------
    def network_row(self, spec_id: str) -> Dict[str, Any]:
        rec = self.store["retrain"].get(spec_id, {})
        psnr = dict(rec.get("psnr", {})) if rec.get("status") == "done" else {}
        root = self.inp["eval_root"]
        for name in self.inp["eval_sets"]:
            v = self.store["extra"].get(spec_id, {}).get(f"{root}::{name}")
            if v is not None:
                psnr[v["label"]] = v["psnr_y"]
        t = self.store["timing"].get(spec_id, {})
        return {"spec_id": spec_id, "psnr": psnr, "latency_ms": t.get("min_ms"),
                "latency_pred_ms": t.get("predicted_ms"), "status": rec.get("status", "missing")}

    def scored_sets(self) -> List[str]:
        sets: List[str] = []
        for rec in self.store["retrain"].values():
            for s in rec.get("psnr", {}):
                if s not in sets:
                    sets.append(s)
        return sets + [self.extra_label(n) for n in self.inp["eval_sets"]]

    def bicubic(self) -> Dict[str, float]:
        out: Dict[str, float] = {}
        for rec in self.store["retrain"].values():
            for s, v in rec.get("bicubic", {}).items():
                out.setdefault(s, float(v))
        root = self.inp["eval_root"]
        for name in self.inp["eval_sets"]:
            v = self.store["extra"].get(f"bicubic::{root}::{name}")
            if v is not None:
                out[v["label"]] = v["psnr_y"]
        return out

    def search_psnr(self) -> Dict[str, Tuple[float, float, int]]:
        """spec id -> (PSNR at the highest rung reached, PSNR at rung 0, that rung) in the search."""
        from space.spec import ArchSpec

        out: Dict[str, Tuple[float, float, int]] = {}
        for r in self.search_records():
            if not r.get("spec") or r.get("feasible") is False:
                continue
            sid = ArchSpec.from_dict(r["spec"]).id
            chain = r.get("psnr_y_by_rung") or [float(r["psnr_y"])]
            item = (float(chain[-1]), float(chain[0]), len(chain) - 1)
            if sid not in out or item[2] > out[sid][2]:
                out[sid] = item
        return out

    def report(self, presets) -> Dict[str, Any]:
        sets = self.scored_sets()
        matches = self.store["search"].get("matches", {})
        rows = []
        for name, spec in presets:
            base = self.network_row(spec.id)
            info = matches.get(name, {})
            m = info.get("match")
            row = dict(base, name=name, latency_pred_ms=info.get("preset_latency_pred_ms", base["latency_pred_ms"]),
                       match=None)
            if m is not None:
                mr = self.network_row(m["spec_id"])
                row["match"] = dict(mr, trial=m["trial"], spec=m["spec"], latency_pred_ms=m["latency_pred_ms"],
                                    itself=m["spec_id"] == spec.id)
            row["dominates"] = dominates(row["match"], row, sets)
            rows.append(row)
        sp = self.search_psnr()
        ids = sorted(self.retrained_specs(presets))
        pairs = [(sp[i], self.store["retrain"][i]["psnr"]) for i in ids
                 if i in sp and self.store["retrain"].get(i, {}).get("status") == "done"]
        first = sets[0] if sets else None
        tau = tau0 = None
        if first is not None and pairs:
            tau = kendall_tau([p[0][0] for p in pairs], [p[1][first] for p in pairs])
            tau0 = kendall_tau([p[0][1] for p in pairs], [p[1][first] for p in pairs])
        doc = json_report(rows, tau, self.bicubic())
        return {"rows": rows, "sets": sets, "tau": tau, "tau0": tau0, "n_tau": len(pairs), "json": doc,
                "tau_set": first, "search_psnr": sp}


# ------------------------------------------------------------------------------ output

def _f(v: Optional[float], fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def _psnr_cells(psnr: Mapping[str, float], sets: Sequence[str]) -> str:
    return " / ".join(_f(psnr.get(s)) for s in sets)


def format_table(rep: Mapping[str, Any], bicubic: Mapping[str, float]) -> str:
    sets = rep["sets"]
    head = " / ".join(sets)
    lines = [f"| preset | latency ms measured (predicted) | PSNR_Y {head} | match | match latency ms measured "
             f"(predicted) | match PSNR_Y {head} | delta PSNR {head} | delta latency (measured) | dominates |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |",
             f"| bicubic | | {_psnr_cells(bicubic, sets)} | | | | | | |"]
    for r in rep["rows"]:
        cells = [r["name"], f"{_f(r['latency_ms'], '{:.3f}')} ({_f(r['latency_pred_ms'], '{:.3f}')})",
                 _psnr_cells(r["psnr"], sets) if r["status"] == "done" else f"retraining {r['status']}"]
        m = r["match"]
        if m is None:
            cells += ["no match (no front member at or below its predicted latency)", "", "", "", "", "no"]
        else:
            label = f"trial {m['trial']}" + (" = the preset itself" if m["itself"] else "")
            dp = " / ".join(_f(None if s not in m["psnr"] or s not in r["psnr"] else m["psnr"][s] - r["psnr"][s],
                               "{:+.2f}") for s in sets)
            if m["latency_ms"] is not None and r["latency_ms"] is not None:
                dl = m["latency_ms"] - r["latency_ms"]
                dlt = f"{dl:+.3f} ms ({100 * dl / r['latency_ms']:+.0f} %)"
            else:
                dlt = "—"
            dom = "yes" if r["dominates"] else ("no (itself)" if m["itself"] else "no")
            cells += [label, f"{_f(m['latency_ms'], '{:.3f}')} ({_f(m['latency_pred_ms'], '{:.3f}')})",
                      _psnr_cells(m["psnr"], sets) if m["status"] == "done" else f"retraining {m['status']}",
                      dp, dlt, dom]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rep: Mapping[str, Any], bicubic: Mapping[str, float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = rep["tau_set"]
    fig, ax = plt.subplots(figsize=(7.2, 4.8), dpi=100)
    drawn_p = drawn_m = False
    for r in rep["rows"]:
        if r["latency_ms"] is None or s not in r["psnr"]:
            continue
        p = (r["latency_ms"], r["psnr"][s])
        ax.scatter(*p, marker="s", color="tab:red", zorder=3, label=None if drawn_p else "preset")
        drawn_p = True
        ax.annotate(r["name"], p, textcoords="offset points", xytext=(4, -10), fontsize=7, color="tab:red")
        m = r["match"]
        if m is None or m["latency_ms"] is None or s not in m["psnr"]:
            continue
        q = (m["latency_ms"], m["psnr"][s])
        ax.scatter(*q, marker="o", color="tab:blue", zorder=3, label=None if drawn_m else "its match (search)")
        drawn_m = True
        if q != p:
            ax.annotate("", xy=q, xytext=p, arrowprops=dict(arrowstyle="->", color="gray", lw=0.8))
        ax.annotate(f"t{m['trial']}", q, textcoords="offset points", xytext=(4, 4), fontsize=7, color="tab:blue")
    if s in bicubic:
        ax.axhline(bicubic[s], color="k", ls=":", lw=1, label=f"bicubic {bicubic[s]:.2f} dB")
    ax.set_xlabel("measured latency, whole network on the packed runtime [ms]")
    ax.set_ylabel(f"retrained PSNR_Y on {s} [dB]")
    ax.set_title(title, fontsize=8)
    ax.margins(x=0.1, y=0.08)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def section_text(study: Study, rep, bicubic, table: str, command: str) -> str:
    cfg = study.cfg
    ev = cfg["evaluator"]
    tc = yaml.safe_load(TRAIN_CONFIG.read_text())["train"]
    rows = rep["rows"]
    n_match = sum(1 for r in rows if r["match"] is not None)
    n_self = sum(1 for r in rows if r["match"] is not None and r["match"]["itself"])
    n_dom = sum(1 for r in rows if r["dominates"])
    st = study.store
    from space.space import SearchSpace

    space = SearchSpace.from_yaml(str(SPACE_CONFIG))
    lines = [
        f"## Search vs presets: searched networks against the published designs, retrained alike"
        f"{' (QUICK run)' if study.args.quick else ''}", "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; study wall time "
        f"{st.wall_s() / 60:.0f} min over {len(st['sessions'])} session(s)). CPU: {cpu_model()}, "
        f"{os.cpu_count()} logical CPUs, shared with other jobs; {study.args.jobs} processes at once, one torch "
        "thread each; the latency table and the timing ran alone.", "",
        f"Search: `configs/search/study.yaml` on `configs/space/study.yaml` (x{space.scale}, "
        f"{'/'.join(map(str, space.arch['channels']))} channels x {'/'.join(map(str, sorted(space.arch['blocks'])))} "
        f"blocks), "
        f"{cfg['engine']['trials']} trials ({st['search'].get('trials', '?')} complete), multi-fidelity rungs "
        f"{ev['rungs']} steps (wsd), eta {ev['eta']}, batch {ev['batch']}, patch {ev['patch']}, lr {ev['lr']}, "
        f"{ev.get('val_set') or 'the embedded validation crops'}; every binary preset enqueued first at "
        f"{space.arch['channels'][0]} x {space.arch['blocks'][0]}; search wall time "
        f"{st['search'].get('wall_s', 0) / 60:.0f} min. Match: the top-rung front member with the best search-time "
        "PSNR at no more predicted latency (the search's table, "
        f"{'x'.join(map(str, cfg['latency']['input_size']))} LR input, {cfg['latency']['threads']} thread).", "",
        f"Retraining (all alike): `configs/train/study.yaml`, {study.steps} steps, batch {tc['batch']}, patch "
        f"{tc['patch']}, Adam lr {tc['lr']} cosine, L1, "
        f"{'T91 + BSD200' if study.inp['data_root'] else 'the embedded training images'}; scored by `bsrnas retrain` (PSNR_Y, crop = "
        "scale). Latency: each retrained network compiled (`ops.native.compile`) and timed whole, all in the "
        f"same {TIMING['rounds']} rounds of {TIMING['repeats']} calls (fastest call; predicted in brackets). "
        "Dominates: PSNR at least equal on every set at no more measured latency, by another network.", "",
        table, "",
        f"- Presets with a match: {n_match} of {len(rows)}; the match is the preset itself for {n_self}; "
        f"dominated by their match: {n_dom} of {len(rows)}.",
        f"- Kendall tau-b, search-time PSNR (highest rung reached) vs retrained {rep['tau_set']} PSNR over the "
        f"{rep['n_tau']} retrained networks the search scored: {_f(rep['tau'], '{:.3f}')} (rung 0 PSNR, the "
        f"fidelity all share: {_f(rep['tau0'], '{:.3f}')}).", "",
    ]
    done = [r for r in st["retrain"].values() if r.get("status") == "done"]
    if done:
        train_s = sum(r["train_s"] for r in done)
        lines.append(f"- Retrainings: {len(done)} networks, {train_s / len(done):.0f} s of training each on "
                     f"average ({train_s / max(1, sum(r['steps'] for r in done)):.3f} s per step), "
                     f"{sum(r['wall_s'] for r in done) / len(done):.0f} s wall each with data loading and "
                     "scoring; failed: " + str(sum(1 for r in st["retrain"].values() if r.get("status") == "failed"))
                     + f"; network timings still busy after retries: {st['search'].get('timing_busy')}.")
    if not study.args.quick:  # a quick run writes its figure only into its run folder
        lines += ["", "![retrained PSNR vs measured latency](benchmarks/figures/search_vs_presets.png)"]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        inp = check_inputs(args)
        run_dir = Path(args.run_dir) if args.run_dir else REPO / "runs" / (
            "search_vs_presets-quick" if args.quick else "search_vs_presets")
        run_dir = run_dir.resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        study = Study(args, inp, run_dir)
    except InputError as exc:
        print(f"search_vs_presets: error: {exc}", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        raise Stop(f"signal {signum}")

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except (ValueError, OSError):  # not the main thread
            pass
    log(f"study in {run_dir} ({'quick' if args.quick else 'full'}; data "
        f"{inp['data_root'] or 'embedded default images'}; retraining {study.steps} steps)")
    try:
        presets = study.preset_specs()
        study.build_latency_table()
        study.run_jobs(presets)
        specs = study.retrained_specs(presets)
        study.time_networks(specs)
        study.score_extra(specs)
        rep = study.report(presets)
    except (Stop, KeyboardInterrupt) as exc:
        stop_children(study.jobs)
        study.touch()
        print(f"search_vs_presets: stopped ({exc or 'interrupted'}); run the same command again to continue",
              file=sys.stderr)
        return 130
    except RuntimeError as exc:
        stop_children(study.jobs)
        study.touch()
        print(f"search_vs_presets: error: {exc}", file=sys.stderr)
        return 1
    finally:
        study.touch()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    bicubic = study.bicubic()
    table = format_table(rep, bicubic)
    (run_dir / "table.md").write_text(table + "\n")
    (run_dir / "results.json").write_text(json.dumps(rep["json"], indent=2) + "\n")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rep["json"], indent=2) + "\n")
    title = (f"search vs presets{' (quick)' if args.quick else ''}: x2, retrained {study.steps} steps; "
             f"{cpu_model()}, {'x'.join(map(str, study.cfg['latency']['input_size']))} LR, "
             f"{study.cfg['latency']['threads']} thread")
    plot(rep, bicubic, run_dir / "pareto_retrained.png", title)
    command = "python -m benchmarks.search_vs_presets" + (" --data-root DATA" if inp["data_root"] else "") + (
        " --quick" if args.quick else "") + (f" --eval-sets {','.join(inp['eval_sets'])}" if inp["eval_sets"] else "")
    body = section_text(study, rep, bicubic, table, command)
    print(body)
    print(f"study wall time {study.store.wall_s() / 60:.1f} min; files in {run_dir}: table.md, results.json, "
          f"pareto_retrained.png, store.json" + (f"; JSON {args.json}" if args.json else ""))
    if not args.quick and not args.no_write:
        from benchmarks.report import write_section

        plot(rep, bicubic, REPO / "benchmarks" / "figures" / "search_vs_presets.png", title)
        write_section(Path(args.out), SECTION, body)
        print(f"wrote section {SECTION!r} of {args.out} and benchmarks/figures/search_vs_presets.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
