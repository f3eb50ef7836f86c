"""evaluators.cost: hand counts for two small specs, params against the built module, and the
cost counts BBCU (Xia et al., ICLR 2023) publishes for SRResNet x4 on a 320x180 input."""
import random
from pathlib import Path

import pytest

from evaluators.cost import cost
from space import presets
from space.builder import build
from space.spec import ArchSpec, LayerSpec
from space.space import SearchSpace

ROOT = Path(__file__).resolve().parents[2]


def _n_params(spec):
    return sum(p.numel() for p in build(spec).parameters())


SPEC_A = ArchSpec(
    scale=2, channels=4, blocks=1, head="conv3", tail="fp_one_stage", global_skip=True,
    block_residual=False,
    layers=(LayerSpec(parts=2, threshold="channel", bias=True, norm="bn", skip="fp"),
            LayerSpec(weight_scale="channel_mean", nonlinearity="rprelu", rescale="spatial")),
)


def test_hand_counts_spec_a():
    c = cost(SPEC_A, input_size=(3, 5, 6))  # H W = 30 pixels, C = 4: 120 elements per map
    # head conv3 3->4: MACs 9*3*4*30 = 3240, bias 4*30 = 120 flops, params 108 + 4 = 112
    # conv 0 (P = 2): bops 2*9*4*4*30 = 8640; flops: compares 2*120 + parts (2*2-1)*120
    #   + bias 120 + bn 2*120 + skip 120 = 240 + 360 + 120 + 240 + 120 = 1080;
    #   params 144 weights + beta 4 + tau 2*4 + gamma 2*4 + bias 4 + bn 8 = 176
    # conv 1: bops 9*4*4*30 = 4320; flops: compares 120 + alpha 120
    #   + spatial S = 2 sigma(conv3x3(mean_c|X|)) (|X| and its channel sum 2*120, the divide 30,
    #   the 1->1 3x3 conv with bias 10*30, 2 sigma 4*30, Y * S 120 = 810; the old expectation,
    #   690 = 2*120 + 11*30 + 120, had no sigmoid) + rprelu 4*120 = 1530;
    #   params 144 + 10 + 3*4 = 166
    # global skip 120; tail conv3 4->12: MACs 9*4*12*30 = 12960, bias 12*30 = 360, params 444
    # normalisation 2*3*30 + 2*3*(10*12) = 900
    assert c["bops"] == 8640 + 4320 == 12960
    assert c["fp_macs"] == 3240 + 12960 == 16200
    assert c["flops"] == 16200 + 120 + 1080 + 1530 + 120 + 360 + 900 == 20310
    assert c["ops"] == 12960 / 64 + 20310
    assert c["params"] == 112 + 176 + 166 + 444 == 898
    assert c["binary_params"] == 288
    assert c["model_bytes"] == 288 // 8 + 4 * (898 - 288) == 2476
    # peak: tail step, input 4*30 + output 12*30 = 480 floats
    assert c["peak_activation_bytes"] == 4 * 480
    assert c["params"] == _n_params(SPEC_A)


SPEC_B = ArchSpec(
    scale=4, channels=2, blocks=1, head="conv5", tail="binary_repeat", global_skip=False,
    block_residual=True, residual_alignment=130.0,
    layers=(LayerSpec(threshold="local_mean", threshold_kernel=5, act_estimator="aae",
                      nonlinearity="leaky_relu"),
            LayerSpec(bam_depth=2, rescale="both", nonlinearity="prelu")),
    tail_layers=(LayerSpec(skip="fp", bias=True),) * 2,
)


def test_hand_counts_spec_b():
    c = cost(SPEC_B, input_size=(3, 4, 4))  # 16 LR pixels, C = 2: 32 elements per map
    # head conv5 3->2: MACs 25*3*2*16 = 2400, bias 32, params 150 + 2 = 152
    # conv 0: bops 9*2*2*16 = 576; flops compares 32 + local mean (25+1)*32 + leaky 2*32 = 928;
    #   params 36 + aae theta 1 = 37
    # conv 1 (bam_position 1, bam_depth 2 -> window d' = 1): bops 576; flops compares 32
    #   + bam: 2 inputs x (|A|, sum, sign, beta multiply) + 1 add + BN 2 = (4*2 + 1 + 2)*32 = 352
    #   + rescale both, Ni = No = 32, HW = 16, C_in = C_out = 2:
    #     spatial 2*32 + (1 divide + 10 conv + 4 sigmoid)*16 + 32 = 336;
    #     channel: pooled |X| 2*32 + 2 divides, V m + v 2*2 + 2, G's sigmoids 4*2, mean of means
    #     2, a m + b 2, L's sigmoid 4, L*G 2, Y*(LG) 32 = 122  -> 458
    #   + prelu 64 = 906 (the old 688 counted bam (4*1+5)*32 without the sign and the old
    #   rescale 2*32 + 11*16 + 32 + 32 = 304: a static gamma_c and no sigmoids)
    #   params 36 + bam scales 3*2 + bam bn 2*2 + channel (V 2*2 + v 2 + a, b 2 = 8; the old
    #   operator: gamma_c 2) + spatial 10 + prelu 2 = 66
    # block residual 32
    # tail stage 1 (4x4, 2->8): bops 9*2*8*16 = 2304; flops compares 32 + bias 128 + skip 128 = 288
    # tail stage 2 (8x8, 2->8): bops 9*2*8*64 = 9216; flops 128 + 512 + 512 = 1152
    #   each stage params 144 + 8 = 152
    # final conv 2->3 at 16x16: MACs 9*2*3*256 = 13824, bias 768, params 57
    # normalisation 2*3*16 + 2*3*256 = 1632
    assert c["bops"] == 576 + 576 + 2304 + 9216 == 12672
    assert c["fp_macs"] == 2400 + 13824
    assert c["flops"] == 16224 + 32 + 928 + 906 + 32 + 288 + 1152 + 768 + 1632 == 21962
    assert c["ops"] == 12672 / 64 + 21962
    assert c["params"] == 152 + 37 + 66 + 152 + 152 + 57 == 616
    assert c["binary_params"] == 36 + 36 + 144 + 144
    assert c["model_bytes"] == 360 // 8 + 4 * (616 - 360) == 1069
    # peak: the final conv, input 2*256 + output 3*256 = 1280 floats
    assert c["peak_activation_bytes"] == 4 * 1280
    assert c["params"] == _n_params(SPEC_B)


