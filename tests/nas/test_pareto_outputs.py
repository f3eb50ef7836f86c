"""The bicubic reference of the Pareto outputs, and ``bsrnas pareto`` with an unreadable
checkpoint, on a tiny real run (the real ProxyEvaluator trains and scores every trial and keeps
its checkpoint).

The reference is checked against an independent computation: MATLAB bicubic upscaling
(``evaluators.data.imresize``) of the default validation items and ``evaluators.metrics.psnr_y``
with ``crop_border = scale``, averaged over the first ``max_val_images`` items.
"""
import json
import os
import re
import shutil
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

sys.path.insert(0, os.path.dirname(__file__))
from search_helpers import components, make_cfg  # noqa: E402

from nas import pareto, search  # noqa: E402
from nas.cli import main  # noqa: E402
from nas.runfolder import RunFolder  # noqa: E402

REF_RE = re.compile(r"\| bicubic on the same validation items: (\d+\.\d\d) dB \(psnr_y\)$")


def independent_bicubic(scale, n_images):
    from evaluators.data import imresize, validation_set
    from evaluators.metrics import psnr_y

    items = list(validation_set(None, scale=scale))[:n_images]
    return float(np.mean([psnr_y(imresize(lr, float(scale)), hr, crop_border=scale) for _, hr, lr in items]))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A 5-trial search over the tiny x2 space, trained and scored by the real proxy (1
    validation item, checkpoints kept); latency and cost are the helpers' formulas, so the
    front (2 architectures or more) does not depend on timing noise."""
    tmp = tmp_path_factory.mktemp("real")
    cfg = make_cfg(tmp, engine__trials=5, engine__feasibility_samples=8, engine__startup_trials=2,
                   evaluator={"steps": 2, "batch": 2, "patch": 16, "max_val_images": 1, "threads": 1},
                   tensorboard__sample_images=True)
    comp = components()
    del comp["evaluator"]  # the real ProxyEvaluator
    s, members = search.run(cfg, progress=False, **comp)
    return s.run.path, members


def table_reference(out):
    first = out.splitlines()[0]
    assert first.split()[:3] == ["trial", "psnr_y", "latency_ms"]  # the column names stay first
    m = REF_RE.search(first)
    return None if m is None else float(m.group(1))


# ----------------------------------------------------------------------------- reference

def test_independent_values_differ_by_item_count():
    """The check below can tell one validation item from two (else it proves little)."""
    assert abs(independent_bicubic(2, 1) - independent_bicubic(2, 2)) > 0.05


def test_search_stores_bicubic_of_its_validation_items(real_run, capsys):
    run_dir, _ = real_run
    study = RunFolder(run_dir).load_study()
    expected = independent_bicubic(2, 1)
    assert study.user_attrs["bicubic_psnr_y"] == pytest.approx(expected, abs=1e-9)
    assert main(["pareto", run_dir, "--no-samples"]) == 0
    assert table_reference(capsys.readouterr().out) == float(f"{expected:.2f}")


def test_reference_line_in_png_and_tensorboard_figure(real_run, monkeypatch, capsys):
    run_dir, _ = real_run
    figures = []
    original = pareto.scatter_figure

    def capture(*args, **kwargs):
        fig = original(*args, **kwargs)
        figures.append(fig)
        return fig

    monkeypatch.setattr(pareto, "scatter_figure", capture)
    assert main(["pareto", run_dir, "--no-samples"]) == 0
    expected = independent_bicubic(2, 1)
    assert len(figures) == 2  # pareto.png and the TensorBoard figure
    for fig in figures:
        lines = [l for l in fig.axes[0].get_lines() if l.get_label() == "bicubic"]
        assert len(lines) == 1
        assert np.allclose(lines[0].get_ydata(), expected, atol=1e-9)
        lo, hi = fig.axes[0].get_ylim()
        assert lo <= expected <= hi  # in view, whether the front is above or below it
    acc = EventAccumulator(os.path.join(run_dir, "search"))
    acc.Reload()
    assert "pareto" in acc.Tags()["images"]


def test_older_run_gets_reference_from_its_config(tmp_path, capsys):
    """A fake evaluator has no bicubic_psnr: the search writes no reference (and does not
    fail); ``bsrnas pareto`` then computes it from config.yaml (max_val_images 2 here) and the
    specs' scale, prints it and stores it."""
    cfg = make_cfg(tmp_path, engine__trials=4, evaluator={"max_val_images": 2})
    s, members = search.run(cfg, progress=False, **components())
    assert "bicubic_psnr_y" not in s.study.user_attrs
    assert "bicubic" not in pareto.format_table(members)
    capsys.readouterr()
    assert main(["pareto", s.run.path, "--no-samples"]) == 0
    expected = independent_bicubic(2, 2)
    assert table_reference(capsys.readouterr().out) == float(f"{expected:.2f}")
    assert RunFolder(s.run.path).load_study().user_attrs["bicubic_psnr_y"] == pytest.approx(expected, abs=1e-9)


def test_proxy_bicubic_psnr_and_its_errors():
    from evaluators.proxy import ProxyEvaluator

    ev = ProxyEvaluator(max_val_images=2)
    got = ev.bicubic_psnr(2)
    assert got["psnr_y"] == pytest.approx(independent_bicubic(2, 2), abs=1e-9)
    assert 0.0 < got["ssim_y"] <= 1.0
    with pytest.raises(ValueError, match=r"scale = 0; allowed: an integer >= 1"):
        ev.bicubic_psnr(0)


