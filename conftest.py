"""Root pytest configuration: docstring examples of the package are collected as tests
(``--doctest-modules`` in pyproject.toml); modules that need torch are left out when torch is absent."""

from __future__ import annotations

import importlib.util
import os

# One BLAS/OpenMP thread per test process: the suite's matrices are small, and multi-threaded BLAS on a
# busy 2-core machine can be 100x slower (measured here: eigvals of a 128x128 matrix 5 s vs 0.03 s).
# setdefault: a caller's explicit choice wins. Set before any test module imports numpy or torch.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

collect_ignore_glob: list[str] = []
if importlib.util.find_spec("torch") is None:
    collect_ignore_glob += ["latticekit/flows/*", "latticekit/app/flows/*", "backends/_kernels_torch.py"]
