"""benchmarks.proxy_fidelity.seed_spread: the proxy's seed-to-seed spread line."""
import re
from types import SimpleNamespace

import numpy as np

from benchmarks.proxy_fidelity import seed_spread


def test_seed_spread_reports_std_and_tau_between_seeds():
    main = [30.0, 31.0, 32.0, 33.0]
    other = [30.5, 30.9, 32.2, 33.4]  # same order as main: tau 1
    swapped = [31.0, 30.0, 32.0, 33.0]  # one pair swapped: tau = (5 - 1) / 6
    rows = [{"proxy": {"psnr_y": a}, "proxy_seed1": {"psnr_y": b}, "proxy_seed2": {"psnr_y": c}}
            for a, b, c in zip(main, other, swapped)]
    args = SimpleNamespace(seed=0, spread=[1, 2], proxy_steps=150)
    text = seed_spread(args, rows)
    stds = [np.std([a, b, c], ddof=1) for a, b, c in zip(main, other, swapped)]
    m = re.search(r"median ([\d.]+) dB, max ([\d.]+) dB", text)
    assert float(m.group(1)) == round(float(np.median(stds)), 2)
    assert float(m.group(2)) == round(float(np.max(stds)), 2)
    assert "1's: 1.000" in text and f"2's: {4 / 6:.3f}" in text
    assert seed_spread(SimpleNamespace(seed=0, spread=[], proxy_steps=150), rows) == ""
