"""``torch_threads(n)``: torch's intra-op thread count set to ``n`` for a block, restored after.

``None`` leaves the count as it is; anything but ``None`` or an integer >= 1 raises
``ValueError`` naming the value. Used by the proxy training, the training loop and the latency
measurements, so one rule decides how many threads a piece of work gets.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch


@contextlib.contextmanager
def torch_threads(n: Optional[int]) -> Iterator[int]:
    """Run the body with ``torch.set_num_threads(n)``; yields the count in force."""
    previous = torch.get_num_threads()
    if n is None:
        yield previous
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads: invalid value {n!r}; allowed: null or an integer >= 1")
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)
