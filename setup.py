"""Only what setup.cfg cannot say: the native xnor-popcount extension (see ops/native/).

The whole extension is compiled for baseline x86-64; the AVX2 and AVX-512 code sits in its own
translation units behind ``#pragma GCC target`` and is chosen at run time
(``__builtin_cpu_supports``), so the package builds and runs on CPUs with AVX2 or neither.
``-ffp-contract=off`` keeps the fused epilogue's float rounding identical on every path.
"""
from setuptools import setup

try:
    from pybind11.setup_helpers import Pybind11Extension, ParallelCompile
except ImportError:  # pybind11 missing: install the pure-Python package (reference fallback)
    ext_modules = []
else:
    ParallelCompile("NPY_NUM_BUILD_JOBS", default=2).install()
    # The x86 translation units compile to forwarding stubs on other machines (their #else).
    sources = ["ops/native/src/binding.cpp", "ops/native/src/kernel_scalar.cpp",
               "ops/native/src/kernel_popcnt.cpp", "ops/native/src/kernel_avx2.cpp",
               "ops/native/src/kernel_avx512.cpp"]
    ext_modules = [
        Pybind11Extension(
            "ops.native._bsrnas_native",
            sources,
            depends=["ops/native/src/kernel.h", "ops/native/src/kernel_body.inc",
                     "ops/native/src/kernel_word.inc",
                     "ops/native/src/thread_pool.h"],
            cxx_std=17,
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-predictive-commoning"],
        )
    ]

setup(ext_modules=ext_modules)
