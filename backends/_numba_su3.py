"""Numba kernels for SU(2) and SU(3) gauge fields: plaquette and Wilson force with unrolled colour products.

Called by the SU(N) wrappers of :mod:`latticekit.backends._numba_gauge` (which register the names and
decline unqualified inputs) for N = 3; N = 2 runs the same kernels written for two colours
(:mod:`latticekit.backends._numba_su2`), other N the generic-N kernels of ``_numba_gauge``. Row geometry,
chunking and caching: :mod:`latticekit.backends._numba_common`.

Layout. The links ``U`` (B, nd, N, N, R, Lx) complex128 are read through their float64 view
``Uf`` (B, nd, N, N, R, 2 Lx), interleaved (re, im), with no copy. Each matrix needed along a row --
``U_d(x)`` or a shifted ``U_d(x + s)`` -- is copied once into a *blocked planar* row buffer
(:func:`_loadb3`): the row is cut into blocks of ``_BW`` = 16 sites, and block ``blk`` holds the
``2 N^2`` real numbers of its sites entry by entry (real parts of entry ``(i, k)`` at ``e = i N + k``,
imaginary parts at ``N^2 + e``), ``_BW`` sites each: site ``x`` of entry ``e`` is at
``(x // _BW) 2 N^2 _BW + e _BW + x % _BW``. The periodic shift is index arithmetic as in
``_numba_common._load``.

Arithmetic. The row functions (:func:`_plaq_row3`, :func:`_staples_row3`, :func:`_force_row3`) run one
loop per block over its ``_BW`` sites; a site's matrices are tuples of ``2 N^2`` floats, read at fixed
offsets ``e _BW`` from one index (:func:`_ldb3`), and the complex products are written out in full
(:func:`_mm3_nn` = ``a b``, :func:`_mm3_nd` = ``a b^dag``, :func:`_mm3_dn` = ``a^dag b``): no loop over
colour indices, no temporary matrix in memory. So LLVM vectorises the site loop (one SIMD lane per
site) with all offsets compile-time constants (no runtime alias checks, one address register per
matrix). Three details make that happen and are load-bearing: unsigned site indices (numba's
negative-index wrap-around otherwise blocks the vectoriser), a loop that stores into at most one
buffer whose rows lie at constant distances (the force goes through a staging block ``O``), and few
input arrays per loop. The functions are compiled with FMA contraction (``fastmath={"contract"}``)
and no other fast-math flag. Everything below the banner line (the unrolled product, load, store and
trace helpers, the row functions and the kernels) is written by ``tools/gen_numba_sun.py``, which writes
the same functions for N = 2 into ``_numba_su2``: edit the script and rerun it, not the text (the suite
checks that both modules are its current output).

Math (per site x, plane mu < nu):

* plaquette ``Re tr P_{mu nu}(x) = Re tr[(U_mu(x) U_nu(x+mu)) (U_nu(x) U_mu(x+nu))^dag]``: two
  products and a real dot product of the two results;
* force ``F_mu(x) = (beta / (2N)) TA(U_mu(x) A_mu(x))`` with ``TA(M) = (M - M^dag)/2 - tr(M - M^dag)/(2N)``
  and the staple sum ``A_mu(x) = sum_{nu != mu} [U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag
  + U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu)]`` (4 products per staple pair, then one product and
  the projection per link: 52 SU(3) products per site in 4D). The six neighbour matrices of a plane
  are loaded once for both of its links.

Cost (4D SU(3), L = 16, one configuration; ``benchmarks/su3_force_parts.py``, which times the force kernel
with one part removed at a time, medians of 5 processes on the 2-core benchmark VM): a 3x3 complex product
is 216 flops per site. With one thread the force takes about 700 ns per site: the 44 row copies
(``_loadb3``, about 7.9 ns each) about 345 ns, the 12 staple-pair loops (48 products) about 290 ns (35 GFLOP/s,
0.58-0.90 of the in-run float64 matmul rate of 52 GFLOP/s, varying from process to process), the 4 force
loops about 60 ns; with two threads about 350 ns. The copies are bound by cache traffic (144 B per site
and copy from the field), not by their scalar instructions: vectorising them (numba's SLP pass) leaves the
copy phase unchanged. Results agree with the generic code to round-off (tests/test_fast_paths.py, 1e-13
relative).
"""

