"""BinaryBlock (history passing, residual) and BinaryUpsampler (stages, repeat-channel skip)."""
import pytest
import torch
import torch.nn.functional as F

from _ops_covering import each_value, label
from ops import BinaryBlock, BinaryConv2d, BinaryUpsampler


def test_block_passes_history_oldest_first():
    seen = []

    class Spy(BinaryConv2d):
        def forward(self, x, history=()):
            seen.append((x, tuple(history)))
            return super().forward(x, history)

    block = BinaryBlock(4, [{}, {}, {}], residual=False)
    for i, conv in enumerate(block.convs):
        conv.__class__ = Spy
    x = torch.randn(1, 4, 5, 5)
    out = block(x)
    inputs = [s[0] for s in seen]
    assert inputs[0] is x
    for i, (_, hist) in enumerate(seen):
        assert len(hist) == i and all(h is inputs[j] for j, h in enumerate(hist))
    manual = x
    for conv in block.convs:
        manual = BinaryConv2d.forward(conv, manual)
    assert torch.equal(out, manual)


def test_block_with_bam_equals_manual_chain():
    layers = [{"bam_depth": 2, "norm": "bn"}, {"bam_depth": 1, "skip": "fp"}, {"bam_depth": 3, "parts": 2}]
    block = BinaryBlock(4, layers, residual=True).eval()
    x = torch.randn(2, 4, 6, 6)
    a0 = x
    a1 = block.convs[0](a0, ())
    a2 = block.convs[1](a1, (a0,))
    a3 = block.convs[2](a2, (a0, a1))
    assert torch.equal(block(x), a3 + x)


@pytest.mark.parametrize("combo", each_value(seed=3)[::3], ids=lambda c: label(c))
def test_block_accepts_any_choices(combo):
    block = BinaryBlock(4, [combo, combo], kernel_size=3)
    y = block(torch.randn(2, 4, 5, 5))
    assert y.shape == (2, 4, 5, 5) and torch.isfinite(y).all()
    y.sum().backward()


@pytest.mark.parametrize("scale,stages", [(2, 1), (3, 1), (4, 2)])
def test_upsampler_shapes(scale, stages):
    up = BinaryUpsampler(4, scale)
    convs = [m for m in up.modules() if isinstance(m, BinaryConv2d)]
    assert len(convs) == stages
    s = 2 if scale == 4 else scale
    assert all(c.in_ch == 4 and c.out_ch == 4 * s * s for c in convs)
    assert up(torch.randn(1, 4, 5, 3)).shape == (1, 4, 5 * scale, 3 * scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upsampler_fp_skip_is_nearest_upsampling(scale):
    """With the binary path silenced (channel rescale 2 sigmoid(-1e4) = 0), output = nearest
    upsampling."""
    up = BinaryUpsampler(3, scale, skip="fp", rescale="channel")
    with torch.no_grad():
        for m in up.modules():
            if isinstance(m, BinaryConv2d):
                m.rescale.channel_bias.fill_(-1e4)
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(up(x), F.interpolate(x, scale_factor=scale, mode="nearest"), rtol=0, atol=0)


@pytest.mark.parametrize("combo", each_value(seed=4)[::4], ids=lambda c: label(c))
def test_upsampler_accepts_any_choices(combo):
    up = BinaryUpsampler(2, 2, **combo)
    y = up(torch.randn(1, 2, 4, 4))
    assert y.shape == (1, 2, 8, 8) and torch.isfinite(y).all()


@pytest.mark.parametrize(
    "kwargs,field",
    [({"channels": 0, "layers": [{}]}, "channels"), ({"channels": 4, "layers": []}, "layers"),
     ({"channels": 4, "layers": {"parts": 2}}, "layers"), ({"channels": 4, "layers": [3]}, "layers"),
     ({"channels": 4, "layers": [{}], "residual": "yes"}, "residual"),
     ({"channels": 4, "layers": [{"parts": 9}]}, "parts"), ({"channels": 4, "layers": [{}], "kernel_size": 5}, "kernel_size")],
)
def test_block_invalid_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        BinaryBlock(**kwargs)


@pytest.mark.parametrize("scale", [1, 5, 8, 2.0])
def test_upsampler_invalid_scale(scale):
    with pytest.raises(ValueError, match=r"scale.*\[2, 3, 4\]"):
        BinaryUpsampler(4, scale)