def test_peak_counts_kept_tensors():
    # 64x64 input, C = 16, fp_one_stage tail at x2 (in 16 + out 12 maps), head step 3 + 16:
    # the body's second conv holds head output (global skip) + block input (residual)
    # + its input + its output = 4 maps of 16 channels, the largest step.
    spec = ArchSpec(scale=2, channels=16, blocks=2, tail="fp_one_stage", global_skip=True,
                    block_residual=True, layers=(LayerSpec(),) * 4)
    px = 64 * 64
    assert cost(spec, (3, 64, 64))["peak_activation_bytes"] == 4 * 4 * 16 * px
    # nothing kept: max(head 3 + 16, body conv 16 + 16, tail 16 + 12) maps
    no_keep = spec.replace(global_skip=False, block_residual=False)
    assert cost(no_keep, (3, 64, 64))["peak_activation_bytes"] == 4 * (16 + 16) * px
    # a BAM conv keeps the block input: conv 1 then holds 3 maps
    bam = no_keep.replace(layers=(LayerSpec(), LayerSpec(bam_depth=1)) * 2)
    assert cost(bam, (3, 64, 64))["peak_activation_bytes"] == 4 * 3 * 16 * px


@pytest.mark.parametrize("name", presets.names())
def test_params_equal_the_built_module_for_presets(name):
    for scale in (2, 3, 4):
        spec = presets.get(name, scale=scale, channels=8, blocks=2)
        assert cost(spec, (3, 8, 8))["params"] == _n_params(spec)


def test_params_equal_the_built_module_for_random_specs():
    space = SearchSpace.from_yaml(ROOT / "configs" / "space" / "default.yaml")
    rng = random.Random(5)
    for _ in range(12):
        spec = space.random(rng)
        # keep the modules small: 8 channels, at most 2 blocks
        blocks = min(spec.blocks, 2)
        spec = spec.replace(channels=8, blocks=blocks, layers=spec.layers[:2 * blocks])
        assert cost(spec, (3, 8, 8))["params"] == _n_params(spec)


def test_bbcu_published_counts_for_srresnet_x4():
    # BBCU (Xia et al., ICLR 2023) reports on a 320x180 input at x4: FP SRResNet 146.1 G OPs,
    # binary body with FP head/tail 79.2 G, the binary body alone ~1.1 G. Their SRResNet is
    # BasicSR's MSRResNet, whose upsampler has one more FP conv 64->64 at HR (conv_hr) than
    # our fp_two_stage tail: 9*64*64*1280*720 MACs.
    # (the fp preset may carry that conv_hr itself: tail_conv_hr = "fp", MSRResNet as written)
    conv_hr = 9 * 64 * 64 * 1280 * 720
    fp_spec = presets.get("fp", 4)
    fp = cost(fp_spec, (3, 180, 320))
    missing = 0 if fp_spec.tail_conv_hr == "fp" else conv_hr
    assert abs((fp["fp_macs"] + missing) / 1e9 - 146.1) < 0.05
    xn = cost(presets.get("xnor", 4), (3, 180, 320))
    assert abs(xn["bops"] / 64 / 1e9 - 1.1) < 0.05
    assert abs((xn["fp_macs"] + conv_hr + xn["bops"] / 64) / 1e9 - 79.2) < 0.05


def test_more_parts_cost_proportionally_more_bops():
    base = presets.get("xnor", 2, 16, 2)
    for p in (2, 3, 4):
        spec = base.replace(layers=tuple(layer.replace(parts=p) for layer in base.layers))
        assert cost(spec, (3, 10, 10))["bops"] == p * cost(base, (3, 10, 10))["bops"]


@pytest.mark.parametrize("bad", [(1, 8, 8), (3, 0, 8), (3, 8), (3, 8.0, 8), "3x8x8"])
def test_bad_input_size(bad):
    with pytest.raises(ValueError, match=r"input_size.*\(3, H, W\)"):
        cost(SPEC_A, bad)
    with pytest.raises(ValueError, match="ArchSpec"):
        cost(SPEC_A.to_dict(), (3, 8, 8))
