"""Checkpoint files that would run code if unpickled (import as ``tests.evil_pickles``).

Unpickling ``TouchMarker`` creates the file ``marker`` (``pathlib.Path.touch``), a stand-in for
any code; ``SystemTouch`` runs a shell command (``os.system``) that does the same. A test passes
such a file to the product and asserts that the marker never appears.
"""
import os
import pathlib
import pickle
import shlex

import torch


class TouchMarker:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class SystemTouch(TouchMarker):
    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def write_evil(path, marker, how="torch", evil=TouchMarker):
    """A checkpoint-looking dict holding ``evil(marker)``, written by ``torch.save`` (``how =
    "torch"``) or ``pickle.dump`` (``"pickle"``); returns the path."""
    payload = {"format": "bsrnas-checkpoint-1", "x": evil(marker)}
    if how == "torch":
        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    return path
