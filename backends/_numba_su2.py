"""Numba kernels for SU(2) gauge fields: plaquette and Wilson force with unrolled colour products.

The two-colour twin of :mod:`latticekit.backends._numba_su3` (same layout, blocked planar row buffers of
``_BW`` sites, same math and loop structure; see its docstring): everything below the banner line is
written by ``tools/gen_numba_sun.py`` with N = 2 (edit the script, not the text). Called by the SU(N)
wrappers of :mod:`latticekit.backends._numba_gauge` for N = 2.
"""

from __future__ import annotations

import numpy as np

from ._numba_common import _chunk_rows, _jit, _prange, _shift
from ._numba_su3 import _BW

__all__: list[str] = []


# --------------------------------------------------------------------------------------------------
# SU(2): unrolled products on tuples, row functions, the prange kernels (generated text)
# --------------------------------------------------------------------------------------------------


@_jit(contract=True, inline=True)
def _mm2_nn(a, b):  # pragma: no cover - compiled
    """``a b`` of 2x2 matrices held as tuples ``(re_00, re_01, ..., im_00, ...)``."""
    r0 = (a[0] * b[0] - a[4] * b[4]) + (a[1] * b[2] - a[5] * b[6])
    r1 = (a[0] * b[1] - a[4] * b[5]) + (a[1] * b[3] - a[5] * b[7])
    r2 = (a[2] * b[0] - a[6] * b[4]) + (a[3] * b[2] - a[7] * b[6])
    r3 = (a[2] * b[1] - a[6] * b[5]) + (a[3] * b[3] - a[7] * b[7])
    i0 = (a[0] * b[4] + a[4] * b[0]) + (a[1] * b[6] + a[5] * b[2])
    i1 = (a[0] * b[5] + a[4] * b[1]) + (a[1] * b[7] + a[5] * b[3])
    i2 = (a[2] * b[4] + a[6] * b[0]) + (a[3] * b[6] + a[7] * b[2])
    i3 = (a[2] * b[5] + a[6] * b[1]) + (a[3] * b[7] + a[7] * b[3])
    return (r0, r1, r2, r3,
            i0, i1, i2, i3)


@_jit(contract=True, inline=True)
def _mm2_nd(a, b):  # pragma: no cover - compiled
    """``a b^dag`` of 2x2 matrices held as tuples ``(re_00, re_01, ..., im_00, ...)``."""
    r0 = (a[0] * b[0] + a[4] * b[4]) + (a[1] * b[1] + a[5] * b[5])
    r1 = (a[0] * b[2] + a[4] * b[6]) + (a[1] * b[3] + a[5] * b[7])
    r2 = (a[2] * b[0] + a[6] * b[4]) + (a[3] * b[1] + a[7] * b[5])
    r3 = (a[2] * b[2] + a[6] * b[6]) + (a[3] * b[3] + a[7] * b[7])
    i0 = (a[4] * b[0] - a[0] * b[4]) + (a[5] * b[1] - a[1] * b[5])
    i1 = (a[4] * b[2] - a[0] * b[6]) + (a[5] * b[3] - a[1] * b[7])
    i2 = (a[6] * b[0] - a[2] * b[4]) + (a[7] * b[1] - a[3] * b[5])
    i3 = (a[6] * b[2] - a[2] * b[6]) + (a[7] * b[3] - a[3] * b[7])
    return (r0, r1, r2, r3,
            i0, i1, i2, i3)


@_jit(contract=True, inline=True)
def _mm2_dn(a, b):  # pragma: no cover - compiled
    """``a^dag b`` of 2x2 matrices held as tuples ``(re_00, re_01, ..., im_00, ...)``."""
    r0 = (a[0] * b[0] + a[4] * b[4]) + (a[2] * b[2] + a[6] * b[6])
    r1 = (a[0] * b[1] + a[4] * b[5]) + (a[2] * b[3] + a[6] * b[7])
    r2 = (a[1] * b[0] + a[5] * b[4]) + (a[3] * b[2] + a[7] * b[6])
    r3 = (a[1] * b[1] + a[5] * b[5]) + (a[3] * b[3] + a[7] * b[7])
    i0 = (a[0] * b[4] - a[4] * b[0]) + (a[2] * b[6] - a[6] * b[2])
    i1 = (a[0] * b[5] - a[4] * b[1]) + (a[2] * b[7] - a[6] * b[3])
    i2 = (a[1] * b[4] - a[5] * b[0]) + (a[3] * b[6] - a[7] * b[2])
    i3 = (a[1] * b[5] - a[5] * b[1]) + (a[3] * b[7] - a[7] * b[3])
    return (r0, r1, r2, r3,
            i0, i1, i2, i3)


