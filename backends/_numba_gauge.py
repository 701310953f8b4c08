"""Numba fast paths for gauge fields on the NumPy backend: plaquette, Wilson action and force, U(1) and SU(N).

Row layout, chunking, declining rules and caching: :mod:`latticekit.backends._numba_common`.
``cos``/``sin`` of the U(1) plaquette angles are evaluated by a branch-free polynomial (Cody-Waite
reduction by pi/2 and the fdlibm minimax kernels, compiled with FMA contraction, error about 1 ulp)
that vectorises; a row (in 2D: a chunk) with an angle beyond 1e5 (where that reduction loses accuracy)
is recomputed with ``math.cos``/``math.sin``. In 2D the U(1) kernels run over flat chunks of whole
rows of the batch -- several configurations per chunk for small lattices -- as the phi^4 ones do
(:func:`_u1_2d_plaquette_flat`, :func:`_u1_2d_force_flat`; see the comment above them); in more
dimensions they copy shifted rows (:func:`_u1_theta_row`). The polynomial is the cost of the 2D
kernels: about 1 ns per site on one core of the benchmark VM, vectorised, with the chunk in L1.
SU(2) and SU(3) run the unrolled kernels of :mod:`latticekit.backends._numba_su3`; other N
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

from . import _numba_su3
from ._numba_common import (
    _chunking,
    _geometry,
    _jit,
    _load,
    _load1,
    _load_mat,
    _ok,
    _prange,
    _prod,
    _real,
    _shift,
    available,
)
from ._numba_phi4 import _chunks_2d

__all__ = ["NAMES", "kernels"]

NAMES = ("u1_plaquette_cos_sum", "u1_plaquette_field", "u1_wilson_force", "sun_re_tr_plaquette_sum",
         "sun_plaquette_field", "sun_wilson_force")


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


@_jit(contract=True)
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
# U(1) in 2D on flat chunks of whole rows (several configurations per chunk for small lattices)
# --------------------------------------------------------------------------------------------------
# A row of L1 sites is short for small L, and a loop per row pays its set-up (and, vectorised, a scalar
# remainder of the polynomial) for a few sites. Here, as for phi^4 in 2D (:mod:`latticekit.backends._numba_phi4`),
# a chunk is a run of whole rows of the flattened batch -- several whole configurations for small
# lattices, part of one for large ones (:func:`_chunks_2d`; ``_U1_SITES_2D`` sites) -- and:
#
# 1. the plaquette angles ``theta_01(x) = th0(x) + th1(x + e0) - th0(x + e1) - th1(x)`` are taken per
#    configuration at flat offsets (+L1 along axis 0, +1 along axis 1; theta_1 is the block of V = L0 L1
#    sites after theta_0), then the wrapped sites -- the last row, the last site of each row -- redone
#    with uint64 indices. For short rows (L1 < ``_U1_FUSED_L1``) the angles go into a buffer
#    (:func:`_u1_2d_angles`, additions only) and the polynomial then runs once over the whole chunk
#    (:func:`_u1_cos_inplace`, :func:`_u1_sin_inplace`), never split by rows or configurations; for
#    long rows the angles are computed inside the polynomial's loop (:func:`_u1_2d_trig_rows`, one pass
#    over the field, the loads overlapping the arithmetic) and only the L0 wrapped sites of a
#    configuration go through a small buffer;
# 2. then the per-configuration sums (:func:`_sum8_at`) or the force (:func:`_u1_2d_force_out`:
#    differences of the sines at flat offsets -1 and -L1, the first site of each row and the first row
#    redone; a chunk of part of a configuration also holds the sines of the row before its first).
#
# An angle beyond ``_BIG`` anywhere in a chunk: the chunk's angles are recomputed and go through
# ``math.sin``/``math.cos`` (:func:`_u1_exact_inplace`).
@_jit(inline=True)
def _u1_2d_angles(ang, ao, f, cb, r0, r1, L0, L1):  # pragma: no cover - compiled
    """``ang[ao + x] = theta_01`` for the sites ``x`` of rows ``[r0, r1)`` of the configuration whose
    theta_0 starts at the flat index ``cb`` of ``f`` (theta_1 at ``cb + V``), periodic."""
    u = np.uint64
    one = u(1)
    k = u(L1)
    uV = u(L0 * L1)
    ua = u(ao)
    i0 = u(cb + r0 * L1)
    rb = min(r1, L0 - 1)                 # rows [r0, rb) have their forward row (x + e0) next in memory
    nb = u(max(rb - r0, 0) * L1)
    for x in range(u(0), nb):
        i = i0 + x
        ang[ua + x] = f[i] + f[i + uV + k] - f[i + one] - f[i + uV]
    if r1 == L0:   # the last row: x + e0 is row 0
        i = i0 + nb
        j = u(cb) + uV
        a = ua + nb
        for x in range(u(0), k):
            ang[a + x] = f[i + x] + f[j + x] - f[i + x + one] - f[i + x + uV]
    # the last site of each row: x + e1 is the first site of the row (above, the next row's first was read)
    e = k - one
    z = ua + e
    i = i0 + e
    for _ in range(r0, rb):
        ang[z] = f[i] + f[i + uV + k] - f[i - e] - f[i + uV]
        z += k
        i += k
    if r1 == L0:
        ang[z] = f[i] + f[u(cb) + uV + e] - f[i - e] - f[i + uV]


@_jit(contract=True)
def _u1_cos_inplace(v, o, n):  # pragma: no cover - compiled
    """``v[o + x] = cos v[o + x]`` for ``x < n`` by the polynomial; returns the number of angles beyond
    ``_BIG`` (the caller then recomputes the angles and takes :func:`_u1_exact_inplace`)."""
    uo = np.uint64(o)
    nbad = 0
    for x in range(np.uint64(0), np.uint64(n)):
        a = v[uo + x]
        v[uo + x] = _sincos(a)[1]
        nbad += 1 if abs(a) > _BIG else 0
    return nbad


@_jit(contract=True)
def _u1_sin_inplace(v, o, n):  # pragma: no cover - compiled
    """``v[o + x] = sin v[o + x]`` (as :func:`_u1_cos_inplace`)."""
    uo = np.uint64(o)
    nbad = 0
    for x in range(np.uint64(0), np.uint64(n)):
        a = v[uo + x]
        v[uo + x] = _sincos(a)[0]
        nbad += 1 if abs(a) > _BIG else 0
    return nbad


@_jit()
def _u1_exact_inplace(v, o, n, want_sin):  # pragma: no cover - compiled
    """``v[o + x] = sin`` (or ``cos``) ``v[o + x]`` by ``math.sin``/``math.cos`` (angles beyond ``_BIG``)."""
    for x in range(o, o + n):
        v[x] = math.sin(v[x]) if want_sin else math.cos(v[x])


@_jit()
def _sum8_at(d, o, n):  # pragma: no cover - compiled
    """``sum(d[o:o + n])`` with eight partial sums (independent chains, no view)."""
    u = np.uint64
    uo = u(o)
    n8 = u(n - n % 8)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    for x in range(u(0), n8, u(8)):
        i = uo + x
        s0 += d[i]
        s1 += d[i + u(1)]
        s2 += d[i + u(2)]
        s3 += d[i + u(3)]
        s4 += d[i + u(4)]
        s5 += d[i + u(5)]
        s6 += d[i + u(6)]
        s7 += d[i + u(7)]
    for x in range(n8, u(n)):
        s0 += d[uo + x]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@_jit(inline=True)
def _u1_2d_force_out(F, cb, s, so, r0, r1, L0, L1, beta, whole):  # pragma: no cover - compiled
    """``F_0(x) = beta [s(x) - s(x - e1)]``, ``F_1(x) = beta [s(x - e0) - s(x)]`` for rows ``[r0, r1)`` of the
    configuration at flat ``cb`` of ``F`` (F_1 at ``cb + V``); the sines of row ``r0`` at ``s[so:]``
    (``so >= L1``) and of the row before it at ``s[so - L1:]``, except that for a whole configuration
    (``whole``) the row before row 0 is its last row, at ``s[so + (L0 - 1) L1:]``."""
    u = np.uint64
    one = u(1)
    k = u(L1)
    uV = u(L0 * L1)
    us = u(so)
    i0 = u(cb + r0 * L1)
    n = u((r1 - r0) * L1)
    for x in range(u(0), n):
        sx = s[us + x]
        F[i0 + x] = beta * (sx - s[us + x - one])
        F[i0 + uV + x] = beta * (s[us + x - k] - sx)
    # the first site of each row: x - e1 is the row's last site
    e = k - one
    i = i0
    j = us
    for _ in range(r0, r1):
        F[i] = beta * (s[j] - s[j + e])
        i += k
        j += k
    if whole:   # row 0: x - e0 is the last row of the configuration (in the buffer)
        p = us + uV - k
        for x in range(u(0), k):
            F[i0 + uV + x] = beta * (s[p + x] - s[us + x])


@_jit(contract=True)
def _u1_2d_trig_rows(v, o, f, cb, r0, r1, L0, L1, t, want_sin):  # pragma: no cover - compiled
    """``v[o + x] = sin`` (or ``cos``) ``theta_01`` for the sites of rows ``[r0, r1)`` of the configuration at
    flat ``cb`` (as :func:`_u1_2d_angles`), the angles computed inside the polynomial's loop (one pass:
    for large lattices, where the loads from memory then overlap the arithmetic). The last site of each
    row (whose x + e1 wraps around) gets its angle into ``t`` (length >= r1 - r0) and its sin/cos there,
    vectorised, and is then copied over. Returns the number of angles beyond ``_BIG``."""
    u = np.uint64
    one = u(1)
    k = u(L1)
    uV = u(L0 * L1)
    ua = u(o)
    i0 = u(cb + r0 * L1)
    rb = min(r1, L0 - 1)
    nb = u(max(rb - r0, 0) * L1)
    nbad = 0
    for x in range(u(0), nb):
        i = i0 + x
        a = f[i] + f[i + uV + k] - f[i + one] - f[i + uV]
        sv, cv = _sincos(a)
        v[ua + x] = sv if want_sin else cv
        nbad += 1 if abs(a) > _BIG else 0
    if r1 == L0:   # the last row: x + e0 is row 0
        i = i0 + nb
        j = u(cb) + uV
        w = ua + nb
        for x in range(u(0), k):
            a = f[i + x] + f[j + x] - f[i + x + one] - f[i + x + uV]
            sv, cv = _sincos(a)
            v[w + x] = sv if want_sin else cv
            nbad += 1 if abs(a) > _BIG else 0
    # the last site of each row, through t
    e = k - one
    i = i0 + e
    nq = u(r1 - r0)
    for q in range(u(0), u(rb - r0)):
        t[q] = f[i] + f[i + uV + k] - f[i - e] - f[i + uV]
        i += k
    if r1 == L0:
        t[nq - one] = f[i] + f[u(cb) + uV + e] - f[i - e] - f[i + uV]
    for q in range(u(0), nq):
        a = t[q]
        sv, cv = _sincos(a)
        t[q] = sv if want_sin else cv
        nbad += 1 if abs(a) > _BIG else 0
    z = ua + e
    for q in range(u(0), nq):
        v[z] = t[q]
        z += k
    return nbad


@_jit()
def _rows_2d_u1(c, G, L0, rpc, ncpc):  # pragma: no cover - compiled
    """Rows ``[g0, g1)`` of chunk ``c`` (as ``_rows_2d`` of :mod:`latticekit.backends._numba_phi4`)."""
    if ncpc > 1:
        b = c // ncpc
        j = c - b * ncpc
        return b * L0 + j * rpc, b * L0 + min(L0, (j + 1) * rpc)
    return c * rpc, min(G, c * rpc + rpc)


@_jit()
def _u1_2d_chunk_angles(v, o, f, g0, g1, L0, L1, ncpc):  # pragma: no cover - compiled
    """The angles of the rows ``[g0, g1)`` (whole configurations when ``ncpc == 1``, else part of one)
    into ``v[o:]``."""
    V = L0 * L1
    b0 = g0 // L0
    if ncpc == 1:
        for b in range(b0, g1 // L0):
            _u1_2d_angles(v, o + (b - b0) * V, f, 2 * b * V, 0, L0, L0, L1)
    else:
        _u1_2d_angles(v, o, f, 2 * b0 * V, g0 - b0 * L0, g1 - b0 * L0, L0, L1)


@_jit()
def _u1_2d_chunk_trig(v, o, f, g0, g1, L0, L1, ncpc, t, want_sin):  # pragma: no cover - compiled
    """:func:`_u1_2d_trig_rows` over the rows ``[g0, g1)`` of a chunk (as :func:`_u1_2d_chunk_angles`)."""
    V = L0 * L1
    b0 = g0 // L0
    nbad = 0
    if ncpc == 1:
        for b in range(b0, g1 // L0):
            nbad += _u1_2d_trig_rows(v, o + (b - b0) * V, f, 2 * b * V, 0, L0, L0, L1, t, want_sin)
    else:
        nbad += _u1_2d_trig_rows(v, o, f, 2 * b0 * V, g0 - b0 * L0, g1 - b0 * L0, L0, L1, t, want_sin)
    return nbad


@_jit(parallel=True)
def _u1_2d_plaquette_flat(f, L0, L1, rpc, ncpc, nc, fused, field, write, partial):  # pragma: no cover - compiled
    """Flat ``f`` (B 2 L0 L1), chunks of rows; ``partial[b ncpc + c % ncpc]`` = the sum of cos theta_01 of
    chunk ``c`` over configuration ``b``; ``field`` (flat, B L0 L1) the cosines when ``write`` (written
    there directly; else into a scratch buffer). ``fused``: angles and cosines in one pass
    (:func:`_u1_2d_trig_rows`), else the angles first and then the cosines over the whole chunk."""
    V = L0 * L1
    G = f.shape[0] // (2 * L1)
    for c in _prange(nc):
        g0, g1 = _rows_2d_u1(c, G, L0, rpc, ncpc)
        m = (g1 - g0) * L1
        v = field if write else np.empty(m)
        o = g0 * L1 if write else 0
        if fused:
            t = np.empty(max(L0, rpc))
            nbad = _u1_2d_chunk_trig(v, o, f, g0, g1, L0, L1, ncpc, t, False)
        else:
            _u1_2d_chunk_angles(v, o, f, g0, g1, L0, L1, ncpc)
            nbad = _u1_cos_inplace(v, o, m)
        if nbad > 0:
            _u1_2d_chunk_angles(v, o, f, g0, g1, L0, L1, ncpc)
            _u1_exact_inplace(v, o, m, False)
        if ncpc == 1:
            b0 = g0 // L0
            for b in range(b0, g1 // L0):
                partial[b] = _sum8_at(v, o + (b - b0) * V, V)
        else:
            partial[c] = _sum8_at(v, o, m)


@_jit(parallel=True)
def _u1_2d_force_flat(f, L0, L1, rpc, ncpc, nc, fused, beta, F):  # pragma: no cover - compiled
    """Flat ``f`` and ``F`` (B 2 L0 L1), chunks of rows. The sines of the chunk's rows sit at ``s[L1:]``;
    a chunk of part of a configuration has the row before its first at ``s[:L1]``. ``fused`` as for
    :func:`_u1_2d_plaquette_flat`."""
    V = L0 * L1
    G = f.shape[0] // (2 * L1)
    for c in _prange(nc):
        g0, g1 = _rows_2d_u1(c, G, L0, rpc, ncpc)
        m = (g1 - g0) * L1
        s = np.empty(m + L1)
        t = np.empty(max(L0, rpc)) if fused else np.empty(1)
        b0 = g0 // L0
        r0 = g0 - b0 * L0
        rp = r0 - 1 if r0 > 0 else L0 - 1
        if ncpc == 1:   # whole configurations: the row before row 0 is in the buffer
            if fused:
                nbad = _u1_2d_chunk_trig(s, L1, f, g0, g1, L0, L1, ncpc, t, True)
            else:
                _u1_2d_chunk_angles(s, L1, f, g0, g1, L0, L1, ncpc)
                nbad = _u1_sin_inplace(s, L1, m)
            if nbad > 0:
                _u1_2d_chunk_angles(s, L1, f, g0, g1, L0, L1, ncpc)
                _u1_exact_inplace(s, L1, m, True)
            for b in range(b0, g1 // L0):
                _u1_2d_force_out(F, 2 * b * V, s, L1 + (b - b0) * V, 0, L0, L0, L1, beta, True)
        else:
            if fused:
                nbad = _u1_2d_trig_rows(s, 0, f, 2 * b0 * V, rp, rp + 1, L0, L1, t, True)
                nbad += _u1_2d_chunk_trig(s, L1, f, g0, g1, L0, L1, ncpc, t, True)
            else:
                _u1_2d_angles(s, 0, f, 2 * b0 * V, rp, rp + 1, L0, L1)
                _u1_2d_chunk_angles(s, L1, f, g0, g1, L0, L1, ncpc)
                nbad = _u1_sin_inplace(s, 0, m + L1)
            if nbad > 0:
                _u1_2d_angles(s, 0, f, 2 * b0 * V, rp, rp + 1, L0, L1)
                _u1_2d_chunk_angles(s, L1, f, g0, g1, L0, L1, ncpc)
                _u1_exact_inplace(s, 0, m + L1, True)
            _u1_2d_force_out(F, 2 * b0 * V, s, L1, r0, g1 - b0 * L0, L0, L1, beta, False)


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
        _u1_2d_plaquette_flat(theta.reshape(-1), L[0], L[1], rpc, ncpc, nc, L[1] >= _U1_FUSED_L1, out.reshape(-1),
                              field, partial)
        nc = ncpc
    else:
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
    if nd == 2:   # flat chunks of whole rows (several configurations for small L)
        rpc, ncpc, nc = _chunks_2d(B, L[0], L[1], _U1_SITES_2D)
        _u1_2d_force_flat(theta.reshape(-1), L[0], L[1], rpc, ncpc, nc, L[1] >= _U1_FUSED_L1, float(beta),
                          F.reshape(-1))
    else:
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
    Ur = U.reshape(B, nd, N, N, R, Lx)
    if N in (2, 3):   # unrolled products on the float64 view (no copy): _numba_su3
        kern = _numba_su3._plaquette_kernel3 if N == 3 else _numba_su3._plaquette_kernel2
        kern(Ur.view(np.float64), dims, K, rpc, out, field, partial)
    else:
        _sun_plaquette_kernel(Ur, dims, K, rpc, out, field, partial)
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
        kern = _numba_su3._force_kernel3 if N == 3 else _numba_su3._force_kernel2
        kern(Ur.view(np.float64), dims, K, rpc, coef, Fr.view(np.float64))
    else:
        _sun_force_kernel(Ur, dims, K, rpc, coef, Fr)
    return F


_U1_SITES_2D = 2048     # sites per chunk of the 2D U(1) kernels (one scratch array of about this length)
_U1_FUSED_L1 = 32       # rows at least this long: angles and sin/cos in one pass (_u1_2d_trig_rows)


def kernels() -> dict[str, Callable[..., Any]]:
    """The fast paths of this module by registry name (backend ``"numpy"``); empty without numba."""
    if not available():
        return {}
    return {name: globals()[name] for name in NAMES}
