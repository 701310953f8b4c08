"""Numba fast paths for gauge fields on the NumPy backend: plaquette, Wilson action and force, U(1) and SU(N).

Row layout, chunking, declining rules and caching: :mod:`latticekit.backends._numba_common`.
``cos``/``sin`` of the U(1) plaquette angles are evaluated by a branch-free polynomial (Cody-Waite
reduction by pi/2 and the fdlibm minimax kernels, compiled with FMA contraction, error about 1 ulp)
that vectorises; a row (in 2D: a chunk) with an angle beyond 1e5 (where that reduction loses accuracy)
is recomputed with ``math.cos``/``math.sin``. In 2D the U(1) kernels run over flat chunks of whole
rows of the batch -- several configurations per chunk for small lattices -- as the phi^4 ones do
(:func:`_u1_2d_plaquette_flat`, :func:`_u1_2d_force_flat`; see the comment above them); in more
dimensions they work on rows (:func:`_u1_theta_row_t`), the force from a field of the sines
(:func:`_u1_sin_kernel`). The polynomial is the cost of the 2D kernels: about 1 ns per site on one core of
the benchmark VM, vectorised, with the chunk in L1.
SU(2) and SU(3) run the unrolled kernels of :mod:`latticekit.backends._numba_su2` and ``_numba_su3``; other N
small loops over the colour indices on row-sized buffers (``_mul_nn`` etc. here).

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

Examples
--------
>>> import numpy as np
>>> from latticekit.backends import _numba_gauge as kg
>>> theta = np.zeros((3, 2, 4, 4))                  # cold U(1) field, batch 3
>>> if kg.available():
...     out = kg.kernels()["u1_plaquette_cos_sum"](theta, 2)
... else:                                           # without numba the generic code runs instead
...     out = np.full(3, 16.0)
>>> out.tolist()
[16.0, 16.0, 16.0]
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from . import _numba_su2, _numba_su3
from ._numba_common import (
    _chunk_rows,
    _chunking,
    _chunks_2d,
    _geometry,
    _jit,
    _launch,
    _load,
    _load_mat,
    _ok,
    _outer_rows,
    _prange,
    _prod,
    _real,
    _shift,
    available,
)
from ._numba_u1_2d import _BIG, _sincos, _u1_2d_force_flat, _u1_2d_plaquette_flat

__all__ = ["NAMES", "kernels"]

NAMES = ("u1_plaquette_cos_sum", "u1_plaquette_field", "u1_wilson_force", "sun_re_tr_plaquette_sum",
         "sun_plaquette_field", "sun_wilson_force")


# --------------------------------------------------------------------------------------------------
# U(1)
# --------------------------------------------------------------------------------------------------
@_jit()
def _u1_theta_row_t(out, thb, mu, nu, o, fwd, nout, K, L2, t2, t3):  # pragma: no cover - compiled
    """``theta_{mu nu} = U_mu(y) + U_nu(y + mu) - U_mu(y + nu) - U_nu(y)`` along row ``o`` of one configuration
    ``thb`` (nd, R, Lx): the neighbour rows along the outer axes (``mu < nout = nd - K``) from the table
    ``fwd[o, mu]``, read in place; only the neighbours inside the row are copied, shifted (into ``t2``, ``t3``).
    (Until 2026-12-07 all four rows were copied and each neighbour row found by integer division.)"""
    nd = thb.shape[0]
    if mu < nout:
        u2 = thb[nu, fwd[o, mu]]
    else:
        _load(t2, thb[nu, o], 1 if (K == 2 and mu == nd - 2) else 0, 1 if mu == nd - 1 else 0, L2)
        u2 = t2
    if nu < nout:
        u3 = thb[mu, fwd[o, nu]]
    else:
        _load(t3, thb[mu, o], 1 if (K == 2 and nu == nd - 2) else 0, 1 if nu == nd - 1 else 0, L2)
        u3 = t3
    u1 = thb[mu, o]
    u4 = thb[nu, o]
    for x in range(out.shape[0]):
        out[x] = u1[x] + u2[x] - u3[x] - u4[x]


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
def _u1_plaquette_kernel(th, fwd, K, L2, rpc, field, write, partial):  # pragma: no cover - compiled
    """``cos theta_P`` summed per chunk of rows (``partial``) and, where ``write``, stored per plane
    (``field``); ``fwd`` the forward neighbour rows along the outer axes (:func:`_outer_rows`)."""
    B, nd, R, Lx = th.shape
    nout = nd - K
    nc = (R + rpc - 1) // rpc
    for c in _prange(B * nc):
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
        thb = th[b]
        acc = np.zeros(Lx)
        ang = np.empty(Lx)
        val = np.empty(Lx)
        t2 = np.empty(Lx)
        t3 = np.empty(Lx)
        for o in range(o0, o1):
            p = 0
            for mu in range(nd):
                for nu in range(mu + 1, nd):
                    _u1_theta_row_t(ang, thb, mu, nu, o, fwd, nout, K, L2, t2, t3)
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
def _u1_sin_kernel(th, fwd, K, L2, rpc, S):  # pragma: no cover - compiled
    """``S[b, p, o] = sin theta_p`` along every row ``o`` (planes ``p = (mu, nu)``, mu < nu, in order)."""
    B, nd, R, Lx = th.shape
    nout = nd - K
    nc = (R + rpc - 1) // rpc
    for c in _prange(B * nc):
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
        thb = th[b]
        ang = np.empty(Lx)
        t2 = np.empty(Lx)
        t3 = np.empty(Lx)
        for o in range(o0, o1):
            p = 0
            for mu in range(nd):
                for nu in range(mu + 1, nd):
                    _u1_theta_row_t(ang, thb, mu, nu, o, fwd, nout, K, L2, t2, t3)
                    _sin_row(S[b, p, o], ang)
                    p += 1


@_jit(parallel=True)
def _u1_force_kernel(S, bwd, K, L2, rpc, beta, F):  # pragma: no cover - compiled
    """``F_mu(x) = beta sum_nu [sin theta_{mu nu}(x) - sin theta_{mu nu}(x - nu)]`` (the sign of the plane for
    nu < mu) from the sines ``S`` of :func:`_u1_sin_kernel`; ``bwd[o, mu]`` the backward neighbour row along an
    outer axis mu. Per row the planes are added in order, ``F_mu += s(x) - s(x - nu)`` and ``F_nu += s(x - mu)
    - s(x)`` for the plane (mu, nu): the operations of the kernel before 2026-12-07, which computed the three
    sines of each plane for every row (3 angles and sines per plane and site instead of 1)."""
    B, npl, R, Lx = S.shape
    nd = F.shape[1]
    nout = nd - K
    nc = (R + rpc - 1) // rpc
    for c in _prange(B * nc):
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
        Sb = S[b]
        facc = np.empty((nd, Lx))
        tm = np.empty(Lx)
        tn = np.empty(Lx)
        for o in range(o0, o1):
            facc[:, :] = 0.0
            p = 0
            for mu in range(nd):
                for nu in range(mu + 1, nd):
                    s0 = Sb[p, o]
                    if mu < nout:        # sin theta at x - mu
                        sm = Sb[p, bwd[o, mu]]
                    else:
                        _load(tm, s0, -1 if (K == 2 and mu == nd - 2) else 0, -1 if mu == nd - 1 else 0, L2)
                        sm = tm
                    if nu < nout:        # and at x - nu
                        sn = Sb[p, bwd[o, nu]]
                    else:
                        _load(tn, s0, -1 if (K == 2 and nu == nd - 2) else 0, -1 if nu == nd - 1 else 0, L2)
                        sn = tn
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
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
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
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
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
# Python wrappers: qualify the inputs (else decline with None), reshape views, call the kernels
# --------------------------------------------------------------------------------------------------
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
    if nd == 2:   # flat chunks of whole rows (several configurations for small L)
        rpc, ncpc, nc = _chunks_2d(B, L[0], L[1], _U1_SITES_2D)
        partial = np.empty(B * ncpc)
        _launch(_u1_2d_plaquette_flat, _NS_U1 * npl * B * R * Lx, theta.reshape(-1), L[0], L[1], rpc, ncpc, nc,
                L[1] >= _U1_FUSED_L1, out.reshape(-1), field, partial)
        nc = ncpc
    else:
        _launch(_u1_plaquette_kernel, _NS_U1 * npl * B * R * Lx, th, _outer_rows(L, K, (1,)), K,
                L[-2] if K == 2 else 1, rpc, out, field, partial)
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
    if nd == 2:   # flat chunks of whole rows (several configurations for small L)
        rpc, ncpc, nc = _chunks_2d(B, L[0], L[1], _U1_SITES_2D)
        _launch(_u1_2d_force_flat, 2 * _NS_U1 * B * R * Lx, theta.reshape(-1), L[0], L[1], rpc, ncpc, nc,
                L[1] >= _U1_FUSED_L1, float(beta), F.reshape(-1))
    else:   # the sines of every plane angle, then the force from them and their backward neighbours
        npl = nd * (nd - 1) // 2
        S = np.empty((B, npl, R, Lx))
        L2 = L[-2] if K == 2 else 1
        _launch(_u1_sin_kernel, _NS_U1 * npl * B * R * Lx, theta.reshape(B, nd, R, Lx), _outer_rows(L, K, (1,)),
                K, L2, rpc, S)
        _launch(_u1_force_kernel, 0.5 * _NS_U1 * npl * B * R * Lx, S, _outer_rows(L, K, (-1,)), K, L2, rpc,
                float(beta), F.reshape(B, nd, R, Lx))
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
    Ur = U.reshape(B, nd, N, N, R, Lx)
    if N in (2, 3):   # unrolled products on the float64 view (no copy): _numba_su3
        kern = _numba_su3._plaquette_kernel3 if N == 3 else _numba_su2._plaquette_kernel2
        _launch(kern, _ns_sun(N) * npl * B * R * Lx, Ur.view(np.float64), dims, K, rpc, out, field, partial)
    else:
        _launch(_sun_plaquette_kernel, _ns_sun(N) * npl * B * R * Lx, Ur, dims, K, rpc, out, field, partial)
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
    coef = float(beta) / (2.0 * N)
    Ur, Fr = U.reshape(B, nd, N, N, R, Lx), F.reshape(B, nd, N, N, R, Lx)
    if N in (2, 3):   # unrolled products on the float64 views (no copy): _numba_su3
        kern = _numba_su3._force_kernel3 if N == 3 else _numba_su2._force_kernel2
        _launch(kern, 5 * _ns_sun(N) * nd * (nd - 1) * B * R * Lx, Ur.view(np.float64), dims, K, rpc, coef,
                Fr.view(np.float64))
    else:
        _launch(_sun_force_kernel, 5 * _ns_sun(N) * nd * (nd - 1) * B * R * Lx, Ur, dims, K, rpc, coef, Fr)
    return F


# single-thread cost estimates for _launch (rough, from docs/kernels.md, one thread): U(1) about 1 ns per plaquette
# and site (the force twice that); SU(N) about 8.5 ns per plaquette and site at N = 3 (scaling as N^3); the force
# about 5 times that per staple pair, nd (nd - 1) pairs per site (4D SU(3): ~510 ns per site, measured 746)
_NS_U1 = 1.0


def _ns_sun(N: int) -> float:
    return 8.5 * (N / 3.0) ** 3


_U1_SITES_2D = 2048     # sites per chunk of the 2D U(1) kernels (one scratch array of about this length)
_U1_FUSED_L1 = 32       # rows at least this long: angles and sin/cos in one pass (_u1_2d_trig_rows)


def kernels() -> dict[str, Callable[..., Any]]:
    """The fast paths of this module by registry name (backend ``"numpy"``); empty without numba."""
    if not available():
        return {}
    return {name: globals()[name] for name in NAMES}
