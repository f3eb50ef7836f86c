"""Every preset builds, runs forward and backward at x2/x3/x4 with gradient on every parameter;
the builder honours the spec (normalisation, global skip, heads, tails)."""
import pytest
import torch
from torch import nn

from ops import BinaryBlock, BinaryConv2d
from space import presets
from space.builder import HEADS, RGB_MEAN, TAILS, build
from space.spec import ArchSpec, LayerSpec, uniform

torch.manual_seed(0)


def test_names_and_unknown_name():
    assert presets.names() == ["e2fif", "ebsr", "lmb", "bam", "ari", "bbcu_l", "bbcu_m", "xnor", "fp"]
    with pytest.raises(ValueError, match=r"unknown preset 'react'.*e2fif.*bbcu_l"):
        presets.get("react")


def test_default_size_is_the_papers_srresnet():
    for name in presets.names():
        spec = presets.get(name)
        assert (spec.scale, spec.channels, spec.blocks) == (4, 64, 16)
        assert spec.head == "conv3"
        # BBCU and MSRResNet have no feature-level global skip; every other design has one
        assert spec.global_skip == (name not in ("bbcu_l", "bbcu_m", "fp"))
        assert len(spec.layers) == (32 if spec.body == "binary" else 0)


def test_presets_encode_their_papers_recipes():
    # field by field: tests/space/test_space_presets_faithful.py
    e2 = presets.get("e2fif", 2, 8, 2)
    assert all(layer.skip == "fp" and layer.norm == "bn" for layer in e2.layers)
    assert [layer.nonlinearity for layer in e2.layers] == ["leaky_relu", "none"] * 2
    assert e2.tail == "fp_one_stage" and not e2.block_residual
    bb = presets.get("bbcu_m", 4, 8, 2)
    assert bb.residual_alignment == 130.0 and len(bb.tail_layers) == 3  # 2 stages + conv_hr
    assert all(layer.nonlinearity == "rprelu" and layer.nonlinearity_at == "before_skip"
               and layer.norm == "none" for layer in bb.layers + bb.tail_layers)
    assert all(layer.parts == 3 for layer in presets.get("ari", 2, 8, 1).layers)
    assert all(layer.threshold == "local_mean" for layer in presets.get("lmb", 2, 8, 1).layers)
    assert [layer.bam_depth for layer in presets.get("bam", 2, 8, 2).layers] == [1, 1, 1, 1]
    assert presets.get("fp", 2, 8, 2).body == "fp"
    assert presets.get("xnor", 2, 8, 2).block_residual


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", presets.names())
def test_preset_forward_backward(name, scale):
    spec = presets.get(name, scale=scale, channels=8, blocks=2)
    model = build(spec)
    assert model.spec is spec
    x = torch.rand(2, 3, 9, 7)
    y = model(x)
    assert y.shape == (2, 3, 9 * scale, 7 * scale)
    assert torch.isfinite(y).all()
    loss = (y - torch.rand_like(y)).abs().mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name} x{scale}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all(), f"{name} x{scale}: non-finite gradient in {pname}"
        assert p.grad.abs().sum() > 0, f"{name} x{scale}: zero gradient in {pname}"


def test_builder_uses_ops_modules_and_spec_choices():
    spec = presets.get("e2fif", 4, 8, 3).replace(tail="binary_repeat",
                                                 tail_layers=(presets.E2FIF_LAYER,) * 2)
    model = build(spec)
    blocks = [m for m in model.body if isinstance(m, BinaryBlock)]
    assert len(blocks) == 3 and all(not b.residual for b in blocks)
    convs = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    assert len(convs) == 6 + 2  # body + two x2 upsampler stages
    for conv, layer in zip(convs, spec.layers + spec.tail_layers):
        assert conv.choices == layer.to_dict()
    assert [(c.in_ch, c.out_ch) for c in convs[-2:]] == [(8, 32), (8, 32)]
    assert isinstance(model.head, nn.Conv2d) and model.head.kernel_size == (3, 3)
    assert build(spec.replace(head="conv5")).head.kernel_size == (5, 5)
    assert set(HEADS) == {"conv3", "conv5"}
    assert set(TAILS) == {"fp_two_stage", "fp_one_stage", "binary_repeat"}


def test_normalisation_and_residual_alignment():
    # fp_one_stage tail with zero weights and bias b: o = b per output pixel, so
    # sr = b / k + MEAN whatever the input: checks the de-normalisation and k.
    for k in (1.0, 130.0):
        spec = ArchSpec(scale=2, channels=4, blocks=1, tail="fp_one_stage", body="fp",
                        residual_alignment=k)
        model = build(spec).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
            model.tail[0].bias.fill_(2.6)
        y = model(torch.rand(1, 3, 5, 5))
        want = 2.6 / k + torch.tensor(RGB_MEAN).view(1, 3, 1, 1)
        assert torch.allclose(y, want.expand_as(y), atol=1e-6)


def test_global_skip_is_the_head_output():
    # zero body (fp body, block_residual off, zero convs): y = h only with global_skip.
    spec = ArchSpec(scale=2, channels=3, blocks=1, body="fp", block_residual=False,
                    tail="fp_one_stage")
    for skip in (True, False):
        model = build(spec.replace(global_skip=skip)).eval()
        with torch.no_grad():
            for p in model.body.parameters():
                p.zero_()
        x = torch.rand(1, 3, 6, 6)
        h = model.head((x - model.rgb_mean) * 1.0)
        want = model.tail(h if skip else torch.zeros_like(h)) + model.rgb_mean
        assert torch.allclose(model(x), want, atol=1e-6)


def test_bad_input_is_rejected():
    model = build(uniform(2, 4, 1))
    with pytest.raises(ValueError, match=r"input shape \(1, 1, 8, 8\).*\(N, 3, H, W\)"):
        model(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="ArchSpec"):
        build({"scale": 2})
    with pytest.raises(ValueError, match="parts"):
        uniform(2, 4, 1, LayerSpec(parts=9))
