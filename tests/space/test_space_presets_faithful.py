"""Every preset's spec equals the design ``docs/reference_designs.md`` documents, field by field.

The expected values are written out here from the document's statements (not read back from
``space.presets``), so a change of a preset that drifts from the authors' design fails here.
Every preset also builds, runs forward/backward at x2/x3/x4, and ``ops.native.compile`` agrees
with PyTorch (tests/space/test_space_presets_builder.py, tests/native/test_presets.py cover all
names; here the faithful-specific parts: x3 one-stage tails, x4 stage counts, image skip).
"""
import pytest
import torch

from space import presets
from space.builder import build
from space.spec import LayerSpec

SIZES = [(2, 8, 2), (3, 8, 1), (4, 16, 3)]

# -- the documented per-conv recipes -------------------------------------------------------
# E2FIF (doc section 1): sign(X) with ApproxSign backward, sign(W) with identity backward, no
# weight scale alpha, no threshold shift, conv bias, BN after the bias, then the FP skip; the
# first conv of a block adds LeakyReLU(0.1) after its skip, the second none.
E2FIF_CONV = dict(threshold="zero", parts=1, act_estimator="approx_sign", weight_scale="none",
                  weight_estimator="identity", rescale="none", bam_depth=0, skip="fp",
                  norm="bn", bias=True)
E2FIF_FIRST = dict(E2FIF_CONV, nonlinearity="leaky_relu", nonlinearity_at="after_skip")
E2FIF_SECOND = dict(E2FIF_CONV, nonlinearity="none")
# BBCU (doc section 2): learnable channel shift before the sign, ApproxSign, alpha = mean|W|,
# clipped STE, no bias, no BN, RPReLU before the FP skip.
BBCU_CONV = dict(threshold="channel", parts=1, act_estimator="approx_sign",
                 weight_scale="channel_mean", weight_estimator="clip", rescale="none",
                 bam_depth=0, skip="fp", norm="none", nonlinearity="rprelu",
                 nonlinearity_at="before_skip", bias=False)
# E2FIF default network: k = 255 on x - DIV2K mean, FP 3x3 head with no activation, no block
# residual, global skip, FP one-stage tail C -> 3 s^2 + PixelShuffle(s), no image skip.
E2FIF_ARCH = dict(head="conv3", head_act="none", residual_alignment=255.0, input_mean="div2k",
                  global_skip=True, block_residual=False, body="binary", tail="fp_one_stage",
                  tail_conv_hr="none", tail_stages="staged", image_skip="none")
# BBCU-L / BBCU-M: raw image x 130, head LeakyReLU, no global feature skip, no block residual,
# bilinear image skip.
BBCU_ARCH = dict(head="conv3", head_act="leaky_relu", residual_alignment=130.0,
                 input_mean="none", global_skip=False, block_residual=False, body="binary",
                 image_skip="bilinear")


def _assert_fields(obj, want, where):
    for name, value in want.items():
        got = getattr(obj, name)
        assert got == value, f"{where}.{name} = {got!r}, documented {value!r}"


def _assert_body(spec, first, second, where):
    assert len(spec.layers) == 2 * spec.blocks
    for b in range(spec.blocks):
        _assert_fields(spec.layers[2 * b], first, f"{where}.layers[{2 * b}]")
        _assert_fields(spec.layers[2 * b + 1], second, f"{where}.layers[{2 * b + 1}]")


def _assert_size(spec, scale, c, n):
    assert (spec.scale, spec.channels, spec.blocks) == (scale, c, n)


@pytest.mark.parametrize("scale,c,n", SIZES)
def test_e2fif_is_the_authors_default_model(scale, c, n):
    spec = presets.get("e2fif", scale, c, n)
    _assert_size(spec, scale, c, n)
    _assert_fields(spec, E2FIF_ARCH, "e2fif")
    _assert_body(spec, E2FIF_FIRST, E2FIF_SECOND, "e2fif")
    assert spec.tail_layers == ()