from __future__ import annotations

import numpy as np

from ._numba_common import _chunk_rows, _jit, _prange, _shift

__all__: list[str] = []

_BW = 16   # sites per block of the row buffers: a compile-time constant for numba; tools/gen_numba_sun.py
           # writes the same number (its BW) into the generated loads and stores: change both


# --------------------------------------------------------------------------------------------------
# SU(3): unrolled products on tuples, row functions, the prange kernels (generated text)
# --------------------------------------------------------------------------------------------------


@_jit(contract=True, inline=True)
def _mm3_nn(a, b):  # pragma: no cover - compiled
    """``a b`` of 3x3 matrices held as tuples ``(re_00, re_01, ..., im_00, ...)``."""
    r0 = (a[0] * b[0] - a[9] * b[9]) + (a[1] * b[3] - a[10] * b[12]) + (a[2] * b[6] - a[11] * b[15])
    r1 = (a[0] * b[1] - a[9] * b[10]) + (a[1] * b[4] - a[10] * b[13]) + (a[2] * b[7] - a[11] * b[16])
    r2 = (a[0] * b[2] - a[9] * b[11]) + (a[1] * b[5] - a[10] * b[14]) + (a[2] * b[8] - a[11] * b[17])
    r3 = (a[3] * b[0] - a[12] * b[9]) + (a[4] * b[3] - a[13] * b[12]) + (a[5] * b[6] - a[14] * b[15])
    r4 = (a[3] * b[1] - a[12] * b[10]) + (a[4] * b[4] - a[13] * b[13]) + (a[5] * b[7] - a[14] * b[16])
    r5 = (a[3] * b[2] - a[12] * b[11]) + (a[4] * b[5] - a[13] * b[14]) + (a[5] * b[8] - a[14] * b[17])
    r6 = (a[6] * b[0] - a[15] * b[9]) + (a[7] * b[3] - a[16] * b[12]) + (a[8] * b[6] - a[17] * b[15])
    r7 = (a[6] * b[1] - a[15] * b[10]) + (a[7] * b[4] - a[16] * b[13]) + (a[8] * b[7] - a[17] * b[16])
    r8 = (a[6] * b[2] - a[15] * b[11]) + (a[7] * b[5] - a[16] * b[14]) + (a[8] * b[8] - a[17] * b[17])
    i0 = (a[0] * b[9] + a[9] * b[0]) + (a[1] * b[12] + a[10] * b[3]) + (a[2] * b[15] + a[11] * b[6])
    i1 = (a[0] * b[10] + a[9] * b[1]) + (a[1] * b[13] + a[10] * b[4]) + (a[2] * b[16] + a[11] * b[7])
    i2 = (a[0] * b[11] + a[9] * b[2]) + (a[1] * b[14] + a[10] * b[5]) + (a[2] * b[17] + a[11] * b[8])
    i3 = (a[3] * b[9] + a[12] * b[0]) + (a[4] * b[12] + a[13] * b[3]) + (a[5] * b[15] + a[14] * b[6])
    i4 = (a[3] * b[10] + a[12] * b[1]) + (a[4] * b[13] + a[13] * b[4]) + (a[5] * b[16] + a[14] * b[7])
    i5 = (a[3] * b[11] + a[12] * b[2]) + (a[4] * b[14] + a[13] * b[5]) + (a[5] * b[17] + a[14] * b[8])
    i6 = (a[6] * b[9] + a[15] * b[0]) + (a[7] * b[12] + a[16] * b[3]) + (a[8] * b[15] + a[17] * b[6])
    i7 = (a[6] * b[10] + a[15] * b[1]) + (a[7] * b[13] + a[16] * b[4]) + (a[8] * b[16] + a[17] * b[7])
    i8 = (a[6] * b[11] + a[15] * b[2]) + (a[7] * b[14] + a[16] * b[5]) + (a[8] * b[17] + a[17] * b[8])
    return (r0, r1, r2, r3, r4, r5, r6, r7, r8,
            i0, i1, i2, i3, i4, i5, i6, i7, i8)


