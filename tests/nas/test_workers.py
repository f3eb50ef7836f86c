"""Two worker processes on one study (shared SQLite storage in the run folder)."""
import os
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from nas.runfolder import RunFolder

HERE = os.path.dirname(os.path.abspath(__file__))


def spawn(tmp_path, trials, resume):
    code = (f"import sys; sys.path.insert(0, {HERE!r}); import search_helpers as h; "
            f"h.worker_main({str(tmp_path)!r}, {trials}, {resume})")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # two processes importing torch: ~20-50 s here
def test_two_workers_share_one_study(tmp_path):
    target = 10
    first = spawn(tmp_path, target, False)
    db = os.path.join(str(tmp_path), "run", "study.db")
    deadline = time.time() + 60
    while not os.path.exists(db) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    second = spawn(tmp_path, target, True)
    outs = [p.communicate(timeout=180) for p in (first, second)]
    assert first.returncode == 0, outs[0][1][-2000:]
    assert second.returncode == 0, outs[1][1][-2000:]
    study = RunFolder(os.path.join(str(tmp_path), "run")).load_study()
    trials = study.get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert target <= len(done) <= target + 1  # at most one extra trial per extra worker
    assert not [t for t in trials if t.state != TrialState.COMPLETE]
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) == 2, workers
    assert sorted(t.number for t in done) == list(range(len(done)))
