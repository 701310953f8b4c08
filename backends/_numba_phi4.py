"""Numba fast paths for the hopping-form phi^4 action and force on the NumPy backend.

Row layout, chunking, declining rules and caching: :mod:`latticekit.backends._numba_common`.

Registered names (backend ``"numpy"``)
--------------------------------------
``phi4_action(phi, kappa, lam, nd) -> (*B,)`` and ``phi4_force(phi, kappa, lam, nd) -> (*B, *L)``
    ``S = sum_x [(1 - 2 lam) phi^2 + lam phi^4 - 2 kappa sum_mu phi_x phi_{x+mu}]`` and ``dS/dphi``.
    In 2D the kernels run over chunks of whole rows of the flattened batch (several configurations for
    small lattices) with flat neighbour offsets, one pass per chunk (:func:`_dens_2d_rows`,
    :func:`_force_2d_rows`), so that short rows cost no set-up per row; other dimensions use the row kernels.

Examples
--------
>>> import numpy as np
>>> from latticekit.backends import _numba_phi4 as kp
>>> phi = np.ones((2, 4, 4))                        # constant field, batch 2: 16 (1 - 2 lam + lam - 4 kappa)
>>> if kp.available():
...     out = kp.kernels()["phi4_action"](phi, 0.25, 0.5, 2)
... else:                                           # without numba the generic code runs instead
...     out = np.full(2, -8.0)
>>> out.tolist()
[-8.0, -8.0]
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ._numba_common import (_chunk_rows, _chunking, _chunks_2d, _geometry, _jit, _launch, _ok, _outer_rows, _prange,
                            _prod, _real, available)

__all__ = ["NAMES", "kernels"]

NAMES = ("phi4_action", "phi4_force")


# --------------------------------------------------------------------------------------------------
# phi^4 (hopping form; coefficients c2 phi^2 + c4 phi^4 - ch phi sum_mu phi(x+mu))
# --------------------------------------------------------------------------------------------------
# A row is the last lattice axis or the last two (K = 2, :func:`_geometry`): a plane of L2 x L3 sites. The
# neighbours along the other (outer) axes are whole rows (:func:`_outer_rows`, a table computed once per
# geometry: no integer division per row), read in place and summed into ``nb``; the neighbours inside the
# row are flat offsets (+-L3 across the plane, +-1 along the last axis) in one vectorised pass over the
# row's interior, and the sites whose in-row neighbour wraps around (the plane's first and last line, each
# line's first and last site; forward neighbours only for the action) are then redone from a table of
# their neighbours (:func:`_row_wrap_table`). The neighbours are summed in the order of the generic code
# (mu = 0 ... nd - 1, forward before backward), so the results do not depend on the kernel. Until
# 2026-12-07 every neighbour row was first copied (shifted) into a buffer and added to ``nb``; these
# kernels take 0.09-0.6x that time, 0.09-0.21x for the 4D force (benchmarks/README.md, "CPU kernels").
@_jit()
def _add_outer(nb, pb, nbrows, o):  # pragma: no cover - compiled
    """``nb = sum_j pb[nbrows[o, j]]`` (in order), the neighbour rows of row ``o`` along the outer axes."""
    Lx = nb.shape[0]
    r = nbrows[o, 0]
    for x in range(Lx):
        nb[x] = pb[r, x]
    for j in range(1, nbrows.shape[1]):
        r = nbrows[o, j]
        for x in range(Lx):
            nb[x] += pb[r, x]


@_jit(parallel=True)
def _phi4_action_kernel(phi, nbrows, wrap, L3, ka, rpc, c2, c4, ch, partial):  # pragma: no cover - compiled
    """``partial[c]`` = the action of the rows of chunk ``c``: ``nbrows`` the forward outer neighbour rows
    (``(R, nd - K)``), ``wrap`` the sites whose forward in-row neighbour wraps (``wrap[0]``) and those
    neighbours (``wrap[1:]``: across the plane when ``ka``, then along the last axis)."""
    B, R, Lx = phi.shape
    has_nb = nbrows.shape[1] > 0
    nc = (R + rpc - 1) // rpc
    u = np.uint64
    k = u(L3)
    one = u(1)
    # the flat pass: lines 0 ... L2 - 2 of the plane (forward across the plane stays inside), each line's
    # last site redone; without a plane (K = 1) the row but its last site
    hi = u(Lx - L3) if ka else u(max(Lx - 1, 0))
    nw = wrap.shape[1]
    for c in _prange(B * nc):
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
        pb = phi[b]
        acc = np.zeros(Lx)
        nb = np.zeros(Lx)
        d = np.empty(Lx)
        for o in range(o0, o1):
            if has_nb:
                _add_outer(nb, pb, nbrows, o)
            if ka:
                for x in range(u(0), hi):
                    p = pb[o, x]
                    p2 = p * p
                    d[x] = c2 * p2 + c4 * p2 * p2 - ch * p * ((nb[x] + pb[o, x + k]) + pb[o, x + one])
            elif has_nb:
                for x in range(u(0), hi):
                    p = pb[o, x]
                    p2 = p * p
                    d[x] = c2 * p2 + c4 * p2 * p2 - ch * p * (nb[x] + pb[o, x + one])
            else:
                for x in range(u(0), hi):
                    p = pb[o, x]
                    p2 = p * p
                    d[x] = c2 * p2 + c4 * p2 * p2 - ch * p * pb[o, x + one]
            for j in range(nw):
                x = wrap[0, j]
                p = pb[o, x]
                p2 = p * p
                if ka:
                    t = (nb[x] + pb[o, wrap[1, j]]) + pb[o, wrap[2, j]]
                elif has_nb:
                    t = nb[x] + pb[o, wrap[1, j]]
                else:
                    t = pb[o, wrap[1, j]]
                d[x] = c2 * p2 + c4 * p2 * p2 - ch * p * t
            for x in range(Lx):
                acc[x] += d[x]
        tot = 0.0
        for x in range(Lx):
            tot += acc[x]
        partial[c] = tot


@_jit(parallel=True)
def _phi4_force_kernel(phi, nbrows, wrap, L3, ka, rpc, c2, c4, ch, F):  # pragma: no cover - compiled
    """``F = dS/dphi`` row by row: ``nbrows`` the outer neighbour rows (``(R, 2 (nd - K))``, forward and
    backward per axis), ``wrap`` the sites whose in-row neighbours wrap (``wrap[0]``) and those neighbours in
    the order of the sum (``wrap[1:]``: forward, backward across the plane when ``ka``, then along the last
    axis)."""
    B, R, Lx = phi.shape
    has_nb = nbrows.shape[1] > 0
    nc = (R + rpc - 1) // rpc
    a2 = 2.0 * c2
    a4 = 4.0 * c4
    u = np.uint64
    k = u(L3)
    one = u(1)
    # the flat pass: lines 1 ... L2 - 2 of the plane, their ends redone (K = 1: the row but its two ends)
    lo = k if ka else one
    hi = u(max(Lx - L3, L3)) if ka else u(max(Lx - 1, 1))
    nw = wrap.shape[1]
    for c in _prange(B * nc):
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
        pb = phi[b]
        Fb = F[b]
        nb = np.zeros(Lx)
        for o in range(o0, o1):
            if has_nb:
                _add_outer(nb, pb, nbrows, o)
            if ka:
                for x in range(lo, hi):
                    p = pb[o, x]
                    t = (((nb[x] + pb[o, x + k]) + pb[o, x - k]) + pb[o, x + one]) + pb[o, x - one]
                    Fb[o, x] = a2 * p + a4 * p * p * p - ch * t
            elif has_nb:
                for x in range(lo, hi):
                    p = pb[o, x]
                    t = (nb[x] + pb[o, x + one]) + pb[o, x - one]
                    Fb[o, x] = a2 * p + a4 * p * p * p - ch * t
            else:
                for x in range(lo, hi):
                    p = pb[o, x]
                    t = pb[o, x + one] + pb[o, x - one]
                    Fb[o, x] = a2 * p + a4 * p * p * p - ch * t
            for j in range(nw):
                x = wrap[0, j]
                p = pb[o, x]
                if ka:
                    t = (((nb[x] + pb[o, wrap[1, j]]) + pb[o, wrap[2, j]]) + pb[o, wrap[3, j]]) + pb[o, wrap[4, j]]
                elif has_nb:
                    t = (nb[x] + pb[o, wrap[1, j]]) + pb[o, wrap[2, j]]
                else:
                    t = pb[o, wrap[1, j]] + pb[o, wrap[2, j]]
                Fb[o, x] = a2 * p + a4 * p * p * p - ch * t


@functools.lru_cache(maxsize=64)
def _row_wrap_table(L2: int, L3: int, ka: bool, both: bool) -> Any:
    """``(1 + m, n)`` int64: the sites of a row (a plane of L2 x L3 sites when ``ka``, else a line of L3) whose
    in-row neighbours wrap around or that the flat pass of the kernels does not cover, and those neighbours in
    the order of the sum (across the plane forward, backward when ``both``; then along the last axis). Cached per
    geometry: do not modify."""
    y, z = np.divmod(np.arange(L2 * L3, dtype=np.int64), L3)
    if both:
        sel = (z == 0) | (z == L3 - 1) | ((y == 0) | (y == L2 - 1) if ka else False)
    else:
        sel = (z == L3 - 1) | ((y == L2 - 1) if ka else False)
    y, z = y[sel], z[sel]
    rows = [y * L3 + z]
    steps = (1, -1) if both else (1,)
    if ka:
        rows += [((y + st) % L2) * L3 + z for st in steps]
    rows += [y * L3 + (z + st) % L3 for st in steps]
    return np.ascontiguousarray(np.stack(rows), dtype=np.int64)


def _tables(L: tuple[int, ...], K: int, both: bool) -> tuple[Any, Any]:
    """The outer-row and wrapped-site tables of a geometry (both cached)."""
    return _outer_rows(L, K, (1, -1) if both else (1,)), _row_wrap_table(L[-2] if K == 2 else 1, L[-1], K == 2, both)


# --------------------------------------------------------------------------------------------------
# 2D: chunks of whole lattice rows that may span several configurations, seen as one flat array
# --------------------------------------------------------------------------------------------------
# In 2D a row is one lattice row of L1 sites: for small L the row loops above are a few sites long and
# the per-row work (neighbour rows, rotated copies) dominates. Here a chunk is a run of consecutive rows
# of the flattened batch ``(B L0 L1,)`` -- several whole configurations for small lattices, part of one
# for large ones -- and the neighbours are flat offsets: +-L1 along axis 0, +-1 along axis 1. The
# loops run over the whole chunk (vectorised); the sites whose neighbour wraps around (the first and
# last row of each configuration, the first and last site of each row) are then redone, with uint64
# indices and no integer division per row. The redone sites are 4/L of a configuration (2/L for the action),
# so the cost per site still grows at small L: since the one-pass kernels (2026-12-07), which take 0.5-0.9x the
# time of the former two-pass ones from L = 16 on, the force at L = 8 costs 1.4-2.1x its L = 128 cost per site
# and the action 1.3-1.5x (benchmarks/README.md, "Cost per site and memory against L").
@_jit(inline=True)
def _dq(q, s, c2, c4, ch):  # pragma: no cover - compiled
    """The action density at a site from its value ``q`` and its forward neighbours' sum ``s``."""
    q2 = q * q
    return c2 * q2 + c4 * q2 * q2 - ch * q * s