@pytest.mark.parametrize("scale,c,n", SIZES)
def test_e2fif_repeat_is_the_one_stage_binary_tail(scale, c, n):
    spec = presets.get("e2fif_repeat", scale, c, n)
    _assert_fields(spec, dict(E2FIF_ARCH, tail="binary_repeat", tail_stages="one"), "e2fif_repeat")
    _assert_body(spec, E2FIF_FIRST, E2FIF_SECOND, "e2fif_repeat")
    # UpSamper: ONE binary conv C -> s^2 C at every scale (x4 too), bias + BN + repeat skip
    assert len(spec.tail_layers) == 1
    _assert_fields(spec.tail_layers[0], E2FIF_SECOND, "e2fif_repeat.tail_layers[0]")
    convs = [m for m in build(spec).tail.modules() if type(m).__name__ == "BinaryConv2d"]
    assert [(m.in_ch, m.out_ch) for m in convs] == [(c, scale * scale * c)]


@pytest.mark.parametrize("scale,c,n", SIZES)
def test_ebsr_is_scales_on_the_e2fif_backbone(scale, c, n):
    spec = presets.get("ebsr", scale, c, n)
    _assert_fields(spec, E2FIF_ARCH, "ebsr")
    upd = dict(threshold="channel", rescale="both")  # channel shift; L, G, S after BN
    _assert_body(spec, dict(E2FIF_FIRST, **upd), dict(E2FIF_SECOND, **upd), "ebsr")
    assert "ebsr_light" not in presets.names()


@pytest.mark.parametrize("scale,c,n", SIZES)
def test_lmb_is_local_mean_threshold_on_the_e2fif_backbone(scale, c, n):
    spec = presets.get("lmb", scale, c, n)
    _assert_fields(spec, E2FIF_ARCH, "lmb")
    upd = dict(threshold="local_mean", threshold_kernel=3, weight_estimator="tanh_anneal")
    _assert_body(spec, dict(E2FIF_FIRST, **upd), dict(E2FIF_SECOND, **upd), "lmb")


@pytest.mark.parametrize("scale,c,n", SIZES)
def test_bam_accumulates_on_every_conv_of_the_e2fif_backbone(scale, c, n):
    spec = presets.get("bam", scale, c, n)
    _assert_fields(spec, E2FIF_ARCH, "bam")
    _assert_body(spec, dict(E2FIF_FIRST, bam_depth=1), dict(E2FIF_SECOND, bam_depth=1), "bam")


@pytest.mark.parametrize("scale,c,n", SIZES)
def test_ari_is_three_parts_with_aae_on_the_e2fif_backbone(scale, c, n):
    spec = presets.get("ari", scale, c, n)
    _assert_fields(spec, E2FIF_ARCH, "ari")
    upd = dict(parts=3, act_estimator="aae")
    _assert_body(spec, dict(E2FIF_FIRST, **upd), dict(E2FIF_SECOND, **upd), "ari")


def test_ari_thresholds_are_initialised_from_the_data():
    model = build(presets.get("ari", 2, 8, 1)).train()
    x = torch.rand(2, 3, 10, 10)
    model(x)
    inits = [b for name, b in model.named_buffers() if name.endswith("initialized")]
    assert inits and all(bool(b) for b in inits)


@pytest.mark.parametrize("scale,c,n", SIZES)
def test_bbcu_l_is_the_authors_model(scale, c, n):
    spec = presets.get("bbcu_l", scale, c, n)
    _assert_fields(spec, dict(BBCU_ARCH, tail="fp_two_stage", tail_conv_hr="fp",
                              tail_stages="staged"), "bbcu_l")
    _assert_body(spec, BBCU_CONV, BBCU_CONV, "bbcu_l")
    assert spec.tail_layers == ()


