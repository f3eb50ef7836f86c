"""HParams sessions of a search, end to end: the real ProxyEvaluator (whose training writes its
own ``train/loss`` scalars into ``trials/NNNN/``), read back through TensorBoard's own
EventMultiplexer and the hparams plugin's ListSessionGroups handler -- a fresh run, a resume
after ``kill -9``, two workers on one run folder -- plus unit tests of the session files.

Expected values come from the study and ``metrics.json``, never from nas.tensorboard.
"""
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from optuna.trial import TrialState
from tensorboard import context as tb_context
from tensorboard.backend.event_processing import data_provider as tb_data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups
from tensorboard.plugins.hparams import metadata as hp_metadata

from nas import config, pareto, search
from nas.runfolder import RunFolder, records
from nas.tensorboard import SearchBoard

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(REPO, "configs", "search", "quickstart.yaml")


# ----------------------------------------------------------------------------- readers

def multiplexer(run_dir):
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(run_dir)
    mux.Reload()
    return mux


def plugin_sessions(run_dir):
    """{session name: {metric: last value}} as the hparams plugin lists them (the dashboard)."""
    mux = multiplexer(run_dir)
    provider = tb_data_provider.MultiplexerDataProvider(mux, run_dir)
    ctx = base_plugin.TBContext(logdir=run_dir, multiplexer=mux, data_provider=provider)
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=10_000,
        allowed_statuses=[api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE,
                          api_pb2.STATUS_RUNNING])
    response = list_session_groups.Handler(tb_context.RequestContext(), backend_context.Context(ctx),
                                           "", request).run()
    out = {}
    for group in response.session_groups:
        for session in group.sessions:
            assert session.name not in out, f"session {session.name} listed twice"
            out[session.name] = {m.name.tag: m.value for m in session.metric_values}
    assert response.total_size == len(response.session_groups)
    return out, mux


def session_starts(trial_dir):
    """How many session-start summaries all event files under a trial folder hold (a duplicate
    the dashboard would fold into one run would still count here)."""
    n = 0
    for path in glob.glob(os.path.join(trial_dir, "**", "*tfevents*"), recursive=True):
        for event in EventFileLoader(path).Load():
            n += sum(v.tag == hp_metadata.SESSION_START_INFO_TAG for v in event.summary.value)
    return n


def check_sessions(run_dir, expect_complete=None):
    """Exactly one session per COMPLETE trial, none for any other trial folder, metrics equal
    to the study's and metrics.json's values, on_front equal to the current front."""
    run = RunFolder(run_dir)
    study = run.load_study()
    done = {t.number: t for t in study.get_trials(states=(TrialState.COMPLETE,))}
    if expect_complete is not None:
        assert len(done) == expect_complete
    sessions, mux = plugin_sessions(run_dir)
    assert set(sessions) == {f"trials/{n:04d}/hparams" for n in done}, sorted(sessions)
    front = {r["trial"] for r in pareto.front(records(study), "latency_ms")}
    for n, t in done.items():
        got = sessions[f"trials/{n:04d}/hparams"]
        m = run.read_metrics(n)
        assert m["state"] == "COMPLETE"
        assert got["psnr_y"] == pytest.approx(t.values[0], rel=1e-6)
        assert got["psnr_y"] == pytest.approx(m["psnr_y"], rel=1e-6)
        assert got["latency_ms"] == pytest.approx(m["latency_ms"], rel=1e-6)
        assert got["latency_ms"] == pytest.approx(t.values[1], rel=1e-6)
        assert got["on_front"] == (1.0 if n in front else 0.0)
        assert session_starts(run.trial_dir(n)) == 1
        if m.get("trained"):  # the proxy's own training scalars: a separate run, no session
            assert "train/loss" in mux.Runs()[f"trials/{n:04d}"]["tensors"]
    for d in glob.glob(os.path.join(run_dir, "trials", "*")):
        if int(os.path.basename(d)) not in done:
            assert session_starts(d) == 0, d
    return study, done