@_jit(contract=True, inline=True)
def _mm3_nd(a, b):  # pragma: no cover - compiled
    """``a b^dag`` of 3x3 matrices held as tuples ``(re_00, re_01, ..., im_00, ...)``."""
    r0 = (a[0] * b[0] + a[9] * b[9]) + (a[1] * b[1] + a[10] * b[10]) + (a[2] * b[2] + a[11] * b[11])
    r1 = (a[0] * b[3] + a[9] * b[12]) + (a[1] * b[4] + a[10] * b[13]) + (a[2] * b[5] + a[11] * b[14])
    r2 = (a[0] * b[6] + a[9] * b[15]) + (a[1] * b[7] + a[10] * b[16]) + (a[2] * b[8] + a[11] * b[17])
    r3 = (a[3] * b[0] + a[12] * b[9]) + (a[4] * b[1] + a[13] * b[10]) + (a[5] * b[2] + a[14] * b[11])
    r4 = (a[3] * b[3] + a[12] * b[12]) + (a[4] * b[4] + a[13] * b[13]) + (a[5] * b[5] + a[14] * b[14])
    r5 = (a[3] * b[6] + a[12] * b[15]) + (a[4] * b[7] + a[13] * b[16]) + (a[5] * b[8] + a[14] * b[17])
    r6 = (a[6] * b[0] + a[15] * b[9]) + (a[7] * b[1] + a[16] * b[10]) + (a[8] * b[2] + a[17] * b[11])
    r7 = (a[6] * b[3] + a[15] * b[12]) + (a[7] * b[4] + a[16] * b[13]) + (a[8] * b[5] + a[17] * b[14])
    r8 = (a[6] * b[6] + a[15] * b[15]) + (a[7] * b[7] + a[16] * b[16]) + (a[8] * b[8] + a[17] * b[17])
    i0 = (a[9] * b[0] - a[0] * b[9]) + (a[10] * b[1] - a[1] * b[10]) + (a[11] * b[2] - a[2] * b[11])
    i1 = (a[9] * b[3] - a[0] * b[12]) + (a[10] * b[4] - a[1] * b[13]) + (a[11] * b[5] - a[2] * b[14])
    i2 = (a[9] * b[6] - a[0] * b[15]) + (a[10] * b[7] - a[1] * b[16]) + (a[11] * b[8] - a[2] * b[17])
    i3 = (a[12] * b[0] - a[3] * b[9]) + (a[13] * b[1] - a[4] * b[10]) + (a[14] * b[2] - a[5] * b[11])
    i4 = (a[12] * b[3] - a[3] * b[12]) + (a[13] * b[4] - a[4] * b[13]) + (a[14] * b[5] - a[5] * b[14])
    i5 = (a[12] * b[6] - a[3] * b[15]) + (a[13] * b[7] - a[4] * b[16]) + (a[14] * b[8] - a[5] * b[17])
    i6 = (a[15] * b[0] - a[6] * b[9]) + (a[16] * b[1] - a[7] * b[10]) + (a[17] * b[2] - a[8] * b[11])
    i7 = (a[15] * b[3] - a[6] * b[12]) + (a[16] * b[4] - a[7] * b[13]) + (a[17] * b[5] - a[8] * b[14])
    i8 = (a[15] * b[6] - a[6] * b[15]) + (a[16] * b[7] - a[7] * b[16]) + (a[17] * b[8] - a[8] * b[17])
    return (r0, r1, r2, r3, r4, r5, r6, r7, r8,
            i0, i1, i2, i3, i4, i5, i6, i7, i8)


