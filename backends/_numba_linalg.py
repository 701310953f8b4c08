"""Numba fast paths for the Krylov solvers on the NumPy backend: the fused vector updates of CG.

The generic batched CG of :mod:`latticekit.linalg.cg` makes about fifteen passes over memory per
iteration besides the operator (``x + a p``, ``r - a Ap``, ``|r|^2`` as real and imaginary parts,
``r + b p``, the mask ``where``, each a temporary). These kernels fuse them into three passes that
update the solver's own arrays in place:

``batched_re_inner(a, b, batch_ndim) -> (*batch,)``
    ``Re <a, b> = Re sum conj(a) b`` over the non-batch axes (``p^dag A p`` of CG): one read of each.
``cg_update_xr(x, r, p, Ap, alpha, batch_ndim) -> rr``
    ``x += alpha p``, ``r -= alpha Ap`` and ``rr = |r|^2`` per chain, in one pass; ``x`` and ``r`` are
    overwritten. ``alpha`` is real, one value per chain (0 for a chain that is not updated).
``cg_update_p(p, r, beta, active, batch_ndim) -> p``
    ``p = r + beta p`` for the chains where ``active`` is true, in place; the other chains keep ``p``.

A complex128 field is read as its float64 view (interleaved real and imaginary parts): with real
``alpha``/``beta`` every update is the same real operation on twice the number of entries, and
``Re conj(a) b = a_re b_re + a_im b_im`` is the plain dot product of the views. Work is split into
chunks of at most :data:`CHUNK` entries across chains and within a chain (``prange``), so one large
system uses the threads as well as many small ones. The split depends on the chain length only and
the partial sums are added in a fixed order: a chain's iterates are bit-identical whatever the batch
it is solved in and the number of threads.

The functions *decline* (return ``None``) unless every field is a writeable, aligned, C-contiguous
float64 or complex128 ``numpy.ndarray`` of one shape and ``alpha``/``beta``/``active`` are NumPy arrays
of the batch shape; the caller then runs the generic code. The in-place updates are the caller's
responsibility: CG hands over arrays it owns (never the caller's ``b`` or ``x0``).

Examples
--------
>>> import numpy as np
>>> from latticekit.backends import _numba_linalg as kl
>>> a = np.array([[1 + 2j, 3j], [1.0, 0.0]])            # two chains of length 2
>>> if kl.available():
...     out = kl.batched_re_inner(a, a, 1)
... else:                                                # without numba the generic code runs instead
...     out = np.array([14.0, 1.0])
>>> out.tolist()
[14.0, 1.0]
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._numba_common import _jit, _prange, available

__all__ = ["NAMES", "kernels"]

NAMES = ("batched_re_inner", "cg_update_xr", "cg_update_p")

#: float64 entries per work chunk (32 kB per array: the four CG vectors of a chunk stay in L1/L2)
CHUNK = 4096

#: float64 entries per array from which the kernels run threaded (4 MB per array)
PARALLEL_MIN = 1 << 19


# --------------------------------------------------------------------------------------------------
# compiled kernels on (chains, entries) float64 views. The sums run in four interleaved lanes: the
# rounding order is fixed by the code (no fastmath reassociation), yet the lanes vectorise.
# --------------------------------------------------------------------------------------------------
@_jit()
def _dot_chunk(a, b, c, lo, hi):  # pragma: no cover - compiled
    s0 = s1 = s2 = s3 = 0.0
    i = lo
    while i + 4 <= hi:
        s0 += a[c, i] * b[c, i]
        s1 += a[c, i + 1] * b[c, i + 1]
        s2 += a[c, i + 2] * b[c, i + 2]
        s3 += a[c, i + 3] * b[c, i + 3]
        i += 4
    while i < hi:
        s0 += a[c, i] * b[c, i]
        i += 1
    return (s0 + s1) + (s2 + s3)


@_jit()
def _xr_chunk(x, r, p, ap, a, c, lo, hi):  # pragma: no cover - compiled
    for i in range(lo, hi):
        x[c, i] += a * p[c, i]
        r[c, i] -= a * ap[c, i]
    return _dot_chunk(r, r, c, lo, hi)          # the chunk is still in L1: |r|^2 costs no memory pass


@_jit()
def _p_chunk(p, r, bt, c, lo, hi):  # pragma: no cover - compiled
    for i in range(lo, hi):
        p[c, i] = r[c, i] + bt * p[c, i]


def _make(parallel):
    """The three kernels, looping over (chain, chunk) work items with ``prange`` or ``range``."""
    loop = _prange if parallel else range

    @_jit(parallel=parallel)
    def dot(a, b, csize, nck, partial):  # pragma: no cover - compiled
        n = a.shape[1]
        for k in loop(a.shape[0] * nck):
            c, j = k // nck, k % nck
            partial[c, j] = _dot_chunk(a, b, c, j * csize, min(n, (j + 1) * csize))

    @_jit(parallel=parallel)
    def xr(x, r, p, ap, alpha, csize, nck, partial):  # pragma: no cover - compiled
        n = x.shape[1]
        for k in loop(x.shape[0] * nck):
            c, j = k // nck, k % nck
            lo, hi = j * csize, min(n, (j + 1) * csize)
            if alpha[c] != 0.0:
                partial[c, j] = _xr_chunk(x, r, p, ap, alpha[c], c, lo, hi)
            else:                                  # chain not updated: only |r|^2
                partial[c, j] = _dot_chunk(r, r, c, lo, hi)

    @_jit(parallel=parallel)
    def pupd(p, r, beta, active, csize, nck):  # pragma: no cover - compiled
        n = p.shape[1]
        for k in loop(p.shape[0] * nck):
            c, j = k // nck, k % nck
            if active[c]:
                _p_chunk(p, r, beta[c], c, j * csize, min(n, (j + 1) * csize))

    return dot, xr, pupd


_SERIAL = _make(False)
_PARALLEL = _make(True)


# --------------------------------------------------------------------------------------------------
# Python wrappers: qualify the inputs, view them as (chains, float64 entries), split into chunks
# --------------------------------------------------------------------------------------------------
def _field_ok(a: Any) -> bool:
    if type(a) is not np.ndarray or a.dtype not in (np.float64, np.complex128):
        return False
    f = a.flags
    return bool(f.c_contiguous and f.aligned and f.writeable)


def _rows(a: Any, batch_ndim: int) -> Any:
    """``a`` as a (chains, float64 entries) view, no copy."""
    nb = 1
    for n in a.shape[:batch_ndim]:
        nb *= int(n)
    return a.view(np.float64).reshape(nb, -1)


def _chunks(nb: int, n: int) -> tuple[int, int]:
    """Entries per chunk and chunks per chain. The split depends on the chain length only, so a chain's
    partial sums -- and hence its iterates, bit for bit -- do not depend on the batch it is solved in or
    on the number of threads."""
    nck = max(1, -(-n // CHUNK))
    return -(-n // nck), nck


def _pick(v: Any) -> tuple[Any, Any, Any]:
    """Threaded kernels from PARALLEL_MIN float64 entries on: below, a parallel region's start and
    barrier (microseconds; much more when the cores are shared) cost more than the work. Both variants
    do the same chunks in the same order, so the choice does not change a result."""
    return _PARALLEL if v.size >= PARALLEL_MIN else _SERIAL


def _same(batch_ndim: Any, *arrays: Any) -> bool:
    if not isinstance(batch_ndim, int) or isinstance(batch_ndim, bool):
        return False
    a0 = arrays[0]
    if not 0 <= batch_ndim <= a0.ndim or a0.ndim - batch_ndim < 1:
        return False
    return all(_field_ok(a) and a.shape == a0.shape and a.dtype == a0.dtype for a in arrays)


def _per_chain(v: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """A per-chain array as a contiguous 1D array of ``dtype``, or None when it does not qualify."""
    if type(v) is not np.ndarray or tuple(v.shape) != shape:
        return None
    if v.dtype.kind not in "fb" or (dtype is np.bool_) != (v.dtype.kind == "b"):
        return None
    return np.ascontiguousarray(v.reshape(-1), dtype=dtype)


def batched_re_inner(a: Any, b: Any, batch_ndim: int) -> Any:
    """``Re sum conj(a) b`` over the non-batch axes, shape ``a.shape[:batch_ndim]`` (or None: declined)."""
    if not _same(batch_ndim, a, b):
        return None
    av, bv = _rows(a, batch_ndim), _rows(b, batch_ndim)
    csize, nck = _chunks(av.shape[0], av.shape[1])
    partial = np.empty((av.shape[0], nck))
    _pick(av)[0](av, bv, csize, nck, partial)
    return partial.sum(axis=1).reshape(a.shape[:batch_ndim])


def cg_update_xr(x: Any, r: Any, p: Any, Ap: Any, alpha: Any, batch_ndim: int) -> Any:
    """In place ``x += alpha p``, ``r -= alpha Ap``; returns ``|r|^2`` per chain (or None: declined)."""
    if not _same(batch_ndim, x, r, p, Ap):
        return None
    bshape = tuple(x.shape[:batch_ndim])
    al = _per_chain(alpha, bshape, np.float64)
    if al is None:
        return None
    xv, rv = _rows(x, batch_ndim), _rows(r, batch_ndim)
    csize, nck = _chunks(xv.shape[0], xv.shape[1])
    partial = np.empty((xv.shape[0], nck))
    _pick(xv)[1](xv, rv, _rows(p, batch_ndim), _rows(Ap, batch_ndim), al, csize, nck, partial)
    return partial.sum(axis=1).reshape(bshape)


def cg_update_p(p: Any, r: Any, beta: Any, active: Any, batch_ndim: int) -> Any:
    """In place ``p = r + beta p`` on the chains where ``active``; returns ``p`` (or None: declined)."""
    if not _same(batch_ndim, p, r):
        return None
    bshape = tuple(p.shape[:batch_ndim])
    bt = _per_chain(beta, bshape, np.float64)
    act = _per_chain(active, bshape, np.bool_)
    if bt is None or act is None:
        return None
    pv = _rows(p, batch_ndim)
    csize, nck = _chunks(pv.shape[0], pv.shape[1])
    _pick(pv)[2](pv, _rows(r, batch_ndim), bt, act, csize, nck)
    return p


def kernels() -> dict[str, Callable[..., Any]]:
    """The fast paths of this module by registry name (backend ``"numpy"``); empty without numba."""
    if not available():
        return {}
    return {name: globals()[name] for name in NAMES}
