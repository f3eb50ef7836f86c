"""space.files (atomic writes, YAML files) and evaluators.threads (scoped torch threads)."""
import os

import pytest
import torch

from evaluators.threads import torch_threads
from space.files import atomic_write, read_yaml


def test_atomic_write_text_bytes_and_callable(tmp_path):
    p = tmp_path / "sub" / "f.txt"
    atomic_write(p, "héllo\n")
    assert p.read_bytes() == "héllo\n".encode("utf-8")
    atomic_write(p, b"\x00\x01", durable=True)
    assert p.read_bytes() == b"\x00\x01"
    atomic_write(p, lambda fh: fh.write(b"abc"))
    assert p.read_bytes() == b"abc"
    assert os.listdir(p.parent) == ["f.txt"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old")

    def boom(fh):
        fh.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, boom)
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_read_yaml_errors_name_what_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--config: file .*nope\.yaml.* not found"):
        read_yaml(tmp_path / "nope.yaml", "--config")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match=r"space: .*bad\.yaml.* is not valid YAML"):
        read_yaml(bad, "space")
    good = tmp_path / "good.yaml"
    good.write_text("a: {b: 1e-3, c: [1, 2]}\n")
    assert read_yaml(good) == {"a": {"b": "1e-3", "c": [1, 2]}}  # PyYAML: 1e-3 is a string


def test_torch_threads_scoped_and_checked():
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None) as n:
        assert n == before
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            raise RuntimeError("x")
    assert torch.get_num_threads() == before
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads: invalid value"):
            with torch_threads(bad):
                pass
