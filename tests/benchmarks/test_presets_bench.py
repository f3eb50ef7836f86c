"""benchmarks.presets: aggregation, claim verdicts, the table writer, resume (tiny budget)."""
import json

import pytest

from benchmarks import presets as bench


def test_mean_std_and_claim_verdicts():
    assert bench.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert bench.mean_std([4.0]) == (4.0, 0.0)
    m, s, v = bench.claim_verdict([31.0, 32.0, 33.0], [30.0, 30.9, 32.1])  # d = 1, 1.1, 0.9
    assert v == "holds" and m == pytest.approx(1.0) and s == pytest.approx(0.1)
    assert bench.claim_verdict([30.0, 30.0, 30.0], [31.0, 31.5, 30.5])[2] == "contradicted"
    assert bench.claim_verdict([30.0, 31.0, 30.0], [30.5, 30.0, 30.4])[2] == "inconclusive"


def test_study_specs_cover_presets_and_ablations():
    from space import presets

    specs = bench.study_specs(2, 8, 1)
    labels = [label for label, _, _ in specs]
    assert labels[:len(presets.names())] == presets.names()
    by = {label: spec for label, spec, _ in specs}
    assert all(layer.skip == "none" for layer in by["e2fif-noskip"].layers)
    assert by["e2fif-noskip"].residual_alignment == by["e2fif"].residual_alignment == 255.0
    assert all(layer.threshold == "zero" for layer in by["lmb-zero"].layers)
    assert all(layer.parts == 1 for layer in by["ari-p1"].layers)
    assert all(layer.rescale == "none" for layer in by["ebsr-norescale"].layers)
    assert by["bam-d0"].id == by["e2fif"].id  # BAM off is exactly E2FIF: trained once
    for _, a, b in bench.CLAIMS:
        assert a in by and b in by


def _fake(spec_id, seed, psnr, sets):
    return {"diverged": False, "train_seconds": 1.0,
            "sets": {s: {"psnr_y": psnr + i, "ssim_y": 0.9} for i, s in enumerate(sets)}}


def test_aggregate_and_report_table():
    sets = ["Set5", "Set14"]
    specs = bench.study_specs(2, 8, 1, only=["e2fif", "e2fif-noskip", "fp"])
    results = {}
    for label, spec, _ in specs:
        base = {"e2fif": 33.0, "e2fif-noskip": 31.0, "fp": 34.0}[label]
        for seed in (0, 1, 2):
            results[f"{spec.id}:{seed}"] = _fake(spec.id, seed, base + 0.1 * seed, sets)
    agg = bench.aggregate(results, specs, [0, 1, 2], sets)
    assert agg["e2fif"]["Set5"]["psnr_y"] == pytest.approx((33.1, 0.1))
    assert agg["e2fif"]["Set14"]["seeds"] == pytest.approx([34.0, 34.1, 34.2])

    class A:
        scale, channels, blocks, steps, batch, patch, lr = 2, 8, 1, 5, 2, 16, 1e-3
        seeds, jobs, data_root = [0, 1, 2], 2, "/data"
    A.sets = sets
    bicubic = {s: {"psnr_y": 33.67, "ssim_y": 0.93} for s in sets}
    text = bench.report(A, specs, agg, bicubic, "python -m benchmarks.presets", "CPU X", "today")
    assert "Command: `python -m benchmarks.presets` (today). CPU: CPU X" in text
    assert "| bicubic | | 33.67 | 0.9300 | 33.67 | 0.9300 | | |" in text
    assert "| e2fif | " in text and "33.10 ± 0.10" in text and "33.00 / 33.10 / 33.20" in text
    assert "| *ablations* |" in text
    assert "reached by e2fif" in text
    claim = [line for line in text.splitlines() if line.startswith("| E2FIF: the per-conv")][0]
    assert "+2.00 ± 0.00 (holds)" in claim and claim.endswith("| holds |")
    # every row of the results table has the header's column count
    lines = text.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("| spec |"))
    end = next(k for k, line in enumerate(lines) if k > start and not line.startswith("|"))
    assert len({line.count("|") for line in lines[start:end]}) == 1


def test_main_tiny_budget_writes_section_and_resumes(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n<!-- BEGIN other -->\nkeep me\n<!-- END other -->\n")
    argv = ["--steps", "1", "--batch", "2", "--patch", "16", "--channels", "4", "--blocks", "1",
            "--seeds", "0", "--jobs", "1", "--data-root", "none", "--only", "e2fif,xnor",
            "--work-dir", str(tmp_path / "w"), "--out", str(out)]
    assert bench.main(argv) == 0
    text = out.read_text()
    assert "keep me" in text and "<!-- BEGIN presets -->" in text and "| xnor |" in text
    store = json.loads((tmp_path / "w" / "results.json").read_text())
    assert len(store["results"]) == 2
    # a second run with the same budget trains nothing (results are reused)
    before = (tmp_path / "w" / "results.json").stat().st_mtime_ns
    assert bench.main(argv) == 0
    assert (tmp_path / "w" / "results.json").stat().st_mtime_ns == before
