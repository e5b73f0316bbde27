"""Build the compiled kernels of crnn; all metadata lives in pyproject.toml.

Release builds carry no debug information and no symbol table beyond the
exported one (compiled with ``-g0``, linked with ``-Wl,-s``): Python's own
``-g`` would otherwise make most of the wheel. Set ``CRNN_DEBUG=1`` in the
environment to build with debug information, bounds checking and
initialisation checks on every memoryview access (slow; for tests and CI).
Set ``CRNN_SANITIZE=1`` for that debug build instrumented by AddressSanitizer
and UndefinedBehaviorSanitizer (any report aborts); run Python with the
sanitizer runtimes preloaded, as ``.ci/run`` does::

    LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 python -m pytest tests/kernels
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

SANITIZE = os.environ.get("CRNN_SANITIZE", "0") not in ("", "0")
DEBUG = SANITIZE or os.environ.get("CRNN_DEBUG", "0") not in ("", "0")
SANITIZERS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
              "-fno-omit-frame-pointer"]

COMPILER_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}

KERNELS = ["abi", "blas", "activations", "recurrence", "elman", "lstm", "gru", "stack", "optim"]

extensions = [
    Extension(
        f"crnn.kernels.{name}",
        [f"src/crnn/kernels/{name}.pyx"],
        include_dirs=["src/crnn/kernels"],
        # -fno-trapping-math lets the compiler vectorize the branch-free
        # element-wise passes of elementwise.h, and -fno-math-errno their
        # square roots (crnn reads neither FP flags nor errno).
        extra_compile_args=(SANITIZERS + ["-O1", "-g"] if SANITIZE
                            else ["-O0", "-g"] if DEBUG else ["-O3", "-g0"])
        + ["-fno-trapping-math", "-fno-math-errno"],
        extra_link_args=SANITIZERS if SANITIZE else [] if DEBUG else ["-Wl,-s"],
    )
    for name in KERNELS
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=COMPILER_DIRECTIVES,
        build_dir=("build/cython-sanitize" if SANITIZE else "build/cython-debug" if DEBUG
                   else "build/cython"),
    ),
)