@_jit(contract=True, inline=True)
def _mm3_dn(a, b):  # pragma: no cover - compiled
    """``a^dag b`` of 3x3 matrices held as tuples ``(re_00, re_01, ..., im_00, ...)``."""
    r0 = (a[0] * b[0] + a[9] * b[9]) + (a[3] * b[3] + a[12] * b[12]) + (a[6] * b[6] + a[15] * b[15])
    r1 = (a[0] * b[1] + a[9] * b[10]) + (a[3] * b[4] + a[12] * b[13]) + (a[6] * b[7] + a[15] * b[16])
    r2 = (a[0] * b[2] + a[9] * b[11]) + (a[3] * b[5] + a[12] * b[14]) + (a[6] * b[8] + a[15] * b[17])
    r3 = (a[1] * b[0] + a[10] * b[9]) + (a[4] * b[3] + a[13] * b[12]) + (a[7] * b[6] + a[16] * b[15])
    r4 = (a[1] * b[1] + a[10] * b[10]) + (a[4] * b[4] + a[13] * b[13]) + (a[7] * b[7] + a[16] * b[16])
    r5 = (a[1] * b[2] + a[10] * b[11]) + (a[4] * b[5] + a[13] * b[14]) + (a[7] * b[8] + a[16] * b[17])
    r6 = (a[2] * b[0] + a[11] * b[9]) + (a[5] * b[3] + a[14] * b[12]) + (a[8] * b[6] + a[17] * b[15])
    r7 = (a[2] * b[1] + a[11] * b[10]) + (a[5] * b[4] + a[14] * b[13]) + (a[8] * b[7] + a[17] * b[16])
    r8 = (a[2] * b[2] + a[11] * b[11]) + (a[5] * b[5] + a[14] * b[14]) + (a[8] * b[8] + a[17] * b[17])
    i0 = (a[0] * b[9] - a[9] * b[0]) + (a[3] * b[12] - a[12] * b[3]) + (a[6] * b[15] - a[15] * b[6])
    i1 = (a[0] * b[10] - a[9] * b[1]) + (a[3] * b[13] - a[12] * b[4]) + (a[6] * b[16] - a[15] * b[7])
    i2 = (a[0] * b[11] - a[9] * b[2]) + (a[3] * b[14] - a[12] * b[5]) + (a[6] * b[17] - a[15] * b[8])
    i3 = (a[1] * b[9] - a[10] * b[0]) + (a[4] * b[12] - a[13] * b[3]) + (a[7] * b[15] - a[16] * b[6])
    i4 = (a[1] * b[10] - a[10] * b[1]) + (a[4] * b[13] - a[13] * b[4]) + (a[7] * b[16] - a[16] * b[7])
    i5 = (a[1] * b[11] - a[10] * b[2]) + (a[4] * b[14] - a[13] * b[5]) + (a[7] * b[17] - a[16] * b[8])
    i6 = (a[2] * b[9] - a[11] * b[0]) + (a[5] * b[12] - a[14] * b[3]) + (a[8] * b[15] - a[17] * b[6])
    i7 = (a[2] * b[10] - a[11] * b[1]) + (a[5] * b[13] - a[14] * b[4]) + (a[8] * b[16] - a[17] * b[7])
    i8 = (a[2] * b[11] - a[11] * b[2]) + (a[5] * b[14] - a[14] * b[5]) + (a[8] * b[17] - a[17] * b[8])
    return (r0, r1, r2, r3, r4, r5, r6, r7, r8,
            i0, i1, i2, i3, i4, i5, i6, i7, i8)


@_jit(contract=True, inline=True)
def _retr3_nd(a, b):  # pragma: no cover - compiled
    """``Re tr(a b^dag) = sum_ik Re(a_ik conj(b_ik))``."""
    return (a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3] + a[4] * b[4] + a[5] * b[5]
            + a[6] * b[6] + a[7] * b[7] + a[8] * b[8] + a[9] * b[9] + a[10] * b[10] + a[11] * b[11]
            + a[12] * b[12] + a[13] * b[13] + a[14] * b[14] + a[15] * b[15] + a[16] * b[16] + a[17] * b[17])


