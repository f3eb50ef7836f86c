"""Latency model bookkeeping: keys from the spec, space enumeration, storage, timing statistics.

Keys must separate exactly the choices that change the packed runtime's work (checked against
the ConvPlan the ops build), mirror the built model (checked with forward hooks), and be stable
across processes and JSON round trips. No timing is asserted.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from evaluators.latency import context, keys as K, store
from evaluators.latency.enumeration import space_keys, spec_keys
from evaluators.latency.keys import DROPPED, READ, conv_choices, conv_work, decompose
from evaluators.latency.timing import (MIN_ROTATION, combine_rounds, quantile, summarize,
                                       threads, time_callable, time_rotation)
from ops.choices import CHOICES, TRAINING_ONLY
from space.builder import build
from space.space import SearchSpace
from space.spec import ArchSpec, LayerSpec, tail_conv_count

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SPACE = REPO / "configs" / "space" / "default.yaml"


def _random_specs(n, seed=0):
    space = SearchSpace.from_yaml(DEFAULT_SPACE)
    rng = random.Random(seed)
    return [space.random(rng) for _ in range(n)]


# -- keys --------------------------------------------------------------------------------
def test_every_choice_is_either_read_or_dropped():
    assert READ | DROPPED == set(CHOICES)
    assert not READ & DROPPED
    assert TRAINING_ONLY <= DROPPED


def test_keys_are_stable_across_processes_and_json_round_trip():
    specs = _random_specs(5, seed=3)
    here = [[K.canonical_key(k) for k in decompose(s, (3, 32, 48))] for s in specs]
    # same specs after a JSON round trip
    again = [[K.canonical_key(k) for k in decompose(ArchSpec.from_json(s.to_json()), (3, 32, 48))]
             for s in specs]
    assert again == here
    # a key string survives its own JSON round trip
    for keys in here:
        for key in keys:
            assert K.canonical_key(K.key_dict(key)) == key
    # another interpreter (fresh hash seed) computes the same strings
    code = (
        "import json,sys\n"
        "from space.spec import ArchSpec\n"
        "from evaluators.latency.keys import decompose\n"
        "from evaluators.latency.keys import canonical_key\n"
        "specs=[ArchSpec.from_json(t) for t in json.load(sys.stdin)]\n"
        "print(json.dumps([[canonical_key(k) for k in decompose(s,(3,32,48))] for s in specs]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps([s.to_json() for s in specs]),
                         capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == here


def _key(pos=0, **choices):
    return K.canonical_key(conv_work(LayerSpec(**choices), 16, 16, 3, 8, 8, pos))


@pytest.mark.parametrize("a, b", [
    ({"threshold": "zero"}, {"threshold": "local_mean"}),
    ({"threshold": "local_mean", "threshold_kernel": 3}, {"threshold": "local_mean", "threshold_kernel": 5}),
    ({"parts": 1}, {"parts": 2}),
    ({"parts": 3}, {"parts": 4}),
    ({"rescale": "none"}, {"rescale": "spatial"}),
    ({"rescale": "channel"}, {"rescale": "both"}),
    ({"bam_depth": 0}, {"bam_depth": 1}),
    ({"skip": "none"}, {"skip": "fp"}),
    ({"nonlinearity": "none"}, {"nonlinearity": "prelu"}),
    ({"nonlinearity": "prelu"}, {"nonlinearity": "rprelu"}),
    ({"skip": "fp", "nonlinearity": "prelu", "nonlinearity_at": "after_skip"},
     {"skip": "fp", "nonlinearity": "prelu", "nonlinearity_at": "before_skip"}),
])
def test_choices_that_change_the_work_change_the_key(a, b):
    assert _key(**a) != _key(**b)


@pytest.mark.parametrize("a, b", [
    ({"act_estimator": "ste"}, {"act_estimator": "aae"}),
    ({"act_estimator": "ste"}, {"act_estimator": "approx_sign"}),
    ({"weight_estimator": "identity"}, {"weight_estimator": "tanh_anneal"}),
    ({"weight_estimator": "identity"}, {"weight_estimator": "clip"}),
    ({"weight_scale": "none"}, {"weight_scale": "channel_mean"}),
    ({"bias": False}, {"bias": True}),
    ({"norm": "none"}, {"norm": "bn"}),
    ({"rescale": "none"}, {"rescale": "channel"}),
    ({"rescale": "spatial"}, {"rescale": "both"}),
    ({"threshold": "zero"}, {"threshold": "channel"}),
    ({"threshold": "zero", "threshold_kernel": 3}, {"threshold": "zero", "threshold_kernel": 5}),
    ({"nonlinearity": "prelu"}, {"nonlinearity": "leaky_relu"}),
    # without a skip, before/after the skip is the same place
    ({"nonlinearity": "prelu", "nonlinearity_at": "after_skip"},
     {"nonlinearity": "prelu", "nonlinearity_at": "before_skip"}),
])
def test_training_only_and_folded_choices_keep_the_key(a, b):
    assert _key(**a) == _key(**b)


def test_bam_key_counts_the_maps_the_conv_can_see():
    # conv 0 of a block has no history: depths 1..3 all sum just its own input
    assert _key(0, bam_depth=1) == _key(0, bam_depth=3)
    # conv 1 sees one earlier input: depth 1 and 3 both sum 2 maps, unlike conv 0
    assert _key(1, bam_depth=1) == _key(1, bam_depth=3) != _key(0, bam_depth=1)
    assert _key(0, bam_depth=0) == _key(1, bam_depth=0)


def _plan_signature(layer: LayerSpec, pos: int):
    """What the packed runtime does for a conv, read off its ConvPlan and the history it gets
    (independent of the key function: derived from the module ops builds)."""
    from ops import BinaryConv2d
    from ops.bam import window

    conv = BinaryConv2d(16, 16, 3, **layer.to_dict()).eval()
    plan = conv.plan()
    maps = 0
    if plan.pre is not None:
        maps = 1 + len(window([None] * pos, conv.bam.depth))
    has_act = plan.nonlinearity != "none"
    return (plan.parts, plan.local_mean_kernel, plan.spatial is not None, maps, plan.skip,
            plan.skip_repeat, has_act, plan.rprelu_shift is not None,
            plan.nonlinearity_at if has_act and plan.skip == "fp" else None)


def test_equal_keys_iff_equal_runtime_work_on_random_layers():
    space = SearchSpace.from_yaml(DEFAULT_SPACE)
    rng = random.Random(7)
    seen = {}
    for _ in range(120):
        layer = LayerSpec(**{n: rng.choice(space.layer[n].values) for n in CHOICES})
        pos = rng.choice((0, 1))
        key = K.canonical_key(conv_work(layer, 16, 16, 3, 8, 8, pos))
        sig = _plan_signature(layer, pos)
        seen.setdefault(key, set()).add(sig)
    assert all(len(sigs) == 1 for sigs in seen.values())
    sig_to_keys = {}
    for key, sigs in seen.items():
        sig_to_keys.setdefault(next(iter(sigs)), set()).add(key)
    assert all(len(keys) == 1 for keys in sig_to_keys.values())


def test_conv_choices_inverts_conv_work():
    space = SearchSpace.from_yaml(DEFAULT_SPACE)
    rng = random.Random(11)
    for _ in range(60):
        layer = LayerSpec(**{n: rng.choice(space.layer[n].values) for n in CHOICES})
        pos = rng.choice((0, 1))
        key = conv_work(layer, 16, 16, 3, 8, 8, pos)
        choices, history = conv_choices(key)
        assert conv_work(LayerSpec(**choices), 16, 16, 3, 8, 8, history) == key


def _module_units(spec, size):
    """The binary convs (in, out, h, w) and PixelShuffles the built model runs, recorded by
    forward hooks — the decomposition must list the same units."""
    from ops import BinaryConv2d

    model = build(spec).eval()
    convs, shuffles = [], []
    for m in model.modules():
        if isinstance(m, BinaryConv2d):
            m.register_forward_hook(lambda mod, inp, out: convs.append(
                (mod.in_ch, mod.out_ch, inp[0].shape[2], inp[0].shape[3], len(inp[1]) if len(inp) > 1 else 0)))
        elif isinstance(m, nn.PixelShuffle):
            m.register_forward_hook(lambda mod, inp, out: shuffles.append(
                (inp[0].shape[1], mod.upscale_factor, inp[0].shape[2], inp[0].shape[3])))
    with torch.no_grad():
        out = model(torch.rand(1, *size))
    return convs, shuffles, out.shape


@pytest.mark.parametrize("seed", range(6))
def test_decomposition_mirrors_the_built_model(seed):
    size = (3, 6, 5)
    spec = _random_specs(1, seed=100 + seed)[0]
    n_tail = tail_conv_count(spec.tail, 4, spec.tail_stages, spec.tail_conv_hr)
    spec = spec.replace(blocks=2, layers=spec.layers[:4], scale=4,
                        tail_layers=spec.tail_layers[:1] * n_tail)
    keys = decompose(spec, size)
    convs, shuffles, shape = _module_units(spec, size)
    bconv = [k for k in keys if k["kind"] == "bconv"]
    assert [(k["in"], k["out"], k["h"], k["w"]) for k in bconv] == [c[:4] for c in convs]
    want_shuffles = [(k["r"] ** 2 * k["c"], k["r"], k["h"], k["w"]) for k in keys
                     if k["kind"] in ("shuffle", "fp_stage")]
    want_shuffles += [(3 * k["s"] ** 2, k["s"], k["h"], k["w"]) for k in keys if k["kind"] == "espcn"]
    assert want_shuffles == shuffles
    adds = sum(k["kind"] == "add" for k in keys)
    assert adds == spec.blocks * (spec.block_residual and spec.body == "binary") + spec.global_skip
    out = [k for k in keys if k["kind"] == "output"]
    assert len(out) == 1 and (out[0]["h"], out[0]["w"]) == tuple(shape[2:])
    assert keys[0]["kind"] == "overhead" and keys[1]["kind"] == "head"


def test_space_keys_cover_exactly_what_specs_of_a_tiny_space_need():
    space = SearchSpace.from_dict({
        "scale": 4,
        "arch": {"channels": [4, 8], "blocks": [1, 2], "tail": ["fp_two_stage", "binary_repeat"],
                 "body": ["binary", "fp"], "head": ["conv3", "conv5"]},
        "layer": {"parts": [1, 2], "bam_depth": [0, 2], "norm": ["none", "bn"]},
        "tail_layer": {"threshold": ["zero", "local_mean"], "skip": ["fp"]},
    })
    size = (3, 4, 4)
    want = set(space_keys(space, size))
    rng = random.Random(0)
    got = set(spec_keys((space.random(rng) for _ in range(3000)), size))
    assert got == want


# -- storage -----------------------------------------------------------------------------
@pytest.mark.parametrize("text, want", [("3x64x64", (3, 64, 64)), ("3X8x12", (3, 8, 12)),
                                        ([3, 5, 7], (3, 5, 7))])
def test_parse_input_size(text, want):
    assert context.parse_input_size(text) == want


@pytest.mark.parametrize("bad", ["3x128", "3x0x8", "1x8x8", "axbxc", "", (3, 8), 64])
def test_parse_input_size_rejects_with_the_field_and_form(bad):
    with pytest.raises(ValueError, match=r"invalid --input .*CxHxW"):
        context.parse_input_size(bad, field="--input")


def _ctx(**over):
    ctx = {"cpu": "Test CPU", "isa": "avx2", "native": "0123abcd4567", "threads": 1, "torch": "2.13.0",
           "input_size": (3, 8, 8),
           "clock": "wall", "heap": "steady", "pool": "openmp"}
    ctx.update(over)
    return ctx


def test_store_round_trip_and_default_path(tmp_path, monkeypatch):
    entries = {K.canonical_key({"kind": "add", "c": 4, "h": 8, "w": 8}): summarize([1.0, 2.0, 4.0], 3)}
    path = store.save(tmp_path / "t.json", _ctx(), entries)
    ctx, loaded = store.load(path)
    assert loaded == entries and tuple(ctx["input_size"]) == (3, 8, 8)
    monkeypatch.setenv("BSRNAS_CACHE", str(tmp_path / "cache"))
    want = tmp_path / "cache" / "latency" / "test-cpu-avx2-0123abcd4567-t1-3x8x8-v3.json"
    assert store.default_path(_ctx()) == want
    assert store.default_path(_ctx(clock="cpu")).name == "test-cpu-avx2-0123abcd4567-t1-3x8x8-cpuclock-v3.json"
    assert store.default_path(_ctx(heap="default")).name == "test-cpu-avx2-0123abcd4567-t1-3x8x8-defaultheap-v3.json"
    assert store.default_path(_ctx(pool="own")).name == "test-cpu-avx2-0123abcd4567-t1-3x8x8-ownpool-v3.json"


@pytest.mark.parametrize("field, value", [("input_size", (3, 16, 16)), ("threads", 2),
                                          ("isa", "scalar"), ("cpu", "Other CPU"), ("torch", "2.0"),
                                          ("clock", "cpu"), ("native", "ffffffffffff"),
                                          ("heap", "default"), ("pool", "own")])
def test_table_from_another_context_is_refused(tmp_path, field, value):
    path = store.save(tmp_path / "t.json", _ctx(**{field: value}), {})
    stored, _ = store.load(path)
    with pytest.raises(ValueError, match=rf"measured for {field}=.*bsrnas lut build"):
        context.check_context(path, stored, _ctx())


def test_malformed_table_files_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        store.load(bad)
    bad.write_text(json.dumps({"format": "other", "context": {}, "entries": {}}))
    with pytest.raises(ValueError, match="format"):
        store.load(bad)
    with pytest.raises(FileNotFoundError):
        store.load(tmp_path / "missing.json")


# -- timing ------------------------------------------------------------------------------
def test_quantile_matches_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 16):
        xs = list(rng.random(n))
        for p in (0.0, 0.25, 0.5, 0.75, 1.0):
            assert quantile(xs, p) == pytest.approx(float(np.quantile(xs, p)), rel=1e-12)


def test_time_callable_with_a_fake_clock():
    """Each call advances a fake clock by a known duration: the statistics follow exactly."""
    durations = iter([5, 5, 5, 1000] + [1000, 3000, 2000, 9000, 4000])  # ns; warm-up 3, calibrate 1
    now = [0]

    def clock():
        return now[0]

    def fn():
        now[0] += next(durations)

    stats = time_callable(fn, warmup=3, repeats=5, min_sample_ms=0.0, clock=clock)
    assert stats.number == 1 and stats.repeats == 5
    assert stats.median_ms == pytest.approx(3e-3) and stats.min_ms == pytest.approx(1e-3)
    assert stats.max_ms == pytest.approx(9e-3)
    assert stats.q1_ms == pytest.approx(2e-3) and stats.q3_ms == pytest.approx(4e-3)


def _fake_units(durations_ns):
    """Probes that advance a fake clock by fixed durations, recording the order of calls."""
    now, calls = [0], []

    def make(name):
        def fn():
            calls.append(name)
            now[0] += durations_ns[name](sum(c == name for c in calls))
        return fn

    return (lambda: now[0]), calls, {n: make(n) for n in durations_ns}


def test_time_rotation_times_single_calls_in_passes():
    """Each pass calls every unit once; warm-up passes are not timed; the statistics are those
    of the single-call durations (the n-th call of a unit lasts a known time)."""
    names = [f"u{i}" for i in range(MIN_ROTATION + 2)]
    # unit i, call n (1-based): (i + 1) ms, plus n ms on the odd calls
    clock, calls, probes = _fake_units(
        {n: (lambda k, i=i: (i + 1 + (k if k % 2 else 0)) * 1_000_000) for i, n in enumerate(names)})
    passes = []
    stats = time_rotation(probes, samples=5, warmup=2, clock=clock, seed=3,
                          progress=passes.append)
    assert passes == list(range(1, 8))
    assert len(calls) == 7 * len(names)
    chunks = [calls[k * len(names):(k + 1) * len(names)] for k in range(7)]
    assert all(sorted(c) == sorted(names) for c in chunks)  # every unit once per pass
    assert len({tuple(c) for c in chunks}) > 1                # in changing orders
    for i, n in enumerate(names):
        want = [i + 1 + (k if k % 2 else 0) for k in range(3, 8)]  # timed calls 3..7
        s = stats[n]
        assert s.repeats == 5 and s.number == 1
        assert s.min_ms == pytest.approx(min(want)) and s.max_ms == pytest.approx(max(want))
        assert s.median_ms == pytest.approx(float(np.median(want)))


def test_time_rotation_pads_few_units_with_fillers():
    clock, calls, probes = _fake_units({"a": lambda k: 1000, "b": lambda k: 2000})
    ran = []
    fillers = [lambda i=i: ran.append(i) for i in range(MIN_ROTATION + 3)]
    stats = time_rotation(probes, samples=4, warmup=1, clock=clock, fillers=fillers)
    # 5 passes, each with the two units and MIN_ROTATION - 2 untimed fillers
    assert len(calls) == 10 and len(ran) == 5 * (MIN_ROTATION - 2)
    assert stats["a"].min_ms == pytest.approx(1e-3) and stats["b"].max_ms == pytest.approx(2e-3)
    assert time_rotation({}, samples=3) == {}
    with pytest.raises(ValueError, match="samples"):
        time_rotation(probes, samples=0)
    with pytest.raises(ValueError, match="warmup"):
        time_rotation(probes, samples=1, warmup=-1)


def test_time_rotation_prepares_each_call_outside_the_timed_interval():
    """``prepare`` runs just before every call of its probe (warm-up passes included) and its
    time is not counted: here it advances the fake clock by a second, unit i by i + 1 ms."""
    now, events = [0], []

    class Unit:
        def __init__(self, name, ms):
            self.name, self.ms = name, ms

        def __call__(self):
            events.append(("call", self.name))
            now[0] += self.ms * 1_000_000

        def prepare(self):
            events.append(("prepare", self.name))
            now[0] += 10**9

    units = {f"u{i}": Unit(f"u{i}", i + 1) for i in range(MIN_ROTATION)}
    stats = time_rotation(units, samples=3, warmup=1, clock=lambda: now[0], seed=1)
    assert len(events) == 2 * 4 * len(units)
    for first, second in zip(events[::2], events[1::2]):
        assert first[0] == "prepare" and second == ("call", first[1])
    for i, n in enumerate(units):
        assert stats[n].min_ms == pytest.approx(i + 1) and stats[n].max_ms == pytest.approx(i + 1)


def test_probe_prepare_rewrites_its_inputs_with_the_same_values():
    """A BAM conv's probe lists its input and the history it feeds the conv; ``prepare`` writes
    each of them in place, through numpy views of their memory (in this thread only: no torch
    op that would wake torch's OpenMP workers), and leaves the values as they were."""
    from evaluators.latency.probes import make_probe

    key = conv_work(LayerSpec(bam_depth=2), 16, 16, 3, 6, 5, pos=1)
    assert key["bam"] == 2
    probe = make_probe(key, threads=1)
    assert len(probe.inputs) == 2  # x and one earlier map of the block
    before = [t.clone() for t in probe.inputs]
    assert len(probe.arrays) == 2
    assert all(np.shares_memory(a, t.numpy()) for a, t in zip(probe.arrays, probe.inputs))
    out = probe()
    probe.prepare()
    assert all(torch.equal(t, b) for t, b in zip(probe.inputs, before))
    assert torch.equal(probe(), out)
    # the history the probe rewrites is the one its conv reads
    probe.inputs[1].add_(1.0)
    assert not torch.equal(probe(), out)


def test_combine_rounds_takes_the_median_of_round_medians():
    rounds = [summarize(v) for v in ([1.0, 2.0, 3.0], [10.0, 20.0, 30.0], [4.0, 5.0, 6.0])]
    out = combine_rounds(rounds)
    assert out.median_ms == 5.0 and out.min_ms == 1.0 and out.max_ms == 30.0
    assert out.q1_ms == pytest.approx(3.5) and out.q3_ms == pytest.approx(12.5)
    assert out.repeats == 9
    assert combine_rounds(rounds[:1]) == rounds[0]
    with pytest.raises(ValueError):
        combine_rounds([])


def test_threads_context_restores():
    before = torch.get_num_threads()
    with threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        with threads(0):
            pass