@_jit(contract=True, inline=True)
def _retr2_nd(a, b):  # pragma: no cover - compiled
    """``Re tr(a b^dag) = sum_ik Re(a_ik conj(b_ik))``."""
    return (a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3] + a[4] * b[4] + a[5] * b[5]
            + a[6] * b[6] + a[7] * b[7])


@_jit(inline=True)
def _ldb2(M, q):  # pragma: no cover - compiled
    """Site ``q`` (unsigned) of a blocked row buffer ``M`` as a tuple: entry ``e`` at ``M[q + e * _BW]``."""
    return (M[q], M[q + np.uint64(16)], M[q + np.uint64(32)], M[q + np.uint64(48)],
            M[q + np.uint64(64)], M[q + np.uint64(80)], M[q + np.uint64(96)], M[q + np.uint64(112)])


@_jit(inline=True)
def _addb2(M, q, t, u):  # pragma: no cover - compiled
    """``M[q + e * _BW] += t[e] + u[e]``."""
    M[q] += t[0] + u[0]
    M[q + np.uint64(16)] += t[1] + u[1]
    M[q + np.uint64(32)] += t[2] + u[2]
    M[q + np.uint64(48)] += t[3] + u[3]
    M[q + np.uint64(64)] += t[4] + u[4]
    M[q + np.uint64(80)] += t[5] + u[5]
    M[q + np.uint64(96)] += t[6] + u[6]
    M[q + np.uint64(112)] += t[7] + u[7]


@_jit(inline=True)
def _st_ta2(O, j, M, coef):  # pragma: no cover - compiled
    """``O[e * _BW + j]`` = entry ``e`` (planar) of ``coef [(M - M^dag)/2 - tr((M - M^dag)/2)/2]``."""
    t = (M[4] + M[7]) / 2.0
    h = 0.5 * coef
    O[0 * _BW + j] = 0.0
    O[4 * _BW + j] = coef * (M[4] - t)
    O[1 * _BW + j] = h * (M[1] - M[2])
    O[5 * _BW + j] = h * (M[5] + M[6])
    O[2 * _BW + j] = h * (M[2] - M[1])
    O[6 * _BW + j] = h * (M[6] + M[5])
    O[3 * _BW + j] = 0.0
    O[7 * _BW + j] = coef * (M[7] - t)


