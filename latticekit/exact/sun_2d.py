r"""Exact results for 2D SU(N) Wilson lattice gauge theory (N >= 2).

Conventions (docs/DESIGN.md): ``S = -(beta/N) sum_P Re tr U_P`` with the normalised Haar measure;
the average plaquette is ``<(1/N) Re tr U_P>``.

Character expansion (Migdal 1975; Drouffe & Zuber, Phys. Rep. 102 (1983) 1; Rusakov 1990).
Irreducible representations are labelled by partitions ``lam = (lam_1 >= ... >= lam_N = 0)``
(highest weights; for SU(3) ``(p, q)`` is ``lam = (p + q, q, 0)``), with dimension
``d_lam = prod_{i<j} (lam_i - lam_j + j - i) / (j - i)``.  The one-plaquette weight is

``exp((beta/N) Re tr U) = sum_lam c_lam(beta) chi_lam(U)``,
``c_lam = int dU conj(chi_lam(U)) exp((beta/N) Re tr U) = sum_{k in Z} det[I_{lam_i + k - i + j}(beta/N)]_{i,j=1..N}``

(the Bessel-determinant formula of Bars & Green / Gross & Witten for U(N), summed over the
U(1) charge ``k`` to impose ``det U = 1``; ``c_0`` is the one-link integral ``z(beta)``).
Gluing plaquettes along shared links (``int dU chi_r(AU) chi_s(U^dag B) = delta_rs chi_r(AB)/d_r``)
gives, for a closed surface of genus ``g`` with ``V`` plaquettes,
``Z = sum_lam d_lam^(2-2g) (c_lam / d_lam)^V``; on the torus (``g = 1``)

``Z = sum_lam (c_lam / d_lam)^V``.

Infinite volume: only the trivial representation survives, so ``<(1/N) Re tr U_P> =
d ln c_0 / d beta`` and ``<W(A)> = (c_F / (N c_0))^A``.

Numerics: Bessel functions are used scaled (``ive``), determinants are batched, the
representation sum is truncated at ``lam_1 <= max_row`` (default grows like ``sqrt(beta)``) and
done relative to the trivial representation, which dominates.  The determinants lose up to about
``log10((beta/N)^(N-1))`` digits to cancellation (measured 12-140x fewer for SU(3), SU(4)), which is
harmless for the couplings of practical interest (e.g. < 1e-11 relative for SU(3) at beta = 30); a coupling
above :func:`sun_max_beta` (where that bound reaches 1e-4 of ``1 - P``: about 1.2e6, 2.5e4, 3.8e3 for SU(2),
SU(3), SU(4)) is refused (SU(4) at 1e5 gave P = 1.00017).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.special import ive

from ._numerics import check_beta, check_int, check_shape, vectorize_beta

__all__ = [
    "gross_witten_plaquette",
    "sun_2d_character_ratio",
    "sun_2d_log_z",
    "sun_2d_one_plaquette_log_z",
    "sun_2d_plaquette",
    "sun_2d_wilson_loop",
    "sun_character_coefficient_quadrature",
    "sun_dimension",
    "sun_irreps",
    "sun_max_beta",
]


# --------------------------------------------------------------------------- representations
def _check_n(N: int) -> int:
    N = check_int(N, "N", 2)
    return N


def _normalize_irrep(irrep: Sequence[int], N: int) -> tuple[int, ...]:
    if any(isinstance(v, bool) or int(v) != v for v in irrep):    # (1.5,) was truncated to (1,)
        raise ValueError(f"irrep must be a non-increasing sequence of at most {N} integers (a partition), "
                         f"got {irrep!r}")
    lam = tuple(int(v) for v in irrep)
    if 0 < len(lam) < N:
        lam = lam + (0,) * (N - len(lam))
    if len(lam) != N or any(lam[i] < lam[i + 1] for i in range(N - 1)):
        raise ValueError(
            f"irrep must be a non-increasing sequence of at most {N} integers (a partition), got {irrep!r}"
        )
    return tuple(v - lam[-1] for v in lam)


def sun_irreps(N: int, max_row: int) -> np.ndarray:
    r"""All SU(N) irreps with first row ``lam_1 <= max_row``, as partitions ``(lam_1, ..., lam_N = 0)``.

    Parameters
    ----------
    N : int
        Number of colours, ``N >= 2``.
    max_row : int
        Largest ``lam_1`` (number of boxes in the first row of the Young diagram).

    Returns
    -------
    ndarray of int, shape (n_irreps, N)
        Row 0 is the trivial representation.

    Examples
    --------
    >>> from latticekit.exact import sun_irreps
    >>> sun_irreps(3, 1).tolist()
    [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    """
    N = _check_n(N)
    max_row = check_int(max_row, "max_row", 0)
    rows = [
        tuple(sorted(c, reverse=True)) + (0,)
        for c in itertools.combinations_with_replacement(range(max_row + 1), N - 1)
    ]
    rows.sort(key=lambda r: (sum(r), r[::-1]))
    return np.array(rows, dtype=np.int64).reshape(-1, N)


def sun_dimension(irreps: np.ndarray | Sequence[int]) -> np.ndarray | int:
    r"""Dimension ``d_lam = prod_{i<j} (lam_i - lam_j + j - i)/(j - i)`` (Weyl's formula).

    Parameters
    ----------
    irreps : array_like of int, shape (..., N)
        Partitions ``lam``.

    Returns
    -------
    int or ndarray of float

    Examples
    --------
    >>> from latticekit.exact import sun_dimension
    >>> sun_dimension((1, 0, 0)), sun_dimension((2, 1, 0)), sun_dimension((2, 0))
    (3, 8, 3)
    """
    lam = np.asarray(irreps, dtype=float)
    if lam.ndim == 0 or np.any(lam != np.round(lam)) or np.any(lam[..., -1:] < 0) or np.any(np.diff(lam, axis=-1) > 0):
        raise ValueError(f"irreps={irreps!r}: expected partitions, non-increasing integers >= 0 (one per row)")
    N = lam.shape[-1]
    d = np.ones(lam.shape[:-1])
    for i in range(N):
        for j in range(i + 1, N):
            d = d * (lam[..., i] - lam[..., j] + j - i) / (j - i)
    if d.ndim == 0:
        return int(round(float(d)))
    return d


def _default_max_row(beta: float, N: int, V: int = 1) -> int:
    # (c_lam/d_lam)/c_0 ~ exp(-g^2 C_2(lam)/2) <= exp(-lam_1^2 / (4 beta)); ask for < e^-40 per plaquette
    return int(math.ceil(13.0 * math.sqrt(beta / V))) + 10 + N


def _k_range(N: int, max_row: int, x: float) -> np.ndarray:
    kk = int(math.ceil(10.0 * math.sqrt(x) + 20))
    return np.arange(-(max_row + N + kk), kk + N + 1)


#: relative accuracy of ``1 - P`` below which an SU(N) coupling is refused (:func:`sun_max_beta`)
DIGITS_TOLERANCE = 1e-4


def sun_max_beta(N: int) -> float:
    """The largest coupling at which the SU(N) character expansion keeps ``1 - P`` to :data:`DIGITS_TOLERANCE`
    relative: the Bessel determinants lose about ``(beta/N)^(N-1)`` machine epsilons to cancellation (module
    docstring; measured 6-60x less), and ``1 - P ~ (N^2 - 1)/(2 beta)``; equating the two gives
    ``beta^N = tol (N^2 - 1) N^(N-1) / (2 eps)``: about 1.2e6 for SU(2), 2.5e4 for SU(3), 3.8e3 for SU(4).

    >>> round(sun_max_beta(3), -3)
    25000.0
    """
    eps = float(np.finfo(np.float64).eps)
    return (DIGITS_TOLERANCE * (N * N - 1) * N ** (N - 1) / (2 * eps)) ** (1.0 / N)


def _coefficients(beta: float, N: int, irreps: np.ndarray, derivative: bool = False):
    """Scaled coefficients ``exp(-beta) c_lam`` (and ``exp(-beta) dc_lam/dbeta``) for all irreps."""
    if beta > sun_max_beta(N):   # SU(4) at 1e5 gave P = 1.00017, SU(3) at 1e7 a 1 - P 44x too large
        lost = (N - 1) * math.log10(beta / N)
        raise ValueError(f"beta={beta!r}: above {sun_max_beta(N):.3g}, where the SU({N}) character expansion loses "
                         f"1 - P to cancellation in its Bessel determinants (about {lost:.0f} of 16 digits); there "
                         f"1 - P is (N^2 - 1)/(2 beta) (1 - 1/(4 beta)) to O(1/beta^3)")
    x = beta / N
    max_row = int(irreps[:, 0].max())
    ks = _k_range(N, max_row, x)
    i_idx = np.arange(N)
    # orders lam_i + k - i + j  -> shape (n_irreps, n_k, N, N)
    base = irreps[:, None, :, None] - i_idx[None, None, :, None] + i_idx[None, None, None, :]
    o_min = int(base.min() + ks.min()) - 1
    o_max = int(base.max() + ks.max()) + 1
    orders = np.arange(o_min, o_max + 1)
    table = ive(np.abs(orders), x)  # I_{-n} = I_n
    dtable = 0.5 * (np.roll(table, 1) + np.roll(table, -1))  # (I_{n-1} + I_{n+1})/2 = I'_n
    c = np.zeros(len(irreps))
    dc = np.zeros(len(irreps)) if derivative else None
    chunk = max(1, 400_000 // (len(ks) * N * N))
    for s in range(0, len(irreps), chunk):
        idx = base[s : s + chunk] + ks[None, :, None, None] - o_min  # (b, nk, N, N)
        A = table[idx]
        c[s : s + chunk] = np.linalg.det(A).sum(axis=1)
        if derivative:
            dA = dtable[idx]
            tot = np.zeros(A.shape[:2])
            for j in range(N):  # Jacobi: replace column j by its derivative
                B = A.copy()
                B[..., :, j] = dA[..., :, j]
                tot += np.linalg.det(B)
            dc[s : s + chunk] = tot.sum(axis=1) / N
    return (c, dc) if derivative else c


def _plaquette_table(beta: float, N: int, max_row: int | None, derivative: bool, V: int = 1):
    if max_row is None:
        max_row = _default_max_row(beta, N, V)
    irreps = sun_irreps(N, max_row)
    d = sun_dimension(irreps)
    res = _coefficients(beta, N, irreps, derivative=derivative)
    return irreps, d, res


def _signed_pow(x: np.ndarray, p: int) -> np.ndarray:
    if p == 0:
        return np.ones_like(x)
    with np.errstate(under="ignore"):
        return np.sign(x) ** p * np.exp(p * np.log(np.abs(np.where(x == 0, 1.0, x)))) * (x != 0)


# --------------------------------------------------------------------------- one plaquette
@vectorize_beta
def sun_2d_one_plaquette_log_z(beta: float, N: int) -> float:
    r"""``ln z(beta)`` with ``z = int_{SU(N)} dU exp((beta/N) Re tr U)`` (normalised Haar measure).

    ``z = sum_{k in Z} det[I_{k+i-j}(beta/N)]_{i,j=1..N}`` (for SU(2): ``z = 2 I_1(beta)/beta``).
    This is also ``-f`` of the infinite-volume 2D theory per plaquette:
    ``ln Z / V -> ln z`` as ``V -> infinity``.

    Parameters
    ----------
    beta : float or array_like
        Inverse coupling, ``beta >= 0``.
    N : int
        Number of colours, ``N >= 2``.

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> from latticekit.exact import sun_2d_one_plaquette_log_z
    >>> from scipy.special import iv
    >>> import math
    >>> abs(sun_2d_one_plaquette_log_z(3.0, 2) - math.log(2 * iv(1, 3.0) / 3.0)) < 1e-14
    True
    """
    N = _check_n(N)
    c0 = _coefficients(beta, N, np.zeros((1, N), dtype=np.int64))[0]
    return beta + math.log(c0)


def sun_2d_character_ratio(beta: float, N: int, irrep: Sequence[int]) -> float:
    r"""Normalised character coefficient ``c_lam / (d_lam c_0) = <chi_lam(U)> / d_lam`` (one plaquette).

    ``<.>`` is the single-plaquette average with weight ``exp((beta/N) Re tr U)``.  For the
    fundamental representation it is ``<(1/N) tr U>``, the infinite-volume plaquette and the
    string-tension factor ``<W(A)> = ratio^A``.  For SU(2) with spin ``j`` (``lam = (2j, 0)``):
    ``I_{2j+1}(beta) / I_1(beta)``.

    Parameters
    ----------
    beta : float
        Inverse coupling, ``beta >= 0``.
    N : int
        Number of colours.
    irrep : sequence of int
        Partition ``(lam_1, lam_2, ...)`` (missing rows are zero; ``(1,)`` is the fundamental).

    Returns
    -------
    float

    Examples
    --------
    >>> from latticekit.exact import sun_2d_character_ratio
    >>> from scipy.special import iv
    >>> bool(abs(sun_2d_character_ratio(2.0, 2, (2,)) - iv(3, 2.0) / iv(1, 2.0)) < 1e-14)
    True
    """
    beta = check_beta(beta)
    N = _check_n(N)
    lam = np.array([[0] * N, list(_normalize_irrep(irrep, N))], dtype=np.int64)
    c = _coefficients(beta, N, lam)
    return float(c[1] / (sun_dimension(lam[1]) * c[0]))


def gross_witten_plaquette(beta: float | np.ndarray, N: int) -> float | np.ndarray:
    r"""Large-N (Gross-Witten) limit of the average plaquette of 2D U(N)/SU(N) lattice gauge theory.

    With ``S = -(beta/N) sum Re tr U_P`` the 't Hooft coupling is ``lambda = g^2 N = 2 N^2 / beta``
    and (Gross & Witten, Phys. Rev. D 21 (1980) 446; Wadia 1980)

    ``<(1/N) Re tr U_P> = beta / (2 N^2)`` for ``beta <= N^2`` (strong coupling, ``lambda >= 2``),
    ``<(1/N) Re tr U_P> = 1 - N^2 / (2 beta)`` for ``beta >= N^2`` (weak coupling),

    with a third-order transition at ``beta = N^2``.  Finite-N corrections are ``O(1/N^2)``
    (exponentially small in N in the strong-coupling phase for U(N)).

    Parameters
    ----------
    beta : float or array_like
        Inverse coupling, ``beta >= 0``.
    N : int
        Number of colours (only sets the scale ``beta / N^2``).

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> from latticekit.exact import gross_witten_plaquette
    >>> gross_witten_plaquette(9.0, 3), gross_witten_plaquette(18.0, 3)
    (0.5, 0.75)
    """
    N = check_int(N, "N", 1)
    b = np.asarray(beta, dtype=float) / N**2
    if np.any(b < 0) or not np.all(np.isfinite(b)):
        raise ValueError(f"beta must be finite and >= 0, got {beta!r}")
    with np.errstate(divide="ignore"):
        out = np.where(b <= 1.0, 0.5 * b, 1.0 - 0.5 / np.where(b > 0, b, 1.0))
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------- torus
def _torus_check(shape: Sequence[int]) -> int:
    L0, L1 = check_shape(shape, nd=2)
    return L0 * L1


def sun_2d_log_z(beta: float | np.ndarray, N: int, shape: Sequence[int], max_row: int | None = None):
    r"""``ln Z`` of 2D SU(N) Wilson gauge theory on a periodic L0 x L1 torus.

    ``Z = sum_lam (c_lam / d_lam)^V`` with ``V = L0 L1`` (genus-1 character expansion, normalised
    Haar measure so ``Z = 1`` at ``beta = 0``).

    Parameters
    ----------
    beta : float or array_like
        Inverse coupling, ``beta >= 0``.
    N : int
        Number of colours, ``N >= 2``.
    shape : tuple of int
        Lattice extents ``(L0, L1)``.
    max_row : int, optional
        Truncation ``lam_1 <= max_row`` of the representation sum (default ``13 sqrt(beta/V) + 10 + N``).

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> from latticekit.exact import sun_2d_log_z, sun_2d_one_plaquette_log_z
    >>> sun_2d_log_z(0.0, 3, (4, 4))
    0.0
    >>> f = sun_2d_log_z(2.0, 2, (16, 16)) / 256       # large volume: -> ln z(beta)
    >>> abs(f - sun_2d_one_plaquette_log_z(2.0, 2)) < 1e-12
    True
    """
    N = _check_n(N)
    V = _torus_check(shape)

    @vectorize_beta
    def _f(b: float) -> float:
        _, d, c = _plaquette_table(b, N, max_row, False, V)
        r = (c / d) / c[0]
        return V * (b + math.log(c[0])) + math.log(float(np.sum(_signed_pow(r, V))))

    return _f(beta)


def _no_max_row(max_row: int | None) -> None:
    if max_row is not None:
        raise ValueError(f"max_row={max_row!r}: the truncation applies to the torus sum only; shape=None is the "
                         "infinite-volume closed form (pass shape=(L0, L1) for a torus)")


def sun_2d_plaquette(
    beta: float | np.ndarray, N: int, shape: Sequence[int] | None = None, max_row: int | None = None
):
    r"""Average plaquette ``<(1/N) Re tr U_P>`` of 2D SU(N) Wilson gauge theory.

    Infinite volume (``shape=None``): ``d ln c_0 / d beta`` with ``c_0 = z(beta)`` the one-link
    integral (SU(2): ``I_2(beta)/I_1(beta)``).  Torus: ``(1/V) d ln Z/d beta =
    sum_lam (c_lam/d_lam)^(V-1) c'_lam/d_lam / sum_lam (c_lam/d_lam)^V`` with ``c'`` the exact
    ``beta``-derivative (Jacobi's formula on the Bessel determinants).

    Parameters
    ----------
    beta : float or array_like
        Inverse coupling, ``beta >= 0``.
    N : int
        Number of colours, ``N >= 2``.
    shape : tuple of int, optional
        Lattice extents ``(L0, L1)``; ``None`` for infinite volume.
    max_row : int, optional
        Truncation of the representation sum (torus only; refused with ``shape=None``).

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> from latticekit.exact import sun_2d_plaquette
    >>> from scipy.special import iv
    >>> bool(abs(sun_2d_plaquette(2.5, 2) - iv(2, 2.5) / iv(1, 2.5)) < 1e-14)
    True
    >>> p_torus = sun_2d_plaquette(4.0, 3, shape=(16, 16))     # finite-volume effects ~ e^{-V/...}
    >>> abs(p_torus - sun_2d_plaquette(4.0, 3)) < 1e-12
    True
    """
    N = _check_n(N)
    if shape is None:
        _no_max_row(max_row)

        @vectorize_beta
        def _inf(b: float) -> float:
            c, dc = _coefficients(b, N, np.zeros((1, N), dtype=np.int64), derivative=True)
            return float(dc[0] / c[0])

        return _inf(beta)
    V = _torus_check(shape)

    @vectorize_beta
    def _tor(b: float) -> float:
        _, d, (c, dc) = _plaquette_table(b, N, max_row, True, V)
        r = (c / d) / c[0]
        num = np.sum(_signed_pow(r, V - 1) * (dc / d) / c[0])
        den = np.sum(_signed_pow(r, V))
        return float(num / den)

    return _tor(beta)


def sun_2d_wilson_loop(
    beta: float | np.ndarray,
    N: int,
    t: int,
    r: int,
    shape: Sequence[int] | None = None,
    max_row: int | None = None,
):
    r"""``<(1/N) Re tr W>`` for a contractible ``t x r`` rectangular Wilson loop (fundamental rep).

    Infinite volume: ``(c_F / (N c_0))^A`` with ``A = t r`` (exact area law).  On the torus the
    loop bounds a disc of area ``A`` and its complement is a handle of area ``V - A``; gluing
    ``Z_disc(U) = sum_s d_s (c_s/d_s)^A chi_s(U)`` and
    ``Z_handle(U) = sum_r d_r^(-1) (c_r/d_r)^(V-A) chi_r(U^dag)`` gives

    ``<W> = (1/(N Z)) sum_s (c_s/d_s)^A sum_{r in s (x) F} (d_s/d_r) (c_r/d_r)^(V-A)``,

    where ``r`` runs over the Young diagrams obtained from ``s`` by adding one box.  (For a loop
    that is not contractible — ``t = L0`` or ``r = L1`` — the result is different; those are
    rejected.)

    Parameters
    ----------
    beta : float or array_like
        Inverse coupling, ``beta >= 0``.
    N : int
        Number of colours, ``N >= 2``.
    t, r : int
        Loop extents along directions 0 and 1.
    shape : tuple of int, optional
        Lattice extents ``(L0, L1)`` with ``t < L0``, ``r < L1``; ``None`` for infinite volume.
    max_row : int, optional
        Truncation of the representation sum (torus only; refused with ``shape=None``).

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> from latticekit.exact import sun_2d_wilson_loop, sun_2d_plaquette
    >>> w1 = sun_2d_wilson_loop(2.0, 3, 1, 1, shape=(4, 4))
    >>> abs(w1 - sun_2d_plaquette(2.0, 3, shape=(4, 4))) < 1e-12
    True
    """
    N = _check_n(N)
    t = check_int(t, "t", 1)
    r = check_int(r, "r", 1)
    A = t * r
    if shape is None:
        _no_max_row(max_row)

        @vectorize_beta
        def _inf(b: float) -> float:
            lam = np.zeros((2, N), dtype=np.int64)
            lam[1, 0] = 1
            c = _coefficients(b, N, lam)
            return float((c[1] / (N * c[0])) ** A)

        return _inf(beta)
    L0, L1 = check_shape(shape, nd=2)
    if t >= L0 or r >= L1:
        raise ValueError(
            f"loop extents (t, r) = ({t}, {r}) must be smaller than the lattice shape {tuple(shape)} "
            "(a loop wrapping the torus is not contractible)"
        )
    V = L0 * L1

    @vectorize_beta
    def _tor(b: float) -> float:
        irreps, d, c = _plaquette_table(b, N, max_row, False, V)
        index = {tuple(row): i for i, row in enumerate(irreps.tolist())}
        rho = (c / d) / c[0]
        src, dst = [], []
        for i_s, row in enumerate(irreps.tolist()):
            for i in range(N):
                if i == 0 or row[i - 1] > row[i]:
                    new = list(row)
                    new[i] += 1
                    new = tuple(v - new[-1] for v in new)
                    j = index.get(new)
                    if j is not None:
                        src.append(i_s)
                        dst.append(j)
        src_a, dst_a = np.array(src), np.array(dst)
        terms = _signed_pow(rho[src_a], A) * (d[src_a] / d[dst_a]) * _signed_pow(rho[dst_a], V - A)
        return float(np.sum(terms) / (N * np.sum(_signed_pow(rho, V))))

    return _tor(beta)


# --------------------------------------------------------------------------- independent quadrature
def sun_character_coefficient_quadrature(
    beta: float,
    N: int,
    irrep: Sequence[int],
    n_points: int = 64,
    weight: Callable[[np.ndarray], np.ndarray] | None = None,
) -> complex:
    r"""``int_{SU(N)} dU conj(chi_lam(U)) w(U)`` by quadrature over the eigen-angles (Weyl integration).

    Uses ``int dU f(U) = (1/N!) int prod_{j<N} dtheta_j/(2pi) |Delta(e^{i theta})|^2 f(theta)``
    with ``theta_N = -sum_{j<N} theta_j`` and Weyl's character formula
    ``chi_lam = det[e^{i (lam_j + N - j) theta_k}] / Delta``, so the integrand
    ``Delta * conj(det[...]) * w`` is smooth and periodic: the trapezoidal rule on ``n_points``
    points per angle converges exponentially.  Cost ``n_points^(N-1)``: meant for N <= 4.
    Independent of the Bessel-determinant formulas (used to test them).

    Parameters
    ----------
    beta : float
        Inverse coupling; the default weight is ``exp((beta/N) Re tr U)``.
    N : int
        Number of colours, ``N >= 2``.
    irrep : sequence of int
        Partition labelling the representation.
    n_points : int
        Grid points per eigen-angle.
    weight : callable, optional
        Class function ``w(theta)`` of the eigen-angles, ``theta`` of shape ``(..., N)``.

    Returns
    -------
    complex

    Examples
    --------
    >>> from latticekit.exact import sun_character_coefficient_quadrature
    >>> from scipy.special import iv
    >>> c = sun_character_coefficient_quadrature(2.0, 2, (1,))
    >>> bool(abs(c.real - 2 * 2 * iv(2, 2.0) / 2.0) < 1e-13)      # (2j+1) 2 I_{2j+1}(beta)/beta
    True
    """
    beta = check_beta(beta)
    N = _check_n(N)
    lam = np.array(_normalize_irrep(irrep, N))
    n_points = check_int(n_points, "n_points", 2)
    grid = 2.0 * math.pi * np.arange(n_points) / n_points
    mesh = np.stack(np.meshgrid(*([grid] * (N - 1)), indexing="ij"), axis=-1).reshape(-1, N - 1)
    theta = np.concatenate([mesh, -mesh.sum(axis=1, keepdims=True)], axis=1)  # (P, N)
    j = np.arange(N)
    vander = np.exp(1j * theta[:, None, :] * (N - 1 - j)[None, :, None])  # rows: power, cols: angle
    num = np.exp(1j * theta[:, None, :] * (lam + N - 1 - j)[None, :, None])
    delta = np.linalg.det(vander)
    if weight is None:
        w = np.exp((beta / N) * (np.cos(theta).sum(axis=1) - N))
        scale = math.exp(beta)
    else:
        w = np.asarray(weight(theta))
        scale = 1.0
    val = np.mean(delta * np.conj(np.linalg.det(num)) * w) / math.factorial(N)
    return complex(val * scale)
