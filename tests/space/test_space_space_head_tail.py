"""SearchSpace dimensions head_act, tail_conv_hr, tail_stages: conditional sampling (the last two
only under a staged tail), exact size against a brute-force enumeration of every call path,
params_of / FixedTrial round trip, stable labels, errors, and the shipped spaces hold the
presets."""
import optuna
import pytest

from space import presets
from space.space import SearchSpace
from space.spec import STAGED_TAILS

from tests.space.test_space_space import CONFIGS, _enumerate

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY = {
    "scale": 4,
    "arch": {"channels": [4], "blocks": [1], "tail": ["fp_one_stage", "fp_two_stage",
                                                      "binary_repeat"],
             "head_act": ["none", "leaky_relu"], "tail_conv_hr": ["none", "fp", "binary"],
             "tail_stages": ["staged", "one"]},
    "layer": {"parts": {"values": [1, 2], "granularity": "layer"}},
    "tail_layer": {"granularity": "layer", "bias": [False, True],
                   "rescale": {"values": ["none", "channel"], "granularity": "shared"}},
}


def _hand_size():
    # head_act 2 * body parts 2^2 (two convs) * tail sum; U(n) = bias 2^n * rescale 2 (n > 0)
    u = {0: 1, 1: 2 * 2, 2: 4 * 2, 3: 8 * 2}
    fp_one = 1
    fp_two = sum(u[n] for n in (0, 0, 1)) * 2          # conv_hr none|fp|binary, x 2 stagings
    rep = (u[2] + u[2] + u[3]) + (u[1] + u[1] + u[2])  # staged: 2 stage convs; one: 1
    return 2 * 4 * (fp_one + fp_two + rep)


def test_size_equals_the_brute_force_count_and_every_path_round_trips():
    space = SearchSpace.from_dict(TINY)
    specs = _enumerate(space)
    ids = {s.id for s in specs}
    assert len(ids) == len(specs)  # every call path gives a distinct architecture
    assert space.size() == len(specs) == _hand_size() == 488
    seen = set()
    for spec in specs:
        params = space.params_of(spec)
        assert space.sample(optuna.trial.FixedTrial(params)) == spec
        seen.add((spec.tail, spec.tail_conv_hr, spec.tail_stages, spec.head_act))
        if spec.tail not in STAGED_TAILS:
            assert "tail.conv_hr" not in params and "tail.stages" not in params
            assert (spec.tail_conv_hr, spec.tail_stages) == ("none", "staged")
        else:
            assert params["tail.conv_hr"] == spec.tail_conv_hr
            assert params["tail.stages"] == spec.tail_stages
        hr_labels = {k for k in params if k.startswith("tail.conv_hr.")}
        assert (hr_labels == {"tail.conv_hr.bias"}) == (spec.tail_conv_hr == "binary")
    # every valid combination is reached: 2 * (1 + 2 * 3 * 2) = 26
    assert len(seen) == 26


def test_conditional_values_with_lists_that_lack_the_defaults():
    space = SearchSpace.from_dict(dict(TINY, arch=dict(TINY["arch"], tail_conv_hr=["fp"],
                                                       tail_stages=["one"])))
    specs = _enumerate(space)
    one_stage = [s for s in specs if s.tail == "fp_one_stage"]
    assert one_stage and all((s.tail_conv_hr, s.tail_stages) == ("none", "staged")
                             for s in one_stage)
    assert all((s.tail_conv_hr, s.tail_stages) == ("fp", "one") for s in specs
               if s.tail in STAGED_TAILS)
    # fp_one_stage 1 + fp_two_stage with fp conv_hr, one stage (no binary conv) 1
    #   + binary_repeat, one stage: U(1) = 4
    assert space.size() == len(specs) == 2 * 4 * (1 + 1 + 4)
    staged = [s for s in specs if s.tail == "fp_two_stage"][0]
    with pytest.raises(ValueError, match=r"spec.tail_conv_hr = 'none' is not in the space; "
                                         r"allowed with tail 'fp_two_stage': \['fp'\]"):
        space.params_of(staged.replace(tail_conv_hr="none"))
    assert not space.contains(staged.replace(tail_stages="staged"))


def test_optuna_define_by_run_study_samples_inside_the_space():
    space = SearchSpace.from_dict(TINY)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    for _ in range(25):
        trial = study.ask()
        spec = space.sample(trial)
        assert space.params_of(spec) == trial.params
        study.tell(trial, float(len(spec.tail_layers)))


@pytest.mark.parametrize("name, value, allowed", [
    ("head_act", "relu", "['none', 'leaky_relu']"),
    ("tail_conv_hr", "bin", "['none', 'fp', 'binary']"),
    ("tail_stages", 2, "['staged', 'one']"),
])
def test_invalid_values_name_the_path_value_and_allowed(name, value, allowed):
    with pytest.raises(ValueError, match=rf"space.arch.{name}\[1\]: invalid value {value!r}; "
                                         rf"allowed: values of {__import__('re').escape(allowed)}"):
        SearchSpace.from_dict({"scale": 2, "arch": {name: [TINY["arch"][name][0], value]}})


@pytest.mark.parametrize("name, blocks, channels", [
    ("quickstart.yaml", (2, 3), (16,)), ("default.yaml", (4, 8, 16), (32, 64))])
def test_shipped_spaces_contain_every_binary_preset(name, blocks, channels):
    space = SearchSpace.from_yaml(CONFIGS / name)
    for preset in presets.names():
        for b in blocks:
            for c in channels:
                spec = presets.get(preset, scale=2, channels=c, blocks=b)
                if spec.body == "fp":
                    continue
                assert space.sample(optuna.trial.FixedTrial(space.params_of(spec))) == spec


def test_shipped_spaces_list_the_new_arch_values():
    for name in ("quickstart.yaml", "default.yaml"):
        a = SearchSpace.from_yaml(CONFIGS / name).arch
        assert a["head_act"] == ("none", "leaky_relu")
        assert a["tail_conv_hr"] == ("none", "fp", "binary")
        assert a["tail_stages"] == ("staged", "one")
        assert a["input_mean"] == ("div2k", "none")
        assert a["residual_alignment"] == (1.0, 130.0, 255.0)
