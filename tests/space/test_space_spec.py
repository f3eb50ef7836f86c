"""ArchSpec / LayerSpec: fields mirror ops.choices, exact JSON/YAML round trip, stable ids, errors."""
import dataclasses
import hashlib
import json
import random
from pathlib import Path

import pytest
import yaml

from ops.choices import CHOICES
from space.spec import ArchSpec, LayerSpec, tail_conv_count, uniform
from space.space import SearchSpace

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "configs" / "space" / "default.yaml"


def _random_specs(n=40, seed=0):
    space = SearchSpace.from_yaml(DEFAULT)
    rng = random.Random(seed)
    return [space.random(rng) for _ in range(n)]


def test_layerspec_fields_are_the_choice_table():
    fields = dataclasses.fields(LayerSpec)
    assert [f.name for f in fields] == list(CHOICES)
    for f in fields:
        assert f.default == CHOICES[f.name][0] and type(f.default) is type(CHOICES[f.name][0])


def test_json_and_yaml_round_trip_random_specs():
    specs = _random_specs()
    assert len({s.id for s in specs}) == len(specs)  # the default space is huge: all distinct
    for spec in specs:
        back_json = ArchSpec.from_json(spec.to_json())
        back_yaml = ArchSpec.from_yaml(spec.to_yaml())
        back_dict = ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
        for back in (back_json, back_yaml, back_dict):
            assert back == spec
            assert back.id == spec.id
            assert back.canonical_json() == spec.canonical_json()


def test_id_is_sha1_of_canonical_json():
    spec = uniform(2, 8, 1, LayerSpec(parts=2), tail="binary_repeat")
    d = spec.to_dict()
    # canonical JSON written out independently: sorted keys, no whitespace
    text = json.dumps(d, sort_keys=True, separators=(",", ":"))
    assert " " not in text
    assert spec.id == hashlib.sha1(text.encode()).hexdigest()[:12]
    # the id changes with any field, including one deep in a layer
    other = spec.replace(layers=(spec.layers[0], spec.layers[1].replace(bias=True)))
    assert other.id != spec.id
    assert spec.replace(global_skip=False).id != spec.id


def test_int_and_float_residual_alignment_give_the_same_spec():
    a = uniform(2, 8, 1, residual_alignment=130)
    b = uniform(2, 8, 1, residual_alignment=130.0)
    assert a == b and a.id == b.id
    assert isinstance(a.residual_alignment, float)


def test_layer_counts_follow_blocks_tail_and_scale():
    assert tail_conv_count("binary_repeat", 2) == 1
    assert tail_conv_count("binary_repeat", 3) == 1
    assert tail_conv_count("binary_repeat", 4) == 2
    assert tail_conv_count("fp_two_stage", 4) == 0
    spec = uniform(4, 8, 3, tail="binary_repeat")
    assert len(spec.layers) == 6 and len(spec.tail_layers) == 2
    fp = ArchSpec(scale=2, channels=8, blocks=3, body="fp")
    assert fp.layers == ()
    with pytest.raises(ValueError, match=r"layers.*5 LayerSpecs.*needs exactly 6"):
        ArchSpec(scale=2, channels=8, blocks=3, layers=(LayerSpec(),) * 5)
    with pytest.raises(ValueError, match=r"tail_layers.*0 LayerSpecs.*binary_repeat.*needs exactly 2"):
        ArchSpec(scale=4, channels=8, blocks=1, tail="binary_repeat", layers=(LayerSpec(),) * 2)
    with pytest.raises(ValueError, match=r"layers.*body='fp'.*needs exactly 0"):
        ArchSpec(scale=2, channels=8, blocks=1, body="fp", layers=(LayerSpec(),) * 2)


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"scale": 5}, r"scale 5.*\[2, 3, 4\]"),
        ({"scale": True}, r"scale True"),
        ({"channels": 0}, r"channels 0.*positive"),
        ({"blocks": 2.0}, r"blocks 2\.0.*positive int"),
        ({"head": "conv7"}, r"head 'conv7'.*conv3.*conv5"),
        ({"tail": "bicubic"}, r"tail 'bicubic'.*fp_two_stage"),
        ({"global_skip": 1}, r"global_skip 1.*true or false"),
        ({"body": "ternary"}, r"body 'ternary'.*binary.*fp"),
        ({"residual_alignment": 0}, r"residual_alignment 0.*> 0"),
        ({"colour": "rgb"}, r"spec\.colour: unknown field"),
    ],
)
def test_invalid_arch_fields_are_named(change, pattern):
    d = uniform(2, 8, 1).to_dict()
    d.update(change)
    with pytest.raises(ValueError, match=pattern):
        ArchSpec.from_dict(d)


def test_invalid_layer_values_name_the_layer_and_field():
    d = uniform(2, 8, 2).to_dict()
    d["layers"][3]["parts"] = 5
    with pytest.raises(ValueError, match=r"spec\.layers\[3\]\.parts.*5.*\[1, 2, 3, 4\]"):
        ArchSpec.from_dict(d)
    d = uniform(2, 8, 2).to_dict()
    d["layers"][1]["bias"] = 1  # an int is not a bool
    with pytest.raises(ValueError, match=r"spec\.layers\[1\]\.bias.*1"):
        ArchSpec.from_dict(d)
    d = uniform(2, 8, 2).to_dict()
    d["layers"][0]["dropout"] = 0.1
    with pytest.raises(ValueError, match=r"spec\.layers\[0\]\.dropout: unknown choice"):
        ArchSpec.from_dict(d)
    with pytest.raises(ValueError, match=r"parts"):
        LayerSpec(parts=True)
    with pytest.raises(ValueError, match=r"spec JSON"):
        ArchSpec.from_json("{not json")
    with pytest.raises(ValueError, match=r"spec\.channels: required"):
        ArchSpec.from_yaml(yaml.safe_dump({"scale": 2, "blocks": 1}))


def test_missing_layer_keys_take_neutral_defaults():
    d = uniform(2, 8, 1).to_dict()
    d["layers"] = [{"parts": 2}, {}]
    spec = ArchSpec.from_dict(d)
    assert spec.layers[0] == LayerSpec(parts=2) and spec.layers[1] == LayerSpec()
    d["layers"] = [LayerSpec(parts=2), {}]  # LayerSpec values are accepted as they are
    assert ArchSpec.from_dict(d) == spec
