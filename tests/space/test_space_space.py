"""SearchSpace: define-by-run sampling, FixedTrial replay, params_of inverse, exact size, errors."""
import functools
import random
from pathlib import Path

import optuna
import pytest
import yaml

from space import presets
from space.space import SearchSpace

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "space"

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY = {
    "scale": 4,
    "arch": {"channels": [4], "blocks": [1, 2], "tail": ["fp_one_stage", "binary_repeat"],
             "global_skip": [True, False]},
    "layer": {
        "parts": {"values": [1, 2], "granularity": "layer"},
        "threshold": {"values": ["zero", "channel"], "granularity": "block"},
        "norm": {"values": ["none", "bn"], "granularity": "shared"},
        "skip": "fp",
    },
    "tail_layer": {"granularity": "layer", "bias": [False, True],
                   "rescale": {"values": ["none", "channel"], "granularity": "shared"}},
}


class _EnumeratingTrial:
    """Replays a prefix of choice indices and records the arity of every call (odometer)."""

    def __init__(self, prefix):
        self.prefix, self.arity, self.k = list(prefix), [], 0

    def suggest_categorical(self, name, choices):
        i = self.prefix[self.k] if self.k < len(self.prefix) else 0
        self.arity.append(len(choices))
        self.k += 1
        return list(choices)[i]


def _enumerate(space):
    """Every spec the define-by-run sampler can reach, by brute force over all call paths."""
    out, prefix = [], []
    while True:
        t = _EnumeratingTrial(prefix)
        out.append(space.sample(t))
        idx = (prefix + [0] * len(t.arity))[:len(t.arity)]
        # advance the odometer: last position that can still grow
        j = len(idx) - 1
        while j >= 0 and idx[j] + 1 >= t.arity[j]:
            j -= 1
        if j < 0:
            return out
        prefix = idx[:j] + [idx[j] + 1]


@functools.lru_cache(maxsize=1)
def _tiny_specs():
    return tuple(_enumerate(SearchSpace.from_dict(TINY)))


def _sampled(space, n, seed):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    got = []
    for _ in range(n):
        trial = study.ask()
        got.append((space.sample(trial), dict(trial.params)))
        study.tell(trial, 0.0)
    return got


