"""Fixtures of the ops tests: one intra-op thread per test (the tensors are tiny, and the
2-core machine is shared), restored afterwards so other test folders are unaffected."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
