"""BAM across block boundaries: the layout's rule (one history chain over the whole body,
``bam_inputs = min(bam_depth, 2 b + p)``, a fresh history for every tail conv) and the built
model, checked against an independent re-computation of the network conv by conv."""
import pytest
import torch
from torch import nn

from ops import BinaryConv2d
from space import layout as L
from space.builder import build
from space.spec import LayerSpec, uniform
from tests.model_helpers import perturb  # noqa: E402

D1, D2, D3 = (LayerSpec(bam_depth=d, norm="bn", skip="fp") for d in (1, 2, 3))
PLAIN = LayerSpec(skip="fp")


def _body(units):
    return [u for u in units if u.kind == "bconv" and u.role == "body"]


def test_bam_position_is_the_index_in_the_whole_body_and_tail_convs_start_fresh():
    spec = uniform(4, 4, 3, D3, D2, tail="binary_repeat", tail_conv_hr="binary")
    units = L.layout(spec)
    body = _body(units)
    assert [(u.block, u.position, u.bam_position) for u in body] == [
        (0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3), (2, 0, 4), (2, 1, 5)]
    # min(3, n): 0, 1, 2, 3, 3, 3 earlier inputs (block-local wiring gave 0, 1, 0, 1, 0, 1)
    assert [u.bam_inputs for u in body] == [0, 1, 2, 3, 3, 3]
    tail = [u for u in units if u.kind == "bconv" and u.role != "body"]
    assert [(u.role, u.bam_position, u.bam_inputs) for u in tail] == [
        ("tail", 0, 0), ("tail", 0, 0), ("conv_hr", 0, 0)]
    # without BAM nothing is accumulated anywhere
    assert all(u.bam_inputs == 0 for u in L.layout(uniform(2, 4, 3)) if u.kind == "bconv")


def test_bam_kept_counts_the_inputs_a_later_conv_still_reads():
    layers = (PLAIN, PLAIN, PLAIN, D3, PLAIN, D1)
    spec = uniform(2, 4, 3).replace(layers=layers)
    body = _body(L.layout(spec))
    assert [u.bam_inputs for u in body] == [0, 0, 0, 3, 0, 1]
    # conv 3 reads inputs 0, 1, 2; conv 5 reads input 4
    assert [L.bam_kept(body, n) for n in range(6)] == [0, 1, 2, 3, 0, 1]


def _history_seen(model, x):
    """(number of history entries, window it uses) seen by every BinaryConv2d, in call order,
    and whether every entry is an earlier body conv's input (the same tensor object)."""
    seen, inputs = [], []
    for m in model.modules():
        if isinstance(m, BinaryConv2d):
            def hook(mod, args):
                x_in = args[0]
                hist = list(args[1]) if len(args) > 1 else []
                depth = mod.choices["bam_depth"]
                used = hist[len(hist) - min(depth, len(hist)):] if depth else []
                seen.append((len(used), all(any(h is e for e in inputs) for h in used)))
                inputs.append(x_in)
            m.register_forward_pre_hook(hook)
    with torch.no_grad():
        model(x)
    return seen


@pytest.mark.parametrize("tail", ["fp_two_stage", "binary_repeat"])
def test_built_model_threads_one_history_as_the_layout_says(tail):
    spec = uniform(4, 4, 3, D3, D1, tail=tail,
                   tail_conv_hr="binary" if tail == "binary_repeat" else "none")
    units = L.layout(spec)
    want = [(u.bam_inputs, True) for u in units if u.kind == "bconv"]
    assert _history_seen(build(spec).eval(), torch.rand(1, 3, 5, 4)) == want
    assert build(spec).body.bam_history == 3


def _randomize(model, seed):
    return perturb(model, seed, bn="normal")


def _by_hand(model, spec, x):
    """The network recomputed conv by conv from its modules, with an explicit list of every
    body conv input and conv n given the last min(bam_depth, n) of them (no BamHistory)."""
    k = spec.residual_alignment
    mean = model.rgb_mean
    z = (x - mean) * k
    h = model.head(z)
    y, inputs = h, []
    for block in model.body:
        block_in = y
        for conv in block.convs:
            d = conv.choices["bam_depth"]
            hist = tuple(inputs[len(inputs) - min(d, len(inputs)):]) if d else ()
            inputs.append(y)
            y = conv(y, hist)
        if block.residual:
            y = y + block_in
    y = y + h if spec.global_skip else y
    return model.tail(y) / k + mean


@pytest.mark.parametrize("residual", [True, False])
def test_built_model_equals_the_cross_block_computation_by_hand(residual):
    layers = (D1, D3, D2, PLAIN, D3, D1)
    spec = uniform(2, 4, 3, block_residual=residual).replace(layers=layers)
    model = _randomize(build(spec), seed=7)
    x = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model(x)
        want = _by_hand(model, spec, x)
        # the block-local wiring of before (a fresh history per block) computes something else
        local = model.tail(nn.Sequential(*model.body)(model.head((x - model.rgb_mean))) +
                           model.head(x - model.rgb_mean)) + model.rgb_mean
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.allclose(got, local)


def test_fp_body_and_no_bam_keep_an_empty_history():
    assert build(uniform(2, 4, 2, body="fp")).body.bam_history == 0
    assert build(uniform(2, 4, 2)).body.bam_history == 0
    spec = uniform(2, 4, 2).replace(layers=(PLAIN, D1, PLAIN, PLAIN))
    assert build(spec).body.bam_history == 1
    # module and parameter names are those of a plain nn.Sequential body (checkpoints load)
    names = [n for n, _ in build(spec).named_parameters() if n.startswith("body.")]
    assert names[0].startswith("body.0.convs.0.")
