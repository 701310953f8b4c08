"""Generate the unrolled SU(N) numba kernels of ``backends/_numba_su3.py`` and ``backends/_numba_su2.py``.

The two modules hold the same functions for N = 3 and N = 2: products of N x N complex matrices written out
entry by entry on tuples of ``2 N^2`` floats (``_mmN_nn`` = ``a b``, ``_mmN_nd`` = ``a b^dag``, ``_mmN_dn`` =
``a^dag b``), ``Re tr(a b^dag)``, loads and stores of the blocked planar row buffers at constant offsets, the
traceless anti-Hermitian projection, the row functions and the prange kernels (layout and measured speed:
the docstring of ``_numba_su3``). Everything from the banner line ``# SU(N): unrolled products ...`` to the
end of each module is this script's output; the module docstrings, imports and ``_BW`` above the banner are
written by hand. Edit this script, not the generated text, and regenerate both:

    python tools/gen_numba_sun.py            # rewrite the generated part of both modules
    python tools/gen_numba_sun.py --check    # exit 1 if a module differs from the script's output

``tests/test_fast_paths.py::test_generated_sun_kernels_are_current`` runs the check, and the kernels are
tested against the generic SU(N) code in the same file.

Conventions of the unrolled helpers (tuples, planar): entry ``(i, k)`` has its real part at ``e = i N + k``
and its imaginary part at ``N^2 + e``; every sum over the colour index ``j`` is written as the bracketed pairs
``(re re -/+ im im)`` in order of ``j``, the order the compiled kernels were measured with.
"""

from __future__ import annotations

import argparse
import pathlib
import string
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BW = 16                 # the _BW of backends/_numba_su3.py (sites per block), written into the loads/stores
COLOURS = (3, 2)
RULE = "# " + "-" * 98 + "\n"


def module_path(n: int) -> pathlib.Path:
    """The module holding the kernels for ``n`` colours."""
    return ROOT / "backends" / f"_numba_su{n}.py"


def banner(n: int) -> str:
    return RULE + f"# SU({n}): unrolled products on tuples, row functions, the prange kernels (generated text)\n" + RULE


def _tuple_return(n: int) -> str:
    nn = n * n
    re = ", ".join(f"r{e}" for e in range(nn))
    im = ", ".join(f"i{e}" for e in range(nn))
    return f"    return ({re},\n            {im})\n"


def _product(n: int, name: str, doc: str, re_term, im_term) -> str:
    """An unrolled product; ``re_term(i, k, j)``/``im_term(i, k, j)`` give the bracketed pair for colour j."""
    out = [f"@_jit(contract=True, inline=True)\ndef _mm{n}_{name}(a, b):  # pragma: no cover - compiled\n",
           f'    """``{doc}`` of {n}x{n} matrices held as tuples ``(re_00, re_01, ..., im_00, ...)``."""\n']
    for part, term in (("r", re_term), ("i", im_term)):
        for i in range(n):
            for k in range(n):
                out.append(f"    {part}{i * n + k} = " + " + ".join(term(i, k, j) for j in range(n)) + "\n")
    out.append(_tuple_return(n))
    return "".join(out)


def mm_nn(n: int) -> str:
    nn = n * n
    return _product(
        n, "nn", "a b",
        lambda i, k, j: f"(a[{i * n + j}] * b[{j * n + k}] - a[{nn + i * n + j}] * b[{nn + j * n + k}])",
        lambda i, k, j: f"(a[{i * n + j}] * b[{nn + j * n + k}] + a[{nn + i * n + j}] * b[{j * n + k}])")


def mm_nd(n: int) -> str:
    nn = n * n
    return _product(
        n, "nd", "a b^dag",
        lambda i, k, j: f"(a[{i * n + j}] * b[{k * n + j}] + a[{nn + i * n + j}] * b[{nn + k * n + j}])",
        lambda i, k, j: f"(a[{nn + i * n + j}] * b[{k * n + j}] - a[{i * n + j}] * b[{nn + k * n + j}])")


def mm_dn(n: int) -> str:
    nn = n * n
    return _product(
        n, "dn", "a^dag b",
        lambda i, k, j: f"(a[{j * n + i}] * b[{j * n + k}] + a[{nn + j * n + i}] * b[{nn + j * n + k}])",
        lambda i, k, j: f"(a[{j * n + i}] * b[{nn + j * n + k}] - a[{nn + j * n + i}] * b[{j * n + k}])")