@_jit()
def _loadb2(dst, Ud, o, a, c, L2):  # pragma: no cover - compiled
    """``dst`` = the matrices of row ``o`` of ``Ud`` (2, 2, R, 2 Lx) in the blocked planar layout, shifted
    in the row by ``a`` (|a| <= 1) along its first axis (length ``L2``) and ``c`` (|c| <= 1) along its
    last axis: site ``x`` of entry ``e`` (real parts ``e = i N + k``, imaginary parts ``N^2 + e``) at
    ``dst[(x // _BW) 2 N^2 _BW + e _BW + x % _BW]``.

    The row is rotated as a whole by ``r = a L3 + c`` sites: site x comes from x + r for
    ``x < Lx - r`` and from x + r - Lx after. Whole blocks inside one of the two pieces are copied
    entry by entry (the common case), the one or two blocks that straddle a boundary site by site.
    With ``c != 0`` and two axes per row the one site per piece of length ``L3`` whose neighbour wraps
    around the last axis is then put right (``L2`` scalar copies). LLVM does not vectorise these
    copies; in the 4D SU(3) force kernel they take about 7.9 ns per site and matrix on the benchmark VM,
    bound by the cache traffic (vectorised by numba's SLP pass they take as long) -- the larger part of
    the SU(3) plaquette's time and half of the SU(3) force's (benchmarks/su3_force_parts.py)."""
    NN = 4
    NE = 8
    R = Ud.shape[2]
    Lx2 = Ud.shape[3]
    Lx = Lx2 // 2
    L3 = Lx // L2
    src = Ud.reshape(NN * R * Lx2)          # entry e of row o starts at (e R + o) 2 Lx
    r = ((a * L3 + c) % Lx + Lx) % Lx
    nblk = (Lx + _BW - 1) // _BW
    cut = Lx - r                            # first site taken from the second piece
    for blk in range(nblk):
        x0 = blk * _BW
        x1 = min(Lx, x0 + _BW)
        d0 = blk * NE * _BW
        if x1 - x0 == _BW and (x1 <= cut or x0 >= cut):
            sh = r if x1 <= cut else r - Lx
            for e in range(NN):
                ur = d0 + e * _BW
                us = (e * R + o) * Lx2 + 2 * (x0 + sh)
                dre = dst[ur:ur + _BW]
                dim = dst[ur + NN * _BW:ur + (NN + 1) * _BW]
                s = src[us:us + 2 * _BW]
                for j in range(_BW):
                    dre[j] = s[2 * j]
                    dim[j] = s[2 * j + 1]
        else:
            for e in range(NN):
                s0 = (e * R + o) * Lx2
                for x in range(x0, x1):
                    xs = x + r if x < cut else x + r - Lx
                    dst[d0 + e * _BW + x - x0] = src[s0 + 2 * xs]
                    dst[d0 + (NN + e) * _BW + x - x0] = src[s0 + 2 * xs + 1]
    if c != 0 and L2 > 1:
        z = L3 - 1 if c > 0 else 0          # the site whose neighbour wraps around the last axis
        zs = 0 if c > 0 else L3 - 1
        for y in range(L2):
            ys = (y + a) % L2
            x = y * L3 + z
            t = (x // _BW) * NE * _BW + x % _BW
            for e in range(NN):
                q = (e * R + o) * Lx2 + 2 * (ys * L3 + zs)
                dst[t + e * _BW] = src[q]
                dst[t + (NN + e) * _BW] = src[q + 1]


@_jit(contract=True)
def _plaq_row2(val, a, b, c, d):  # pragma: no cover - compiled
    """``val[x] = Re tr[(a b)(c d)^dag]`` along a row: with a = U_mu(x), b = U_nu(x+mu), c = U_nu(x),
    d = U_mu(x+nu) this is Re tr P_{mu nu}(x), P = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag."""
    for blk in range(val.shape[0] // _BW):
        base = blk * 8 * _BW
        for jj in range(_BW):
            q = np.uint64(base + jj)      # unsigned: no negative-index wrap-around, the loop vectorises
            A = _mm2_nn(_ldb2(a, q), _ldb2(b, q))
            C = _mm2_nn(_ldb2(c, q), _ldb2(d, q))
            val[np.uint64(blk * _BW + jj)] = _retr2_nd(A, C)


@_jit(contract=True)
def _staples_row2(S, d, b, c, ya, yb, yd):  # pragma: no cover - compiled
    """Add the upper and lower staple of one plane to the staple sum ``S`` of a link along a row.

    For the link U_mu(x) in the plane (mu, nu): b = U_nu(x+mu), c = U_mu(x+nu), d = U_nu(x),
    ya = U_mu(y), yb = U_nu(y+mu), yd = U_nu(y) with y = x - nu; adds the upper staple
    ``b c^dag d^dag`` and the lower staple ``(ya yb)^dag yd`` (4 products). (Summing the staples of
    both links of a plane in one loop would share ``b c^dag`` but has too many arrays to vectorise.)"""
    for blk in range(S.shape[0] // (8 * _BW)):
        base = blk * 8 * _BW
        for jj in range(_BW):
            q = np.uint64(base + jj)
            up = _mm2_nd(_mm2_nd(_ldb2(b, q), _ldb2(c, q)), _ldb2(d, q))
            lo = _mm2_dn(_mm2_nn(_ldb2(ya, q), _ldb2(yb, q)), _ldb2(yd, q))
            _addb2(S, q, up, lo)


@_jit(contract=True)
def _force_row2(Ff, b, mu, o, a, S, coef, O):  # pragma: no cover - compiled
    """``F_mu(x) = coef TA(a S)`` along row ``o`` (a = U_mu(x), S = its staple sum A_mu(x)), through the
    staging block ``O`` (8 x _BW) into the interleaved (re, im) float64 view ``Ff`` of the output
    (storing into the 4 rows of ``Ff`` straight from the product loop would not vectorise)."""
    Lx = Ff.shape[5] // 2
    for blk in range(S.shape[0] // (8 * _BW)):
        base = blk * 8 * _BW
        for jj in range(_BW):
            _st_ta2(O, np.uint64(jj), _mm2_nn(_ldb2(a, np.uint64(base + jj)), _ldb2(S, np.uint64(base + jj))),
                      coef)
        x0 = blk * _BW
        m = min(_BW, Lx - x0)
        for i in range(2):
            for k in range(2):
                e = i * 2 + k
                dst = Ff[b, mu, i, k, o]
                for j in range(m):
                    dst[2 * (x0 + j)] = O[e * _BW + j]
                    dst[2 * (x0 + j) + 1] = O[(2 * 2 + e) * _BW + j]


@_jit(parallel=True)
def _plaquette_kernel2(Uf, dims, K, rpc, field, write, partial):  # pragma: no cover - compiled
    """SU(2) plaquette sums (and per-plane field) of the float64 view ``Uf`` (B, nd, 2, 2, R, 2 Lx)."""
    B, nd, _, _, R, Lx2 = Uf.shape
    Lx = Lx2 // 2
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    nblk = (Lx + _BW - 1) // _BW
    sz = nblk * 8 * _BW
    inv_n = 1.0 / 2
    for c in _prange(B * nc):
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
        acc = np.zeros(Lx)
        val = np.zeros(nblk * _BW)
        Lo = np.zeros((nd, sz))      # blocked row buffers (zeros: the padding sites stay finite)
        T1 = np.zeros(sz)
        T2 = np.zeros(sz)
        for o in range(o0, o1):
            for d in range(nd):
                _loadb2(Lo[d], Uf[b, d], o, 0, 0, L2)
            p = 0
            for mu in range(nd):
                for nu in range(mu + 1, nd):
                    r1, a1, c1 = _shift(o, 0, 0, mu, 1, dims, K)
                    r2, a2, c2 = _shift(o, 0, 0, nu, 1, dims, K)
                    _loadb2(T1, Uf[b, nu], r1, a1, c1, L2)    # U_nu(x + mu)
                    _loadb2(T2, Uf[b, mu], r2, a2, c2, L2)    # U_mu(x + nu)
                    _plaq_row2(val, Lo[mu], T1, Lo[nu], T2)
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
def _force_kernel2(Uf, dims, K, rpc, coef, Ff):  # pragma: no cover - compiled
    """SU(2) Wilson force ``coef TA(U_mu A_mu)`` into the float64 view ``Ff`` (B, nd, 2, 2, R, 2 Lx)."""
    B, nd, _, _, R, Lx2 = Uf.shape
    Lx = Lx2 // 2
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    sz = (Lx + _BW - 1) // _BW * 8 * _BW
    for c in _prange(B * nc):
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
        Lo = np.zeros((nd, sz))     # U_d(x)
        Bk = np.zeros((nd, sz))     # U_d(x - d)
        S = np.zeros((nd, sz))      # staple sums A_d(x)
        T = np.zeros((6, sz))
        O = np.empty(8 * _BW)    # staging block of _force_row2
        for o in range(o0, o1):
            for d in range(nd):
                _loadb2(Lo[d], Uf[b, d], o, 0, 0, L2)
                r, a, cc = _shift(o, 0, 0, d, -1, dims, K)
                _loadb2(Bk[d], Uf[b, d], r, a, cc, L2)
            S[:, :] = 0.0
            for mu in range(nd):
                for nu in range(mu + 1, nd):
                    r, a, cc = _shift(o, 0, 0, mu, 1, dims, K)
                    _loadb2(T[0], Uf[b, nu], r, a, cc, L2)                 # U_nu(x + mu)
                    r, a, cc = _shift(o, 0, 0, nu, 1, dims, K)
                    _loadb2(T[1], Uf[b, mu], r, a, cc, L2)                 # U_mu(x + nu)
                    ry, ay, cy = _shift(o, 0, 0, nu, -1, dims, K)
                    _loadb2(T[2], Uf[b, mu], ry, ay, cy, L2)               # U_mu(x - nu)
                    r, a, cc = _shift(ry, ay, cy, mu, 1, dims, K)
                    _loadb2(T[3], Uf[b, nu], r, a, cc, L2)                 # U_nu(x - nu + mu)
                    rz, az, cz = _shift(o, 0, 0, mu, -1, dims, K)
                    _loadb2(T[4], Uf[b, nu], rz, az, cz, L2)               # U_nu(x - mu)
                    r, a, cc = _shift(rz, az, cz, nu, 1, dims, K)
                    _loadb2(T[5], Uf[b, mu], r, a, cc, L2)                 # U_mu(x - mu + nu)
                    # link mu: U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag
                    #          + (U_mu(x-nu) U_nu(x-nu+mu))^dag U_nu(x-nu)
                    _staples_row2(S[mu], Lo[nu], T[0], T[1], T[2], T[3], Bk[nu])
                    # link nu: U_mu(x+nu) U_nu(x+mu)^dag U_mu(x)^dag
                    #          + (U_nu(x-mu) U_mu(x-mu+nu))^dag U_mu(x-mu)
                    _staples_row2(S[nu], Lo[mu], T[1], T[0], T[4], T[5], Bk[mu])
            for mu in range(nd):
                _force_row2(Ff, b, mu, o, Lo[mu], S[mu], coef, O)
