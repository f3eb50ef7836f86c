"""evaluators.cost for BAM across blocks (FLOPs per accumulated input, the inputs kept alive)
and for the input-dependent SCALES re-scaling (params against the operator's own module,
FLOPs by hand)."""
import pytest

from evaluators.cost import cost, unit_costs
from ops.rescale import Rescale
from space.builder import build
from space.spec import LayerSpec, uniform

PLAIN = LayerSpec()
D2, D3 = LayerSpec(bam_depth=2), LayerSpec(bam_depth=3)


def _bconv_flops(spec, size):
    return [c["flops"] for u, c in unit_costs(spec, size) if u.kind == "bconv"]


def test_bam_flops_follow_the_whole_body_position():
    size = (3, 4, 5)  # 20 pixels, C = 4: Ni = 80
    spec = uniform(2, 4, 3, D3, block_residual=False, global_skip=False)
    base = uniform(2, 4, 3, PLAIN, block_residual=False, global_skip=False)
    extra = [a - b for a, b in zip(_bconv_flops(spec, size), _bconv_flops(base, size))]
    # d' = min(3, n) = 0, 1, 2, 3, 3, 3 across the blocks; per conv (d' + 1) inputs x (|A|,
    # sum, sign, beta multiply) + d' adds + BN affine 2, per input element
    ni = 4 * 20
    assert extra == [(4 * (d + 1) + d + 2) * ni for d in (0, 1, 2, 3, 3, 3)]
    assert extra == [6 * ni, 11 * ni, 16 * ni, 21 * ni, 21 * ni, 21 * ni]


def test_bam_params_do_not_depend_on_the_position():
    spec = uniform(2, 4, 3, D3)
    # scales (d + 1) C + BN affine 2 C per conv, whatever its window
    assert cost(spec, (3, 4, 4))["params"] - cost(uniform(2, 4, 3), (3, 4, 4))["params"] \
        == 6 * (4 * 4 + 2 * 4)
    assert cost(spec, (3, 4, 4))["params"] == sum(p.numel() for p in build(spec).parameters())


@pytest.mark.parametrize("global_skip", [False, True])
def test_peak_keeps_the_inputs_a_later_conv_of_another_block_reads(global_skip):
    px, c = 64 * 64, 16
    # conv 3 (block 1, conv 1) with bam_depth 3 reads the inputs of convs 0, 1, 2: at its step
    # h, b0.c0, b0.out, b1.c0 (its own input) and b1.out are alive: 5 maps (h is the head
    # output the global skip keeps anyway, counted once). Block-local wiring kept 3.
    spec = uniform(2, c, 2, tail="fp_one_stage", global_skip=global_skip, block_residual=False)
    spec = spec.replace(layers=(PLAIN, PLAIN, PLAIN, D3))
    assert cost(spec, (3, 64, 64))["peak_activation_bytes"] == 4 * 5 * c * px
    # conv 2 (block 1, conv 0) with bam_depth 2 reads inputs 0, 1: h, b0.c0, b0.out (its
    # input), b1.c0 (its output) = 4 maps, plus nothing else
    spec2 = spec.replace(layers=(PLAIN, PLAIN, D2, PLAIN))
    assert cost(spec2, (3, 64, 64))["peak_activation_bytes"] == 4 * 4 * c * px


def _tail_conv_extra(rescale):
    """Cost of the binary tail conv C=2 -> 8 at 3 x 3 with ``rescale`` minus without it."""
    size = (3, 3, 3)

    def tail(spec):
        return [c for u, c in unit_costs(spec, size) if u.kind == "bconv" and u.role == "tail"][0]

    with_r = uniform(2, 2, 1, tail="binary_repeat", tail_layer=LayerSpec(skip="fp", rescale=rescale))
    without = with_r.replace(tail_layers=(LayerSpec(skip="fp"),))
    a, b = tail(with_r), tail(without)
    return a["flops"] - b["flops"], a["params"] - b["params"], with_r


@pytest.mark.parametrize("rescale, flops", [
    # Ni = 2*9 = 18, No = 8*9 = 72, HW = 9, C_in = 2, C_out = 8
    # channel: |X| + sums 2*18, divides 2, V m + v 16 + 8, 2 sigma 4*8, mean of means 2,
    #   a m + b 2, 2 sigma 4, L*G 8, Y*(LG) 72
    ("channel", 36 + 2 + 16 + 8 + 32 + 2 + 2 + 4 + 8 + 72),
    # spatial: |X| + channel sums 2*18, divide 9, 3x3 conv + bias 10*9, 2 sigma 4*9, Y*S 72
    ("spatial", 36 + 9 + 90 + 36 + 72),
    ("both", 182 + 243),
])
def test_rescale_flops_by_hand_when_in_and_out_differ(rescale, flops):
    assert (36 + 2 + 16 + 8 + 32 + 2 + 2 + 4 + 8 + 72, 36 + 9 + 90 + 36 + 72) == (182, 243)
    got, _, _ = _tail_conv_extra(rescale)
    assert got == flops


@pytest.mark.parametrize("rescale", ["channel", "spatial", "both"])
def test_rescale_params_equal_the_operator_module(rescale):
    _, params, spec = _tail_conv_extra(rescale)
    module = Rescale(rescale, out_ch=8, in_ch=2)
    assert params == sum(p.numel() for p in module.parameters())
    assert params == {"channel": 8 * 2 + 8 + 2, "spatial": 9 + 1, "both": 26 + 10}[rescale]
    assert cost(spec, (3, 3, 3))["params"] == sum(p.numel() for p in build(spec).parameters())
