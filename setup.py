"""Only what setup.cfg cannot say: the native xnor-popcount extension (see ops/native/).

The whole extension is compiled for baseline x86-64; the AVX2, AVX-512 and AMX code sits in its
own translation units behind ``#pragma GCC target`` and is chosen at run time
(``__builtin_cpu_supports``, CPUID and the OS's grant of the AMX tile state), so the package
builds and runs on CPUs with AVX2 or neither.
``-ffp-contract=off`` keeps the fused epilogue's float rounding identical on every path (its only
fused multiply-adds are the explicit ones that reproduce PyTorch's BN rounding, ops/fma.py).

The YAML configs of the top-level ``configs/`` folder (one copy, in the checkout) are shipped in
the built package as ``nas/_configs/`` (``build_py`` below), so an installed ``bsrnas`` finds
``configs/train/cpu.yaml`` and the like outside a checkout. An editable install maps nothing
there: it runs from the checkout, whose ``configs/`` is at hand.
"""
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

#: the folder copied, and where it lands inside the built package
CONFIGS, CONFIGS_TARGET = "configs", os.path.join("nas", "_configs")


class build_py(_build_py):
    """setuptools' build_py, plus the YAML files under ``configs/`` copied to
    ``<build_lib>/nas/_configs/`` (same relative paths)."""

    def _config_files(self):
        """(source, target) pairs, sorted; targets relative to ``build_lib``."""
        root = Path(CONFIGS)
        if not root.is_dir():  # e.g. an sdist made without MANIFEST.in's ``graft configs``
            raise FileNotFoundError(f"build_py: folder {root.resolve()} (the YAML configs, "
                                    f"shipped as {CONFIGS_TARGET}) not found; build from a "
                                    "checkout or from an sdist that holds configs/")
        return [(str(f), os.path.join(CONFIGS_TARGET, *f.relative_to(root).parts))
                for f in sorted(root.rglob("*.yaml")) if f.is_file()]

    def run(self):
        super().run()
        if self.editable_mode:
            return
        for src, rel in self._config_files():
            target = os.path.join(self.build_lib, rel)
            self.mkpath(os.path.dirname(target))
            self.copy_file(src, target)

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        return outputs + [os.path.join(self.build_lib, rel) for _, rel in self._config_files()]

    def get_output_mapping(self):
        mapping = dict(super().get_output_mapping())
        mapping.update((os.path.join(self.build_lib, rel), src)
                       for src, rel in self._config_files())
        return mapping

try:
    from pybind11.setup_helpers import Pybind11Extension, ParallelCompile
except ImportError:  # pybind11 missing: install the pure-Python package (reference fallback)
    ext_modules = []
else:
    ParallelCompile("NPY_NUM_BUILD_JOBS", default=2).install()
    # The x86 translation units compile to forwarding stubs on other machines (their #else).
    sources = ["ops/native/src/binding.cpp", "ops/native/src/kernel_scalar.cpp",
               "ops/native/src/kernel_popcnt.cpp", "ops/native/src/kernel_avx2.cpp",
               "ops/native/src/kernel_avx512.cpp", "ops/native/src/kernel_amx.cpp"]
    ext_modules = [
        Pybind11Extension(
            "ops.native._bsrnas_native",
            sources,
            depends=["ops/native/src/kernel.h", "ops/native/src/kernel_body.inc",
                     "ops/native/src/kernel_word.inc", "ops/native/src/kernel_avx512_isa.inc",
                     "ops/native/src/thread_pool.h"],
            cxx_std=17,
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-predictive-commoning"],
        )
    ]

setup(ext_modules=ext_modules, cmdclass={"build_py": build_py})
