"""The kernel benchmark's text: fractions of the measured ceiling and ratios to the naive loop
follow the formulas; no fixed ceiling figure is left; the naive loop's operands are laid out
as the C++ loop reads them."""
import numpy as np

import benchmarks.kernel as kb


def _row(path, threads, ms, peak, naive, gmacs, frac_popcnt=float("nan")):
    return dict(path=path, threads=threads, ms=ms, ms_min=ms, gmacs=gmacs, peak=peak,
                frac=gmacs / peak, frac_popcnt=frac_popcnt, naive=naive, naive_min=naive,
                vs_naive=naive / ms, vs_naive_min=naive / ms, variant="v")


def test_target_table_and_summary_compute_fraction_and_ratio():
    rows = [_row("amx", 1, 0.5, 3000.0, 1.0, 1200.0, 1200.0 / 800.0),
            _row("avx512", 1, 0.8, 800.0, 1.0, 750.0, 750.0 / 800.0),
            _row("amx", 2, 0.4, 3000.0, 0.9, 1500.0)]
    text = "\n".join(kb.target_text(rows, "amx"))
    assert ("| **amx** (automatic) | 1 | 0.500 / 0.500 | 1200 | 3000 | 40 % | 150 % | 1.000 / 1.000 "
            "| 2.00; 2.00 | v |") in text
    assert "| avx512 | 1 | 0.800 / 0.800 | 750 | 800 | 94 % | 94 % | 1.000 / 1.000 | 1.25; 1.25 | v |" in text
    assert "n/m" in text  # no avx512 ceiling measured for that row
    nets = [dict(name="e2fif", compiled=20.0, fp=200.0, ratio=10.0)]
    summary = kb.summary_text(rows, "amx", nets, "Test CPU")
    assert "Test CPU" in summary and "1 thread: 0.500 ms, 40 % of the measured `amx` ceiling, 2.00x the speed of the naive loop" in summary
    assert "2 threads: 0.400 ms" in summary and "20.0 ms against 200.0 ms" in summary and "10.0x" in summary


def test_no_fixed_ceiling_is_left():
    assert not hasattr(kb, "CEILINGS") and not hasattr(kb, "ceiling_text")
    assert "341" not in open(kb.__file__).read()


def test_naive_inputs_pad_and_regroup():
    bits = np.arange(1 * 1 * 3 * 4 * 2, dtype=np.uint64).reshape(1, 1, 3, 4, 2)
    w_bits = np.arange(2 * 3 * 3 * 2 * 8, dtype=np.uint64).reshape(2, 3, 3, 2, 8)
    xp, wn = kb.naive_inputs(bits, w_bits)
    assert xp.shape == (5, 6, 2) and (xp[0] == 0).all() and (xp[:, 0] == 0).all()
    np.testing.assert_array_equal(xp[1:-1, 1:-1], bits[0, 0])
    assert wn.shape == (3, 3, 2, 16)
    # output channel o = 8 t + l of tap (ky, kx), word j
    assert wn[1, 2, 1, 8 + 3] == w_bits[1, 1, 2, 1, 3]


def test_rounds_alternate_and_report_medians():
    calls = []
    out = kb.rounds({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, n=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert set(out) == {"a", "b", "a_min", "b_min"} and out["a_min"] <= out["a"]
