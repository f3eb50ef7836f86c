"""Packaging: the YAML configs ship inside the package as ``nas/_configs/``; ``benchmarks`` is a
folder of scripts in the checkout, not an installed package.

The builds run on a copy of the checkout in a temporary folder, so they never write ``build/``
or ``*.egg-info`` into the working tree.
"""
from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.relative_to(REPO / "configs").as_posix()
                 for p in (REPO / "configs").rglob("*.yaml"))
#: with pybind11 importable the wheel build compiles the C++ extension (about a minute)
COMPILES = importlib.util.find_spec("pybind11") is not None
SKIP_DIRS = {".git", ".venv", "build", "dist", "tests", "runs", "__pycache__", ".hypothesis",
             ".pytest_cache", "tmp"}


def _slow_if(cond):
    return pytest.mark.slow if cond else (lambda f: f)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A copy of the checkout's sources (no VCS, venv, tests, build outputs)."""
    dst = tmp_path_factory.mktemp("src") / "bsrnas"

    def ignore(folder, names):
        return [n for n in names if n in SKIP_DIRS or n.endswith((".egg-info", ".so", ".pyc"))]

    shutil.copytree(REPO, dst, ignore=ignore)
    return dst


def _run(args, cwd, timeout=600):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_setup_cfg_does_not_install_benchmarks():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    include = [t.strip() for t in cfg["options.packages.find"]["include"].replace("\n", ",")
               .split(",") if t.strip()]
    assert "nas" in include and "evaluators" in include
    assert not [t for t in include if t.split(".")[0] == "benchmarks"]


def test_configs_exist_to_ship():
    assert {"train/cpu.yaml", "search/quickstart.yaml", "space/default.yaml"} <= set(CONFIGS)


def test_build_py_copies_the_configs_into_nas(source, tmp_path):
    lib = tmp_path / "lib"
    _run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)], cwd=source)
    shipped = sorted(p.relative_to(lib / "nas" / "_configs").as_posix()
                     for p in (lib / "nas" / "_configs").rglob("*") if p.is_file())
    assert shipped == CONFIGS
    for rel in CONFIGS:
        assert (lib / "nas" / "_configs" / rel).read_bytes() == (REPO / "configs" / rel).read_bytes()
    assert (lib / "nas" / "cli.py").is_file() and not (lib / "benchmarks").exists()


@_slow_if(COMPILES)
def test_wheel_ships_configs_and_no_benchmarks(source, tmp_path):
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(tmp_path), "."], cwd=source)
    (wheel,) = tmp_path.glob("bsrnas-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "nas/_configs/train/cpu.yaml" in names
    assert "nas/_configs/search/quickstart.yaml" in names
    assert {f"nas/_configs/{rel}" for rel in CONFIGS} <= set(names)
    assert "nas/cli.py" in names and "evaluators/latency/__init__.py" in names
    assert not [n for n in names if n.startswith("benchmarks/")]
    top = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert "benchmarks" not in zipfile.ZipFile(wheel).read(top).decode().split()


def test_sdist_carries_the_configs_the_wheel_build_needs(source, tmp_path):
    _run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)], cwd=source)
    (sdist,) = tmp_path.glob("bsrnas-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {f"configs/{rel}" for rel in CONFIGS} <= names
    assert "ops/native/src/binding.cpp" in names and "setup.py" in names
