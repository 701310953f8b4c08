"""Linear algebra for lattice operators: batched Krylov solvers and dense fallbacks.

* :func:`cg` — conjugate gradient for Hermitian positive definite systems, batched over chains with
  per-chain convergence masks; :func:`cgne`, :func:`cgnr` for ``D x = b``; :func:`bicgstab`.
* :func:`dense_matrix`, :func:`logdet_normal`, :func:`slogdet_dense` — exact results on small lattices.
* :func:`extremal_eigenvalues`, :func:`condition_number` (Lanczos with a Ritz-residual convergence check; it
  warns with :class:`EigenvalueConvergenceWarning` when it stops short), :func:`lanczos`, :func:`power_iteration`.

Examples
--------
>>> import numpy as np
>>> from latticekit.linalg import cg
>>> x, info = cg(lambda v: 2.0 * v, np.ones(4))
>>> x.tolist(), bool(info.converged)
([0.5, 0.5, 0.5, 0.5], True)
"""

from __future__ import annotations

from .cg import ConvergenceError, SolverInfo, bicgstab, cg, cgne, cgnr, inner, norm2
from .dense import dense_matrix, logdet_normal, slogdet_dense, support_indices
from .eigen import (EigenvalueConvergenceWarning, condition_number, eigvalsh_dense, extremal_eigenvalues, lanczos,
                    power_iteration)

__all__ = [
    "ConvergenceError",
    "EigenvalueConvergenceWarning",
    "SolverInfo",
    "bicgstab",
    "cg",
    "cgne",
    "cgnr",
    "condition_number",
    "dense_matrix",
    "eigvalsh_dense",
    "extremal_eigenvalues",
    "inner",
    "lanczos",
    "logdet_normal",
    "norm2",
    "power_iteration",
    "slogdet_dense",
    "support_indices",
]
