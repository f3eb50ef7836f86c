"""The search experiment config: one YAML file holds the whole experiment.

Layout (every key optional except ``space``; defaults in ``DEFAULTS``)::

    name: quickstart               # run folder runs/<name>/ (default: the file's stem)
    seed: 0
    space: configs/space/quickstart.yaml   # relative paths: to the cwd, else to the config file
    objectives:
      cost: latency_ms             # minimized beside psnr_y (maximized): latency_ms | bops | model_bytes
    constraints:                   # upper bounds; null = no bound
      latency_ms: null
      bops: null
      params: null
      model_bytes: null
    evaluator:                     # the proxy training (evaluators.proxy.ProxyEvaluator); typed
      steps: 300                   # and checked by EvaluatorSettings below
      batch: 8
      patch: 48                    # HR patch side, a multiple of the space's scale
      lr: 0.001
      schedule: cosine             # cosine | step
      seed: 0
      threads: null                # torch threads during a trial (null: leave as is)
      val_set: null                # a set under data.root (default Set5); null without a root
      max_val_images: null         # score at most N validation images
      device: cpu                  # cpu | cuda | auto
      grad_clip: null
      progress: false
      rungs: null                  # e.g. [150, 600, 2400]: multi-fidelity search (nas.rungs);
                                   # every rung trains with the wsd schedule, `steps` is unused
      eta: 3                       # the top 1/eta of a rung (by two objectives) is promoted
      decay: 0.2                   # wsd cool-down: the last 20 % of each rung's steps
      seeds: 1                     # seeds averaged per rung (each rung trains K copies)
    data: {root: null}             # folder with train/T91, train/BSD200 and <Set>/HR; null = embedded images
    latency: {input_size: [3, 32, 32], path: null, threads: null}   # LatencyTable(...)
    engine:
      kind: optuna                 # optuna | ray
      trials: 20                   # COMPLETE trials to reach (presets and infeasible ones count)
      sampler: tpe                 # tpe | nsga2 | random
      storage: sqlite              # sqlite | journal  (file inside the run folder)
      presets: true                # evaluate the fitting presets first
      feasibility_samples: 200     # random specs checked for a feasible one before starting
      startup_trials: 10           # TPE random start-up trials / NSGA-II population size
    ray: {address: null, num_cpus: 2, cpus_per_trial: 1, max_concurrent: 2}
    tensorboard:
      hv_reference: {psnr_y: 0.0, cost: null}   # cost null: the cost bound, else 1.1 x the
                                                # largest cost among the feasibility samples
      sample_images: true          # SR samples of front members (needs trial checkpoints)

``load(path, overrides)`` returns the resolved config (a plain dict, every default filled in),
raising ``ValueError`` (or ``FileNotFoundError`` for a path that must exist) that names the key
path, the value and what is allowed. Everything is checked here, before a run folder or a study
exists: every section's types and ranges, the space file (parsed), the data root (its training
folders and the validation set), the evaluator's patch against the space's scale. So a bad value
never leaves a half-made run folder behind.

``proxy_settings(cfg)`` is what decides the scores of a trial (the evaluator settings with every
default filled in, the data root as an absolute path, the latency settings): a search may only be
resumed with the same proxy settings, since scores of different proxies must not share a front.
"""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

COSTS = ("latency_ms", "bops", "model_bytes")
CONSTRAINTS = ("latency_ms", "bops", "params", "model_bytes")
ENGINES = ("optuna", "ray")
SAMPLERS = ("tpe", "nsga2", "random")
STORAGES = ("sqlite", "journal")

DEFAULTS: Dict[str, Any] = {
    "name": None,
    "seed": 0,
    "space": None,
    "objectives": {"quality": "psnr_y", "cost": "latency_ms"},
    "constraints": {k: None for k in CONSTRAINTS},
    "evaluator": {},
    "data": {"root": None},
    "latency": {"input_size": [3, 32, 32], "path": None, "threads": None},
    "engine": {"kind": "optuna", "trials": 20, "sampler": "tpe", "storage": "sqlite",
               "presets": True, "feasibility_samples": 200, "startup_trials": 10},
    "ray": {"address": None, "num_cpus": 2, "cpus_per_trial": 1, "max_concurrent": 2},
    "tensorboard": {"hv_reference": {"psnr_y": 0.0, "cost": None}, "sample_images": True},
    "run_dir": None,
}

#: sections checked by a typed class of their own (EvaluatorSettings), not by DEFAULTS' keys.
_FREE_SECTIONS = ("evaluator",)


