"""The packed runtime's steady heap (ops/native/heap.py): freed activations are reused instead of
being page-faulted back in on every forward. Checked by counting the process's minor page faults
(getrusage) over repeated forwards, in fresh processes with and without the policy."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, resource, torch
from torch import nn
import ops.native as native
from ops import BinaryConv2d
torch.set_num_threads(1)
before = native.info()["heap"]
# an FP tail like SRResNet's at 32 channels: MB-sized activations allocated by PyTorch each call
model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), BinaryConv2d(32, 32, 3),
                      nn.Conv2d(32, 128, 3, padding=1), nn.PixelShuffle(2),
                      nn.Conv2d(32, 3, 3, padding=1)).eval()
compiled = native.compile(model, threads=1)
x = torch.rand(1, 3, 64, 64)
for _ in range(3):
    compiled(x)
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    compiled(x)
f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"before": before, "after": native.info()["heap"], "faults": (f1 - f0) / 5}))
"""


def _run(env_value):
    env = dict(os.environ)
    env.pop("BSRNAS_STEADY_HEAP", None)
    if env_value is not None:
        env["BSRNAS_STEADY_HEAP"] = env_value
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt and getrusage minor faults: Linux only")
def test_compile_makes_the_heap_steady_and_forwards_stop_page_faulting():
    steady = _run(None)
    default = _run("0")
    assert steady["before"] == "undecided" and steady["after"] == "steady"
    assert default["after"] == "default"
    # glibc's default policy hands the MB-sized buffers back and faults them in again each call
    assert default["faults"] > 100, default
    # steady: far fewer faults than the default (a full run on AMD Zen 5 once gave 102 against
    # 992); a quarter of the default's leaves room for what other load adds
    assert steady["faults"] < 0.25 * default["faults"], (steady, default)
