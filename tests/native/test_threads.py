"""The kernel's persistent worker pool: results independent of the thread count, safe with
concurrent Python callers (the GIL is released), and usable again in a forked child."""
import os
import sys
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ops.native as native


def truth(x, w):
    return F.conv2d(torch.where(x >= 0, 1.0, -1.0), torch.where(w >= 0, 1.0, -1.0),
                    padding=w.shape[-1] // 2).int().numpy()


def test_thread_counts_agree():
    x, w = torch.randn(2, 96, 13, 7), torch.randn(24, 96, 3, 3)
    want = truth(x, w)
    for t in (1, 2, 3, 5, 26, 64):
        got = native.conv2d(native.pack_activations(x, threads=t), native.pack_weights(w), 96, 24, threads=t)
        np.testing.assert_array_equal(got[0], want, err_msg=f"threads={t}")


def test_concurrent_callers():
    cases = [(torch.randn(1, 40, 9, 9), torch.randn(16, 40, 3, 3)) for _ in range(4)]
    results, errors = {}, []

    def work(i):
        try:
            x, w = cases[i]
            for _ in range(5):
                results[i] = native.conv2d(native.pack_activations(x, threads=2), native.pack_weights(w),
                                           40, 16, threads=2)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    for i, (x, w) in enumerate(cases):
        np.testing.assert_array_equal(results[i][0], truth(x, w))


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork()")
def test_pool_works_after_fork():
    x, w = torch.randn(1, 20, 6, 6), torch.randn(8, 20, 3, 3)
    xb, wb = native.pack_activations(x, threads=2), native.pack_weights(w)
    want = native.conv2d(xb, wb, 20, 8, threads=2)  # parent pool started
    pid = os.fork()
    if pid == 0:  # child: the parent's workers do not exist here
        ok = np.array_equal(native.conv2d(xb, wb, 20, 8, threads=2), want)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_default_threads_follow_torch():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert native.default_threads() == 1
        torch.set_num_threads(3)
        assert native.default_threads() == 3
    finally:
        torch.set_num_threads(before)
    assert native.default_threads(5) == 5
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"):
            native.default_threads(bad)
