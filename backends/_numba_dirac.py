"""Numba fast path for the Wilson-Dirac hopping term on the NumPy backend.

Row layout, chunking, declining rules and caching: :mod:`latticekit.backends._numba_common`.

Registered names (backend ``"numpy"``)
--------------------------------------
``wilson_dirac_apply(psi, links, gammas, alpha, beta, *, dagger, antiperiodic) -> psi.shape``
    ``alpha psi + beta H psi`` for the Wilson hopping term ``H`` (``H^dag`` for ``dagger``), so
    ``D psi`` is ``alpha = 1, beta = -kappa``. ``links`` ``(*B, nd, Nc, Nc, *L)`` complex128 (U(1):
    the phases as 1 x 1 matrices), ``psi`` ``(*S, *B, Ns, Nc, *L)`` complex128, ``gammas`` the
    caller's monomial gamma tables (``latticekit.actions.dirac``). One pass over the rows of each
    configuration: spin projection, parallel transport and reconstruction fused per row block, the
    neighbour rows and the anti-periodic time boundary by index arithmetic. 2D U(1) (Ns = 2, up to
    ``_U1_2D_MAX_SITES`` sites) has its own kernel over whole configurations (flat neighbour offsets,
    several configurations per chunk; 1.2-2.0x the L = 128 cost per site at L = 8 and 16, varying between runs:
    benchmarks/README.md). Small fields (below
    ``_WD_SERIAL_WORK`` sites x Nc^2) run on one thread.

Examples
--------
>>> import numpy as np
>>> from latticekit.backends import _numba_dirac as kd
>>> gammas = (((1, 0), (1, 1)), ((1, 0), (-1j, 1j)))  # 2D: sigma_x, sigma_y as (perm, coef)
>>> psi = np.zeros((2, 1, 4, 4), dtype=complex); psi[0, 0, 1, 2] = 1.0
>>> U = np.ones((2, 1, 1, 4, 4), dtype=complex)      # cold U(1) links as 1 x 1 matrices
>>> out = kd.kernels()["wilson_dirac_apply"](psi, U, gammas, 1.0, 0.0) if kd.available() else psi
>>> bool(np.array_equal(out, psi))                  # beta = 0: alpha psi
True
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ._numba_common import _chunking, _jit, _numba, _ok, _prange, _prod, _real, available

__all__ = ["NAMES", "kernels"]

NAMES = ("wilson_dirac_apply",)


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
def _wd_block(out, psi, U, si, b, bu, mu, p0, p1, d, fwd, rot, n, g, spins, cp, cr, c1, h, t, ub):  # pragma: no cover
    """One hop (direction mu, forward or backward) on the rows ``[p0, p1)`` whose neighbours are the rows
    ``[p0 + d, p1 + d)`` (read at the in-row neighbour ``rot``). For each transported spin component
    s_j: ``h = c1 (psi_s + cp_j psi_p(s))`` at the neighbour, ``t = U h`` (forward: the link at x;
    backward: ``U^dag`` at the neighbour), ``out_s += t``, ``out_p(s) += cr_j t``. Flat arrays:
    psi, out (S, B, Ns, Nc, R n), field ``(si, b)``; U (B', nd, Nc, Nc, R n), links ``U[bu]``; scratch h (nh, Nc, >= m), t (Nc, >= m), ub (Nc, Nc, >= m)."""
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
            uu = U[bu, mu, 0, 0, q0:q1] if adj else U[bu, mu, 0, 0, a0:a1]
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
                _b_load(ub[a, e, :m], U[bu, mu, a, e, q0:q1], n, rot, g)
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
                    u = U[bu, mu, i1, i2, q0:q1]
                else:
                    u = U[bu, mu, i1, i2, a0:a1]
                _r_mul(ta, u, h[j, e, :m], e == 0, adj)
            _r_acc(out[si, b, s, a, a0:a1], out[si, b, ps, a, a0:a1], ta, cr[j])


@_jit()
def _wd_chunk(psi, U, dims, K, n, gidx, spins, cproj, crec, alpha, beta, anti, out, si, b, bu, o0, o1, h, t,
              ub):  # pragma: no cover - compiled
    """out = alpha psi + beta H psi on the rows ``[o0, o1)`` of field ``(si, b)`` with the links ``U[bu]``.
    Flat fields: psi, out (S, B, Ns, Nc, R n); U (B', nd, Nc, Nc, R n); scratch h (Ns/2, Nc, >= m), t (Nc, >= m),
    ub (Nc, Nc, >= m), m = (o1 - o0) n. A row is the last K lattice axes (n sites; K = 2: the in-row
    neighbours of direction nd - 2 + i, step 1 - 2k, are gidx[i, k]; K = 1: the next/previous site).
    spins (nd, 2, nh, 2) int64 [mu, backward?, j] = (s_j, p(s_j)); cproj, crec (nd, 2, nh) complex128."""
    Ns = psi.shape[2]
    Nc = psi.shape[3]
    nd = dims.shape[0]
    m = (o1 - o0) * n
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
                _wd_block(out, psi, U, si, b, bu, mu, o0, o1, 0, k == 0, rot, n, g, spins[mu, k], cproj[mu, k],
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
                _wd_block(out, psi, U, si, b, bu, mu, p, q, d, k == 0, 0, n, g, spins[mu, k], cproj[mu, k],
                          crec[mu, k], c1, h, t, ub)
                p = q


@_jit(parallel=True)
def _wilson_dirac_kernel(psi, U, dims, K, n, gidx, spins, cproj, crec, alpha, beta, anti, rpc, out):  # pragma: no cover
    """out = alpha psi + beta H psi on flat fields: psi, out (S, B, Ns, Nc, R n); U (B, nd, Nc, Nc, R n);
    ``prange`` over chunks of ``rpc`` rows of every field (:func:`_wd_chunk` each)."""
    S, B, Ns, Nc, V = psi.shape
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
        _wd_chunk(psi, U, dims, K, n, gidx, spins, cproj, crec, alpha, beta, anti, out, si, b, b, o0, o1, h, t, ub)


# --------------------------------------------------------------------------------------------------
# 2D, U(1), two spin components: whole configurations, flat neighbour offsets, several per chunk
# --------------------------------------------------------------------------------------------------
# In 2D a row is one lattice row: for small L the row blocks above are a few sites long, and their
# per-block work (allocations, run finding, views, wrap-around sites) cost more than the sites (L = 8:
# 2-3x the per-site cost of L >= 32). Here each configuration is one flat array of V = L0 L1 sites, the
# hop along axis 0 the offset +-L1 and along axis 1 the offset +-1, with the few wrapped entries fixed up
# in scratch (:func:`_u1_2d_config`); a chunk is several whole configurations, scratch allocated once.
# The per-configuration body is inlined into the chunk loop: as a call with 16 arguments it cost about
# 90 ns per configuration, the 8x8 kernel 1.15-1.2x the time (benchmarks/dirac_2d_parts.py, cache_call).
@_jit(inline=True)
def _u1_2d_config(O, P, Uf, bp, bu, L0, L1, al, beta, anti, cq, cr, hn, hs, he, hw):  # pragma: no cover
    """One configuration: spin components ``P[bp + y]``, ``P[bp + V + y]`` of psi, links ``Uf[bu + y]``,
    ``Uf[bu + V + y]`` (mu = 0, 1), output ``O`` as P (flat arrays, uint64 offsets); ``cq[mu, k]`` the
    projection and ``cr[mu, k]`` the reconstruction coefficients of the hop mu, forward (k = 0) /
    backward (k = 1); scratch ``hn, hs`` (>= V + L1), ``he, hw`` (>= V + 1).

    Pass A computes the four projected half-spinors at every site y (the backward ones transported by
    ``U^dag(y)``) and stores them where pass B, a flat loop over x, reads them: ``hn[x + L1]``, ``hs[x]``,
    ``he[x + 1]``, ``hw[x]``. The periodic wrap is then a ghost row after ``hn`` and before ``hs`` (with
    the anti-periodic sign) and, within the rows, one copied entry per row and direction. All indices
    are uint64 offsets into the whole arrays: no negative-index wrap-around (the loops vectorise), no
    views per configuration. Same operations in the same order as :func:`_wd_block` (round-off equal)."""
    qn = beta * cq[0, 0]
    qs = beta * cq[0, 1]
    qe = beta * cq[1, 0]
    qw = beta * cq[1, 1]
    zero = np.uint64(0)
    one = np.uint64(1)
    k = np.uint64(L1)
    n = np.uint64(L0 * L1)
    b1 = bp + n
    c1 = bu + n
    for y in range(zero, n):
        a = P[bp + y]
        b = P[b1 + y]
        hn[y] = beta * a + qn * b
        hs[y + k] = Uf[bu + y].conjugate() * (beta * a + qs * b)
        he[y] = beta * a + qe * b
        hw[y + one] = Uf[c1 + y].conjugate() * (beta * a + qw * b)
    if anti:   # ghost rows: the neighbours across the time boundary, with the sign
        for y in range(zero, k):
            hn[n + y] = -hn[y]
            hs[y] = -hs[n + y]
    else:
        for y in range(zero, k):
            hn[n + y] = hn[y]
            hs[y] = hs[n + y]
    # within the rows: the row end's forward neighbour is the row start, the row start's backward
    # neighbour the row end (he from the last row down, hw from the first row up: sources not yet overwritten)
    for r in range(zero, np.uint64(L0)):
        z = (np.uint64(L0) - one - r) * k
        he[z + k] = he[z]
        z = r * k
        hw[z] = hw[z + k]
    rn = cr[0, 0]
    rs = cr[0, 1]
    re = cr[1, 0]
    rw = cr[1, 1]
    if al == 0.0:   # H psi alone (alpha psi would turn inf/nan entries of psi into nan at their own site)
        for x in range(zero, n):
            tn = Uf[bu + x] * hn[x + k]
            ts = hs[x]
            te = Uf[c1 + x] * he[x + one]
            tw = hw[x]
            O[bp + x] = ((tn + ts) + te) + tw
            O[b1 + x] = ((rn * tn + rs * ts) + re * te) + rw * tw
        return
    for x in range(zero, n):
        tn = Uf[bu + x] * hn[x + k]
        ts = hs[x]
        te = Uf[c1 + x] * he[x + one]
        tw = hw[x]
        O[bp + x] = (((al * P[bp + x] + tn) + ts) + te) + tw
        O[b1 + x] = (((al * P[b1 + x] + rn * tn) + rs * ts) + re * te) + rw * tw


@_jit(parallel=True)
def _wilson_dirac_u1_2d(psi, U, L0, L1, cq, cr, alpha, beta, anti, cpc, out):  # pragma: no cover - compiled
    """``out = alpha psi + beta H psi`` for 2D U(1), Ns = 2: psi, out flat (S B 2 V); U flat (B 2 V);
    chunks of ``cpc`` configurations (:func:`_u1_2d_config` each)."""
    V = L0 * L1
    SB = psi.shape[0] // (2 * V)
    B = U.shape[0] // (2 * V)
    nc = (SB + cpc - 1) // cpc
    for c in _prange(nc):
        hn = np.empty(V + L1, dtype=np.complex128)
        hs = np.empty(V + L1, dtype=np.complex128)
        he = np.empty(V + 1, dtype=np.complex128)
        hw = np.empty(V + 1, dtype=np.complex128)
        for sb in range(c * cpc, min(SB, c * cpc + cpc)):
            _u1_2d_config(out, psi, U, np.uint64(sb * 2 * V), np.uint64((sb % B) * 2 * V), L0, L1, alpha, beta,
                          anti, cq, cr, hn, hs, he, hw)

# --------------------------------------------------------------------------------------------------
# Python wrapper: qualify the inputs (else decline with None), reshape views, call the kernel
# --------------------------------------------------------------------------------------------------
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


def _fermion_geometry(psi: Any, links: Any, gammas: Any,
                      antiperiodic: bool) -> tuple[int, int, int, tuple[int, ...], tuple[int, ...]] | None:
    """``(nd, Nc, Ns, L, gauge batch shape)`` when ``psi`` ``(*S, *B, Ns, Nc, *L)`` and ``links``
    ``(*B, nd, Nc, Nc, *L)`` are qualifying complex128 arrays (``_ok``) of one lattice and ``gammas`` is a
    monomial gamma table of ``nd >= 2`` directions with an even number of spin components; else None."""
    if not (_ok(psi, np.complex128) and _ok(links, np.complex128) and isinstance(gammas, tuple)
            and len(gammas) >= 2):
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
    return nd, Nc, ns, L, bg


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
    geo = _fermion_geometry(psi, links, gammas, antiperiodic) if _real(alpha) and _real(beta) else None
    if geo is None:
        return None
    nd, Nc, ns, L, bg = geo
    tabs = _gamma_arrays(gammas, bool(dagger))
    if tabs is None:
        return None
    B = _prod(bg)
    S = _prod(tuple(int(n) for n in psi.shape[: psi.ndim - nd - 2 - len(bg)]))
    if nd == 2 and Nc == 1 and ns == 2 and L[0] * L[1] <= _U1_2D_MAX_SITES:
        return _u1_2d(psi, links, tabs, L, S, B, float(alpha), float(beta), bool(antiperiodic))
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


def _u1_2d(psi: Any, links: Any, tabs: Any, L: tuple[int, ...], S: int, B: int, alpha: float, beta: float,
           anti: bool) -> Any:
    """The 2D U(1) kernel (:func:`_wilson_dirac_u1_2d`): whole configurations, several per chunk."""
    spins, cproj, crec = tabs
    V = L[0] * L[1]
    cq = np.ascontiguousarray(cproj[:, :, 0])
    cr = np.ascontiguousarray(crec[:, :, 0])
    out = np.empty(psi.shape, dtype=np.complex128)
    nt = _numba.get_num_threads()
    serial = nt > 1 and S * B * V < _WD_SERIAL_WORK
    want = 4 * (1 if serial else nt)
    cpc = max(1, min(_U1_2D_CHUNK // V, -(-(S * B) // want)))
    args = (psi.reshape(-1), links.reshape(-1), L[0], L[1], cq, cr, alpha, beta, anti, cpc, out.reshape(-1))
    if serial:   # one thread for small fields (see wilson_dirac_apply)
        _numba.set_num_threads(1)
        try:
            _wilson_dirac_u1_2d(*args)
        finally:
            _numba.set_num_threads(nt)
    else:
        _wilson_dirac_u1_2d(*args)
    return out


_U1_2D_CHUNK = 4096        # sites per chunk of the 2D U(1) kernel (whole configurations; at least one)
_U1_2D_MAX_SITES = 1 << 16  # larger 2D U(1) lattices: the row kernel (it splits one configuration over threads)
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
    """The fast paths of this module by registry name (backend ``"numpy"``); empty without numba."""
    if not available():
        return {}
    return {name: globals()[name] for name in NAMES}
