"""The run folder of a search, the same for both engines::

    runs/NAME/
      config.yaml            the resolved config (every default filled in)
      study.db | study.log   the Optuna storage (SQLite or journal file), study name "search"
      trials/NNNN/           one folder per Optuna trial number (zero-padded to 4 digits)
        spec.json            the ArchSpec (ArchSpec.to_json)
        metrics.json         psnr_y, ssim_y, latency_ms, bops, flops, params, model_bytes,
                             feasible, violations, preset, state, node_id, ...
        events.out.tfevents.*  the proxy training's scalars (train/loss, train/lr)
        hparams/             the trial's TensorBoard HParams session (its own run)
      search/                TensorBoard run of the whole search (hypervolume, Pareto figure)
      pareto.json / .csv / .png
      picked.json            written by ``bsrnas pareto --pick``

``records(study)`` turns the study's finished trials into the plain dicts ``nas.pareto`` uses;
only the study is authoritative (a folder without a COMPLETE trial behind it is ignored).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from space.files import atomic_write

STUDY_NAME = "search"
STORAGE_FILES = {"sqlite": "study.db", "journal": "study.log"}


class RunFolder:
    """Paths and file I/O of one run folder (see the module docstring)."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    # ---------------------------------------------------------------- paths
    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def config_path(self) -> str:
        return self.file("config.yaml")

    def trial_dir(self, number: int) -> str:
        return os.path.join(self.path, "trials", f"{int(number):04d}")

    @property
    def search_tb_dir(self) -> str:
        return self.file("search")

    def storage_kind(self) -> Optional[str]:
        """'sqlite' / 'journal' if a storage file exists here, else None."""
        for kind, name in STORAGE_FILES.items():
            if os.path.exists(self.file(name)):
                return kind
        return None

    def exists(self) -> bool:
        return self.storage_kind() is not None

    # ---------------------------------------------------------------- storage
    def storage(self, kind: str):
        """The Optuna storage object (``kind`` = sqlite | journal) inside this folder."""
        import optuna

        os.makedirs(self.path, exist_ok=True)
        if kind == "sqlite":
            return optuna.storages.RDBStorage(
                f"sqlite:///{self.file(STORAGE_FILES['sqlite'])}",
                engine_kwargs={"connect_args": {"timeout": 60}},
            )
        if kind == "journal":
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(self.file(STORAGE_FILES["journal"])))
        raise ValueError(f"engine.storage: invalid value {kind!r}; allowed: {list(STORAGE_FILES)}")

    def load_study(self):
        """The study of an existing run folder (FileNotFoundError when there is none)."""
        import optuna

        kind = self.storage_kind()
        if kind is None:
            raise FileNotFoundError(
                f"run folder {self.path!r} holds no study (expected {' or '.join(STORAGE_FILES.values())})"
            )
        return optuna.load_study(study_name=STUDY_NAME, storage=self.storage(kind))

    # ---------------------------------------------------------------- trial files
    def write_trial(self, number: int, spec_json: Optional[str], metrics: Dict[str, Any]) -> str:
        d = self.trial_dir(number)
        os.makedirs(d, exist_ok=True)
        if spec_json is not None:
            _atomic_write(os.path.join(d, "spec.json"), spec_json if spec_json.endswith("\n") else spec_json + "\n")
        _atomic_write(os.path.join(d, "metrics.json"), json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        return d

    def mark_failed(self, number: int, reason: str) -> None:
        """Record in ``metrics.json`` that the trial is FAIL in the study (the file said RUNNING);
        a trial that never wrote one gets none."""
        path = os.path.join(self.trial_dir(number), "metrics.json")
        if not os.path.isfile(path):
            return
        try:
            with open(path) as fh:
                metrics = json.load(fh)
        except (OSError, ValueError):
            metrics = {}
        if not isinstance(metrics, dict):
            metrics = {}
        metrics.update(state="FAIL", fail_reason=reason, trial=int(number))
        self.write_trial(number, None, metrics)

    def read_metrics(self, number: int) -> Dict[str, Any]:
        with open(os.path.join(self.trial_dir(number), "metrics.json")) as fh:
            return json.load(fh)


def _atomic_write(path: str, text: str) -> None:
    atomic_write(path, text)


def is_feasible(frozen) -> bool:
    """Feasible when every constraint value is <= 0 (no constraint: feasible)."""
    return all(float(c) <= 0 for c in (frozen.constraints or {}).values())


def record_of(frozen) -> Dict[str, Any]:
    """A COMPLETE FrozenTrial as the plain dict nas.pareto and nas.tensorboard use."""
    attrs = frozen.user_attrs
    metrics = dict(attrs.get("metrics", {}))
    spec = attrs.get("spec")
    rec = {
        "trial": frozen.number,
        "psnr_y": float(frozen.values[0]),
        "ssim_y": metrics.get("ssim_y"),
        "latency_ms": metrics.get("latency_ms"),
        "bops": metrics.get("bops"),
        "flops": metrics.get("flops"),
        "params": metrics.get("params"),
        "model_bytes": metrics.get("model_bytes"),
        "feasible": is_feasible(frozen),
        "trained": bool(metrics.get("trained", False)),
        "preset": attrs.get("preset"),
        "spec": json.loads(spec) if spec else None,
        "params_choice": dict(frozen.params),
        "diverged": bool(metrics.get("diverged", False)),
        "duplicate_of": metrics.get("duplicate_of"),
    }
    return rec


def rung_book(study, run: "RunFolder", cost_key: Optional[str] = None):
    """The ``nas.rungs.RungBook`` of a multi-fidelity study (None for a single-fidelity one)."""
    rungs = study.user_attrs.get("rungs")
    if not rungs:
        return None
    from nas.rungs import RungBook

    return RungBook(run, rungs, int(study.user_attrs.get("eta", 3)),
                    cost_key or study.user_attrs.get("cost_key", "latency_ms"))


def records(study, run: Optional["RunFolder"] = None) -> List[Dict[str, Any]]:
    """Records of every COMPLETE trial, by trial number; with ``run`` and a multi-fidelity
    study, with their rungs (``nas.rungs.attach``: ``psnr_y_by_rung``, ``rung``)."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    recs = [record_of(t) for t in sorted(done, key=lambda t: t.number)]
    book = rung_book(study, run) if run is not None else None
    if book is not None:
        from nas.rungs import attach

        recs = attach(recs, book)
    return recs
