"""The Ray Tune engine: the same search, its trainings run as Ray Tune trials.

Design (the simplest one that keeps budget constraints, see docs/stack_notes.md: Tune's own
``OptunaSearch`` cannot call ``trial.set_constraint``):

* ``BudgetSearcher`` is a ``ray.tune.search.Searcher`` living in the driver process. Each
  ``suggest`` asks the run's Optuna study for a trial and runs ``Objective.propose`` (sample,
  cost, constraints). An over-budget candidate is finished and told on the spot (psnr_y = 0,
  constraints set, **no Ray trial**); so is a duplicate of an already trained spec. A feasible
  candidate becomes a Tune trial whose config is ``{spec, number, trial_dir, evaluator}``.
* ``evaluate_trial`` (the Tune trainable) runs on any Ray node: it builds the
  ``ProxyEvaluator`` from the config (cached per worker process), trains and scores the spec
  (checkpoint and training scalars in ``trials/NNNN``), and reports the result with the Ray
  node id, host and pid.
* ``on_trial_complete`` finishes the Optuna trial in the driver (user attributes,
  ``metrics.json`` with ``node_id``) and tells the study; an errored Tune trial is told FAIL.

* With rungs (``nas.rungs``), promotions are scheduled by the driver: ``suggest`` first claims
  the next promotion (``RungBook.next_job``) and hands it to Tune as a trial whose config has
  ``rung``; the trainable continues that trial's training on whatever node runs it (the run
  folder is shared), ``on_trial_complete`` stores the rung's result. New candidates are asked
  only when nothing is promotable; the experiment (``num_samples = -1``) ends when the trials
  are done, nothing is in flight and nothing is promotable.

So the study storage and the run folder are exactly those of the Optuna engine, and every
later command works on runs of either engine. No scheduler is used (no early stopping), so no
partly trained value ever reaches the front.

Ray: ``ray.init(num_cpus=ray.num_cpus)`` locally, or ``ray.init(address=...)`` for a cluster
(``--ray-address``; the run folder must be on storage every node reaches). Each trial asks for
``ray.cpus_per_trial`` CPUs; at most ``ray.max_concurrent`` run at once. Resume works as for
the Optuna engine, through the study storage: a resumed search marks dead RUNNING trials FAIL
and starts a new Tune experiment (``ray/NNN`` under the run folder) for the remaining trials.
"""
from __future__ import annotations

import os
import socket
from typing import Any, Dict, Optional

from ray.tune.search import Searcher

from nas.engines.base import EngineContext
from nas.objective import worker_tag

_EVALUATORS: Dict[str, Any] = {}
DEFAULT_FACTORY = "evaluators.proxy:ProxyEvaluator"


def _evaluator(factory: str, kwargs: Dict[str, Any]):
    """One evaluator per worker process and settings (its data stay loaded). ``factory`` is
    ``"module:callable"`` (default ``evaluators.proxy:ProxyEvaluator``)."""
    import importlib
    import json

    key = factory + json.dumps(kwargs, sort_keys=True)
    if key not in _EVALUATORS:
        module, _, attr = factory.partition(":")
        _EVALUATORS[key] = getattr(importlib.import_module(module), attr)(**kwargs)
    return _EVALUATORS[key]


def evaluate_trial(config: Dict[str, Any]) -> None:
    """The Tune trainable: train and score one spec, report its metrics (single report)."""
    import ray
    from ray import tune

    from space.spec import ArchSpec

    spec = ArchSpec.from_json(config["spec"])
    evaluator = _evaluator(config["factory"], config["evaluator"])
    if config.get("rung"):
        result = dict(evaluator.evaluate(spec, run_dir=config["trial_dir"], rung=int(config["rung"])))
    else:
        result = dict(evaluator.evaluate(spec, run_dir=config["trial_dir"]))
    clean = {k: v for k, v in result.items() if isinstance(v, (int, float, bool, str)) or v is None}
    clean.update(node_id=ray.get_runtime_context().get_node_id(), hostname=socket.gethostname(),
                 pid=os.getpid(), optuna_trial=int(config["number"]))
    tune.report(clean)