def _err(path: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{path}: invalid value {value!r}; allowed: {allowed}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class EvaluatorSettings:
    """The ``evaluator`` section: the keyword arguments of ``evaluators.proxy.ProxyEvaluator``
    (``data_root`` comes from ``data.root``), with the same defaults, checked on construction.
    A test keeps the fields and defaults equal to ProxyEvaluator's signature."""

    steps: int = 300
    batch: int = 8
    patch: int = 48
    lr: float = 1e-3
    seed: int = 0
    threads: Optional[int] = None
    schedule: str = "cosine"
    val_set: Optional[str] = None
    max_val_images: Optional[int] = None
    device: str = "cpu"
    grad_clip: Optional[float] = None
    progress: bool = False
    rungs: Optional[List[int]] = None
    eta: int = 3
    decay: float = 0.2
    seeds: int = 1

    def __post_init__(self):
        def check(name, ok, allowed):
            if not ok:
                raise _err(f"evaluator.{name}", getattr(self, name), allowed)

        if isinstance(self.lr, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                object.__setattr__(self, "lr", float(self.lr))
            except ValueError:
                pass
        # the training settings are checked by the TrainConfig the proxy builds from them
        from evaluators.training import TrainConfig, TrainConfigError

        try:
            TrainConfig(steps=self.steps, batch=self.batch, patch=self.patch, lr=self.lr,
                        schedule=self.schedule, seed=self.seed, grad_clip=self.grad_clip,
                        threads=self.threads, device=self.device)
        except TrainConfigError as exc:
            raise _err(f"evaluator.{exc.field}", exc.value, exc.allowed) from None
        object.__setattr__(self, "lr", float(self.lr))
        check("decay", _is_num(self.decay) and 0 < self.decay <= 1,
              "a number in (0, 1] (the fraction of each rung's steps in the cool-down)")
        from evaluators.proxy import check_rungs

        try:
            rungs = check_rungs(self.rungs, float(self.decay))
        except ValueError as exc:
            raise ValueError(f"evaluator.{exc}") from None
        object.__setattr__(self, "rungs", list(rungs) if rungs else None)
        check("eta", _is_int(self.eta) and self.eta >= 2, "an integer >= 2 (the top 1/eta of a rung is promoted)")
        check("seeds", _is_int(self.seeds) and self.seeds >= 1, "an integer >= 1 (seeds averaged per rung)")
        check("val_set", self.val_set is None or (isinstance(self.val_set, str) and self.val_set),
              "null or the name of a set under data.root (e.g. Set5)")
        check("max_val_images", self.max_val_images is None
              or (_is_int(self.max_val_images) and self.max_val_images >= 1), "null or an integer >= 1")
        check("progress", isinstance(self.progress, bool), "true or false")

    @classmethod
    def from_mapping(cls, given: Any) -> "EvaluatorSettings":
        if given is None:
            given = {}
        if not isinstance(given, Mapping):
            raise _err("evaluator", given, "a mapping of proxy-evaluator settings")
        allowed = [f.name for f in fields(cls)]
        for key in given:
            if key == "data_root":
                raise ValueError("evaluator.data_root: unknown key; set data.root (or --data-root) instead")
            if key not in allowed:
                raise ValueError(f"evaluator.{key}: unknown key (value {given[key]!r}); "
                                 f"allowed keys: {sorted(allowed)}")
        return cls(**dict(given))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _merge(base: Dict[str, Any], given: Mapping[str, Any], path: str) -> Dict[str, Any]:
    """Deep-merge ``given`` into a copy of ``base``; unknown keys raise (except free sections)."""
    out = copy.deepcopy(base)
    if not isinstance(given, Mapping):
        raise _err(path or "config", given, "a mapping of keys")
    for key, value in given.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in base:
            raise ValueError(f"{where}: unknown key (value {value!r}); allowed keys: {sorted(base)}")
        if isinstance(base[key], dict) and key not in _FREE_SECTIONS and base[key] is not None:
            if value is None:
                continue
            out[key] = _merge(base[key], value, where)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _pngs(folder: str) -> bool:
    return os.path.isdir(folder) and any(n.lower().endswith(".png") for n in os.listdir(folder))


def check_data(root: Optional[str], val_set: Optional[str]) -> None:
    """The data the proxy will read exists: with a root, ``train/T91`` and ``train/BSD200``
    holding .png images and the validation set ``<root>/<val_set or Set5>/HR``; without one,
    only the embedded ``default`` validation set. Raises before anything is created."""
    if root is None:
        if val_set not in (None, "default"):
            raise ValueError(f"evaluator.val_set: {val_set!r} needs data.root (or --data-root); "
                             "without it only the embedded default validation images exist "
                             "(allowed: null or 'default')")
        return
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data.root: folder {root!r} not found (allowed: a folder holding "
                                "train/T91, train/BSD200 and <Set>/HR, or null for the embedded images)")
    missing = [sub for sub in ("train/T91", "train/BSD200") if not _pngs(os.path.join(root, sub))]
    if missing:
        raise FileNotFoundError(f"data.root: {root!r} has no .png training images in "
                                f"{', '.join(missing)} (expected train/T91 and train/BSD200)")
    name = val_set or "Set5"
    if not _pngs(os.path.join(root, name, "HR")):
        found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, "HR")))
        raise FileNotFoundError(f"evaluator.val_set: {name!r} has no .png images in "
                                f"{os.path.join(root, name, 'HR')!r}; sets under data.root: "
                                f"{', '.join(found) or 'none'}")


