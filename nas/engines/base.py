"""What an engine needs of a search: the small interface both engines are written against.

An engine runs trials until the study holds ``target`` COMPLETE trials. It asks the study,
lets the objective score each trial (``objective(trial, known())`` in one process, or
``propose`` / ``evaluate`` / ``finish`` split between a driver and workers), tells the study,
and calls ``after_trial()`` after every told trial (TensorBoard, hypervolume). It never sees
the rest of ``nas.search.Search`` (set-up, presets, outputs), so ``nas.search`` imports the
engines and never the other way round.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping


@dataclass
class EngineContext:
    """The search as an engine sees it.

    ``study``: the Optuna study; ``objective``: ``nas.objective.Objective``; ``run``: the
    ``RunFolder``; ``target``: COMPLETE trials to reach; ``cost_key``: the cost objective's
    metric; ``after_trial()``: log new trials, returns the hypervolume; ``known()``: spec id ->
    metrics of trained trials (duplicate reuse); ``progress``: show a progress bar; ``log``:
    one-line messages to the user. Ray only: ``ray`` (the config's ``ray`` section),
    ``evaluator_kwargs`` and ``evaluator_factory`` (``module:callable`` built on the workers).
    Multi-fidelity only: ``book`` (``nas.rungs.RungBook``: promotions, claims, rung results)
    and ``records()`` (the study's records with their rungs).
    """

    study: Any
    objective: Any
    run: Any
    target: int
    cost_key: str
    after_trial: Callable[[], float]
    known: Callable[[], Dict[str, Dict[str, Any]]]
    progress: bool = True
    log: Callable[[str], None] = print
    ray: Mapping[str, Any] = field(default_factory=dict)
    evaluator_kwargs: Dict[str, Any] = field(default_factory=dict)
    evaluator_factory: str = "evaluators.proxy:ProxyEvaluator"
    book: Any = None
    records: Callable[[], Any] = list

    def next_promotion(self):
        """Claim the next promotion ``(trial, rung)`` (None: none now, or single fidelity)."""
        return None if self.book is None else self.book.next_job(self.records())

    def n_complete(self) -> int:
        """COMPLETE trials in the study now (every worker's)."""
        from optuna.trial import TrialState

        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
