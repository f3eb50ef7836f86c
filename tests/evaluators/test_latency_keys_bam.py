"""Latency keys of BAM convs across blocks: the ``bam`` count of a ``bconv`` key is 1 + the
window the built model's conv actually reads (forward hooks), and the space enumeration reaches
every body position the space's largest network has."""
import random

import pytest
import torch

from evaluators.latency.enumeration import space_keys, spec_keys
from evaluators.latency.keys import conv_choices, conv_work, decompose
from ops import BinaryConv2d
from space.builder import build
from space.space import SearchSpace
from space.spec import LayerSpec, uniform


def _windows_seen(spec, size):
    seen = []
    model = build(spec).eval()
    for m in model.modules():
        if isinstance(m, BinaryConv2d):
            def hook(mod, args):
                hist = len(args[1]) if len(args) > 1 else 0
                d = mod.choices["bam_depth"]
                seen.append(0 if d == 0 else 1 + min(d, hist))
            m.register_forward_pre_hook(hook)
    with torch.no_grad():
        model(torch.rand(1, *size))
    return seen


@pytest.mark.parametrize("tail", ["fp_two_stage", "binary_repeat"])
def test_bam_key_is_what_the_model_reads(tail):
    size = (3, 4, 5)
    spec = uniform(4, 4, 3, LayerSpec(bam_depth=3), LayerSpec(bam_depth=2), tail=tail)
    spec = spec.replace(layers=spec.layers[:2] + (LayerSpec(bam_depth=1),) + spec.layers[3:])
    bam = [k["bam"] for k in decompose(spec, size) if k["kind"] == "bconv"]
    assert bam == _windows_seen(spec, size)
    # by hand: depths 3, 3, 1, 3, 3, 3 at positions 0..5 -> 1 + min(d, n); tail convs: fresh
    want = [1, 2, 2, 4, 4, 4] + ([1, 1] if tail == "binary_repeat" else [])
    assert bam == want


def test_conv_choices_inverts_conv_work_at_every_position():
    for d in (1, 2, 3):
        for pos in range(6):
            key = conv_work(LayerSpec(bam_depth=d), 8, 8, 3, 4, 4, pos)
            choices, history = conv_choices(key)
            assert history == min(d, pos)
            assert conv_work(LayerSpec(**choices), 8, 8, 3, 4, 4, history) == key


@pytest.mark.parametrize("blocks", [[1], [3], [1, 2]])
def test_space_keys_cover_exactly_the_positions_of_the_space(blocks):
    space = SearchSpace.from_dict({
        "scale": 2,
        "arch": {"channels": [4], "blocks": blocks},
        "layer": {"bam_depth": [0, 3], "parts": [1, 2]},
    })
    size = (3, 4, 4)
    want = set(space_keys(space, size))
    rng = random.Random(1)
    got = set(spec_keys((space.random(rng) for _ in range(400)), size))
    assert got == want
    bams = {k.split('"bam":')[1].split(",")[0] for k in want if '"bconv"' in k}
    top = min(3, 2 * max(blocks) - 1)
    assert bams == {"0"} | {str(1 + p) for p in range(top + 1)}


def test_space_keys_follow_the_conditional_tail_dimensions():
    # tail_conv_hr / tail_stages lists without the defaults: fp_one_stage still samples
    # (none, staged), so its units must be enumerated too
    space = SearchSpace.from_dict({
        "scale": 4,
        "arch": {"channels": [4], "blocks": [1], "head_act": ["none", "leaky_relu"],
                 "tail": ["fp_one_stage", "fp_two_stage", "binary_repeat"],
                 "tail_conv_hr": ["fp", "binary"], "tail_stages": ["one"]},
        "tail_layer": {"parts": [1, 2]},
    })
    size = (3, 3, 4)
    want = set(space_keys(space, size))
    rng = random.Random(2)
    assert set(spec_keys((space.random(rng) for _ in range(300)), size)) == want
    assert any('"espcn"' in k for k in want)
