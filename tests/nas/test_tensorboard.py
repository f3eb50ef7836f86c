"""TensorBoard files of a search, read back with TensorBoard's own event reader."""
import os
import sys

import pytest
from optuna.trial import TrialState
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hp_metadata
from tensorboard.plugins.hparams import plugin_data_pb2

sys.path.insert(0, os.path.dirname(__file__))
from search_helpers import components, make_cfg  # noqa: E402

from nas import pareto, search  # noqa: E402
from nas.runfolder import records  # noqa: E402


def load(path):
    acc = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def hparams_content(acc, tag):
    content = acc.PluginTagToContent(hp_metadata.PLUGIN_NAME)[tag]
    data = plugin_data_pb2.HParamsPluginData()
    data.ParseFromString(content)
    return data


def last_scalar(acc, tag):
    return acc.Scalars(tag)[-1].value


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tb")
    cfg = make_cfg(tmp, engine__trials=7, constraints__latency_ms=1.2)
    s, members = search.run(cfg, progress=False, **components())
    return s, members


def test_one_hparams_session_per_trial(finished):
    s, members = finished
    recs = records(s.study)
    on_front = {m["trial"] for m in members}
    assert len(recs) == 7
    for r in recs:
        acc = load(os.path.join(s.run.trial_dir(r["trial"]), "hparams"))  # the session's own run
        start = hparams_content(acc, hp_metadata.SESSION_START_INFO_TAG).session_start_info
        t = s.study.trials[r["trial"]]
        hp = {k: (v.string_value if v.HasField("string_value") else v.number_value)
              for k, v in start.hparams.items()}
        assert set(hp) == set(t.params) | {"preset"}
        for k, v in t.params.items():
            assert hp[k] == (v if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v).lower())
        assert last_scalar(acc, "psnr_y") == pytest.approx(t.values[0], abs=1e-4)
        assert last_scalar(acc, "latency_ms") == pytest.approx(t.user_attrs["metrics"]["latency_ms"], rel=1e-5)
        assert last_scalar(acc, "bops") == pytest.approx(r["bops"], rel=1e-6)
        assert last_scalar(acc, "feasible") == (1.0 if r["feasible"] else 0.0)
        assert last_scalar(acc, "on_front") == (1.0 if r["trial"] in on_front else 0.0)


def test_experiment_config_lists_hparams_and_metrics(finished):
    s, _ = finished
    acc = load(s.run.file("hparams"))
    exp = hparams_content(acc, hp_metadata.EXPERIMENT_TAG).experiment
    names = {h.name for h in exp.hparam_infos}
    all_params = set().union(*(t.params for t in s.study.get_trials(states=(TrialState.COMPLETE,))))
    assert names == all_params | {"preset"}
    metrics = {m.name.tag for m in exp.metric_infos}
    assert {"psnr_y", "latency_ms", "bops", "params", "feasible", "on_front"} <= metrics


def test_hypervolume_scalar_after_each_trial(finished):
    s, members = finished
    acc = load(s.run.search_tb_dir)
    hv = acc.Scalars("hypervolume")
    steps = sorted({e.step for e in hv})
    assert steps == list(range(7))
    ref = tuple(s.study.user_attrs["hv_reference"])
    assert ref[1] == 1.2  # the latency bound is the reference cost
    expected = pareto.hypervolume_2d([(m["psnr_y"], m["latency_ms"]) for m in members], ref)
    assert hv[-1].value == pytest.approx(expected, rel=1e-5)
    # non-decreasing over trials (the front only improves)
    by_step = {}
    for e in hv:
        by_step[e.step] = e.value
    vals = [by_step[k] for k in steps]
    assert all(b >= a - 1e-6 for a, b in zip(vals, vals[1:]))
    assert "pareto" in acc.Tags()["images"]
