"""The kernel benchmark's ceiling paragraph: the fp32 rate and the ratio follow the formula."""
from benchmarks.kernel import CEILINGS, ceiling_text


def test_ceiling_text_computes_the_fp32_rate_and_the_allowed_ratio():
    # 1e9 MACs in 100 ms of CPU time at 1000 MHz: 1e9 / 0.1 s / 1e9 Hz = 10 MACs per cycle
    text = ceiling_text("avx512", {"macs": 1e9, "fp32_cpu": 100.0}, 1000.0)
    assert CEILINGS["avx512"][0] == 341
    assert "10.0 MACs/cycle/core" in text and "341/10.0 = 34x" in text


def test_ceiling_text_without_a_target_run_or_a_known_path():
    assert "PyTorch fp32" not in ceiling_text("avx2", None, 2000.0)
    assert "no ceiling known" in ceiling_text("reference", None, 2000.0)
