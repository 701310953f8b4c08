"""LU-based dense linear algebra (``det``, ``slogdet``, ``inv``, ``solve``) safe from torch's batched-LU bug.

torch factorises a batch of CPU matrices with one LAPACK ``getrf`` per matrix, spread over its intra-op
thread pool. Once ``torch.set_num_threads(k)`` has been called with ``k >= 2`` (every job that takes
``--threads``, :func:`latticekit.backends.configure_threads`), the grain size of that loop rounds to zero for
matrices larger than about 14 x 14, several pool threads call MKL's ``getrf`` at once, and MKL's row swaps
are not safe there: ``Intel oneMKL ERROR: Parameter 6 was incorrect on entry to ZLASWP``, wrong pivots,
``slogdet``/``det`` silently wrong by O(1) in ``log|det|``, ``solve``/``inv`` raising about the pivots
(pytorch issues 141358 and 142815; a fix was proposed in pytorch PR 181570). Measured with torch
2.13.0+cpu and two threads: batches of two or more complex128 matrices go wrong from n = 160 (the
192 x 192 Wilson-Dirac matrix of a 2^4 SU(3) lattice among them); n <= 144 and single matrices are right.

:func:`lu_linalg` calls the namespace's ``linalg`` function directly everywhere else and, for a batch of torch
CPU matrices larger than 14 x 14 with more than one torch thread, one matrix at a time (each call then runs
on the calling thread; MKL may still thread inside it). Autograd passes through (``torch.stack``).

Examples
--------
>>> import numpy as np
>>> from latticekit.backends import lu_linalg
>>> A = np.stack([np.diag([2.0, 3.0]), np.diag([1.0, 4.0])])
>>> lu_linalg("det", A).tolist()
[6.0, 4.0]
"""

from __future__ import annotations

import math
from typing import Any

from ._namespace import array_namespace, backend_name

__all__ = ["LU_OPS", "lu_linalg"]

#: the ``linalg`` functions that go through an LU factorisation and that :func:`lu_linalg` accepts
LU_OPS: tuple[str, ...] = ("det", "inv", "slogdet", "solve")

_SMALL = 14     # torch's batched-LU grain size is non-zero up to 14 x 14 (min(1, 3200 / n^3) * threads)


def _per_matrix(A: Any) -> bool:
    """Whether ``A`` is a batch of torch CPU matrices that torch would factorise concurrently."""
    if A.ndim < 3 or A.shape[-1] <= _SMALL or math.prod(A.shape[:-2]) < 2:
        return False
    if backend_name(A) != "torch" or A.device.type != "cpu":
        return False
    import torch

    return torch.get_num_threads() > 1


def lu_linalg(name: str, A: Any, *others: Any) -> Any:
    """``xp.linalg.<name>(A, *others)`` for ``name`` in :data:`LU_OPS`, one matrix at a time where torch's
    batched CPU LU is unsafe (module docstring).

    Parameters
    ----------
    name : str
        ``"det"``, ``"slogdet"``, ``"inv"`` or ``"solve"``.
    A : array, shape ``(*batch, n, n)``
    others : arrays
        The right-hand side of ``solve``, shape ``(*batch, n, k)`` (the same batch shape as ``A``).

    Returns
    -------
    What ``xp.linalg.<name>`` returns (``slogdet``: the pair ``(sign, logabsdet)``).
    """
    if name not in LU_OPS:
        raise ValueError(f"name={name!r}: expected one of {', '.join(LU_OPS)}")
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"A has shape {tuple(A.shape)}; expected a (batch of) square matrices (..., n, n)")
    xp = array_namespace(A, *others)
    fn = getattr(xp.linalg, name)
    if not _per_matrix(A):
        return fn(A, *others)
    import torch

    batch = tuple(A.shape[:-2])
    for o in others:
        if tuple(o.shape[:len(batch)]) != batch or o.ndim != A.ndim:
            raise ValueError(f"solve: the right-hand side has shape {tuple(o.shape)}; expected (*{batch}, n, k)")
    nb = math.prod(batch)
    Af = A.reshape((nb,) + tuple(A.shape[-2:]))
    Of = [o.reshape((nb,) + tuple(o.shape[len(batch):])) for o in others]
    outs = [fn(Af[i], *(o[i] for o in Of)) for i in range(nb)]

    def stack(parts: list[Any]) -> Any:
        return torch.stack(parts).reshape(batch + tuple(parts[0].shape))

    if isinstance(outs[0], tuple):          # slogdet: a named pair
        fields = [stack(list(p)) for p in zip(*outs)]
        kind = type(outs[0])
        return kind._make(fields) if hasattr(kind, "_make") else kind(fields)
    return stack(outs)