# ----------------------------------------------------------------------------- set-up

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One latency cache for the module: the per-layer table is measured once."""
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def env_cache(cache, monkeypatch):
    monkeypatch.setenv("BSRNAS_CACHE", cache)
    return cache


def tiny_quickstart(tmp_path):
    """configs/search/quickstart.yaml at a tiny proxy budget, as a config file (for the CLI)."""
    with open(QUICKSTART) as fh:
        data = yaml.safe_load(fh)
    data["space"] = os.path.join(REPO, data["space"])
    # single fidelity at 4 steps (the rungs' own end-to-end tests are in test_rungs.py)
    data["evaluator"].update(steps=4, rungs=None, batch=2, patch=16, max_val_images=1, threads=1)
    data["latency"].update(input_size=[3, 8, 8], threads=1)
    data["engine"].update(feasibility_samples=4)
    data["tensorboard"]["sample_images"] = False
    path = os.path.join(str(tmp_path), "quick.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(data, fh)
    return path


def load_cfg(path, run_dir, trials):
    return config.load(path, {"run_dir": run_dir, "engine.trials": trials})


def spawn_search(cfg_path, run_dir, trials, cache, resume=False):
    cmd = [sys.executable, "-m", "nas.cli", "search", "--config", cfg_path, "--run-dir", run_dir,
           "--trials", str(trials), "--no-progress"] + (["--resume"] if resume else [])
    env = dict(os.environ, BSRNAS_CACHE=cache, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, proc, timeout=120.0):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"search process exited {proc.returncode} before {path} appeared:\n{err[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


# ----------------------------------------------------------------------------- end to end

def test_fresh_search_one_session_per_trial(tmp_path, env_cache):
    """4 quickstart trials (the first presets) trained by the real proxy: the dashboard lists
    4 sessions with the study's psnr_y / latency_ms (the bug: 0 sessions, the training's
    events file taken for one)."""
    cfg = load_cfg(tiny_quickstart(tmp_path), str(tmp_path / "run"), 4)
    s, _ = search.run(cfg, progress=False)
    _, done = check_sessions(s.run.path, expect_complete=4)
    assert all(s.run.read_metrics(n)["trained"] for n in done)


def test_resume_after_kill_writes_missing_sessions(tmp_path, env_cache):
    """kill -9 during trial 1; trial 0's session removed as if the kill came between telling
    trial 0 and publishing its session. --resume to 4 trials: every COMPLETE trial has exactly
    one session (trial 0's rewritten, none duplicated), the killed trial none."""
    cfg_path = tiny_quickstart(tmp_path)
    run_dir = str(tmp_path / "run")
    proc = spawn_search(cfg_path, run_dir, 4, env_cache)
    # trial 1's folder appears only after trial 0 was told and logged (the engine's loop order)
    wait_for(os.path.join(run_dir, "trials", "0001", "spec.json"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    run = RunFolder(run_dir)
    assert run.read_metrics(0)["state"] == "COMPLETE"
    study = run.load_study()
    states = {t.number: t.state for t in study.get_trials()}
    assert states[0] == TrialState.COMPLETE
    session0 = os.path.join(run.trial_dir(0), "hparams")
    assert session_starts(run.trial_dir(0)) == 1
    for f in glob.glob(os.path.join(session0, "*")):
        os.remove(f)  # the session of a told trial not written yet
    assert session_starts(run.trial_dir(0)) == 0

    s, _ = search.run(load_cfg(cfg_path, run_dir, 4), resume=True, progress=False)
    study, done = check_sessions(run_dir, expect_complete=4)
    assert 0 in done
    killed = [t.number for t in study.get_trials() if t.state == TrialState.FAIL]
    for n in killed:  # the trial the kill interrupted (if it had not finished yet)
        assert f"trials/{n:04d}/hparams" not in plugin_sessions(run_dir)[0]


def running_untagged(run_dir):
    """RUNNING trials without their worker tag yet (asked, spec not sampled yet)."""
    study = RunFolder(run_dir).load_study()
    return [t.number for t in study.get_trials(states=(TrialState.RUNNING,)) if not t.user_attrs.get("worker")]


def tagged_by(run_dir, pid):
    study = RunFolder(run_dir).load_study()
    return [t.number for t in study.get_trials() if t.user_attrs.get("worker", "").endswith(f":{pid}")]


@pytest.mark.slow  # two search processes at once on a 2-core machine (~20-40 s)
def test_two_workers_share_one_run_folder(tmp_path, env_cache):
    """A first worker and a second one joining with --resume (two processes): each logs every
    COMPLETE trial it sees, the other's included; still exactly one session per trial.

    The first worker is paused (SIGSTOP) while the second starts, at a moment when none of its
    RUNNING trials lacks the worker tag: a resuming process takes an untagged RUNNING trial for
    a dead one's and fails it (nas.search.is_stale), a race of the join itself, not of the
    TensorBoard files this test is about."""
    cfg_path = tiny_quickstart(tmp_path)
    run_dir = str(tmp_path / "run")
    target = 8
    first = spawn_search(cfg_path, run_dir, target, env_cache)
    second = None
    try:
        wait_for(os.path.join(run_dir, "trials", "0001", "spec.json"), first)
        for _ in range(50):
            first.send_signal(signal.SIGSTOP)
            if not running_untagged(run_dir):
                break
            first.send_signal(signal.SIGCONT)
            time.sleep(0.05)
        else:
            pytest.fail("the first worker never paused outside the ask -> tag window")
        second = spawn_search(cfg_path, run_dir, target, env_cache, resume=True)
        deadline = time.time() + 120
        while not tagged_by(run_dir, second.pid):  # the second worker is past its set-up
            if second.poll() is not None or time.time() > deadline:
                break
            time.sleep(0.2)
        first.send_signal(signal.SIGCONT)
        outs = [p.communicate(timeout=240) for p in (first, second)]
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
    assert first.returncode == 0, outs[0][1][-3000:]
    assert second.returncode == 0, outs[1][1][-3000:]
    study, done = check_sessions(run_dir)
    assert target <= len(done) <= target + 1
    workers = {t.user_attrs["worker"].rpartition(":")[2] for t in done.values()}
    assert workers == {str(first.pid), str(second.pid)}


# ----------------------------------------------------------------------------- unit

def rec(n, psnr, lat):
    return {"trial": n, "psnr_y": psnr, "latency_ms": lat, "bops": 100.0 * lat, "params": 10 + n,
            "model_bytes": 2 + n, "feasible": True, "preset": None, "spec": {"n": n},
            "params_choice": {"blocks": 2 + n % 2, "tail": "fp_one_stage"}}


def write_training_scalars(trial_dir):
    """What evaluators.training writes into a trial folder before the trial is told."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(log_dir=trial_dir)
    for step in range(3):
        w.add_scalar("train/loss", 1.0 / (step + 1), step)
    w.close()


def test_training_scalars_are_not_a_session(tmp_path):
    run = RunFolder(str(tmp_path / "run"))
    recs = [rec(0, 30.0, 2.0), rec(1, 31.0, 3.0)]
    for r in recs:
        write_training_scalars(run.trial_dir(r["trial"]))
    SearchBoard(run, "latency_ms", (0.0, 10.0)).update(recs)
    sessions, _ = plugin_sessions(run.path)
    assert set(sessions) == {"trials/0000/hparams", "trials/0001/hparams"}
    assert sessions["trials/0001/hparams"]["psnr_y"] == pytest.approx(31.0)
    assert sessions["trials/0000/hparams"]["latency_ms"] == pytest.approx(2.0)


def test_racing_writers_publish_one_session(tmp_path, monkeypatch):
    """Two processes checked "no session yet" before either wrote (the second board is made to
    see none): the trial still gets exactly one session, and the second writer's on_front (from
    its later view of the front) is what the dashboard shows."""
    run = RunFolder(str(tmp_path / "run"))
    a = SearchBoard(run, "latency_ms", (0.0, 10.0))
    b = SearchBoard(run, "latency_ms", (0.0, 10.0))
    a.update([rec(0, 30.0, 2.0)])                        # A: trial 0 on the front
    monkeypatch.setattr(b, "_has_session", lambda number: False)
    b.update([rec(0, 30.0, 2.0), rec(1, 31.0, 1.0)])     # B: trial 1 dominates trial 0
    assert session_starts(run.trial_dir(0)) == 1
    assert session_starts(run.trial_dir(1)) == 1
    sessions, _ = plugin_sessions(run.path)
    assert sessions["trials/0000/hparams"]["on_front"] == 0.0
    assert sessions["trials/0001/hparams"]["on_front"] == 1.0
    leftovers = [name for n in (0, 1) for name in os.listdir(os.path.join(run.trial_dir(n), "hparams"))
                 if "tfevents" not in name]
    assert leftovers == []  # no temporary (hidden) file left behind


def test_stale_on_front_is_relogged_on_resume(tmp_path):
    """A process wrote trial 0's session (on the front) and was killed after trial 1 (which
    dominates it) was told but before it updated trial 0's flag: the resuming process must
    correct it."""
    run = RunFolder(str(tmp_path / "run"))
    SearchBoard(run, "latency_ms", (0.0, 10.0)).update([rec(0, 30.0, 2.0)])
    recs = [rec(0, 30.0, 2.0), rec(1, 31.0, 1.0)]
    resumed = SearchBoard(run, "latency_ms", (0.0, 10.0))
    resumed.resume_from(recs)
    resumed.update(recs)
    sessions, _ = plugin_sessions(run.path)
    by_trial = {int(name.split("/")[1]): m for name, m in sessions.items()}  # any layout
    assert sorted(by_trial) == [0, 1] and len(sessions) == 2
    assert by_trial[0]["on_front"] == 0.0
    assert by_trial[1]["on_front"] == 1.0
    assert session_starts(run.trial_dir(0)) == 1


def test_session_of_an_older_run_folder_is_not_duplicated(tmp_path):
    """Run folders of earlier versions hold the session in trials/NNNN itself (beside the
    training scalars): a resume recognises it by its session-start summary."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    run = RunFolder(str(tmp_path / "run"))
    r0 = rec(0, 30.0, 2.0)
    write_training_scalars(run.trial_dir(0))
    _, ssi, sei = hparams({"blocks": 2, "tail": "fp_one_stage", "preset": "-"},
                          {"psnr_y": 30.0, "latency_ms": 2.0, "on_front": 1.0})
    w = SummaryWriter(log_dir=run.trial_dir(0))
    w.file_writer.add_summary(ssi)
    w.file_writer.add_summary(sei)
    for k, v in (("psnr_y", 30.0), ("latency_ms", 2.0), ("on_front", 1.0)):
        w.add_scalar(k, v, 0)
    w.close()
    board = SearchBoard(run, "latency_ms", (0.0, 10.0))
    board.resume_from([r0])
    board.update([r0, rec(1, 31.0, 1.0)])
    assert session_starts(run.trial_dir(0)) == 1
    sessions, _ = plugin_sessions(run.path)
    assert set(sessions) == {"trials/0000", "trials/0001/hparams"}
    assert sessions["trials/0000"]["on_front"] == 0.0  # the flag goes to the run holding it