class BudgetSearcher(Searcher):
    """Asks the Optuna study, rejects over-budget candidates itself, hands feasible ones to Tune."""

    def __init__(self, search: EngineContext, evaluator_kwargs: Dict[str, Any], on_told=None):
        super().__init__(metric=None, mode=None)
        self.search = search
        self.on_told = on_told or (lambda number, values, hv: None)
        self.evaluator_kwargs = evaluator_kwargs
        self.pending: Dict[str, Any] = {}
        self.dispatched = 0
        self._quiet_until = 0.0

    def __getstate__(self):
        """Tune pickles its searcher into the experiment state; this one lives in the driver
        only and resumes through the study, so the search (study, compiled latency probes, ...)
        stays out of that copy."""
        state = dict(self.__dict__)
        state.update(search=None, on_told=None, pending={})
        return state

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> Optional[Dict[str, Any]]:
        from optuna.trial import TrialState

        s = self.search
        import time

        if time.monotonic() < self._quiet_until:
            return None  # Tune polls while trials run: look at the rungs at most once a second
        while True:
            job = s.next_promotion()
            if job is not None:
                number, rung = job
                self.pending[trial_id] = ("rung", number, rung)
                self.dispatched += 1
                with open(os.path.join(s.run.trial_dir(number), "spec.json")) as fh:
                    spec_json = fh.read()
                return {"spec": spec_json, "number": number, "rung": rung,
                        "trial_dir": s.run.trial_dir(number), "evaluator": self.evaluator_kwargs,
                        "factory": s.evaluator_factory}
            new = sum(1 for p in self.pending.values() if p[0] == "new")
            if s.n_complete() + new >= s.target:
                if s.book is not None and self.pending:
                    self._quiet_until = time.monotonic() + 1.0
                    return None  # a result in flight may make a candidate promotable
                return Searcher.FINISHED
            trial = s.study.ask()
            trial.set_user_attr("worker", worker_tag())  # at once: a joining worker must not take it for stale
            try:
                cand = s.objective.propose(trial, s.known())
                if not cand.feasible or cand.duplicate_of is not None:
                    result = s.objective.evaluate(cand) if cand.feasible else None
                    values = s.objective.finish(trial, cand, result)
                    s.study.tell(trial, values)
                    self.on_told(trial.number, values, s.after_trial())
                    continue
            except BaseException:
                s.study.tell(trial, state=TrialState.FAIL)
                raise
            self.pending[trial_id] = ("new", trial, cand)
            self.dispatched += 1
            return {"spec": cand.spec_json, "number": trial.number,
                    "trial_dir": s.run.trial_dir(trial.number), "evaluator": self.evaluator_kwargs,
                    "factory": s.evaluator_factory}

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        from optuna.trial import TrialState

        if trial_id not in self.pending:
            return
        kind, trial, cand = self.pending.pop(trial_id)
        s = self.search
        if kind == "rung":
            number, rung = trial, cand
            if error or not result or "psnr_y" not in result:
                s.book.release(number, rung)
                return
            s.book.record(number, rung, result)
            self.on_told(number, (result["psnr_y"], None), s.after_trial())
            return
        if error or not result or "psnr_y" not in result:
            s.run.write_trial(cand.number, None, dict(cand.metrics, state="FAIL", preset=cand.preset))
            s.study.tell(trial, state=TrialState.FAIL)
            return
        extra = {k: result[k] for k in ("node_id", "hostname", "pid") if k in result}
        values = s.objective.finish(trial, cand, result, extra=extra)
        s.study.tell(trial, values)
        self.on_told(trial.number, values, s.after_trial())

    def fail_pending(self) -> None:
        """Tell FAIL for trials still in flight (the experiment stopped early)."""
        from optuna.trial import TrialState

        for kind, trial, cand in self.pending.values():
            if kind == "rung":
                self.search.book.release(trial, cand)
            else:
                self.search.study.tell(trial, state=TrialState.FAIL)
        self.pending.clear()


def _trial_name(trial) -> str:
    rung = trial.config.get("rung")
    return f"trial_{int(trial.config['number']):04d}" + (f"_rung{int(rung)}" if rung else "")


def _experiment_name(run_root: str) -> str:
    base = os.path.join(run_root, "ray")
    n = 0
    while os.path.exists(os.path.join(base, f"{n:03d}")):
        n += 1
    return f"{n:03d}"


def run_ray(search: EngineContext) -> int:
    """Run the remaining trials as Ray Tune trials; returns how many Tune trials ran."""
    # Ray's own results go to RUN/ray/NNN as JSON/CSV only: no TensorBoard files of its own
    # there, so `tensorboard --logdir RUN` shows the same runs for both engines.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    import ray
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    rcfg = search.ray
    started = False
    if not ray.is_initialized():
        if rcfg["address"]:
            ray.init(address=rcfg["address"], log_to_driver=False)
        else:
            ray.init(num_cpus=rcfg["num_cpus"], log_to_driver=False, include_dashboard=False)
        started = True
    ev_kwargs = dict(search.evaluator_kwargs) if search.evaluator_factory == DEFAULT_FACTORY else {}
    if search.evaluator_factory == DEFAULT_FACTORY and ev_kwargs.get("threads") is None:
        ev_kwargs["threads"] = max(1, int(rcfg["cpus_per_trial"]))
    from tqdm import tqdm

    bar = tqdm(total=search.target, initial=min(search.n_complete(), search.target), desc="search (ray)",
               unit="trial", disable=not search.progress, dynamic_ncols=True)

    def on_told(number, values, hv):
        cost = {} if values[1] is None else {search.cost_key: f"{values[1]:.4g}"}
        bar.set_postfix(trial=number, psnr_y=f"{values[0]:.2f}", **cost, hv=f"{hv:.4g}")
        bar.n = min(search.n_complete(), search.target)
        bar.refresh()

    searcher = BudgetSearcher(search, ev_kwargs, on_told)
    remaining = max(0, search.target - search.n_complete())
    if search.book is not None and search.book.candidates(search.records()):
        remaining = max(remaining, 1)  # promotions left after the last trial
    try:
        if remaining:
            storage = os.path.join(search.run.path, "ray")
            os.makedirs(storage, exist_ok=True)
            tuner = tune.Tuner(
                tune.with_resources(evaluate_trial, {"cpu": rcfg["cpus_per_trial"]}),
                tune_config=tune.TuneConfig(search_alg=searcher,
                                            num_samples=-1 if search.book is not None else remaining,
                                            max_concurrent_trials=rcfg["max_concurrent"],
                                            trial_name_creator=_trial_name,
                                            trial_dirname_creator=_trial_name),
                run_config=tune.RunConfig(name=_experiment_name(search.run.path), storage_path=storage,
                                          verbose=0,  # progress: the tqdm bar above
                                          callbacks=[JsonLoggerCallback(), CSVLoggerCallback()]),
            )
            grid = tuner.fit()
            errors = grid.num_errors
            if errors:
                search.log(f"ray: {errors} Tune trial(s) failed (marked FAIL in the study; logs under "
                           f"{storage}); run the same command with --resume to finish the search")
    finally:
        bar.close()
        searcher.fail_pending()
        if started:
            ray.shutdown()
    return searcher.dispatched