@_jit(inline=True)
def _ldb3(M, q):  # pragma: no cover - compiled
    """Site ``q`` (unsigned) of a blocked row buffer ``M`` as a tuple: entry ``e`` at ``M[q + e * _BW]``."""
    return (M[q], M[q + np.uint64(16)], M[q + np.uint64(32)], M[q + np.uint64(48)],
            M[q + np.uint64(64)], M[q + np.uint64(80)], M[q + np.uint64(96)], M[q + np.uint64(112)],
            M[q + np.uint64(128)], M[q + np.uint64(144)], M[q + np.uint64(160)], M[q + np.uint64(176)],
            M[q + np.uint64(192)], M[q + np.uint64(208)], M[q + np.uint64(224)], M[q + np.uint64(240)],
            M[q + np.uint64(256)], M[q + np.uint64(272)])


@_jit(inline=True)
def _addb3(M, q, t, u):  # pragma: no cover - compiled
    """``M[q + e * _BW] += t[e] + u[e]``."""
    M[q] += t[0] + u[0]
    M[q + np.uint64(16)] += t[1] + u[1]
    M[q + np.uint64(32)] += t[2] + u[2]
    M[q + np.uint64(48)] += t[3] + u[3]
    M[q + np.uint64(64)] += t[4] + u[4]
    M[q + np.uint64(80)] += t[5] + u[5]
    M[q + np.uint64(96)] += t[6] + u[6]
    M[q + np.uint64(112)] += t[7] + u[7]
    M[q + np.uint64(128)] += t[8] + u[8]
    M[q + np.uint64(144)] += t[9] + u[9]
    M[q + np.uint64(160)] += t[10] + u[10]
    M[q + np.uint64(176)] += t[11] + u[11]
    M[q + np.uint64(192)] += t[12] + u[12]
    M[q + np.uint64(208)] += t[13] + u[13]
    M[q + np.uint64(224)] += t[14] + u[14]
    M[q + np.uint64(240)] += t[15] + u[15]
    M[q + np.uint64(256)] += t[16] + u[16]
    M[q + np.uint64(272)] += t[17] + u[17]


@_jit(inline=True)
def _st_ta3(O, j, M, coef):  # pragma: no cover - compiled
    """``O[e * _BW + j]`` = entry ``e`` (planar) of ``coef [(M - M^dag)/2 - tr((M - M^dag)/2)/3]``."""
    t = (M[9] + M[13] + M[17]) / 3.0
    h = 0.5 * coef
    O[0 * _BW + j] = 0.0
    O[9 * _BW + j] = coef * (M[9] - t)
    O[1 * _BW + j] = h * (M[1] - M[3])
    O[10 * _BW + j] = h * (M[10] + M[12])
    O[2 * _BW + j] = h * (M[2] - M[6])
    O[11 * _BW + j] = h * (M[11] + M[15])
    O[3 * _BW + j] = h * (M[3] - M[1])
    O[12 * _BW + j] = h * (M[12] + M[10])
    O[4 * _BW + j] = 0.0
    O[13 * _BW + j] = coef * (M[13] - t)
    O[5 * _BW + j] = h * (M[5] - M[7])
    O[14 * _BW + j] = h * (M[14] + M[16])
    O[6 * _BW + j] = h * (M[6] - M[2])
    O[15 * _BW + j] = h * (M[15] + M[11])
    O[7 * _BW + j] = h * (M[7] - M[5])
    O[16 * _BW + j] = h * (M[16] + M[14])
    O[8 * _BW + j] = 0.0
    O[17 * _BW + j] = coef * (M[17] - t)


