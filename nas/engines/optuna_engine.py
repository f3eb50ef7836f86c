"""The embedded engine: an Optuna ask/tell loop in this process.

    while COMPLETE trials < engine.trials:
        trial = study.ask()                       # enqueued presets come out first
        values = objective(trial)                 # over budget: constraints set, not trained
        study.tell(trial, values)

With rungs (``nas.rungs``), a promotion comes before every ask: while some candidate is
promotable, its training is continued to the next rung; a new trial is asked only when none
is; after the last trial, promotions continue until none is left.

A trial that raises (including Ctrl-C) is told FAIL before the exception leaves, so the study
never keeps a RUNNING trial of a live process; every finished trial stays in the storage.
Several processes may run this loop on one study (see ``nas.search``).
"""
from __future__ import annotations

from nas.engines.base import EngineContext
from nas.objective import worker_tag


def run_optuna(search: EngineContext) -> int:
    """Run trials until the study holds ``search.target`` COMPLETE trials; returns how many
    this process finished."""
    from optuna.trial import TrialState
    from tqdm import tqdm

    study = search.study
    done = search.n_complete()
    finished = 0
    bar = tqdm(total=search.target, initial=min(done, search.target), desc="search", unit="trial",
               disable=not search.progress, dynamic_ncols=True)
    try:
        while True:
            job = search.next_promotion()
            if job is not None:
                _promote(search, *job)
                continue
            if search.n_complete() >= search.target:
                break
            trial = study.ask()
            trial.set_user_attr("worker", worker_tag())  # at once: a joining worker must not take it for stale
            try:
                values = search.objective(trial, search.known())
            except BaseException as exc:
                study.tell(trial, state=TrialState.FAIL)
                search.run.mark_failed(trial.number, f"{type(exc).__name__}: {exc}".strip(": "))
                raise
            study.tell(trial, values)
            finished += 1
            hv = search.after_trial()
            bar.set_postfix(trial=trial.number, psnr_y=f"{values[0]:.2f}",
                            **{search.cost_key: f"{values[1]:.4g}"}, hv=f"{hv:.4g}")
            bar.n = min(search.n_complete(), search.target)
            bar.refresh()
    finally:
        bar.close()
    return finished


def _promote(search: EngineContext, number: int, rung: int) -> None:
    """Train the claimed rung of a trial, store it; a failure releases the claim and raises."""
    import sys

    try:
        result = search.objective.evaluate_rung(number, rung)
    except BaseException:
        search.book.release(number, rung)
        raise
    stored = search.book.record(number, rung, result)
    hv = search.after_trial()
    if search.progress:
        from tqdm import tqdm

        tqdm.write(f"promoted trial {number} to rung {rung} ({search.book.rungs[rung]} steps): "
                   f"psnr_y {stored['psnr_y']:.2f}, hv {hv:.4g}", file=sys.stderr)
