"""Numba fast paths for the NumPy backend: plaquette, Wilson action and force (U(1), SU(N)), phi^4.

The generic Array API code makes one pass over memory per array operation (plus copies for the
periodic shifts), and NumPy's float64 ``cos``/``sin`` is scalar. These kernels are compiled with
numba (``@njit(parallel=True, fastmath=False, cache=True)``) and make one pass over the field:

* the lattice ``(L0, ..., L_{Nd-1})`` is seen as ``R = L0 ... L_{Nd-2}`` rows of ``L_{Nd-1}`` sites;
  ``prange`` runs over chunks of rows (and the batch), and the innermost loops run along a row, over
  contiguous memory, so LLVM vectorises them;
* periodic neighbours are found by index arithmetic: a neighbour row once per row and a rotated
  copy of a neighbour row (a few kB, in L1) along the last axis -- no rolled copies of the field;
* ``cos``/``sin`` are evaluated by a branch-free polynomial (Cody-Waite reduction by pi/2 and the
  fdlibm minimax kernels, error about 1 ulp) that vectorises; a row with an angle beyond 1e5 (where
  that reduction loses accuracy) is recomputed with ``math.cos``/``math.sin``;
* SU(N) products are small loops over the colour indices on row-sized buffers.

Results agree with the generic code to round-off (about 1e-15 relative, tested to 1e-13 in
tests/test_fast_paths.py). Each kernel exists in one specialisation (float64 or complex128, a fixed
number of array dimensions), so the first call compiles once per process at most -- and not even that
once numba's on-disk cache (``cache=True``) is warm.

Nothing here runs at ``import latticekit``: :func:`latticekit.backends.fast_path` imports this module
and calls :func:`kernels` on its first lookup, when numba is importable and ``LATTICEKIT_FAST_KERNELS``
is not ``0``. Every registered function *declines* (returns ``None``) for inputs it does not handle --
anything but a writeable, aligned, C-contiguous ``numpy.ndarray`` of float64 (U(1) angles, phi) or
complex128 (SU(N) links), or a coupling that is not a real Python/NumPy scalar -- and the caller then
runs the generic code.

Registered names (backend ``"numpy"``)
--------------------------------------
``u1_plaquette_cos_sum(theta, nd) -> (*B,)``
    ``sum_x sum_{mu<nu} cos theta_{mu nu}(x)``. Same signature as the torch kernel of that name.
``u1_plaquette_field(theta, nd) -> (*B, n_planes, *L)``
    ``cos theta_{mu nu}(x)`` per plane and site.
``u1_wilson_force(theta, beta, nd) -> (*B, nd, *L)``
    ``dS/dtheta_mu(x)`` of ``S = -beta sum cos theta_P``.
``sun_re_tr_plaquette_sum(U, nd) -> (*B,)``
    ``sum_x sum_{mu<nu} Re tr P_{mu nu}(x)`` for SU(N) links ``(*B, nd, N, N, *L)``.
``sun_plaquette_field(U, nd) -> (*B, n_planes, *L)``
    ``(1/N) Re tr P_{mu nu}(x)`` per plane and site.
``sun_wilson_force(U, beta, nd) -> (*B, nd, N, N, *L)``
    ``(beta / (2N)) project_algebra(U_mu(x) A_mu(x))`` with the staple sum ``A_mu``.
``phi4_action(phi, kappa, lam, nd) -> (*B,)`` and ``phi4_force(phi, kappa, lam, nd) -> (*B, *L)``
    The hopping-form phi^4 action and ``dS/dphi``.
``wilson_dirac_apply(psi, links, gammas, alpha, beta, *, dagger, antiperiodic) -> psi.shape``
    ``alpha psi + beta H psi`` for the Wilson hopping term ``H`` (``H^dag`` for ``dagger``), so
    ``D psi`` is ``alpha = 1, beta = -kappa``. ``links`` ``(*B, nd, Nc, Nc, *L)`` complex128 (U(1):
    the phases as 1 x 1 matrices), ``psi`` ``(*S, *B, Ns, Nc, *L)`` complex128, ``gammas`` the
    caller's monomial gamma tables (``latticekit.actions.dirac``). One pass over the rows of each
    configuration: spin projection, parallel transport and reconstruction fused per row block, the
    neighbour rows and the anti-periodic time boundary by index arithmetic. Small fields (below
    ``_WD_SERIAL_WORK`` sites x Nc^2) run on one thread.

Examples
--------
>>> import numpy as np
>>> from latticekit.backends import _kernels_numba as kn
>>> theta = np.zeros((3, 2, 4, 4))                  # cold U(1) field, batch 3
>>> if kn.available():
...     out = kn.kernels()["u1_plaquette_cos_sum"](theta, 2)
... else:                                           # without numba the generic code runs instead
...     out = np.full(3, 16.0)
>>> out.tolist()
[16.0, 16.0, 16.0]
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

try:  # numba is optional: without it nothing is registered and the generic code runs
    import numba as _numba
except ImportError:  # pragma: no cover - depends on the installation
    _numba = None

__all__ = ["NAMES", "available", "kernels"]

NAMES = ("u1_plaquette_cos_sum", "u1_plaquette_field", "u1_wilson_force", "sun_re_tr_plaquette_sum",
         "sun_plaquette_field", "sun_wilson_force", "phi4_action", "phi4_force", "wilson_dirac_apply")


def available() -> bool:
    """True when numba is importable (the kernels can be compiled)."""
    return _numba is not None


def _jit(parallel: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if _numba is None:  # keep the module importable (and its source readable) without numba
        return lambda f: f
    return _numba.njit(parallel=parallel, fastmath=False, cache=True, nogil=True)


_prange = _numba.prange if _numba is not None else range

# --------------------------------------------------------------------------------------------------
# vectorisable sin / cos (fdlibm kernels on [-pi/4, pi/4], Cody-Waite reduction by pi/2)
# --------------------------------------------------------------------------------------------------
_TWO_OVER_PI = 6.36619772367581382433e-01
_PIO2_1 = 1.57079632673412561417e+00   # first 33 bits of pi/2: k * _PIO2_1 is exact for |k| < 2^20
_PIO2_2 = 6.07710050630396597660e-11   # next 33 bits
_PIO2_3 = 2.02226624879595063154e-21   # pi/2 - _PIO2_1 - _PIO2_2
_BIG = 1.0e5                           # beyond this |x| the rows are recomputed with math.sin/cos
_S1, _S2, _S3 = -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04
_S4, _S5, _S6 = 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10
_C1, _C2, _C3 = 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05
_C4, _C5, _C6 = -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11


@_jit()
def _sincos(x):  # pragma: no cover - compiled
    k = math.floor(x * _TWO_OVER_PI + 0.5)
    r = ((x - k * _PIO2_1) - k * _PIO2_2) - k * _PIO2_3
    z = r * r
    s = r + (z * r) * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))))
    c = (1.0 - 0.5 * z) + (z * z) * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6)))))
    q = np.int64(k) & 3
    sv = c if (q & 1) == 1 else s
    cv = s if (q & 1) == 1 else c
    if (q & 2) == 2:
        sv = -sv
    if ((q + 1) & 2) == 2:
        cv = -cv
    return sv, cv


# --------------------------------------------------------------------------------------------------
# index arithmetic on rows
# --------------------------------------------------------------------------------------------------
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
    else:
        for x in range(n):
            dst[x] = src[(x + sh) % n]


@_jit()
def _load(dst, src, a, c, L2):  # pragma: no cover - compiled
    """A row shifted by ``a`` along its first axis (length ``L2``) and ``c`` along its last axis."""
    if a == 0 and L2 == 1:
        _load1(dst, src, c)
        return
    L3 = src.shape[0] // L2
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


# --------------------------------------------------------------------------------------------------
# U(1)
# --------------------------------------------------------------------------------------------------
@_jit()
def _u1_theta_row(out, th, b, mu, nu, o, a, c, dims, K, L2, t1, t2, t3, t4):  # pragma: no cover - compiled
    """``theta_{mu nu}`` along the row of site (o, a, c): U_mu(y) + U_nu(y+mu) - U_mu(y+nu) - U_nu(y)."""
    r1, a1, c1 = _shift(o, a, c, mu, 1, dims, K)
    r2, a2, c2 = _shift(o, a, c, nu, 1, dims, K)
    _load(t1, th[b, mu, o], a, c, L2)
    _load(t2, th[b, nu, r1], a1, c1, L2)
    _load(t3, th[b, mu, r2], a2, c2, L2)
    _load(t4, th[b, nu, o], a, c, L2)
    for x in range(out.shape[0]):
        out[x] = t1[x] + t2[x] - t3[x] - t4[x]


@_jit()
def _cos_row(val, ang):  # pragma: no cover - compiled
    nbad = 0
    for x in range(ang.shape[0]):
        a = ang[x]
        val[x] = _sincos(a)[1]
        nbad += 1 if abs(a) > _BIG else 0
    if nbad > 0:
        for x in range(ang.shape[0]):
            val[x] = math.cos(ang[x])


@_jit()
def _sin_row(val, ang):  # pragma: no cover - compiled
    nbad = 0
    for x in range(ang.shape[0]):
        a = ang[x]
        val[x] = _sincos(a)[0]
        nbad += 1 if abs(a) > _BIG else 0
    if nbad > 0:
        for x in range(ang.shape[0]):
            val[x] = math.sin(ang[x])


@_jit(parallel=True)
def _u1_plaquette_kernel(th, dims, K, rpc, field, write, partial):  # pragma: no cover - compiled
    B, nd, R, Lx = th.shape
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    for c in _prange(B * nc):
        b = c // nc
        o0 = (c - b * nc) * rpc
        o1 = min(R, o0 + rpc)
        acc = np.zeros(Lx)
        ang = np.empty(Lx)
        val = np.empty(Lx)
        t1 = np.empty(Lx)
        t2 = np.empty(Lx)
        t3 = np.empty(Lx)
        t4 = np.empty(Lx)
        for o in range(o0, o1):
            p = 0
            for mu in range(nd):
                for nu in range(mu + 1, nd):
                    _u1_theta_row(ang, th, b, mu, nu, o, 0, 0, dims, K, L2, t1, t2, t3, t4)
                    _cos_row(val, ang)
                    for x in range(Lx):
                        acc[x] += val[x]
                    if write:
                        dst = field[b, p, o]
                        for x in range(Lx):
                            dst[x] = val[x]
                    p += 1
        tot = 0.0
        for x in range(Lx):
            tot += acc[x]
        partial[c] = tot


@_jit(parallel=True)
def _u1_force_kernel(th, dims, K, rpc, beta, F):  # pragma: no cover - compiled
    B, nd, R, Lx = th.shape
    L2 = dims[nd - 2] if K == 2 else 1
    npl = nd * (nd - 1) // 2
    nc = (R + rpc - 1) // rpc
    for c in _prange(B * nc):
        b = c // nc
        o0 = (c - b * nc) * rpc
        o1 = min(R, o0 + rpc)
        facc = np.empty((nd, Lx))
        prev = np.empty((npl, Lx))   # sin theta_P of the previous row (reused as x - mu, mu = nd - 2)
        ang = np.empty(Lx)
        s0 = np.empty(Lx)
        sm = np.empty(Lx)
        sn = np.empty(Lx)
        t1 = np.empty(Lx)
        t2 = np.empty(Lx)
        t3 = np.empty(Lx)
        t4 = np.empty(Lx)
        for o in range(o0, o1):
            facc[:, :] = 0.0
            p = 0
            for mu in range(nd):
                for nu in range(mu + 1, nd):
                    # sin theta_{mu nu} at x, x - mu and x - nu
                    _u1_theta_row(ang, th, b, mu, nu, o, 0, 0, dims, K, L2, t1, t2, t3, t4)
                    _sin_row(s0, ang)
                    r, a, cc = _shift(o, 0, 0, mu, -1, dims, K)
                    if K == 1 and mu == nd - 2 and o > o0 and r == o - 1:
                        for x in range(Lx):
                            sm[x] = prev[p, x]
                    else:
                        _u1_theta_row(ang, th, b, mu, nu, r, a, cc, dims, K, L2, t1, t2, t3, t4)
                        _sin_row(sm, ang)
                    if K == 1 and nu == nd - 1:
                        _load1(sn, s0, -1)
                    else:
                        r, a, cc = _shift(o, 0, 0, nu, -1, dims, K)
                        _u1_theta_row(ang, th, b, mu, nu, r, a, cc, dims, K, L2, t1, t2, t3, t4)
                        _sin_row(sn, ang)
                    if K == 1 and mu == nd - 2:
                        for x in range(Lx):
                            prev[p, x] = s0[x]
                    fm = facc[mu]
                    fn = facc[nu]
                    for x in range(Lx):
                        fm[x] += s0[x] - sn[x]
                        fn[x] += sm[x] - s0[x]
                    p += 1
            for mu in range(nd):
                dst = F[b, mu, o]
                src = facc[mu]
                for x in range(Lx):
                    dst[x] = beta * src[x]


# --------------------------------------------------------------------------------------------------
# SU(N): products on row buffers (N, N, Lx)
# --------------------------------------------------------------------------------------------------
@_jit()
def _mul_nn(out, A, Bm, acc):  # pragma: no cover - compiled
    """out (+)= A B."""
    N = A.shape[0]
    Lx = A.shape[2]
    for i in range(N):
        for k in range(N):
            o = out[i, k]
            if not acc:
                a = A[i, 0]
                bb = Bm[0, k]
                for x in range(Lx):
                    o[x] = a[x] * bb[x]
                j0 = 1
            else:
                j0 = 0
            for j in range(j0, N):
                a = A[i, j]
                bb = Bm[j, k]
                for x in range(Lx):
                    o[x] += a[x] * bb[x]


@_jit()
def _mul_nd(out, A, Bm, acc):  # pragma: no cover - compiled
    """out (+)= A B^dag."""
    N = A.shape[0]
    Lx = A.shape[2]
    for i in range(N):
        for k in range(N):
            o = out[i, k]
            if not acc:
                a = A[i, 0]
                bb = Bm[k, 0]
                for x in range(Lx):
                    o[x] = a[x] * bb[x].conjugate()
                j0 = 1
            else:
                j0 = 0
            for j in range(j0, N):
                a = A[i, j]
                bb = Bm[k, j]
                for x in range(Lx):
                    o[x] += a[x] * bb[x].conjugate()


@_jit()
def _mul_dn(out, A, Bm, acc):  # pragma: no cover - compiled
    """out (+)= A^dag B."""
    N = A.shape[0]
    Lx = A.shape[2]
    for i in range(N):
        for k in range(N):
            o = out[i, k]
            if not acc:
                a = A[0, i]
                bb = Bm[0, k]
                for x in range(Lx):
                    o[x] = a[x].conjugate() * bb[x]
                j0 = 1
            else:
                j0 = 0
            for j in range(j0, N):
                a = A[j, i]
                bb = Bm[j, k]
                for x in range(Lx):
                    o[x] += a[x].conjugate() * bb[x]


@_jit(parallel=True)
def _sun_plaquette_kernel(U, dims, K, rpc, field, write, partial):  # pragma: no cover - compiled
    B, nd, N, _, R, Lx = U.shape
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    inv_n = 1.0 / N
    for c in _prange(B * nc):
        b = c // nc
        o0 = (c - b * nc) * rpc
        o1 = min(R, o0 + rpc)
        acc = np.zeros(Lx)
        val = np.empty(Lx)
        Lo = np.empty((nd, N, N, Lx), dtype=np.complex128)
        T1 = np.empty((N, N, Lx), dtype=np.complex128)
        T2 = np.empty((N, N, Lx), dtype=np.complex128)
        A = np.empty((N, N, Lx), dtype=np.complex128)
        C = np.empty((N, N, Lx), dtype=np.complex128)
        for o in range(o0, o1):
            for d in range(nd):
                _load_mat(Lo[d], U, b, d, o, 0, 0, L2)
            p = 0
            for mu in range(nd):
                for nu in range(mu + 1, nd):
                    r1, a1, c1 = _shift(o, 0, 0, mu, 1, dims, K)
                    r2, a2, c2 = _shift(o, 0, 0, nu, 1, dims, K)
                    _load_mat(T1, U, b, nu, r1, a1, c1, L2)    # U_nu(x + mu)
                    _load_mat(T2, U, b, mu, r2, a2, c2, L2)    # U_mu(x + nu)
                    _mul_nn(A, Lo[mu], T1, False)
                    _mul_nn(C, Lo[nu], T2, False)
                    for x in range(Lx):
                        val[x] = 0.0
                    for i in range(N):
                        for k in range(N):
                            av = A[i, k]
                            cv = C[i, k]
                            for x in range(Lx):
                                val[x] += av[x].real * cv[x].real + av[x].imag * cv[x].imag
                    for x in range(Lx):
                        acc[x] += val[x]
                    if write:
                        dst = field[b, p, o]
                        for x in range(Lx):
                            dst[x] = val[x] * inv_n
                    p += 1
        tot = 0.0
        for x in range(Lx):
            tot += acc[x]
        partial[c] = tot


@_jit(parallel=True)
def _sun_force_kernel(U, dims, K, rpc, coef, F):  # pragma: no cover - compiled
    B, nd, N, _, R, Lx = U.shape
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    for c in _prange(B * nc):
        b = c // nc
        o0 = (c - b * nc) * rpc
        o1 = min(R, o0 + rpc)
        Lo = np.empty((nd, N, N, Lx), dtype=np.complex128)
        T1 = np.empty((N, N, Lx), dtype=np.complex128)
        T2 = np.empty((N, N, Lx), dtype=np.complex128)
        T3 = np.empty((N, N, Lx), dtype=np.complex128)
        X = np.empty((N, N, Lx), dtype=np.complex128)
        S = np.empty((N, N, Lx), dtype=np.complex128)
        M = np.empty((N, N, Lx), dtype=np.complex128)
        tr = np.empty(Lx, dtype=np.complex128)
        for o in range(o0, o1):
            for d in range(nd):
                _load_mat(Lo[d], U, b, d, o, 0, 0, L2)
            for mu in range(nd):
                S[:, :, :] = 0.0
                for nu in range(nd):
                    if nu == mu:
                        continue
                    # upper staple U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag
                    r1, a1, c1 = _shift(o, 0, 0, mu, 1, dims, K)
                    r2, a2, c2 = _shift(o, 0, 0, nu, 1, dims, K)
                    _load_mat(T1, U, b, nu, r1, a1, c1, L2)
                    _load_mat(T2, U, b, mu, r2, a2, c2, L2)
                    _mul_nd(X, T1, T2, False)
                    _mul_nd(S, X, Lo[nu], True)
                    # lower staple at y = x - nu: (U_mu(y) U_nu(y+mu))^dag U_nu(y)
                    ry, ay, cy = _shift(o, 0, 0, nu, -1, dims, K)
                    r3, a3, c3 = _shift(ry, ay, cy, mu, 1, dims, K)
                    _load_mat(T1, U, b, mu, ry, ay, cy, L2)
                    _load_mat(T2, U, b, nu, r3, a3, c3, L2)
                    _load_mat(T3, U, b, nu, ry, ay, cy, L2)
                    _mul_nn(X, T1, T2, False)
                    _mul_dn(S, X, T3, True)
                _mul_nn(M, Lo[mu], S, False)
                # (beta / 2N) [ (M - M^dag)/2 - tr((M - M^dag)/2) / N ]
                for x in range(Lx):
                    tr[x] = 0.0
                for i in range(N):
                    for x in range(Lx):
                        tr[x] += 0.5 * (M[i, i, x] - M[i, i, x].conjugate())
                for x in range(Lx):
                    tr[x] = tr[x] / N
                for i in range(N):
                    for k in range(N):
                        dst = F[b, mu, i, k, o]
                        for x in range(Lx):
                            v = 0.5 * (M[i, k, x] - M[k, i, x].conjugate())
                            if i == k:
                                v = v - tr[x]
                            dst[x] = coef * v


# --------------------------------------------------------------------------------------------------
# phi^4 (hopping form; coefficients c2 phi^2 + c4 phi^4 - ch phi sum_mu phi(x+mu))
# --------------------------------------------------------------------------------------------------
@_jit(parallel=True)
def _phi4_action_kernel(phi, dims, K, rpc, c2, c4, ch, partial):  # pragma: no cover - compiled
    B, R, Lx = phi.shape
    nd = dims.shape[0]
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    for c in _prange(B * nc):
        b = c // nc
        o0 = (c - b * nc) * rpc
        o1 = min(R, o0 + rpc)
        acc = np.zeros(Lx)
        nb = np.empty(Lx)
        t = np.empty(Lx)
        for o in range(o0, o1):
            for mu in range(nd):
                r, a, cc = _shift(o, 0, 0, mu, 1, dims, K)
                _load(t, phi[b, r], a, cc, L2)
                if mu == 0:
                    for x in range(Lx):
                        nb[x] = t[x]
                else:
                    for x in range(Lx):
                        nb[x] += t[x]
            row = phi[b, o]
            for x in range(Lx):
                p = row[x]
                p2 = p * p
                acc[x] += c2 * p2 + c4 * p2 * p2 - ch * p * nb[x]
        tot = 0.0
        for x in range(Lx):
            tot += acc[x]
        partial[c] = tot


@_jit(parallel=True)
def _phi4_force_kernel(phi, dims, K, rpc, c2, c4, ch, F):  # pragma: no cover - compiled
    B, R, Lx = phi.shape
    nd = dims.shape[0]
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    a2 = 2.0 * c2
    a4 = 4.0 * c4
    for c in _prange(B * nc):
        b = c // nc
        o0 = (c - b * nc) * rpc
        o1 = min(R, o0 + rpc)
        nb = np.empty(Lx)
        t = np.empty(Lx)
        for o in range(o0, o1):
            for mu in range(nd):
                for step in (1, -1):
                    r, a, cc = _shift(o, 0, 0, mu, step, dims, K)
                    _load(t, phi[b, r], a, cc, L2)
                    if mu == 0 and step == 1:
                        for x in range(Lx):
                            nb[x] = t[x]
                    else:
                        for x in range(Lx):
                            nb[x] += t[x]
            row = phi[b, o]
            dst = F[b, o]
            for x in range(Lx):
                p = row[x]
                dst[x] = a2 * p + a4 * p * p * p - ch * nb[x]


# --------------------------------------------------------------------------------------------------
# Wilson-Dirac: out = alpha psi + beta H psi (H^dag via the sign of the gammas), one pass over the rows
# --------------------------------------------------------------------------------------------------
# Block primitives on flat 1D views of ``nr`` consecutive rows of ``n`` sites (separate small functions
# on 1D arrays: LLVM vectorises their loops; the same loops written inline on views of the 6D arrays
# ran 2-3x slower). ``rot`` is the in-row neighbour: 0 the same site, +-1 the next/previous site along
# the row (periodic within the row), 2 the site ``g[x]`` of the row.
@_jit()
def _b_hop(o1, o2, x1, x2, u, c1, c2, c3, n, rot, g, adj):  # pragma: no cover - compiled
    """Nc = 1 hop, ``rot`` 0 or 2: ``t = w (c1 x1 + c2 x2)`` at the neighbour, ``o1 += t``, ``o2 += c3 t``;
    ``w = u`` at the site (forward) or ``conj(u)`` at the neighbour (``adj``, backward)."""
    if rot == 0:
        if adj:
            for x in range(o1.shape[0]):
                t = u[x].conjugate() * (c1 * x1[x] + c2 * x2[x])
                o1[x] += t
                o2[x] += c3 * t
        else:
            for x in range(o1.shape[0]):
                t = u[x] * (c1 * x1[x] + c2 * x2[x])
                o1[x] += t
                o2[x] += c3 * t
        return
    for q in range(o1.shape[0] // n):   # rot == 2 (rot = +-1: see _b_hop_rot)
        z = q * n
        for x in range(n):
            y = z + g[x]
            h = c1 * x1[y] + c2 * x2[y]
            t = u[y].conjugate() * h if adj else u[z + x] * h
            o1[z + x] += t
            o2[z + x] += c3 * t


@_jit()
def _b_hop_rot(o1, o2, x1, x2, u, c1, c2, c3, n, rot, tb, adj):  # pragma: no cover - compiled
    """:func:`_b_hop` for ``rot = +-1`` in flat loops over the whole block (they vectorise): ``t`` into the
    scratch ``tb`` reading the flat neighbour ``x +- 1``, the wrap-around site of every row redone,
    then accumulated."""
    m = o1.shape[0]
    if rot == 1:   # x reads x + 1; the row end reads the row start
        if adj:
            for x in range(m - 1):
                tb[x] = u[x + 1].conjugate() * (c1 * x1[x + 1] + c2 * x2[x + 1])
        else:
            for x in range(m - 1):
                tb[x] = u[x] * (c1 * x1[x + 1] + c2 * x2[x + 1])
        for q in range(m // n):
            e = q * n + n - 1
            y = q * n
            h = c1 * x1[y] + c2 * x2[y]
            tb[e] = u[y].conjugate() * h if adj else u[e] * h
    else:          # x reads x - 1; the row start reads the row end
        if adj:
            for x in range(1, m):
                tb[x] = u[x - 1].conjugate() * (c1 * x1[x - 1] + c2 * x2[x - 1])
        else:
            for x in range(1, m):
                tb[x] = u[x] * (c1 * x1[x - 1] + c2 * x2[x - 1])
        for q in range(m // n):
            e = q * n
            y = q * n + n - 1
            h = c1 * x1[y] + c2 * x2[y]
            tb[e] = u[y].conjugate() * h if adj else u[e] * h
    _r_acc(o1, o2, tb[:m], c3)


@_jit()
def _b_proj(d, x1, x2, c1, c2, n, rot, g):  # pragma: no cover - compiled
    """``d = c1 x1 + c2 x2`` read at the in-row neighbour."""
    if rot == 0:
        for x in range(d.shape[0]):
            d[x] = c1 * x1[x] + c2 * x2[x]
        return
    for q in range(d.shape[0] // n):
        z = q * n
        for x in range(n):
            if rot == 1:
                y = z + (x + 1 if x + 1 < n else 0)
            elif rot == -1:
                y = z + (x - 1 if x > 0 else n - 1)
            else:
                y = z + g[x]
            d[z + x] = c1 * x1[y] + c2 * x2[y]


@_jit()
def _b_load(d, src, n, rot, g):  # pragma: no cover - compiled
    """``d = src`` read at the in-row neighbour."""
    for q in range(d.shape[0] // n):
        z = q * n
        for x in range(n):
            if rot == 1:
                y = z + (x + 1 if x + 1 < n else 0)
            elif rot == -1:
                y = z + (x - 1 if x > 0 else n - 1)
            else:
                y = z + g[x]
            d[z + x] = src[y]


@_jit()
def _r_mul(d, u, h, first, adj):  # pragma: no cover - compiled
    """``d (+)= u h`` (``conj(u) h`` for ``adj``; ``=`` when ``first``)."""
    m = d.shape[0]
    if adj:
        if first:
            for x in range(m):
                d[x] = u[x].conjugate() * h[x]
        else:
            for x in range(m):
                d[x] += u[x].conjugate() * h[x]
    elif first:
        for x in range(m):
            d[x] = u[x] * h[x]
    else:
        for x in range(m):
            d[x] += u[x] * h[x]


@_jit()
def _r_acc(o1, o2, t, c3):  # pragma: no cover - compiled
    for x in range(o1.shape[0]):
        v = t[x]
        o1[x] += v
        o2[x] += c3 * v


@_jit()
def _wd_block(out, psi, U, si, b, mu, p0, p1, d, fwd, rot, n, g, spins, cp, cr, c1, h, t, ub):  # pragma: no cover
    """One hop (direction mu, forward or backward) on the rows ``[p0, p1)`` whose neighbours are the rows
    ``[p0 + d, p1 + d)`` (read at the in-row neighbour ``rot``). For each transported spin component
    s_j: ``h = c1 (psi_s + cp_j psi_p(s))`` at the neighbour, ``t = U h`` (forward: the link at x;
    backward: ``U^dag`` at the neighbour), ``out_s += t``, ``out_p(s) += cr_j t``. Flat arrays:
    psi, out (S, B, Ns, Nc, R n); U (B, nd, Nc, Nc, R n); scratch h (nh, Nc, >= m), t (Nc, >= m), ub (Nc, Nc, >= m)."""
    Nc = out.shape[3]
    a0 = p0 * n
    a1 = p1 * n
    m = a1 - a0
    q0 = a0 + d * n
    q1 = a1 + d * n
    adj = not fwd
    for j in range(spins.shape[0]):
        s = spins[j, 0]
        ps = spins[j, 1]
        c2 = c1 * cp[j]
        if Nc == 1:
            uu = U[b, mu, 0, 0, q0:q1] if adj else U[b, mu, 0, 0, a0:a1]
            o1 = out[si, b, s, 0, a0:a1]
            o2 = out[si, b, ps, 0, a0:a1]
            x1 = psi[si, b, s, 0, q0:q1]
            x2 = psi[si, b, ps, 0, q0:q1]
            if rot == 1 or rot == -1:
                _b_hop_rot(o1, o2, x1, x2, uu, c1, c2, cr[j], n, rot, t[0], adj)
            else:
                _b_hop(o1, o2, x1, x2, uu, c1, c2, cr[j], n, rot, g, adj)
            continue
        for a in range(Nc):
            _b_proj(h[j, a, :m], psi[si, b, s, a, q0:q1], psi[si, b, ps, a, q0:q1], c1, c2, n, rot, g)
    if Nc == 1:
        return
    shifted = adj and rot != 0
    if shifted:
        for a in range(Nc):
            for e in range(Nc):
                _b_load(ub[a, e, :m], U[b, mu, a, e, q0:q1], n, rot, g)
    for j in range(spins.shape[0]):
        s = spins[j, 0]
        ps = spins[j, 1]
        for a in range(Nc):
            ta = t[a, :m]
            for e in range(Nc):
                i1 = e if adj else a
                i2 = a if adj else e
                if shifted:
                    u = ub[i1, i2, :m]
                elif adj:
                    u = U[b, mu, i1, i2, q0:q1]
                else:
                    u = U[b, mu, i1, i2, a0:a1]
                _r_mul(ta, u, h[j, e, :m], e == 0, adj)
            _r_acc(out[si, b, s, a, a0:a1], out[si, b, ps, a, a0:a1], ta, cr[j])


@_jit(parallel=True)
def _wilson_dirac_kernel(psi, U, dims, K, n, gidx, spins, cproj, crec, alpha, beta, anti, rpc, out):  # pragma: no cover
    """out = alpha psi + beta H psi on flat fields: psi, out (S, B, Ns, Nc, R n); U (B, nd, Nc, Nc, R n).
    A row is the last K lattice axes (n sites; K = 2: the in-row neighbours of direction nd - 2 + i,
    step 1 - 2k, are gidx[i, k]; K = 1: the next/previous site). spins (nd, 2, nh, 2) int64
    [mu, backward?, j] = (s_j, p(s_j)); cproj, crec (nd, 2, nh) complex128."""
    S, B, Ns, Nc, V = psi.shape
    nd = dims.shape[0]
    R = V // n
    nc = (R + rpc - 1) // rpc
    for c in _prange(S * B * nc):
        sb = c // nc
        si = sb // B
        b = sb - si * B
        o0 = (c - sb * nc) * rpc
        o1 = min(R, o0 + rpc)
        m = (o1 - o0) * n
        h = np.empty((Ns // 2, Nc, m), dtype=np.complex128)
        t = np.empty((Nc, m), dtype=np.complex128)
        ub = np.empty((Nc, Nc, m), dtype=np.complex128)
        for s in range(Ns):
            for a in range(Nc):
                dst = out[si, b, s, a, o0 * n:o1 * n]
                if alpha == 0.0:
                    dst[:] = 0.0
                else:
                    src = psi[si, b, s, a, o0 * n:o1 * n]
                    for x in range(m):
                        dst[x] = alpha * src[x]
        for mu in range(nd):
            stride = 1
            for e in range(mu + 1, nd - K):
                stride *= dims[e]
            for k in range(2):
                step = 1 - 2 * k
                if mu >= nd - K:   # neighbours inside the row
                    rot = step if K == 1 else 2
                    g = gidx[mu - nd + K, k]
                    _wd_block(out, psi, U, si, b, mu, o0, o1, 0, k == 0, rot, n, g, spins[mu, k], cproj[mu, k],
                              crec[mu, k], beta, h, t, ub)
                    continue
                L = dims[mu]
                g = gidx[0, k]
                p = o0
                while p < o1:   # runs of rows with the same neighbour offset (and boundary sign)
                    xc = (p // stride) % L
                    wrap = (step == 1 and xc == L - 1) or (step == -1 and xc == 0)
                    d = stride * step * (1 - L) if wrap else stride * step
                    # rows up to the next change of x_mu (or the chunk end)
                    q = min(o1, (p // stride + 1) * stride) if wrap else p + 1
                    if not wrap:
                        while q < o1:
                            xq = (q // stride) % L
                            if (step == 1 and xq == L - 1) or (step == -1 and xq == 0):
                                break
                            q += 1
                    c1 = -beta if (anti and mu == 0 and wrap) else beta
                    _wd_block(out, psi, U, si, b, mu, p, q, d, k == 0, 0, n, g, spins[mu, k], cproj[mu, k],
                              crec[mu, k], c1, h, t, ub)
                    p = q


# --------------------------------------------------------------------------------------------------
# Python wrappers: qualify the inputs (else decline with None), reshape views, call the kernels
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


def _prod(t: tuple[int, ...]) -> int:
    p = 1
    for n in t:
        p *= n
    return p


def _gauge_ok(U: Any, nd: Any, dtype: Any, inner: int) -> bool:
    return (isinstance(nd, int) and nd >= 2 and _ok(U, dtype) and U.ndim >= nd + 1 + inner
            and U.shape[U.ndim - nd - 1 - inner] == nd and 0 not in U.shape[U.ndim - nd:])


def _u1_plaquette(theta: Any, nd: int, field: bool) -> Any:
    if not _gauge_ok(theta, nd, np.float64, 0):
        return None
    bshape, L, dims, K, R, Lx = _geometry(theta, nd, 1)
    B = _prod(bshape)
    th = theta.reshape(B, nd, R, Lx)
    npl = nd * (nd - 1) // 2
    rpc, nc = _chunking(B, R, Lx, 8192)
    partial = np.empty(B * nc)
    out = np.empty((B, npl, R, Lx)) if field else np.empty((1, 1, 1, 1))
    _u1_plaquette_kernel(th, dims, K, rpc, out, field, partial)
    if field:
        return out.reshape(bshape + (npl,) + L)
    return partial.reshape(B, nc).sum(axis=1).reshape(bshape)


def u1_plaquette_cos_sum(theta: Any, nd: int) -> Any:
    """``sum_x sum_{mu<nu} cos theta_{mu nu}(x)`` per configuration, or None (declined)."""
    return _u1_plaquette(theta, nd, False)


def u1_plaquette_field(theta: Any, nd: int) -> Any:
    """``cos theta_{mu nu}(x)``, shape ``(*B, n_planes, *L)``, or None (declined)."""
    return _u1_plaquette(theta, nd, True)


def u1_wilson_force(theta: Any, beta: Any, nd: int) -> Any:
    """``dS/dtheta`` of ``S = -beta sum cos theta_P``, shape of ``theta``, or None (declined)."""
    if not (_gauge_ok(theta, nd, np.float64, 0) and _real(beta)):
        return None
    bshape, L, dims, K, R, Lx = _geometry(theta, nd, 1)
    B = _prod(bshape)
    F = np.empty(theta.shape)
    rpc, _ = _chunking(B, R, Lx, 4096)
    _u1_force_kernel(theta.reshape(B, nd, R, Lx), dims, K, rpc, float(beta), F.reshape(B, nd, R, Lx))
    return F


def _sun_plaquette(U: Any, nd: int, field: bool) -> Any:
    if not (_gauge_ok(U, nd, np.complex128, 2) and U.shape[-nd - 1] == U.shape[-nd - 2]):
        return None
    bshape, L, dims, K, R, Lx = _geometry(U, nd, 3)
    N = int(U.shape[-nd - 1])
    B = _prod(bshape)
    npl = nd * (nd - 1) // 2
    rpc, nc = _chunking(B, R, Lx, 1024)
    partial = np.empty(B * nc)
    out = np.empty((B, npl, R, Lx)) if field else np.empty((1, 1, 1, 1))
    _sun_plaquette_kernel(U.reshape(B, nd, N, N, R, Lx), dims, K, rpc, out, field, partial)
    if field:
        return out.reshape(bshape + (npl,) + L)
    return partial.reshape(B, nc).sum(axis=1).reshape(bshape)


def sun_re_tr_plaquette_sum(U: Any, nd: int) -> Any:
    """``sum_x sum_{mu<nu} Re tr P_{mu nu}(x)`` per configuration, or None (declined)."""
    return _sun_plaquette(U, nd, False)


def sun_plaquette_field(U: Any, nd: int) -> Any:
    """``(1/N) Re tr P_{mu nu}(x)``, shape ``(*B, n_planes, *L)``, or None (declined)."""
    return _sun_plaquette(U, nd, True)


def sun_wilson_force(U: Any, beta: Any, nd: int) -> Any:
    """``(beta/(2N)) project_algebra(U_mu A_mu)``, shape of ``U``, or None (declined)."""
    if not (_gauge_ok(U, nd, np.complex128, 2) and U.shape[-nd - 1] == U.shape[-nd - 2] and _real(beta)):
        return None
    bshape, L, dims, K, R, Lx = _geometry(U, nd, 3)
    N = int(U.shape[-nd - 1])
    B = _prod(bshape)
    F = np.empty(U.shape, dtype=np.complex128)
    rpc, _ = _chunking(B, R, Lx, 256)
    _sun_force_kernel(U.reshape(B, nd, N, N, R, Lx), dims, K, rpc, float(beta) / (2.0 * N),
                      F.reshape(B, nd, N, N, R, Lx))
    return F


def _phi_ok(phi: Any, nd: Any, *couplings: Any) -> bool:
    return (isinstance(nd, int) and nd >= 1 and _ok(phi, np.float64) and phi.ndim >= nd
            and 0 not in phi.shape[phi.ndim - nd:] and all(_real(v) for v in couplings))


def phi4_action(phi: Any, kappa: Any, lam: Any, nd: int) -> Any:
    """Hopping-form phi^4 action per configuration, or None (declined)."""
    if not _phi_ok(phi, nd, kappa, lam):
        return None
    bshape, L, dims, K, R, Lx = _geometry(phi, nd, 0)
    B = _prod(bshape)
    rpc, nc = _chunking(B, R, Lx, 16384)
    partial = np.empty(B * nc)
    _phi4_action_kernel(phi.reshape(B, R, Lx), dims, K, rpc, 1.0 - 2.0 * float(lam), float(lam), 2.0 * float(kappa),
                        partial)
    return partial.reshape(B, nc).sum(axis=1).reshape(bshape)


def phi4_force(phi: Any, kappa: Any, lam: Any, nd: int) -> Any:
    """``dS/dphi`` of the hopping-form phi^4 action, or None (declined)."""
    if not _phi_ok(phi, nd, kappa, lam):
        return None
    bshape, L, dims, K, R, Lx = _geometry(phi, nd, 0)
    B = _prod(bshape)
    F = np.empty(phi.shape)
    rpc, _ = _chunking(B, R, Lx, 16384)
    _phi4_force_kernel(phi.reshape(B, R, Lx), dims, K, rpc, 1.0 - 2.0 * float(lam), float(lam), 2.0 * float(kappa),
                       F.reshape(B, R, Lx))
    return F


_GAMMA_CACHE: dict[Any, tuple[Any, Any, Any]] = {}


def _gamma_arrays(gammas: Any, dagger: bool) -> tuple[Any, Any, Any] | None:
    """Spin-projection tables of the hop from the caller's monomial gamma tables ``[(perm, coef)] * nd``
    (``(gamma psi)_s = coef[s] psi_{perm[s]}``): for direction mu and forward/backward hop the
    transported components ``s < perm[s]``, the projection coefficients ``-+ sg coef[s]`` and the
    reconstruction coefficients ``-+ sg coef[perm[s]]`` (``sg = -1`` for the adjoint)."""
    key = (gammas, dagger)
    hit = _GAMMA_CACHE.get(key)
    if hit is not None:
        return hit
    nd = len(gammas)
    ns = len(gammas[0][0])
    sg = -1 if dagger else 1
    spins = np.zeros((nd, 2, ns // 2, 2), dtype=np.int64)
    cproj = np.zeros((nd, 2, ns // 2), dtype=np.complex128)
    crec = np.zeros((nd, 2, ns // 2), dtype=np.complex128)
    for mu, (perm, coef) in enumerate(gammas):
        reps = [s for s in range(ns) if s < perm[s]]
        if len(perm) != ns or len(reps) != ns // 2:
            return None
        for k, sign in enumerate((-sg, sg)):   # forward (1 - sg gamma), backward (1 + sg gamma)
            for j, s in enumerate(reps):
                spins[mu, k, j] = (s, perm[s])
                cproj[mu, k, j] = sign * complex(coef[s])
                crec[mu, k, j] = sign * complex(coef[perm[s]])
    out = (spins, cproj, crec)
    if len(_GAMMA_CACHE) < 64:
        _GAMMA_CACHE[key] = out
    return out


def wilson_dirac_apply(psi: Any, links: Any, gammas: Any, alpha: Any, beta: Any, *, dagger: bool = False,
                       antiperiodic: bool = True) -> Any:
    """``alpha psi + beta H psi`` (``H^dag`` for ``dagger``) for the Wilson hopping term, or None (declined).

    ``H psi(x) = sum_mu [(1 - s gamma_mu) U_mu(x) psi(x+mu) + (1 + s gamma_mu) U_mu(x-mu)^dag psi(x-mu)]``,
    ``s = -1`` for ``dagger``; a hop across the time boundary gets -1 when ``antiperiodic``. So
    ``D psi = wilson_dirac_apply(psi, links, gammas, 1, -kappa)``. ``psi``: ``(*S, *B, Ns, Nc, *L)``
    complex128; ``links``: ``(*B, nd, Nc, Nc, *L)`` complex128 (U(1): the phases ``exp(i theta)`` as
    ``1 x 1`` matrices); ``gammas``: the monomial gamma tables ``[(perm, coef)] * nd`` of
    ``latticekit.actions.dirac`` (the operator passes its own, so both paths use the same basis).
    """
    if not (_ok(psi, np.complex128) and _ok(links, np.complex128) and _real(alpha) and _real(beta)
            and isinstance(gammas, tuple) and len(gammas) >= 2):
        return None
    nd = len(gammas)
    if links.ndim < nd + 3 or links.shape[links.ndim - nd - 3] != nd:
        return None
    Nc = int(links.shape[-nd - 1])
    ns = len(gammas[0][0])
    L = tuple(int(n) for n in links.shape[links.ndim - nd:])
    bg = tuple(int(n) for n in links.shape[: links.ndim - nd - 3])
    if (links.shape[-nd - 2] != Nc or 0 in L or ns % 2 or psi.ndim < nd + 2 + len(bg)
            or tuple(psi.shape[psi.ndim - nd - 2:]) != (ns, Nc) + L
            or tuple(psi.shape[psi.ndim - nd - 2 - len(bg): psi.ndim - nd - 2]) != bg
            or (antiperiodic and L[0] < 2)):
        return None
    tabs = _gamma_arrays(gammas, bool(dagger))
    if tabs is None:
        return None
    B = _prod(bg)
    S = _prod(tuple(int(n) for n in psi.shape[: psi.ndim - nd - 2 - len(bg)]))
    K = 2 if (nd >= 3 and L[-1] < 64) else 1   # rows of the last two axes when the last one is short
    R, Lx = _prod(L[: nd - K]), _prod(L[nd - K:])
    out = np.empty(psi.shape, dtype=np.complex128)
    rpc, _ = _chunking(S * B, R, Lx, 1024 if Nc == 1 else 512)
    args = (psi.reshape(S, B, ns, Nc, R * Lx), links.reshape(B, nd, Nc, Nc, R * Lx), np.asarray(L, dtype=np.int64),
            K, Lx, _row_neighbours(L[nd - 2], L[nd - 1], K), tabs[0], tabs[1], tabs[2], float(alpha), float(beta),
            bool(antiperiodic), rpc, out.reshape(S, B, ns, Nc, R * Lx))
    nt = _numba.get_num_threads()
    if nt > 1 and S * B * R * Lx * Nc * Nc < _WD_SERIAL_WORK:
        # one thread unless the field is large (~15 ms of work on one core): a parallel launch costs little
        # on an idle machine, but on a loaded one a worker that waits for a scheduler time slice stalls
        # the whole call (measured on the shared 2-core VM: 0.7 ms -> 8 ms, 4 ms -> 8-12 ms)
        _numba.set_num_threads(1)
        try:
            _wilson_dirac_kernel(*args)
        finally:
            _numba.set_num_threads(nt)
    else:
        _wilson_dirac_kernel(*args)
    return out


_WD_SERIAL_WORK = 1 << 20   # sites x Nc^2 below which the Dirac kernel runs on one thread (see below)
_NBR_CACHE: dict[tuple[int, int, int], Any] = {}


def _row_neighbours(L2: int, L3: int, K: int) -> Any:
    """In-row neighbour indices ``g[i, k, x]`` of a row of ``L2 x L3`` sites (K = 2): direction
    ``nd - 2 + i``, step ``1 - 2k``; a dummy ``(1, 2, 1)`` array for K = 1."""
    key = (L2, L3, K)
    g = _NBR_CACHE.get(key)
    if g is None:
        if K == 1:
            g = np.zeros((1, 2, 1), dtype=np.int64)
        else:
            y, z = np.divmod(np.arange(L2 * L3, dtype=np.int64), L3)
            g = np.empty((2, 2, L2 * L3), dtype=np.int64)
            for k, st in enumerate((1, -1)):
                g[0, k] = ((y + st) % L2) * L3 + z
                g[1, k] = y * L3 + (z + st) % L3
        if len(_NBR_CACHE) < 64:
            _NBR_CACHE[key] = g
    return g


def kernels() -> dict[str, Callable[..., Any]]:
    """The fast paths by registry name (backend ``"numpy"``); empty when numba is not importable."""
    if _numba is None:
        return {}
    return {name: globals()[name] for name in NAMES}