def retr_nd(n: int) -> str:
    terms = [f"a[{e}] * b[{e}]" for e in range(2 * n * n)]
    lines = [" + ".join(terms[s:s + 6]) for s in range(0, len(terms), 6)]
    body = "    return (" + "\n            + ".join(lines) + ")\n"
    return (f"@_jit(contract=True, inline=True)\ndef _retr{n}_nd(a, b):  # pragma: no cover - compiled\n"
            '    """``Re tr(a b^dag) = sum_ik Re(a_ik conj(b_ik))``."""\n' + body)


def _offset(e: int) -> str:
    return "q" if e == 0 else f"q + np.uint64({e * BW})"


def ldb(n: int) -> str:
    items = [f"M[{_offset(e)}]" for e in range(2 * n * n)]
    lines = [", ".join(items[s:s + 4]) for s in range(0, len(items), 4)]
    body = "    return (" + ",\n            ".join(lines) + ")\n"
    return (f"@_jit(inline=True)\ndef _ldb{n}(M, q):  # pragma: no cover - compiled\n"
            '    """Site ``q`` (unsigned) of a blocked row buffer ``M`` as a tuple: entry ``e`` at '
            '``M[q + e * _BW]``."""\n' + body)


def addb(n: int) -> str:
    body = "".join(f"    M[{_offset(e)}] += t[{e}] + u[{e}]\n" for e in range(2 * n * n))
    return (f"@_jit(inline=True)\ndef _addb{n}(M, q, t, u):  # pragma: no cover - compiled\n"
            '    """``M[q + e * _BW] += t[e] + u[e]``."""\n' + body)


def st_ta(n: int) -> str:
    """``O`` = entry by entry of ``coef [(M - M^dag)/2 - tr((M - M^dag)/2)/N]`` (the diagonal of (M - M^dag)/2
    is ``i Im M_ii``; its trace part is removed through ``t``)."""
    nn = n * n
    t = " + ".join(f"M[{nn + i * n + i}]" for i in range(n))
    out = [f"@_jit(inline=True)\ndef _st_ta{n}(O, j, M, coef):  # pragma: no cover - compiled\n",
           '    """``O[e * _BW + j]`` = entry ``e`` (planar) of '
           f'``coef [(M - M^dag)/2 - tr((M - M^dag)/2)/{n}]``."""\n',
           f"    t = ({t}) / {n}.0\n", "    h = 0.5 * coef\n"]
    for i in range(n):
        for k in range(n):
            e, et = i * n + k, k * n + i
            if i == k:
                out.append(f"    O[{e} * _BW + j] = 0.0\n")
                out.append(f"    O[{nn + e} * _BW + j] = coef * (M[{nn + e}] - t)\n")
            else:
                out.append(f"    O[{e} * _BW + j] = h * (M[{e}] - M[{et}])\n")
                out.append(f"    O[{nn + e} * _BW + j] = h * (M[{nn + e}] + M[{nn + et}])\n")
    return "".join(out)


