"""Numba kernels for 2D U(1) gauge fields on flat chunks of whole rows, and the vectorisable sin/cos they share.

Called by the U(1) wrappers of :mod:`latticekit.backends._numba_gauge` (which register the names and
decline unqualified inputs): :func:`_u1_2d_plaquette_flat` and :func:`_u1_2d_force_flat` for 2D lattices,
and :func:`_sincos` (with ``_BIG``) for the row kernels of more dimensions there. The chunking
(:func:`latticekit.backends._numba_common._chunks_2d`) is shared with the 2D phi^4 kernels. numba's
on-disk cache keys on each kernel's source file: after editing :func:`_sincos` here, delete
``backends/__pycache__/_numba_*.nb[ic]`` (the kernels of ``_numba_gauge`` call it).
"""

from __future__ import annotations

import math

import numpy as np

from ._numba_common import _jit, _prange

__all__: list[str] = []


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