def test_size_equals_brute_force_count_on_a_tiny_space():
    space = SearchSpace.from_dict(TINY)
    specs = _tiny_specs()
    ids = {s.id for s in specs}
    assert len(ids) == len(specs)  # every call path gives a distinct architecture
    # hand count: global_skip 2 * sum_b [parts 2^(2b) * threshold 2^b * norm 2]
    #   * sum_tail [fp_one_stage 1 + binary_repeat: bias 2^2 (two x2 stages) * rescale 2]
    # = 2 * (16 + 128) * (1 + 8) = 2592
    body = sum(2 ** (2 * b) * 2 ** b * 2 for b in (1, 2))
    assert space.size() == 2 * body * (1 + 4 * 2) == len(ids) == 2592
    for spec in specs[:: max(1, len(specs) // 300)]:
        assert space.contains(spec)
        assert space.sample(optuna.trial.FixedTrial(space.params_of(spec))) == spec


@pytest.mark.parametrize("name", ["default.yaml", "quickstart.yaml"])
def test_fixed_trial_reproduces_sampled_specs_and_params_of_inverts(name):
    space = SearchSpace.from_yaml(CONFIGS / name)
    for spec, params in _sampled(space, 12, seed=3):
        assert space.params_of(spec) == params
        replay = space.sample(optuna.trial.FixedTrial(params))
        assert replay == spec and replay.id == spec.id
        assert space.contains(spec)


def test_labels_are_stable_and_readable():
    space = SearchSpace.from_dict(TINY)
    spec = _tiny_specs()[-1]  # the last path: 2 blocks, binary_repeat tail
    labels = set(space.params_of(spec))
    assert {"arch.blocks", "arch.global_skip", "tail.kind"} <= labels
    assert "arch.channels" not in labels  # one allowed value: a constant, never suggested
    assert {"body.0.parts", "body.3.parts", "block.0.threshold", "block.1.threshold",
            "shared.norm", "tail.0.bias", "tail.1.bias", "tail.shared.rescale"} <= labels
    assert not any(label.endswith(".skip") for label in labels)  # single-valued: a constant


def test_random_is_reproducible_and_inside_the_space():
    space = SearchSpace.from_yaml(CONFIGS / "quickstart.yaml")
    a = [space.random(random.Random(7)) for _ in range(3)]
    b = [space.random(random.Random(7)) for _ in range(3)]
    assert a == b
    rng = random.Random(1)
    assert all(space.contains(space.random(rng)) for _ in range(20))


def test_quickstart_contains_every_binary_preset():
    space = SearchSpace.from_yaml(CONFIGS / "quickstart.yaml")
    for name in presets.names():
        for blocks in (2, 3):
            spec = presets.get(name, scale=2, channels=16, blocks=blocks)
            if spec.body == "fp":
                assert not space.contains(spec)
                continue
            params = space.params_of(spec)
            assert space.sample(optuna.trial.FixedTrial(params)) == spec


def test_params_of_names_the_field_outside_the_space():
    space = SearchSpace.from_dict(TINY)
    spec = _tiny_specs()[0]
    with pytest.raises(ValueError, match=r"spec\.channels = 16 is not in the space.*\[4\]"):
        space.params_of(spec.replace(channels=16))
    with pytest.raises(ValueError, match=r"spec\.scale = 2"):
        space.params_of(presets.get("e2fif", scale=2, channels=4, blocks=1))
    two = [s for s in _tiny_specs() if s.blocks == 2][0]
    layers = list(two.layers)
    layers[1] = layers[1].replace(threshold="channel")  # block 0 would need one threshold
    with pytest.raises(ValueError, match=r"layers\[1\]\.threshold = 'channel' differs from "
                                         r"layers\[0\]\.threshold.*per block"):
        space.params_of(two.replace(layers=tuple(layers)))
    layers = list(two.layers)
    layers[2] = layers[2].replace(bam_depth=2)
    with pytest.raises(ValueError, match=r"layers\[2\]\.bam_depth = 2 is not in the space.*\[0\]"):
        space.params_of(two.replace(layers=tuple(layers)))
    assert not space.contains(two.replace(layers=tuple(layers)))


@pytest.mark.parametrize(
    "patch, pattern",
    [
        ({"scale": 8}, r"space\.scale: invalid value 8.*\[2, 3, 4\]"),
        ({"colour": 1}, r"space\.colour: unknown key"),
        ({"arch": {"width": [8]}}, r"space\.arch\.width: unknown key"),
        ({"arch": {"channels": [8, 0]}}, r"space\.arch\.channels\[1\]: invalid value 0"),
        ({"arch": {"head": ["conv3", "conv9"]}}, r"space\.arch\.head\[1\]: invalid value 'conv9'"),
        ({"arch": {"blocks": []}}, r"space\.arch\.blocks: empty list"),
        ({"arch": {"blocks": [2, 2]}}, r"space\.arch\.blocks: value 2 listed twice"),
        ({"layer": {"dropout": [0.1]}}, r"space\.layer\.dropout: unknown choice"),
        ({"layer": {"parts": [1, 8]}}, r"space\.layer\.parts\[1\]:.*8.*\[1, 2, 3, 4\]"),
        ({"layer": {"parts": {"values": [1], "granularity": "pixel"}}},
         r"space\.layer\.parts\.granularity: invalid value 'pixel'.*layer.*block.*shared"),
        ({"layer": {"granularity": "model"}}, r"space\.layer\.granularity: invalid value 'model'"),
        ({"layer": {"parts": {"vals": [1]}}}, r"space\.layer\.parts\.vals: unknown key"),
        ({"tail_layer": {"granularity": "block"}},
         r"space\.tail_layer\.granularity: invalid value 'block'.*\['layer', 'shared'\]"),
    ],
)
def test_invalid_space_names_the_path(patch, pattern):
    data = {"scale": 2}
    data.update(patch)
    with pytest.raises(ValueError, match=pattern):
        SearchSpace.from_dict(data)


def test_from_yaml_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        SearchSpace.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"scale": 2, "layer": {"norm": ["none", "layernorm"]}}))
    with pytest.raises(ValueError, match=r"bad\.yaml\.layer\.norm\[1\]:.*'layernorm'.*\['none', 'bn'\]"):
        SearchSpace.from_yaml(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("scale: [2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        SearchSpace.from_yaml(broken)


def test_default_space_lists_every_choice_value():
    from ops.choices import CHOICES
    space = SearchSpace.from_yaml(CONFIGS / "default.yaml")
    for name, (_, allowed) in CHOICES.items():
        assert list(space.layer[name].values) == list(allowed), name
    assert set(space.arch["tail"]) == {"fp_two_stage", "fp_one_stage", "binary_repeat"}