#: the row functions and prange kernels, the same text for every N ($N, $NN = N^2, $NE = 2 N^2)
KERNELS = string.Template('''
@_jit()
def _loadb${N}(dst, Ud, o, a, c, L2):  # pragma: no cover - compiled
    """``dst`` = the matrices of row ``o`` of ``Ud`` ($N, $N, R, 2 Lx) in the blocked planar layout, shifted
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
    NN = $NN
    NE = $NE
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
def _plaq_row${N}(val, a, b, c, d):  # pragma: no cover - compiled
    """``val[x] = Re tr[(a b)(c d)^dag]`` along a row: with a = U_mu(x), b = U_nu(x+mu), c = U_nu(x),
    d = U_mu(x+nu) this is Re tr P_{mu nu}(x), P = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag."""
    for blk in range(val.shape[0] // _BW):
        base = blk * $NE * _BW
        for jj in range(_BW):
            q = np.uint64(base + jj)      # unsigned: no negative-index wrap-around, the loop vectorises
            A = _mm${N}_nn(_ldb${N}(a, q), _ldb${N}(b, q))
            C = _mm${N}_nn(_ldb${N}(c, q), _ldb${N}(d, q))
            val[np.uint64(blk * _BW + jj)] = _retr${N}_nd(A, C)


@_jit(contract=True)
def _staples_row${N}(S, d, b, c, ya, yb, yd):  # pragma: no cover - compiled
    """Add the upper and lower staple of one plane to the staple sum ``S`` of a link along a row.

    For the link U_mu(x) in the plane (mu, nu): b = U_nu(x+mu), c = U_mu(x+nu), d = U_nu(x),
    ya = U_mu(y), yb = U_nu(y+mu), yd = U_nu(y) with y = x - nu; adds the upper staple
    ``b c^dag d^dag`` and the lower staple ``(ya yb)^dag yd`` (4 products). (Summing the staples of
    both links of a plane in one loop would share ``b c^dag`` but has too many arrays to vectorise.)"""
    for blk in range(S.shape[0] // ($NE * _BW)):
        base = blk * $NE * _BW
        for jj in range(_BW):
            q = np.uint64(base + jj)
            up = _mm${N}_nd(_mm${N}_nd(_ldb${N}(b, q), _ldb${N}(c, q)), _ldb${N}(d, q))
            lo = _mm${N}_dn(_mm${N}_nn(_ldb${N}(ya, q), _ldb${N}(yb, q)), _ldb${N}(yd, q))
            _addb${N}(S, q, up, lo)


@_jit(contract=True)
def _force_row${N}(Ff, b, mu, o, a, S, coef, O):  # pragma: no cover - compiled
    """``F_mu(x) = coef TA(a S)`` along row ``o`` (a = U_mu(x), S = its staple sum A_mu(x)), through the
    staging block ``O`` ($NE x _BW) into the interleaved (re, im) float64 view ``Ff`` of the output
    (storing into the $NN rows of ``Ff`` straight from the product loop would not vectorise)."""
    Lx = Ff.shape[5] // 2
    for blk in range(S.shape[0] // ($NE * _BW)):
        base = blk * $NE * _BW
        for jj in range(_BW):
            _st_ta${N}(O, np.uint64(jj), _mm${N}_nn(_ldb${N}(a, np.uint64(base + jj)), _ldb${N}(S, np.uint64(base + jj))),
                      coef)
        x0 = blk * _BW
        m = min(_BW, Lx - x0)
        for i in range($N):
            for k in range($N):
                e = i * $N + k
                dst = Ff[b, mu, i, k, o]
                for j in range(m):
                    dst[2 * (x0 + j)] = O[e * _BW + j]
                    dst[2 * (x0 + j) + 1] = O[($N * $N + e) * _BW + j]


@_jit(parallel=True)
def _plaquette_kernel${N}(Uf, dims, K, rpc, field, write, partial):  # pragma: no cover - compiled
    """SU($N) plaquette sums (and per-plane field) of the float64 view ``Uf`` (B, nd, $N, $N, R, 2 Lx)."""
    B, nd, _, _, R, Lx2 = Uf.shape
    Lx = Lx2 // 2
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    nblk = (Lx + _BW - 1) // _BW
    sz = nblk * $NE * _BW
    inv_n = 1.0 / $N
    for c in _prange(B * nc):
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
        acc = np.zeros(Lx)
        val = np.zeros(nblk * _BW)
        Lo = np.zeros((nd, sz))      # blocked row buffers (zeros: the padding sites stay finite)
        T1 = np.zeros(sz)
        T2 = np.zeros(sz)
        for o in range(o0, o1):
            for d in range(nd):
                _loadb${N}(Lo[d], Uf[b, d], o, 0, 0, L2)
            p = 0
            for mu in range(nd):
                for nu in range(mu + 1, nd):
                    r1, a1, c1 = _shift(o, 0, 0, mu, 1, dims, K)
                    r2, a2, c2 = _shift(o, 0, 0, nu, 1, dims, K)
                    _loadb${N}(T1, Uf[b, nu], r1, a1, c1, L2)    # U_nu(x + mu)
                    _loadb${N}(T2, Uf[b, mu], r2, a2, c2, L2)    # U_mu(x + nu)
                    _plaq_row${N}(val, Lo[mu], T1, Lo[nu], T2)
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
def _force_kernel${N}(Uf, dims, K, rpc, coef, Ff):  # pragma: no cover - compiled
    """SU($N) Wilson force ``coef TA(U_mu A_mu)`` into the float64 view ``Ff`` (B, nd, $N, $N, R, 2 Lx)."""
    B, nd, _, _, R, Lx2 = Uf.shape
    Lx = Lx2 // 2
    L2 = dims[nd - 2] if K == 2 else 1
    nc = (R + rpc - 1) // rpc
    sz = (Lx + _BW - 1) // _BW * $NE * _BW
    for c in _prange(B * nc):
        b, o0, o1 = _chunk_rows(c, nc, rpc, R)
        Lo = np.zeros((nd, sz))     # U_d(x)
        Bk = np.zeros((nd, sz))     # U_d(x - d)
        S = np.zeros((nd, sz))      # staple sums A_d(x)
        T = np.zeros((6, sz))
        O = np.empty($NE * _BW)    # staging block of _force_row${N}
        for o in range(o0, o1):
            for d in range(nd):
                _loadb${N}(Lo[d], Uf[b, d], o, 0, 0, L2)
                r, a, cc = _shift(o, 0, 0, d, -1, dims, K)
                _loadb${N}(Bk[d], Uf[b, d], r, a, cc, L2)
            S[:, :] = 0.0
            for mu in range(nd):
                for nu in range(mu + 1, nd):
                    r, a, cc = _shift(o, 0, 0, mu, 1, dims, K)
                    _loadb${N}(T[0], Uf[b, nu], r, a, cc, L2)                 # U_nu(x + mu)
                    r, a, cc = _shift(o, 0, 0, nu, 1, dims, K)
                    _loadb${N}(T[1], Uf[b, mu], r, a, cc, L2)                 # U_mu(x + nu)
                    ry, ay, cy = _shift(o, 0, 0, nu, -1, dims, K)
                    _loadb${N}(T[2], Uf[b, mu], ry, ay, cy, L2)               # U_mu(x - nu)
                    r, a, cc = _shift(ry, ay, cy, mu, 1, dims, K)
                    _loadb${N}(T[3], Uf[b, nu], r, a, cc, L2)                 # U_nu(x - nu + mu)
                    rz, az, cz = _shift(o, 0, 0, mu, -1, dims, K)
                    _loadb${N}(T[4], Uf[b, nu], rz, az, cz, L2)               # U_nu(x - mu)
                    r, a, cc = _shift(rz, az, cz, nu, 1, dims, K)
                    _loadb${N}(T[5], Uf[b, mu], r, a, cc, L2)                 # U_mu(x - mu + nu)
                    # link mu: U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag
                    #          + (U_mu(x-nu) U_nu(x-nu+mu))^dag U_nu(x-nu)
                    _staples_row${N}(S[mu], Lo[nu], T[0], T[1], T[2], T[3], Bk[nu])
                    # link nu: U_mu(x+nu) U_nu(x+mu)^dag U_mu(x)^dag
                    #          + (U_nu(x-mu) U_mu(x-mu+nu))^dag U_mu(x-mu)
                    _staples_row${N}(S[nu], Lo[mu], T[1], T[0], T[4], T[5], Bk[mu])
            for mu in range(nd):
                _force_row${N}(Ff, b, mu, o, Lo[mu], S[mu], coef, O)
''')


def generate(n: int) -> str:
    """The generated part of the module for ``n`` colours: the banner line to the end of the file."""
    if n not in COLOURS:
        raise ValueError(f"n={n!r}: expected one of {COLOURS}")
    parts = [mm_nn(n), mm_nd(n), mm_dn(n), retr_nd(n), ldb(n), addb(n), st_ta(n),
             KERNELS.substitute(N=n, NN=n * n, NE=2 * n * n).lstrip("\n")]
    return banner(n) + "\n\n" + "\n\n".join(p.rstrip("\n") + "\n" for p in parts)


def split_module(text: str, n: int) -> tuple[str, str]:
    """``(hand-written head, generated part)`` of a module's text."""
    start = text.find(banner(n))
    if start < 0:
        raise ValueError(f"{module_path(n)}: the banner line of the generated part is missing")
    return text[:start], text[start:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if a module is out of date")
    args = p.parse_args(argv)
    stale = []
    for n in COLOURS:
        path = module_path(n)
        head, body = split_module(path.read_text(), n)
        new = generate(n)
        if body != new:
            stale.append(path)
            if not args.check:
                path.write_text(head + new)
    for path in stale:
        print(("out of date: " if args.check else "rewrote: ") + str(path.relative_to(ROOT)))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