@_jit()
def _loadb3(dst, Ud, o, a, c, L2):  # pragma: no cover - compiled
    """``dst`` = the matrices of row ``o`` of ``Ud`` (3, 3, R, 2 Lx) in the blocked planar layout, shifted
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
    NN = 9
    NE = 18
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
def _plaq_row3(val, a, b, c, d):  # pragma: no cover - compiled
    """``val[x] = Re tr[(a b)(c d)^dag]`` along a row: with a = U_mu(x), b = U_nu(x+mu), c = U_nu(x),
    d = U_mu(x+nu) this is Re tr P_{mu nu}(x), P = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag."""
    for blk in range(val.shape[0] // _BW):
        base = blk * 18 * _BW
        for jj in range(_BW):
            q = np.uint64(base + jj)      # unsigned: no negative-index wrap-around, the loop vectorises
            A = _mm3_nn(_ldb3(a, q), _ldb3(b, q))
            C = _mm3_nn(_ldb3(c, q), _ldb3(d, q))
            val[np.uint64(blk * _BW + jj)] = _retr3_nd(A, C)


@_jit(contract=True)
def _staples_row3(S, d, b, c, ya, yb, yd):  # pragma: no cover - compiled
    """Add the upper and lower staple of one plane to the staple sum ``S`` of a link along a row.

    For the link U_mu(x) in the plane (mu, nu): b = U_nu(x+mu), c = U_mu(x+nu), d = U_nu(x),
    ya = U_mu(y), yb = U_nu(y+mu), yd = U_nu(y) with y = x - nu; adds the upper staple
    ``b c^dag d^dag`` and the lower staple ``(ya yb)^dag yd`` (4 products). (Summing the staples of
    both links of a plane in one loop would share ``b c^dag`` but has too many arrays to vectorise.)"""
    for blk in range(S.shape[0] // (18 * _BW)):
        base = blk * 18 * _BW
        for jj in range(_BW):
            q = np.uint64(base + jj)
            up = _mm3_nd(_mm3_nd(_ldb3(b, q), _ldb3(c, q)), _ldb3(d, q))
            lo = _mm3_dn(_mm3_nn(_ldb3(ya, q), _ldb3(yb, q)), _ldb3(yd, q))
            _addb3(S, q, up, lo)


@_jit(contract=True)
def _force_row3(Ff, b, mu, o, a, S, coef, O):  # pragma: no cover - compiled
    """``F_mu(x) = coef TA(a S)`` along row ``o`` (a = U_mu(x), S = its staple sum A_mu(x)), through the
    staging block ``O`` (18 x _BW) into the interleaved (re, im) float64 view ``Ff`` of the output
    (storing into the 9 rows of ``Ff`` straight from the product loop would not vectorise)."""
    Lx = Ff.shape[5] // 2
    for blk in range(S.shape[0] // (18 * _BW)):
        base = blk * 18 * _BW
        for jj in range(_BW):
            _st_ta3(O, np.uint64(jj), _mm3_nn(_ldb3(a, np.uint64(base + jj)), _ldb3(S, np.uint64(base + jj))),
                      coef)
        x0 = blk * _BW
        m = min(_BW, Lx - x0)
        for i in range(3):
            for k in range(3):
                e = i * 3 + k
                dst = Ff[b, mu, i, k, o]
                for j in range(m):
                    dst[2 * (x0 + j)] = O[e * _BW + j]
                    dst[2 * (x0 + j) + 1] = O[(3 * 3 + e) * _BW + j]


@_jit(parallel=True)
def _plaquette_kernel3(Uf, dims, K, rpc, field, write, partial):  # pragma: no cover - compiled
    """SU(3) plaquette sums (and per-plane field) of the float64 view ``Uf`` (B, nd, 3, 3, R, 2 Lx)."""
    B, nd, _, _, R, Lx2 = Uf.shape
    Lx = Lx2 // 2
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    nblk = (Lx + _BW - 1) // _BW
    sz = nblk * 18 * _BW
    inv_n = 1.0 / 3
    for c in _prange(B * nc):
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
        acc = np.zeros(Lx)
        val = np.zeros(nblk * _BW)
        Lo = np.zeros((nd, sz))      # blocked row buffers (zeros: the padding sites stay finite)
        T1 = np.zeros(sz)
        T2 = np.zeros(sz)
        for o in range(o0, o1):
            for d in range(nd):
                _loadb3(Lo[d], Uf[b, d], o, 0, 0, L2)
            p = 0
            for mu in range(nd):
                for nu in range(mu + 1, nd):
                    r1, a1, c1 = _shift(o, 0, 0, mu, 1, dims, K)
                    r2, a2, c2 = _shift(o, 0, 0, nu, 1, dims, K)
                    _loadb3(T1, Uf[b, nu], r1, a1, c1, L2)    # U_nu(x + mu)
                    _loadb3(T2, Uf[b, mu], r2, a2, c2, L2)    # U_mu(x + nu)
                    _plaq_row3(val, Lo[mu], T1, Lo[nu], T2)
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
def _force_kernel3(Uf, dims, K, rpc, coef, Ff):  # pragma: no cover - compiled
    """SU(3) Wilson force ``coef TA(U_mu A_mu)`` into the float64 view ``Ff`` (B, nd, 3, 3, R, 2 Lx)."""
    B, nd, _, _, R, Lx2 = Uf.shape
    Lx = Lx2 // 2
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    sz = (Lx + _BW - 1) // _BW * 18 * _BW
    for c in _prange(B * nc):
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
        Lo = np.zeros((nd, sz))     # U_d(x)
        Bk = np.zeros((nd, sz))     # U_d(x - d)
        S = np.zeros((nd, sz))      # staple sums A_d(x)
        T = np.zeros((6, sz))
        O = np.empty(18 * _BW)    # staging block of _force_row3
        for o in range(o0, o1):
            for d in range(nd):
                _loadb3(Lo[d], Uf[b, d], o, 0, 0, L2)
                r, a, cc = _shift(o, 0, 0, d, -1, dims, K)
                _loadb3(Bk[d], Uf[b, d], r, a, cc, L2)
            S[:, :] = 0.0
            for mu in range(nd):
                for nu in range(mu + 1, nd):
                    r, a, cc = _shift(o, 0, 0, mu, 1, dims, K)
                    _loadb3(T[0], Uf[b, nu], r, a, cc, L2)                 # U_nu(x + mu)
                    r, a, cc = _shift(o, 0, 0, nu, 1, dims, K)
                    _loadb3(T[1], Uf[b, mu], r, a, cc, L2)                 # U_mu(x + nu)
                    ry, ay, cy = _shift(o, 0, 0, nu, -1, dims, K)
                    _loadb3(T[2], Uf[b, mu], ry, ay, cy, L2)               # U_mu(x - nu)
                    r, a, cc = _shift(ry, ay, cy, mu, 1, dims, K)
                    _loadb3(T[3], Uf[b, nu], r, a, cc, L2)                 # U_nu(x - nu + mu)
                    rz, az, cz = _shift(o, 0, 0, mu, -1, dims, K)
                    _loadb3(T[4], Uf[b, nu], rz, az, cz, L2)               # U_nu(x - mu)
                    r, a, cc = _shift(rz, az, cz, nu, 1, dims, K)
                    _loadb3(T[5], Uf[b, mu], r, a, cc, L2)                 # U_mu(x - mu + nu)
                    # link mu: U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag
                    #          + (U_mu(x-nu) U_nu(x-nu+mu))^dag U_nu(x-nu)
                    _staples_row3(S[mu], Lo[nu], T[0], T[1], T[2], T[3], Bk[nu])
                    # link nu: U_mu(x+nu) U_nu(x+mu)^dag U_mu(x)^dag
                    #          + (U_nu(x-mu) U_mu(x-mu+nu))^dag U_mu(x-mu)
                    _staples_row3(S[nu], Lo[mu], T[1], T[0], T[4], T[5], Bk[mu])
            for mu in range(nd):
                _force_row3(Ff, b, mu, o, Lo[mu], S[mu], coef, O)