def rec(n, psnr, lat):
    return {"trial": n, "psnr_y": psnr, "latency_ms": lat, "bops": 10.0 * lat, "params": 100 + n,
            "model_bytes": 10 + n, "feasible": True, "preset": None, "spec": {"n": n}}


def test_table_and_figure_without_and_with_reference():
    recs = [rec(0, 30.0, 1.0), rec(1, 32.0, 2.0)]
    members = pareto.front(recs)
    plain = pareto.format_table(members)
    with_ref = pareto.format_table(members, reference=31.234)
    assert with_ref.splitlines()[1:] == plain.splitlines()[1:]
    assert with_ref.splitlines()[0].startswith(plain.splitlines()[0])
    assert with_ref.splitlines()[0].endswith("| bicubic on the same validation items: 31.23 dB (psnr_y)")
    with pytest.raises(ValueError, match=r"reference: invalid value nan"):
        pareto.format_table(members, reference=float("nan"))
    fig = pareto.scatter_figure(recs, members, reference=31.234)
    [line] = [l for l in fig.axes[0].get_lines() if l.get_label() == "bicubic"]
    assert list(line.get_ydata()) == [31.234, 31.234]
    assert not [l for l in pareto.scatter_figure(recs, members).axes[0].get_lines() if l.get_label() == "bicubic"]


# ----------------------------------------------------------------------------- unreadable checkpoints

def test_unreadable_checkpoint_still_writes_everything_then_exits_2(real_run, tmp_path, capsys):
    src, _ = real_run
    run_dir = str(tmp_path / "copy")
    shutil.copytree(src, run_dir)
    front = json.load(open(os.path.join(run_dir, "pareto.json")))
    with_ckpt = [m["trial"] for m in front if os.path.isfile(os.path.join(run_dir, "trials", f"{m['trial']:04d}", "checkpoint.pt"))]
    assert len(with_ckpt) >= 2, "the tiny run keeps proxy checkpoints of its front"
    bad = with_ckpt[0]
    with open(os.path.join(run_dir, "trials", f"{bad:04d}", "checkpoint.pt"), "wb") as fh:
        fh.write(b"this is not a checkpoint\n" * 10)
    for name in ("pareto.json", "pareto.csv", "pareto.png", "picked.json"):
        if os.path.exists(os.path.join(run_dir, name)):
            os.remove(os.path.join(run_dir, name))
    shutil.rmtree(os.path.join(run_dir, "search"))  # so the samples below are this command's
    capsys.readouterr()

    code = main(["pareto", run_dir, "--pick", "knee"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in out + err
    rows = [l.split()[0] for l in out.splitlines()[1:] if l.strip() and l.split()[0].isdigit()]
    firsts = {}
    for m in front:  # the table has one line per architecture (a repeated spec: its first trial)
        firsts.setdefault(json.dumps(m["spec"], sort_keys=True), m["trial"])
    assert [int(r) for r in rows] == list(firsts.values())
    assert [m["trial"] for m in json.load(open(os.path.join(run_dir, "pareto.json")))] == [m["trial"] for m in front]
    for name in ("pareto.csv", "pareto.png", "picked.json"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    err_lines = [l for l in err.splitlines() if l.strip()]
    warnings = [l for l in err_lines if l.startswith("bsrnas pareto: warning: ")]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"bsrnas pareto: warning: trials/{bad:04d}/checkpoint.pt: ")
    assert warnings[0].endswith("; SR sample skipped")
    assert err_lines[-1].startswith("bsrnas pareto: error: 1 checkpoint file(s) in ")
    acc = EventAccumulator(os.path.join(run_dir, "search"))
    acc.Reload()
    samples = {t for t in acc.Tags()["images"] if t.startswith("samples/")}
    assert samples == {f"samples/trial_{n:04d}" for n in with_ckpt[1:8]}
    assert "pareto" in acc.Tags()["images"]

    # without SR samples no checkpoint is read: nothing to report
    capsys.readouterr()
    assert main(["pareto", run_dir, "--no-samples"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_front_samples_skips_a_foreign_checkpoint(real_run, tmp_path):
    import torch

    from nas.tensorboard import front_samples

    src, members = real_run
    run_dir = str(tmp_path / "copy")
    shutil.copytree(src, run_dir)
    run = RunFolder(run_dir)
    ckpts = {m["trial"]: os.path.join(run.trial_dir(m["trial"]), "checkpoint.pt") for m in members}
    ckpts = {n: p for n, p in ckpts.items() if os.path.isfile(p)}
    assert len(ckpts) >= 2
    bad = min(ckpts)
    torch.save({"format": "someone-else-1", "weights": [1, 2, 3]}, ckpts[bad])
    skipped = []
    images = front_samples(run, members, skipped=skipped)
    assert [n for n, _ in images] == [n for n in (m["trial"] for m in members) if n in ckpts and n != bad]
    assert [p for p, _ in skipped] == [ckpts[bad]]
    assert "someone-else-1" in skipped[0][1] and "\n" not in skipped[0][1]
