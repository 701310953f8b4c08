"""Shared machinery of the numba fast paths: the jit decorator, row index arithmetic, chunking, input checks.

The numba kernels of the NumPy backend live in one module per physics area -- ``_numba_gauge``
(U(1)/SU(N) plaquette, Wilson action and force, with the unrolled SU(2)/SU(3) kernels in its helper
modules ``_numba_su2``/``_numba_su3`` and the 2D U(1) kernels in ``_numba_u1_2d``), ``_numba_phi4`` (phi^4
action and force), ``_numba_dirac`` (Wilson-Dirac hopping term), ``_numba_linalg`` (the fused CG
updates) and ``_numba_cg`` (the whole CG loop on the Wilson normal operator) -- and share what is here. The generic Array API code
makes one pass over memory per array operation (plus copies for the periodic shifts), and NumPy's
float64 ``cos``/``sin`` is scalar. The kernels are compiled with numba
(``@njit(parallel=True, fastmath=False, cache=True)``; the unrolled SU(2)/SU(3) products and the U(1)
sine/cosine polynomial with ``fastmath={"contract"}``, FMA contraction only, see :func:`_jit`) and
make one pass over the field:

* the lattice ``(L0, ..., L_{Nd-1})`` is seen as ``R = L0 ... L_{Nd-2}`` rows of ``L_{Nd-1}`` sites
  (or of the last two axes when the last one is short, see :func:`_geometry`); ``prange`` runs over
  chunks of rows (and the batch), and the innermost loops run along a row, over contiguous memory,
  so LLVM vectorises them;
* periodic neighbours are found by index arithmetic (:func:`_shift`): a neighbour row once per row
  and a rotated copy of a neighbour row (a few kB, in L1, :func:`_load`) along the last axis -- no
  rolled copies of the field.

Results agree with the generic code to round-off (about 1e-15 relative, tested to 1e-13 in
tests/test_fast_paths.py). Each kernel exists in one specialisation (float64 or complex128, a fixed
number of array dimensions), so the first call compiles once per process at most -- and not even that
once numba's on-disk cache (``cache=True``) is warm. numba keys that cache on the source file of each
kernel, not on the helpers it calls: after editing a jitted helper of this module, delete the caches
(``backends/__pycache__/_numba_*.nb[ic]``) or the physics modules keep their old compiled code.

Nothing here runs at ``import latticekit``: :func:`latticekit.backends.fast_path` imports the physics
modules and calls their ``kernels()`` on its first lookup, when numba is importable and
``LATTICEKIT_FAST_KERNELS`` is not ``0``; importing this module applies a thread count requested
earlier through :func:`latticekit.backends.configure_threads`. Every registered function *declines*
(returns ``None``) for inputs it does not handle -- anything but a writeable, aligned, C-contiguous
``numpy.ndarray`` of float64 (U(1) angles, phi) or complex128 (SU(N) links, fermions), or a coupling
that is not a real Python/NumPy scalar (:func:`_ok`, :func:`_real`) -- and the caller then runs the
generic code.

Examples
--------
>>> from latticekit.backends import _numba_common as nc
>>> isinstance(nc.available(), bool)
True
>>> nc._real(0.5), nc._real(True), nc._real(float("nan"))
(True, False, False)
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np

try:  # numba is optional: without it nothing is registered and the generic code runs
    import numba as _numba
except ImportError:  # pragma: no cover - depends on the installation
    _numba = None

__all__ = ["available"]


def available() -> bool:
    """True when numba is importable (the kernels can be compiled)."""
    return _numba is not None


def _jit(parallel: bool = False, contract: bool = False,
         inline: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """numba's ``njit`` as the kernels use it. ``contract=True`` lets LLVM fuse ``a * b + c`` into one
    FMA (one rounding instead of two; no other fast-math flag: no reassociation, NaN/inf kept);
    ``inline=True`` inlines the function into its callers at the numba IR level (small helpers that
    return tuples, so that the caller's loop vectorises)."""
    if _numba is None:  # keep the modules importable (and their source readable) without numba
        return lambda f: f
    fm: Any = {"contract"} if contract else False
    return _numba.njit(parallel=parallel, fastmath=fm, cache=True, nogil=True,
                       inline="always" if inline else "never")


_prange = _numba.prange if _numba is not None else range

if _numba is not None:  # a thread count requested before numba was loaded (configure_threads)
    from ._threads import _numba_loaded

    _numba_loaded(_numba)


# --------------------------------------------------------------------------------------------------
# index arithmetic on rows
# --------------------------------------------------------------------------------------------------
@_jit(inline=True)
def _chunk_rows(c, nc, rpc, R):  # pragma: no cover - compiled
    """Configuration ``b`` and rows ``[o0, o1)`` of chunk ``c`` (``nc`` chunks of ``rpc`` rows per
    configuration of ``R`` rows): the prologue of the row kernels' parallel loops."""
    b = c // nc
    o0 = (c - b * nc) * rpc
    return b, o0, min(R, o0 + rpc)


@_jit()
def _shift(o, a, c, d, step, dims, K):  # pragma: no cover - compiled
    """Site (row ``o``, in-row offsets ``a`` along axis nd-2 and ``c`` along nd-1) moved by ``step``
    along direction ``d``. A row covers the last ``K`` (1 or 2) lattice axes."""
    nd = dims.shape[0]
    if d == nd - 1:
        return o, a, c + step
    if K == 2 and d == nd - 2:
        return o, a + step, c
    stride = 1
    for e in range(d + 1, nd - K):
        stride *= dims[e]
    L = dims[d]
    x = (o // stride) % L
    xn = x + step
    if xn >= L:
        xn -= L
    elif xn < 0:
        xn += L
    return o + (xn - x) * stride, a, c


@_jit()
def _load1(dst, src, sh):  # pragma: no cover - compiled
    """``dst[x] = src[(x + sh) mod n]`` for 1D rows."""
    n = src.shape[0]
    if sh == 0:
        for x in range(n):
            dst[x] = src[x]
    elif sh == 1:
        for x in range(n - 1):
            dst[x] = src[x + 1]
        dst[n - 1] = src[0]
    elif sh == -1:
        dst[0] = src[n - 1]
        for x in range(1, n):
            dst[x] = src[x - 1]
    else:   # a rotation: two contiguous copies
        s = sh % n
        for x in range(n - s):
            dst[x] = src[x + s]
        for x in range(n - s, n):
            dst[x] = src[x + s - n]


@_jit()
def _load(dst, src, a, c, L2):  # pragma: no cover - compiled
    """A row shifted by ``a`` along its first axis (length ``L2``) and ``c`` along its last axis.

    A shift along one axis is two flat loops over the whole row (a rotation by ``a L3``, or by one site with
    each line's end fixed), not a loop per line: the lines of a 4D row are a few sites long."""
    n = src.shape[0]
    if a == 0 and L2 == 1:
        _load1(dst, src, c)
        return
    L3 = n // L2
    if c == 0:
        _load1(dst, src, (a % L2) * L3)
        return
    if a == 0 and L3 > 1 and (c == 1 or c == -1):
        if c == 1:
            for x in range(n - 1):
                dst[x] = src[x + 1]
            for y in range(L2):
                dst[y * L3 + L3 - 1] = src[y * L3]
        else:
            for x in range(1, n):
                dst[x] = src[x - 1]
            for y in range(L2):
                dst[y * L3] = src[y * L3 + L3 - 1]
        return
    for y in range(L2):
        ys = (y + a) % L2
        _load1(dst[y * L3:(y + 1) * L3], src[ys * L3:(ys + 1) * L3], c)


@_jit()
def _load_mat(dst, U, b, d, o, a, c, L2):  # pragma: no cover - compiled
    """``dst[i, j, :] = U[b, d, i, j, o, :]`` shifted in the row by ``(a, c)``."""
    N = dst.shape[0]
    for i in range(N):
        for j in range(N):
            _load(dst[i, j], U[b, d, i, j, o], a, c, L2)


def _chunking(B: int, R: int, Lx: int, sites_per_chunk: int) -> tuple[int, int]:
    """Rows per chunk and chunks per configuration: about ``sites_per_chunk`` sites per chunk, and
    enough chunks in all to keep the threads busy."""
    nthreads = _numba.get_num_threads() if _numba is not None else 1
    rpc = max(1, min(R, -(-sites_per_chunk // max(Lx, 1))))
    want = 4 * nthreads
    if B * (-(-R // rpc)) < want:           # too few chunks: split each configuration further
        per_config = -(-want // max(B, 1))
        rpc = max(1, -(-R // per_config))
    return rpc, -(-R // rpc)


def _chunks_2d(B: int, L0: int, L1: int, target: int) -> tuple[int, int, int]:
    """``(rpc, ncpc, nc)`` of the 2D kernels: whole configurations per chunk (``ncpc = 1``, ``rpc`` a
    multiple of L0) when one holds at most ``target`` sites, else ``ncpc`` chunks of ``rpc`` rows per
    configuration; at least 4 chunks per thread where the batch allows."""
    nthreads = _numba.get_num_threads() if _numba is not None else 1
    want = 4 * nthreads
    V = L0 * L1
    if V <= target:
        cpc = max(1, min(target // V, -(-B // want)))
        if B >= want or V * 16 <= target:   # (tiny lattices: never split a configuration)
            return cpc * L0, 1, -(-B // cpc)
    rpc = max(1, min(L0, -(-target // L1)))
    if B * -(-L0 // rpc) < want:
        rpc = max(1, -(-L0 // -(-want // B)))
    ncpc = -(-L0 // rpc)
    if ncpc == 1:
        return L0, 1, B
    return rpc, ncpc, B * ncpc


# --------------------------------------------------------------------------------------------------
# launching a parallel kernel: small calls on one thread
# --------------------------------------------------------------------------------------------------
#: estimated single-thread time (ns) below which a ``parallel=True`` kernel runs on one thread
_SERIAL_NS = 2_000_000


def _launch(kernel: Callable[..., Any], est_ns: float, *args: Any) -> Any:
    """``kernel(*args)``, on one thread when its estimated single-thread time ``est_ns`` is below 2 ms.

    A parallel region costs microseconds to start on an idle machine; on a busy one it waits for a descheduled
    worker, and the OpenMP workers spin between regions (numba's ``omp`` layer), which costs more than small
    work. Measured: the Nf = 2 HMC of examples/schwinger_nf2.toml (8 chains of 8x8) took 43 ms per trajectory on
    one thread and 258 ms with two threads beside a busy core, most of it in the 2D U(1) gauge force (6.7 ms per
    call of a kernel that needs 0.1 ms). The chunking is chosen before the call, so the result is the same
    either way. (The Wilson-Dirac kernel has its own, higher threshold: ``_numba_dirac._WD_SERIAL_WORK``.)"""
    nt = _numba.get_num_threads() if _numba is not None else 1
    if nt > 1 and est_ns < _SERIAL_NS:
        _numba.set_num_threads(1)
        try:
            return kernel(*args)
        finally:
            _numba.set_num_threads(nt)
    return kernel(*args)


# --------------------------------------------------------------------------------------------------
# input checks of the Python wrappers: qualify the inputs (else the wrapper declines with None)
# --------------------------------------------------------------------------------------------------
def _ok(x: Any, dtype: Any) -> bool:
    if type(x) is not np.ndarray or x.dtype != dtype:
        return False
    f = x.flags
    return bool(f.c_contiguous and f.aligned and f.writeable)


def _real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(float(v))


def _geometry(x: Any, nd: int, inner: int) -> tuple[tuple[int, ...], tuple[int, ...], Any, int, int, int]:
    """Batch shape, lattice shape, lattice dims (int64), axes per row K, rows R and row length Lx.

    A row is the last lattice axis, or the last two when the last one is short (< 64 sites) and
    nd >= 3, so that the innermost loops are long enough to vectorise."""
    L = tuple(int(n) for n in x.shape[x.ndim - nd:])
    bshape = tuple(int(n) for n in x.shape[: x.ndim - nd - inner])
    K = 2 if (nd >= 3 and L[-1] < 64) else 1
    return bshape, L, np.asarray(L, dtype=np.int64), K, _prod(L[:nd - K]), _prod(L[nd - K:])


@functools.lru_cache(maxsize=64)
def _outer_rows(L: tuple[int, ...], K: int, steps: tuple[int, ...]) -> Any:
    """``(R, n)`` int64, cached per geometry (do not modify): for each row (the first ``nd - K`` coordinates,
    row-major) its neighbour rows along those axes, per axis one column for each of ``steps`` (e.g. ``(1,)``,
    ``(-1,)`` or ``(1, -1)``); ``n = (nd - K) len(steps)``."""
    outer = L[:len(L) - K]
    cols = []
    if outer:
        idx = np.indices(outer).reshape(len(outer), -1)
        for mu in range(len(outer)):
            for step in steps:
                j = idx.copy()
                j[mu] = (j[mu] + step) % outer[mu]
                cols.append(np.ravel_multi_index(tuple(j), outer))
    R = _prod(outer)
    return np.ascontiguousarray(np.stack(cols, axis=1) if cols else np.zeros((R, 0), dtype=np.int64), dtype=np.int64)


def _prod(t: tuple[int, ...]) -> int:
    p = 1
    for n in t:
        p *= n
    return p