@pytest.mark.parametrize("scale,c,n", SIZES)
def test_bbcu_m_is_the_authors_model(scale, c, n):
    spec = presets.get("bbcu_m", scale, c, n)
    _assert_fields(spec, dict(BBCU_ARCH, tail="binary_repeat", tail_conv_hr="binary",
                              tail_stages="staged"), "bbcu_m")
    _assert_body(spec, BBCU_CONV, BBCU_CONV, "bbcu_m")
    stages = 2 if scale == 4 else 1  # x2/x3 one stage, x4 two x2 stages; then binary conv_hr
    assert len(spec.tail_layers) == stages + 1
    for i, layer in enumerate(spec.tail_layers):
        _assert_fields(layer, BBCU_CONV, f"bbcu_m.tail_layers[{i}]")
    convs = [m for m in build(spec).tail.modules() if type(m).__name__ == "BinaryConv2d"]
    r2 = 4 if scale == 4 else scale * scale
    assert [(m.in_ch, m.out_ch) for m in convs] == [(c, r2 * c)] * stages + [(c, c)]


@pytest.mark.parametrize("scale,c,n", SIZES)
def test_xnor_is_the_plain_bnn(scale, c, n):
    spec = presets.get("xnor", scale, c, n)
    _assert_fields(spec, dict(head="conv3", head_act="none", residual_alignment=255.0,
                              input_mean="div2k", global_skip=True, block_residual=True,
                              tail="fp_two_stage", tail_conv_hr="none", image_skip="none"),
                   "xnor")
    conv = dict(threshold="zero", parts=1, act_estimator="ste", weight_scale="channel_mean",
                weight_estimator="identity", skip="none", norm="bn", bias=False, bam_depth=0,
                rescale="none")
    _assert_body(spec, dict(conv, nonlinearity="leaky_relu"), dict(conv, nonlinearity="none"),
                 "xnor")


@pytest.mark.parametrize("scale,c,n", SIZES)
def test_fp_is_msrresnet(scale, c, n):
    spec = presets.get("fp", scale, c, n)
    # BasicSR MSRResNet (doc section 7): raw [0, 1] RGB, head + LeakyReLU, conv-ReLU-conv + x
    # blocks, no global feature skip, upsampler stages with LeakyReLU, conv_hr + LeakyReLU,
    # conv_last, plus bilinear(x)
    _assert_fields(spec, dict(head="conv3", head_act="leaky_relu", residual_alignment=1.0,
                              input_mean="none", global_skip=False, block_residual=True,
                              body="fp", tail="fp_two_stage", tail_conv_hr="fp",
                              tail_stages="staged", image_skip="bilinear"), "fp")
    assert spec.layers == () and spec.tail_layers == ()


def test_every_preset_is_named_and_every_binary_conv_is_documented():
    documented = {"e2fif", "ebsr", "lmb", "bam", "ari", "bbcu_l", "bbcu_m", "xnor", "fp"}
    assert set(presets.names()) == documented and presets.variants() == ["e2fif_repeat"]
    with pytest.raises(ValueError, match="variants: \\['e2fif_repeat'\\]"):
        presets.get("nope")
    for name in presets.names() + presets.variants():
        spec = presets.get(name, 2, 8, 1)
        for layer in spec.layers + spec.tail_layers:
            assert isinstance(layer, LayerSpec)


@pytest.mark.parametrize("name", ["e2fif", "e2fif_repeat", "bbcu_l", "bbcu_m", "fp"])
def test_verified_presets_keep_the_identity_at_zero_tail(name):
    # with a zero tail the model returns up(x) (image skip) or m (no image skip): the input
    # normalisation (x - m) * k and its inverse are exact
    spec = presets.get(name, 2, 4, 1)
    model = build(spec).eval()
    with torch.no_grad():
        for p in model.tail.parameters():
            p.zero_()
    x = torch.rand(1, 3, 6, 6)
    y = model(x)
    if spec.image_skip == "bilinear":
        want = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear",
                                               align_corners=False)
    else:
        want = model.rgb_mean.expand_as(y) if spec.input_mean == "div2k" else torch.zeros_like(y)
    torch.testing.assert_close(y, want, rtol=0, atol=1e-5)