@_jit()
def _dens_2d_rows(d, f, base, g0, g1, L0, L1, c2, c4, ch):  # pragma: no cover - compiled
    """``d[x] = c2 f_i^2 + c4 f_i^4 - ch f_i (f[i + L1] + f[i + 1])`` (the action density, forward neighbours
    periodic in each configuration) for the flat sites ``i = base + x`` of the rows ``[g0, g1)``: one flat pass
    (vectorised), then the last row of each configuration and the last site of each row redone (uint64
    indices: no negative-index wrap-around, no views per row). Until 2026-12-07 the neighbours were first
    copied into two scratch arrays; the one pass takes 0.5-0.9x the time (benchmarks/README.md)."""
    T = f.shape[0]
    m = (g1 - g0) * L1
    V = L0 * L1
    zero = np.uint64(0)
    one = np.uint64(1)
    k = np.uint64(L1)
    ub = np.uint64(base)
    hi = min(m, T - base - L1)            # f[i + L1] and f[i + 1] inside the array (the rest is redone below)
    if hi > 0:
        for x in range(zero, np.uint64(hi)):
            i = ub + x
            d[x] = _dq(f[i], f[i + k] + f[i + one], c2, c4, ch)
    # the last row of each configuration (forward along axis 0 to row 0) but its last site
    e = np.uint64(L1 - 1)
    for b in range(g0 // L0, (g1 - 1) // L0 + 1):
        g = b * L0 + L0 - 1
        if g0 <= g < g1:
            xo = np.uint64((g - g0) * L1)
            o = np.uint64(b * V)
            for j in range(zero, e):
                d[xo + j] = _dq(f[ub + xo + j], f[o + j] + f[ub + xo + j + one], c2, c4, ch)
    # the last site of every row (forward along axis 1 to the row's first site; no integer division per row)
    r = g0 % L0
    ob = np.uint64((g0 - r) * L1)         # the configuration's first site
    for q in range(zero, np.uint64(g1 - g0)):
        z = q * k
        i = ub + z
        up = i + e + k if r < L0 - 1 else ob + e
        d[z + e] = _dq(f[i + e], f[up] + f[i], c2, c4, ch)
        r += 1
        if r == L0:
            r = 0
            ob += np.uint64(V)


@_jit()
def _sum8_rows(d, out):  # pragma: no cover - compiled
    """``out[b] = sum(d[b])`` (:func:`_sum8` per row, in one call)."""
    n = d.shape[1]
    n8 = n - n % 8
    for b in range(d.shape[0]):
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        for x in range(0, n8, 8):
            s0 += d[b, x]
            s1 += d[b, x + 1]
            s2 += d[b, x + 2]
            s3 += d[b, x + 3]
            s4 += d[b, x + 4]
            s5 += d[b, x + 5]
            s6 += d[b, x + 6]
            s7 += d[b, x + 7]
        for x in range(n8, n):
            s0 += d[b, x]
        out[b] = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@_jit()
def _sum8(d):  # pragma: no cover - compiled
    """``sum(d)`` with eight partial sums (independent chains: no latency-bound loop)."""
    n = d.shape[0]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n8 = n - n % 8
    for x in range(0, n8, 8):
        s0 += d[x]
        s1 += d[x + 1]
        s2 += d[x + 2]
        s3 += d[x + 3]
        s4 += d[x + 4]
        s5 += d[x + 5]
        s6 += d[x + 6]
        s7 += d[x + 7]
    for x in range(n8, n):
        s0 += d[x]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@_jit(inline=True)
def _fq(q, s, a2, a4, ch):  # pragma: no cover - compiled
    """The force at a site from its value ``q`` and its neighbours' sum ``s``."""
    return a2 * q + a4 * q * q * q - ch * s


@_jit()
def _force_2d_rows(F, f, base, g0, g1, L0, L1, a2, a4, ch):  # pragma: no cover - compiled
    """``F[i] = a2 f_i + a4 f_i^3 - ch ((f[i + L1] + f[i - L1]) + (f[i + 1] + f[i - 1]))``, periodic in each
    configuration, for the flat sites ``i = base + x`` of the rows ``[g0, g1)``: one flat pass over the chunk
    that reads the field and writes the force (vectorised), then the first and last row of each configuration
    and the first and last site of each row redone (uint64 indices: no negative-index wrap-around, no views
    per row). One pass: the neighbour sums are not stored (until 2026-12-07 they went into a scratch array
    that a second pass read; the fused pass takes 0.5-0.8x the time, benchmarks/README.md)."""
    T = f.shape[0]
    m = (g1 - g0) * L1
    V = L0 * L1
    lo = max(L1 - base, 1 - base, 0)
    hi = min(m, T - base - L1, T - base - 1)
    zero = np.uint64(0)
    one = np.uint64(1)
    k = np.uint64(L1)
    ub = np.uint64(base)
    if hi > lo:
        for x in range(ub + np.uint64(lo), ub + np.uint64(hi)):
            F[x] = _fq(f[x], (f[x + k] + f[x - k]) + (f[x + one] + f[x - one]), a2, a4, ch)
    # first and last row of each configuration, inside the row (the row ends are redone below); no integer
    # division per row or configuration (it costs as much as a short row)
    top = np.uint64((L0 - 1) * L1)        # offset of the last row in a configuration
    up0 = np.uint64(L1 if L0 > 1 else 0)  # row 0: forward to row 1 (to itself for L0 = 1)
    dnl = top - up0                       # row L0 - 1: backward to row L0 - 2
    if L1 > 2:
        for b in range(g0 // L0, (g1 - 1) // L0 + 1):
            ob = np.uint64(b * V)
            for last in range(2):
                g = b * L0 + (L0 - 1 if last else 0)
                if g < g0 or g >= g1:
                    continue
                i0 = ub + np.uint64((g - g0) * L1)
                up = ob if last else ob + up0
                dn = ob + dnl if last else ob + top
                for j in range(one, k - one):
                    F[i0 + j] = _fq(f[i0 + j], (f[up + j] + f[dn + j]) + (f[i0 + j + one] + f[i0 + j - one]),
                                    a2, a4, ch)
    # the first and last site of every row
    e = np.uint64(L1 - 1)
    e1 = np.uint64(1 % L1)
    w1 = np.uint64((L1 - 2 + L1) % L1)
    r = g0 % L0
    ob = np.uint64((g0 - r) * L1)         # the configuration's first site
    for q in range(zero, np.uint64(g1 - g0)):
        i = ub + q * k
        up = i + k if r < L0 - 1 else ob
        dn = i - k if r > 0 else ob + top
        F[i] = _fq(f[i], (f[up] + f[dn]) + (f[i + e1] + f[i + e]), a2, a4, ch)
        F[i + e] = _fq(f[i + e], (f[up + e] + f[dn + e]) + (f[i] + f[i + w1]), a2, a4, ch)
        r += 1
        if r == L0:
            r = 0
            ob += np.uint64(V)


@_jit()
def _rows_2d(c, G, L0, rpc, ncpc):  # pragma: no cover - compiled
    """Rows ``[g0, g1)`` of chunk ``c``: ``rpc`` rows of configuration ``c // ncpc`` when ``ncpc > 1``,
    else rows ``[c rpc, (c + 1) rpc)`` of the batch (``rpc`` a multiple of L0: whole configurations)."""
    if ncpc > 1:
        b = c // ncpc
        j = c - b * ncpc
        return b * L0 + j * rpc, b * L0 + min(L0, (j + 1) * rpc)
    return c * rpc, min(G, c * rpc + rpc)


@_jit(parallel=True)
def _phi4_action_2d(f, L0, L1, rpc, ncpc, nc, c2, c4, ch, partial):  # pragma: no cover - compiled
    """Flat field ``f`` (B L0 L1), chunks of rows (:func:`_rows_2d`); ``partial[b ncpc + c % ncpc]``
    = the sum of the chunk ``c`` over configuration ``b``."""
    G = f.shape[0] // L1
    for c in _prange(nc):
        g0, g1 = _rows_2d(c, G, L0, rpc, ncpc)
        m = (g1 - g0) * L1
        base = g0 * L1
        v = np.empty(m)
        _dens_2d_rows(v, f, base, g0, g1, L0, L1, c2, c4, ch)
        if ncpc == 1:   # whole configurations
            _sum8_rows(v.reshape(((g1 - g0) // L0, L0 * L1)), partial[g0 // L0:g1 // L0])
        else:
            partial[c] = _sum8(v)


@_jit(parallel=True)
def _phi4_force_2d(f, L0, L1, rpc, ncpc, nc, a2, a4, ch, F):  # pragma: no cover - compiled
    G = f.shape[0] // L1
    for c in _prange(nc):
        g0, g1 = _rows_2d(c, G, L0, rpc, ncpc)
        _force_2d_rows(F, f, g0 * L1, g0, g1, L0, L1, a2, a4, ch)


# --------------------------------------------------------------------------------------------------
# Python wrappers: qualify the inputs (else decline with None), reshape views, call the kernels
# --------------------------------------------------------------------------------------------------
def _phi_ok(phi: Any, nd: Any, *couplings: Any) -> bool:
    return (isinstance(nd, int) and nd >= 1 and _ok(phi, np.float64) and phi.ndim >= nd
            and 0 not in phi.shape[phi.ndim - nd:] and all(_real(v) for v in couplings))


def phi4_action(phi: Any, kappa: Any, lam: Any, nd: int) -> Any:
    """Hopping-form phi^4 action per configuration, or None (declined)."""
    if not _phi_ok(phi, nd, kappa, lam):
        return None
    bshape, L, dims, K, R, Lx = _geometry(phi, nd, 0)
    B = _prod(bshape)
    c2, c4, ch = 1.0 - 2.0 * float(lam), float(lam), 2.0 * float(kappa)
    if nd == 2:
        rpc, ncpc, nc = _chunks_2d(B, L[0], L[1], _SITES_2D)
        partial = np.empty(B * ncpc)
        _launch(_phi4_action_2d, B * R * Lx, phi.reshape(-1), L[0], L[1], rpc, ncpc, nc, c2, c4, ch, partial)
        return partial.reshape(B, ncpc).sum(axis=1).reshape(bshape)
    rpc, nc = _chunking(B, R, Lx, 16384)
    partial = np.empty(B * nc)
    nbrows, wrap = _tables(L, K, False)
    _launch(_phi4_action_kernel, B * R * Lx, phi.reshape(B, R, Lx), nbrows, wrap, L[-1], K == 2, rpc,
            1.0 - 2.0 * float(lam), float(lam), 2.0 * float(kappa), partial)
    return partial.reshape(B, nc).sum(axis=1).reshape(bshape)


def phi4_force(phi: Any, kappa: Any, lam: Any, nd: int) -> Any:
    """``dS/dphi`` of the hopping-form phi^4 action, or None (declined)."""
    if not _phi_ok(phi, nd, kappa, lam):
        return None
    bshape, L, dims, K, R, Lx = _geometry(phi, nd, 0)
    B = _prod(bshape)
    F = np.empty(phi.shape)
    if nd == 2:
        rpc, ncpc, nc = _chunks_2d(B, L[0], L[1], _SITES_2D)
        _launch(_phi4_force_2d, 2 * B * R * Lx, phi.reshape(-1), L[0], L[1], rpc, ncpc, nc,
                2.0 * (1.0 - 2.0 * float(lam)), 4.0 * float(lam), 2.0 * float(kappa), F.reshape(-1))
        return F
    rpc, _ = _chunking(B, R, Lx, 16384)
    nbrows, wrap = _tables(L, K, True)
    _launch(_phi4_force_kernel, 2 * B * R * Lx, phi.reshape(B, R, Lx), nbrows, wrap, L[-1], K == 2, rpc,
            1.0 - 2.0 * float(lam), float(lam), 2.0 * float(kappa), F.reshape(B, R, Lx))
    return F



_SITES_2D = 2048   # sites per chunk of the 2D kernels (two scratch arrays of this length, in L1)


def kernels() -> dict[str, Callable[..., Any]]:
    """The fast paths of this module by registry name (backend ``"numpy"``); empty without numba."""
    if not available():
        return {}
    return {name: globals()[name] for name in NAMES}
