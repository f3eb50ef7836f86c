"""Shared fixtures of the search tests: a tiny space, an injectable cost/latency/evaluator.

The cost model here is a plain formula of the spec (independent of evaluators.cost, which is
another package's contract): every binary conv costs ``parts * 9 * C * C * H * W`` BOPs,
params = number of body convs * 9 * C * C, model bytes = params / 8. Latency = 1 ms per 1e6
BOPs plus 0.5 ms per FP tail. The fake evaluator returns a deterministic PSNR that depends on
the spec (so fronts are non-trivial) and records every spec it was asked to train.
"""
from __future__ import annotations

import hashlib
import os
import textwrap

TINY_SPACE = textwrap.dedent("""
    scale: 2
    arch:
      channels: [8]
      blocks: [1, 2]
      tail: [fp_one_stage, fp_two_stage]
    layer:
      granularity: block
      threshold: [zero, channel]
      parts: [1, 2, 3]
      skip: {values: [none, fp], granularity: shared}
""")


def fake_cost(spec, input_size):
    _, h, w = input_size
    c = spec.channels
    bops = sum(l.parts * 9 * c * c * h * w for l in spec.layers)
    params = len(spec.layers) * 9 * c * c + (100 if spec.tail == "fp_two_stage" else 50)
    return {"bops": float(bops), "flops": float(h * w * c * 27), "params": params,
            "model_bytes": params // 8 + 1}


class FakeLatency:
    def __init__(self, input_size=(3, 16, 16)):
        self.input_size = tuple(input_size)

    def predict(self, spec):
        cost = fake_cost(spec, self.input_size)
        return cost["bops"] / 1e6 + (0.5 if spec.tail == "fp_two_stage" else 0.3)


class FakeEvaluator:
    """Deterministic psnr: more parts and an fp skip help; a hash adds spread."""

    def __init__(self):
        self.calls = []

    def evaluate(self, spec, run_dir=None):
        self.calls.append(spec)
        h = int(hashlib.sha1(spec.id.encode()).hexdigest()[:6], 16) / 0xFFFFFF
        parts = sum(l.parts for l in spec.layers)
        skip = sum(l.skip == "fp" for l in spec.layers)
        psnr = 25.0 + 0.4 * parts + 0.3 * skip + h
        return {"psnr_y": psnr, "ssim_y": 0.8, "train_seconds": 0.0, "diverged": False}


def write_space(tmp_path) -> str:
    p = os.path.join(str(tmp_path), "tiny_space.yaml")
    with open(p, "w") as fh:
        fh.write(TINY_SPACE)
    return p


def make_cfg(tmp_path, **over):
    """A resolved search config over the tiny space (nas.config.load with data=...)."""
    from nas import config

    data = {
        "name": "tiny",
        "seed": 0,
        "space": write_space(tmp_path),
        "latency": {"input_size": [3, 16, 16]},
        "engine": {"trials": 6, "startup_trials": 3, "feasibility_samples": 50},
        "run_dir": os.path.join(str(tmp_path), "run"),
        "tensorboard": {"sample_images": False},
    }
    for dotted, value in over.items():
        node = data
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return config.load(data=data)


def components(input_size=(3, 16, 16)):
    return {"evaluator": FakeEvaluator(), "latency": FakeLatency(input_size), "cost_fn": fake_cost}


class HandshakeEvaluator(FakeEvaluator):
    """For the shared-storage test: the first worker's second evaluation waits (up to 90 s)
    until the second worker has finished one evaluation, so both surely contribute."""

    def __init__(self, flag, first):
        super().__init__()
        self.flag, self.first = flag, first

    def evaluate(self, spec, run_dir=None):
        import time

        if self.first and len(self.calls) == 1:
            deadline = time.time() + 90
            while not os.path.exists(self.flag) and time.time() < deadline:
                time.sleep(0.1)
        out = super().evaluate(spec, run_dir)
        if not self.first:
            open(self.flag, "w").close()
        time.sleep(0.2)
        return out


def worker_main(tmp_path, trials, resume):
    """Entry point of a worker process in the shared-storage test."""
    from nas import search

    cfg = make_cfg(tmp_path, engine__trials=trials)
    comp = components()
    comp["evaluator"] = HandshakeEvaluator(os.path.join(str(tmp_path), "second_done"), first=not resume)
    search.run(cfg, resume=resume, progress=False, **comp)


class FailingEvaluator:
    """Raises on every call (a crashing trainable)."""

    def evaluate(self, spec, run_dir=None):
        raise RuntimeError("evaluator crashed on purpose")
