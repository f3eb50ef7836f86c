"""The search driver shared by both engines: set-up, presets, resume, after-trial logging, outputs.

``run(cfg, resume=...)`` runs one experiment (``nas.config.load`` gives ``cfg``):

1. Run folder (``nas.runfolder``): a folder that already holds a study needs ``resume=True``
   (otherwise ``ValueError``: nothing is overwritten); on resume the objectives, constraints
   and space must equal the stored ``config.yaml``'s, and so must the proxy settings
   (``nas.config.proxy_settings``: evaluator, data, latency), since scores of different proxies
   must not share one front. ``new_front=True`` (``--new-front``) starts a separate search with
   the new settings in ``RUN/front-K`` (K = 2, 3, ...), leaving the trials in ``RUN`` as they
   are; a later ``--resume`` of ``RUN`` continues whichever front has the given settings.
   The evaluator is built before anything is created, so a bad setting leaves nothing behind.
2. Feasibility check before anything is trained: ``engine.feasibility_samples`` random specs
   (``SearchSpace.random``, seeded) and every preset are costed (instant); when none meets the
   budget the search stops with ``ValueError`` (exit status 2) naming the bounds and the
   smallest values seen.
3. Study: ``optuna.create_study(directions=["maximize", "minimize"], load_if_exists=True)`` in
   ``study.db`` (SQLite) or ``study.log`` (journal). The sampler (TPE or NSGA-II) is seeded with
   ``seed + number of trials already in the study``, so a resumed search does not replay the
   first random points of the interrupted one.
4. Resume: a trial left RUNNING by a dead process (same host, pid gone, or no worker tag) is
   told FAIL and never counted; the search runs until the study holds ``engine.trials``
   COMPLETE trials (presets and over-budget candidates included). Several workers may share one
   study: start the first with the normal command, the others with the same command plus
   ``--resume``; each stops when the COMPLETE count reaches the target (at most one extra
   trial per additional worker).
5. Presets: every ``space.presets`` design built at the space's scale and its first listed
   ``channels``/``blocks`` values that the space contains and the budget allows is enqueued
   first (``enqueue_trial(space.params_of(spec), user_attrs={"preset": name})``), and on every
   resume each such preset that has no COMPLETE trial and none waiting or running (a preset
   trial killed or crashed is FAIL) is enqueued again.
6. After each trial: TensorBoard (``nas.tensorboard``); at the end (also after an interruption):
   ``pareto.json/.csv/.png``, the Pareto figure and SR samples of the front in TensorBoard.
"""
from __future__ import annotations

import os
import random
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from nas import config as config_mod
from nas.engines.base import EngineContext
from nas.objective import Objective, known_results, worker_is_gone
from nas.runfolder import STUDY_NAME, RunFolder, records
from nas.tensorboard import SearchBoard

DIRECTIONS = ["maximize", "minimize"]
_COMPARED = ("space_text", "objectives", "constraints")
FRONT_PREFIX = "front-"


#: an untagged RUNNING trial younger than this is another worker's trial between ``ask`` and
#: its tag (seconds); older untagged ones were left by a process that died right after ``ask``.
UNTAGGED_GRACE_S = 120.0


def is_stale(frozen, now=None) -> bool:
    """A RUNNING trial whose worker process (on this host) no longer exists. A trial without a
    worker tag counts as stale only once it is older than ``UNTAGGED_GRACE_S``: another worker
    may have just asked it and not tagged it yet (telling it FAIL would crash that worker)."""
    tag = frozen.user_attrs.get("worker")
    if not tag:
        import datetime

        start = frozen.datetime_start
        if start is None:
            return True
        now = now or datetime.datetime.now(start.tzinfo)
        return (now - start).total_seconds() > UNTAGGED_GRACE_S
    return worker_is_gone(tag)