def _space_scale(path: str) -> int:
    """The scale of the space file (parsed in full, so a bad space is reported here)."""
    from space.space import SearchSpace

    try:
        return int(SearchSpace.from_yaml(path).scale)
    except ValueError as exc:
        raise ValueError(f"space: {exc}") from None


def validate(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Check every value of a merged config; returns it unchanged or raises ``ValueError``."""
    if not isinstance(cfg["name"], str) or not cfg["name"] or "/" in cfg["name"]:
        raise _err("name", cfg["name"], "a non-empty string without '/'")
    if not _is_int(cfg["seed"]) or cfg["seed"] < 0:
        raise _err("seed", cfg["seed"], "an integer >= 0")
    if not isinstance(cfg["space"], str) or not cfg["space"]:
        raise _err("space", cfg["space"], "the path of a search-space YAML file (required)")
    if not os.path.isfile(cfg["space"]):
        raise FileNotFoundError(f"space: file {cfg['space']!r} not found")
    obj = cfg["objectives"]
    if obj["quality"] != "psnr_y":
        raise _err("objectives.quality", obj["quality"], "['psnr_y']")
    if obj["cost"] not in COSTS:
        raise _err("objectives.cost", obj["cost"], str(list(COSTS)))
    for key, bound in cfg["constraints"].items():
        if bound is not None and (not _is_num(bound) or not bound > 0):
            raise _err(f"constraints.{key}", bound, "a number > 0 or null")
    settings = EvaluatorSettings.from_mapping(cfg["evaluator"])
    given = cfg["evaluator"] or {}
    cfg["evaluator"] = {k: v for k, v in settings.to_dict().items() if k in given}
    root = cfg["data"]["root"]
    if root is not None and (not isinstance(root, str) or not root):
        raise _err("data.root", root, "a folder path or null (embedded images)")
    check_data(root, settings.val_set)
    scale = _space_scale(cfg["space"])
    if settings.patch % scale:
        raise _err("evaluator.patch", settings.patch,
                   f"a multiple of the space's scale {scale} (HR patch side; LR side = patch / scale)")
    lat = cfg["latency"]
    size = lat["input_size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 3 or not all(_is_int(v) and v > 0 for v in size)
            or size[0] != 3):
        raise _err("latency.input_size", size, "[3, H, W] with H, W positive integers")
    lat["input_size"] = [int(v) for v in size]
    if lat["path"] is not None and (not isinstance(lat["path"], str) or not lat["path"]):
        raise _err("latency.path", lat["path"], "a JSON file path or null")
    if lat["path"] is not None:
        parent = os.path.dirname(os.path.abspath(lat["path"]))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"latency.path: folder {parent!r} of {lat['path']!r} not found")
    if lat["threads"] is not None and (not _is_int(lat["threads"]) or lat["threads"] < 1):
        raise _err("latency.threads", lat["threads"], "an integer >= 1 or null")
    eng = cfg["engine"]
    if eng["kind"] not in ENGINES:
        raise _err("engine.kind", eng["kind"], str(list(ENGINES)))
    if not _is_int(eng["trials"]) or eng["trials"] < 1:
        raise _err("engine.trials", eng["trials"], "an integer >= 1")
    if eng["sampler"] not in SAMPLERS:
        raise _err("engine.sampler", eng["sampler"], str(list(SAMPLERS)))
    if eng["storage"] not in STORAGES:
        raise _err("engine.storage", eng["storage"], str(list(STORAGES)))
    if not isinstance(eng["presets"], bool):
        raise _err("engine.presets", eng["presets"], "true or false")
    for key in ("feasibility_samples", "startup_trials"):
        if not _is_int(eng[key]) or eng[key] < 1:
            raise _err(f"engine.{key}", eng[key], "an integer >= 1")
    ray = cfg["ray"]
    if ray["address"] is not None and (not isinstance(ray["address"], str) or not ray["address"]):
        raise _err("ray.address", ray["address"], "'auto', 'HOST:PORT' or null (local Ray)")
    for key in ("num_cpus", "max_concurrent"):
        if not _is_int(ray[key]) or ray[key] < 1:
            raise _err(f"ray.{key}", ray[key], "an integer >= 1")
    if not _is_num(ray["cpus_per_trial"]) or not ray["cpus_per_trial"] > 0:
        raise _err("ray.cpus_per_trial", ray["cpus_per_trial"], "a number > 0")
    tb = cfg["tensorboard"]
    ref = tb["hv_reference"]
    if not _is_num(ref["psnr_y"]):
        raise _err("tensorboard.hv_reference.psnr_y", ref["psnr_y"], "a number (dB)")
    if ref["cost"] is not None and (not _is_num(ref["cost"]) or not ref["cost"] > 0):
        raise _err("tensorboard.hv_reference.cost", ref["cost"], "a number > 0 or null")
    if not isinstance(tb["sample_images"], bool):
        raise _err("tensorboard.sample_images", tb["sample_images"], "true or false")
    if cfg["run_dir"] is not None and (not isinstance(cfg["run_dir"], str) or not cfg["run_dir"]):
        raise _err("run_dir", cfg["run_dir"], "a folder path or null (runs/<name>)")
    return cfg


def _resolve_path(value: Optional[str], config_dir: str) -> Optional[str]:
    """Paths in a config are relative to the cwd when they exist there, else to the config,
    else to the project's own configs (``nas.paths.resolve_config_path``)."""
    if value is None or not isinstance(value, str) or os.path.isabs(value) or os.path.exists(value):
        return value
    candidate = os.path.join(config_dir, value)
    if os.path.exists(candidate):
        return candidate
    from nas.paths import resolve_config_path

    try:
        return str(resolve_config_path(value))
    except FileNotFoundError:
        return value


def load(path: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None,
         data: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Read ``path`` (or take ``data``), apply dotted ``overrides`` (``{"engine.trials": 5}``),
    fill in defaults and validate. Returns the resolved config."""
    if path is not None:
        from nas.paths import resolve_config_path
        from space.files import read_yaml

        try:
            path = str(resolve_config_path(path))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"--config: {exc}") from None
        data = read_yaml(path, "--config") or {}
    data = dict(data or {})
    cfg = _merge(DEFAULTS, data, "")
    for dotted, value in (overrides or {}).items():
        node = cfg
        keys = dotted.split(".")
        for k in keys[:-1]:
            node = node[k]
        if keys[-1] not in node:
            raise ValueError(f"{dotted}: unknown key")
        node[keys[-1]] = value
    if cfg["name"] is None:
        cfg["name"] = os.path.splitext(os.path.basename(path))[0] if path else "search"
    config_dir = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
    cfg["space"] = _resolve_path(cfg["space"], config_dir)
    validate(cfg)
    if cfg["run_dir"] is None:
        cfg["run_dir"] = os.path.join("runs", cfg["name"])
    return cfg


def dump(cfg: Mapping[str, Any], path: str) -> None:
    """Write the resolved config (``config.yaml`` of a run folder)."""
    from space.files import atomic_write

    atomic_write(path, yaml.safe_dump(dict(cfg), sort_keys=False, default_flow_style=False))


#: the sections of a config whose values change what a trial scores (see ``proxy_settings``).
PROXY_SECTIONS = ("evaluator", "data", "latency")


def proxy_settings(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """What decides a trial's scores, normalised for comparison: the evaluator settings with
    every default filled in, the data root as an absolute real path (null: embedded images)
    and the latency settings. Works on a stored ``config.yaml`` of an older run too."""
    ev = EvaluatorSettings.from_mapping(cfg.get("evaluator") or {}).to_dict()
    root = (cfg.get("data") or {}).get("root")
    lat = dict(DEFAULTS["latency"], **(cfg.get("latency") or {}))
    return {
        "evaluator": ev,
        "data": {"root": os.path.realpath(root) if root else None},
        "latency": {"input_size": [int(v) for v in lat["input_size"]],
                    "path": os.path.realpath(lat["path"]) if lat["path"] else None,
                    "threads": lat["threads"]},
    }


def changed_keys(stored: Mapping[str, Any], given: Mapping[str, Any], prefix: str = "") -> List[Tuple[str, Any, Any]]:
    """``(dotted key, stored value, given value)`` for every leaf that differs."""
    out: List[Tuple[str, Any, Any]] = []
    for key in sorted(set(stored) | set(given), key=str):
        a, b = stored.get(key), given.get(key)
        where = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(changed_keys(a, b, where + "."))
        elif a != b:
            out.append((where, a, b))
    return out


def cost_reference(cfg: Mapping[str, Any]) -> Optional[float]:
    """The hypervolume reference cost if fixed by the config (explicit, else the cost bound)."""
    ref = cfg["tensorboard"]["hv_reference"]["cost"]
    if ref is not None:
        return float(ref)
    bound = cfg["constraints"].get(cfg["objectives"]["cost"])
    return None if bound is None else float(bound)