def _space_text(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def front_dirs(run_dir: str) -> List[str]:
    """The run folder and its separate fronts ``front-K`` (K = 2, 3, ...) that hold a study,
    oldest first."""
    out = [run_dir] if RunFolder(run_dir).exists() else []
    if os.path.isdir(run_dir):
        ks = []
        for name in os.listdir(run_dir):
            tail = name[len(FRONT_PREFIX):]
            if name.startswith(FRONT_PREFIX) and tail.isdigit() and RunFolder(os.path.join(run_dir, name)).exists():
                ks.append(int(tail))
        out += [os.path.join(run_dir, f"{FRONT_PREFIX}{k}") for k in sorted(ks)]
    return out


def _stored_config(run_dir: str) -> Dict[str, Any]:
    from space.files import read_yaml

    path = RunFolder(run_dir).config_path
    if not os.path.isfile(path):
        return {}
    data = read_yaml(path, "config.yaml of the run folder")
    return data if isinstance(data, dict) else {}


def _stored_proxy(stored: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    if "proxy_settings" in stored:
        return stored["proxy_settings"]
    try:  # a run folder written before proxy settings were stored
        return config_mod.proxy_settings(stored)
    except (ValueError, TypeError, KeyError):
        return None


def _describe(changes) -> str:
    return "; ".join(f"{k}: stored {a!r}, given {b!r}" for k, a, b in changes)


def _next_front(base: str, fronts: List[str]) -> str:
    """The folder of the next separate front: ``base/front-K``, K one above the highest so far."""
    k = max([1] + [int(os.path.basename(d)[len(FRONT_PREFIX):]) for d in fronts if d != base]) + 1
    return os.path.join(base, f"{FRONT_PREFIX}{k}")


def choose_run_dir(cfg: Mapping[str, Any], resume: bool, new_front: bool) -> str:
    """The folder this search works in: ``cfg['run_dir']`` itself, the front inside it whose
    proxy settings equal the given ones (``--resume``), or a new ``front-K`` (``new_front``).
    Raises ``ValueError`` naming the changed keys when resuming with other proxy settings."""
    base = cfg["run_dir"]
    fronts = front_dirs(base)
    if not fronts:
        return base
    given = config_mod.proxy_settings(cfg)
    if new_front:
        return _next_front(base, fronts)
    if not resume:
        return base  # Search refuses an existing study without --resume
    for d in reversed(fronts):
        if _stored_proxy(_stored_config(d)) == given:
            return d
    latest = fronts[-1]
    stored = _stored_proxy(_stored_config(latest))
    changes = config_mod.changed_keys(stored, given) if stored is not None else [("proxy settings", "unreadable", "given")]
    raise ValueError(
        f"--resume: the proxy settings differ from those of the search in {latest!r} ({_describe(changes)}); "
        "scores of different proxies cannot share one front. Resume with the same settings, or pass "
        f"--new-front to start a separate front in {_next_front(base, fronts)!r} "
        f"(the trials in {latest!r} are kept)"
    )


class Search:
    """One experiment: components, study and run folder (engines drive ``study``/``objective``).

    ``space``, ``evaluator``, ``latency`` and ``cost_fn`` are injectable (tests); by default
    they are ``SearchSpace.from_yaml(cfg['space'])``, ``ProxyEvaluator(**cfg['evaluator'],
    data_root=cfg['data']['root'])``, ``LatencyTable(input_size, path, threads)`` and
    ``evaluators.cost.cost``.
    """

    def __init__(self, cfg: Mapping[str, Any], *, resume: bool = False, new_front: bool = False,
                 space=None, evaluator=None, latency=None, cost_fn: Optional[Callable] = None,
                 log: Callable[[str], None] = None, progress: bool = True,
                 evaluator_factory: str = "evaluators.proxy:ProxyEvaluator"):
        self.cfg = dict(cfg)
        self.evaluator_factory = evaluator_factory  # what Ray workers build (module:callable)
        self.new_front = bool(new_front)
        self.resume = bool(resume) or self.new_front
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        chosen = choose_run_dir(self.cfg, self.resume, self.new_front)
        if chosen != self.cfg["run_dir"]:
            self.log(f"run folder: {chosen} ({'new separate front' if self.new_front else 'the front with these proxy settings'})")
            self.cfg["run_dir"] = chosen
        self.progress = progress
        self.run = RunFolder(self.cfg["run_dir"])
        self.cost_key = self.cfg["objectives"]["cost"]
        self.target = int(self.cfg["engine"]["trials"])
        if space is None:
            from space.space import SearchSpace

            space = SearchSpace.from_yaml(self.cfg["space"])
        self.space = space
        self._evaluator = evaluator
        if latency is None:
            latency = self._build_latency()
        self.latency = latency
        self.objective = Objective(
            space, self, latency, self.run, cost_key=self.cost_key,
            constraints=self.cfg["constraints"], input_size=self.cfg["latency"]["input_size"],
            cost_fn=cost_fn,
        )
        self.study = None
        self.board: Optional[SearchBoard] = None
        self.book = None  # nas.rungs.RungBook of a multi-fidelity search (set up in setup())

    # ------------------------------------------------------------------ components
    def _build_latency(self):
        from evaluators.latency import LatencyTable

        lat = self.cfg["latency"]
        return LatencyTable(input_size=tuple(lat["input_size"]), path=lat["path"], threads=lat["threads"],
                            calibration_space=self.space)  # calibrated on networks of this space

    def evaluator_kwargs(self) -> Dict[str, Any]:
        kw = dict(self.cfg["evaluator"])
        root = self.cfg["data"]["root"]
        kw["data_root"] = os.path.abspath(root) if root else None
        return kw

    @property
    def evaluator(self):
        if self._evaluator is None:
            from evaluators.proxy import ProxyEvaluator

            self._evaluator = ProxyEvaluator(**self.evaluator_kwargs())
        return self._evaluator

    def evaluate(self, spec, run_dir=None, rung: int = 0):  # the Objective's evaluator: built on first use
        if rung:
            return self.evaluator.evaluate(spec, run_dir=run_dir, rung=rung)
        return self.evaluator.evaluate(spec, run_dir=run_dir)

    @property
    def rung_steps(self) -> Optional[List[int]]:
        """``evaluator.rungs`` (None: single fidelity)."""
        rungs = self.cfg["evaluator"].get("rungs")
        return list(rungs) if rungs else None

    # ------------------------------------------------------------------ set-up
    def _check_folder(self) -> None:
        exists = self.run.exists()
        if exists and not self.resume:
            raise ValueError(
                f"--run-dir: {self.run.path!r} already holds a search; pass --resume to continue it "
                "(or join it as another worker), or choose another --run-dir"
            )
        stored_path = self.run.config_path
        if exists and os.path.isfile(stored_path):
            stored = _stored_config(self.run.path)
            for key in _COMPARED:
                if key in stored and stored[key] != self._comparable()[key]:
                    raise ValueError(
                        f"--resume: {key} differs from the interrupted search's config.yaml "
                        f"(stored {stored[key]!r}, given {self._comparable()[key]!r}); "
                        "resume with the same config or choose another --run-dir"
                    )

    def _comparable(self) -> Dict[str, Any]:
        return {"space_text": _space_text(self.cfg["space"]),
                "objectives": self.cfg["objectives"], "constraints": self.cfg["constraints"]}

    def _write_config(self) -> None:
        os.makedirs(self.run.path, exist_ok=True)
        data = dict(self.cfg)
        data["space_text"] = _space_text(self.cfg["space"])
        data["proxy_settings"] = config_mod.proxy_settings(self.cfg)
        config_mod.dump(data, self.run.config_path)

    def preset_specs(self) -> List[Tuple[str, Any]]:
        """(name, spec) of every preset the space contains, at its scale and first sizes."""
        from space import presets

        arch = getattr(self.space, "arch", {})
        channels = (arch.get("channels") or (64,))[0]
        blocks = (arch.get("blocks") or (16,))[0]
        out = []
        for name in presets.names():
            try:
                spec = presets.get(name, scale=self.space.scale, channels=channels, blocks=blocks)
            except ValueError:
                continue
            if self.space.contains(spec):
                out.append((name, spec))
        return out

    def check_feasible(self) -> Dict[str, float]:
        """Cost ``engine.feasibility_samples`` random specs and the presets; raise when none is
        within budget. Returns the largest value of each metric seen among feasible ones."""
        rng = random.Random(self.cfg["seed"])
        n = int(self.cfg["engine"]["feasibility_samples"])
        specs = [self.space.random(rng) for _ in range(n)] + [s for _, s in self.preset_specs()]
        best: Dict[str, float] = {}
        largest: Dict[str, float] = {}
        any_ok = False
        for spec in specs:
            m = self.objective.static_metrics(spec)
            viol = self.objective.violations(m)
            for k in viol:
                best[k] = min(best.get(k, float("inf")), float(m[k]))
            if all(v <= 0 for v in viol.values()):
                any_ok = True
                for k, v in m.items():
                    if isinstance(v, (int, float)):
                        largest[k] = max(largest.get(k, float("-inf")), float(v))
        if not any_ok:
            bounds = {k: v for k, v in self.cfg["constraints"].items() if v is not None}
            seen = ", ".join(f"{k} >= {best[k]:.6g}" for k in sorted(best))
            raise ValueError(
                f"constraints: no architecture of space {self.cfg['space']!r} meets the budget "
                f"{bounds} ({len(specs)} specs checked: {n} random + presets; smallest seen: {seen}); "
                "raise the bounds or shrink the space"
            )
        return largest

    def _sampler(self, n_existing: int):
        import optuna

        eng = self.cfg["engine"]
        seed = int(self.cfg["seed"]) + n_existing
        if eng["sampler"] == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if eng["sampler"] == "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=max(2, eng["startup_trials"]), seed=seed)
        return optuna.samplers.TPESampler(n_startup_trials=eng["startup_trials"], seed=seed)

    def setup(self) -> None:
        """Folder checks, config.yaml, feasibility, study, stale trials, presets, TensorBoard."""
        import optuna
        from optuna.trial import TrialState

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._check_folder()
        self.evaluator  # built now: a setting it refuses must stop us before anything exists
        largest = self.check_feasible()
        kind = self.run.storage_kind() or self.cfg["engine"]["storage"]
        storage = self.run.storage(kind)
        self._write_config()
        try:
            n_existing = len(optuna.load_study(study_name=STUDY_NAME, storage=storage).trials)
        except KeyError:
            n_existing = 0
        self.study = optuna.create_study(study_name=STUDY_NAME, storage=storage, directions=DIRECTIONS,
                                         sampler=self._sampler(n_existing), load_if_exists=True)
        failed = 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if is_stale(t):
                self.study.tell(t.number, state=TrialState.FAIL)
                self.run.mark_failed(t.number, "left RUNNING by a stopped process; marked FAIL on resume")
                failed += 1
        if failed:
            self.log(f"resume: {failed} trial(s) left RUNNING by a stopped process marked FAIL")
        attrs = self.study.user_attrs
        if "hv_reference" not in attrs:
            ref_cost = config_mod.cost_reference(self.cfg)
            if ref_cost is None:
                ref_cost = 1.1 * largest.get(self.cost_key, 1.0)
            ref = [float(self.cfg["tensorboard"]["hv_reference"]["psnr_y"]), float(ref_cost)]
            self.study.set_user_attr("hv_reference", ref)
        if self.rung_steps:
            from nas.rungs import RungBook

            stored = self.study.user_attrs.get("rungs")
            if stored is not None and list(stored) != self.rung_steps:  # proxy_settings guard this too
                raise ValueError(f"evaluator.rungs: {self.rung_steps} but the study was searched with {stored}")
            self.study.set_user_attr("rungs", self.rung_steps)
            self.study.set_user_attr("eta", int(self.cfg["evaluator"].get("eta", 3)))
            self.study.set_user_attr("cost_key", self.cost_key)
            self.book = RungBook(self.run, self.rung_steps, int(self.cfg["evaluator"].get("eta", 3)), self.cost_key)
        if self.cfg["engine"]["presets"]:
            self._enqueue_presets()
        self.board = SearchBoard(self.run, self.cost_key, tuple(self.study.user_attrs["hv_reference"]))
        self.board.resume_from(records(self.study, self.run))

    def _enqueue_presets(self) -> None:
        """Enqueue every fitting preset that has no COMPLETE trial and is not already waiting or
        running (a new study: all of them; a resume: those whose trial FAILed or never ran)."""
        from optuna.trial import TrialState

        present = {t.user_attrs.get("preset") for t in self.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING))}
        used, skipped, done = [], [], []
        for name, spec in self.preset_specs():
            if name in present:
                done.append(name)
                continue
            if not self.objective.feasible(spec):
                skipped.append(name)
                continue
            self.study.enqueue_trial(self.space.params_of(spec), user_attrs={"preset": name},
                                     skip_if_exists=False)
            used.append(name)
        if used or skipped or not done:
            self.log(f"presets enqueued: {used or 'none'}" + (f"; over budget: {skipped}" if skipped else "")
                     + (f"; already evaluated or queued: {done}" if done and used else ""))

    # ------------------------------------------------------------------ during the search
    def n_complete(self) -> int:
        from optuna.trial import TrialState

        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def known(self) -> Dict[str, Dict[str, Any]]:
        return known_results(self.study)

    def after_trial(self) -> float:
        """Log the new trial(s) to TensorBoard; returns the hypervolume of the front."""
        return self.board.update(records(self.study, self.run))

    def engine_context(self) -> EngineContext:
        """The part of the search an engine may use (``nas.engines.base``)."""
        kwargs = self.evaluator_kwargs() if self.evaluator_factory == "evaluators.proxy:ProxyEvaluator" else {}
        return EngineContext(study=self.study, objective=self.objective, run=self.run, target=self.target,
                             cost_key=self.cost_key, after_trial=self.after_trial, known=self.known,
                             progress=self.progress, log=self.log, ray=dict(self.cfg["ray"]),
                             evaluator_kwargs=kwargs, evaluator_factory=self.evaluator_factory,
                             book=self.book, records=lambda: records(self.study, self.run))

    # ------------------------------------------------------------------ the end
    def finalize(self) -> List[Dict[str, Any]]:
        """pareto.json/.csv/.png (with the bicubic reference), TensorBoard figure and samples;
        returns the front (``nas.outputs``)."""
        from nas.outputs import search_outputs

        return search_outputs(self)


def run(cfg: Mapping[str, Any], *, resume: bool = False, new_front: bool = False,
        **components) -> Tuple[Search, List[Dict[str, Any]]]:
    """Run the experiment ``cfg`` with the engine it names; returns (search, front)."""
    search = Search(cfg, resume=resume, new_front=new_front, **components)
    search.setup()
    try:
        if cfg["engine"]["kind"] == "ray":
            from nas.engines.ray_engine import run_ray

            run_ray(search.engine_context())
        else:
            from nas.engines.optuna_engine import run_optuna

            run_optuna(search.engine_context())
    finally:
        members = search.finalize()
    return search, members
