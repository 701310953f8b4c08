"""Fermionic measurements with Wilson fermions: pion correlator, chiral condensate, condition number.

Normalisation: the operator ``D = 1 - kappa H`` is kappa-normalised; the mass-normalised operator
is ``D_std = D / (2 kappa)`` (``m0 + Nd - H/2``), so propagators obey ``S_std = 2 kappa S``.
``normalization="kappa"`` (default) reports quantities built from ``S = D^{-1}``;
``normalization="mass"`` multiplies the pion correlator by ``(2 kappa)^2`` and the condensate by
``2 kappa``.

Pion correlator (eq. 4 of the QCD flow paper, two degenerate flavours, point source at ``y``)::

    C_pi(t) = -sum_x <[u-bar g5 d](t, x) [d-bar g5 u](y)> = sum_x tr[S(x, y) S(x, y)^dag],

using ``S(y, x) = g5 S(x, y)^dag g5`` (gamma_5-hermiticity); the trace runs over spin and
colour, ``t`` is measured from the source time and the spatial sum is over the whole time slice.
The Wick contraction gives ``C_pi > 0``.

Chiral condensate per flavour: ``Sigma = (1/V) Re tr D^{-1}`` (real by gamma_5-hermiticity),
estimated with noise vectors ``eta`` with ``E[eta eta^dag] = 1`` (Z2: entries +-1; Gaussian:
``exp(-|z|^2)``): ``tr D^{-1} ~ (1/n) sum_k eta_k^dag D^{-1} eta_k``. With Grassmann fields
``<psi-bar psi> = -tr D^{-1}``; we report ``+tr D^{-1}/V`` (positive for heavy quarks).

Examples
--------
>>> import latticekit as lk
>>> from latticekit.actions.dirac import WilsonDirac
>>> from latticekit.observables.fermionic import pion_correlator
>>> lat = lk.Lattice((8, 4))
>>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, m0=0.5)
>>> C = pion_correlator(D)
>>> C.shape, bool((C > 0).all())
((8,), True)
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

from latticekit.actions._checks import positive_int
from latticekit.actions.dirac import WilsonDirac
from latticekit.actions.even_odd import EvenOddDirac
from latticekit.backends import Generator, array_namespace, device as _device, lu_linalg
from latticekit.linalg import cgne, condition_number, dense_matrix, support_indices

__all__ = [
    "DENSE_MAX_UNKNOWNS",
    "chiral_condensate",
    "chiral_condensate_exact",
    "dirac_condition_number",
    "pion_correlator",
    "point_sources",
    "propagator",
]


def _check_op(D: Any) -> WilsonDirac:
    if not isinstance(D, WilsonDirac):
        raise TypeError(f"D: expected a latticekit WilsonDirac operator, got {type(D).__name__}")
    return D


def _norm_factor(D: WilsonDirac, normalization: str, power: int) -> float:
    if normalization == "kappa":
        return 1.0
    if normalization == "mass":
        return (2.0 * D.kappa) ** power
    raise ValueError(f"normalization={normalization!r}: expected 'kappa' or 'mass'")


def _is_int(v: Any) -> bool:
    # NumPy integers too; NumPy's bool_ is checked by name (the core tier names no array library, DESIGN.md)
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and type(v).__name__ != "bool_"


def _check_site(site: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``site`` as a tuple of ints inside ``shape`` (default the origin); a float such as 2.5 is refused, not cut."""
    if site is None:
        return tuple(0 for _ in shape)
    try:
        entries = tuple(site)
    except TypeError:
        raise TypeError(f"site={site!r}: expected a sequence of {len(shape)} integer coordinates") from None
    if isinstance(site, str) or not all(_is_int(s) for s in entries):
        raise TypeError(f"site={site!r}: expected {len(shape)} integer coordinates")
    out = tuple(int(s) for s in entries)
    if len(out) != len(shape) or any(not 0 <= s < L for s, L in zip(out, shape)):
        raise ValueError(f"site={site!r}: expected {len(shape)} coordinates inside {shape}")
    return out


def point_sources(D: WilsonDirac, site: Sequence[int] | None = None) -> Any:
    """The ``Ns * Nc`` unit sources at ``site`` (default origin), shape ``(Ns*Nc, *B, Ns, Nc, *L)``.

    Source ``k = s * Nc + c`` has a 1 in spin ``s``, colour ``c`` at ``site``.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4))
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.2)
    >>> point_sources(D, (1, 2)).shape
    (2, 2, 1, 4, 4)
    """
    _check_op(D)
    lat = D.lattice
    site = _check_site(site, lat.shape)
    z = D.zeros()
    xp = array_namespace(z)
    n = D.Ns * D.Nc
    flat_site = 0
    for s, L in zip(site, lat.shape):
        flat_site = flat_site * L + s
    V = lat.volume
    idx = xp.asarray([k * V + flat_site for k in range(n)], dtype=xp.int64, device=_device(z))
    ar = xp.arange(n * V, dtype=xp.int64, device=_device(z))
    E = xp.astype(xp.reshape(idx, (n, 1)) == xp.reshape(ar, (1, n * V)), z.dtype)
    E = xp.reshape(E, (n,) + (1,) * len(D.batch_shape) + D.field_shape)
    return xp.broadcast_to(E, (n,) + D.batch_shape + D.field_shape)


#: ``method="auto"`` of :func:`propagator` solves by LU of the dense (Schur) matrix up to this many complex unknowns
#: (``Ns Nc V / 2`` with even/odd): there building the matrix (one operator application per unknown, no iteration)
#: and its LU cost less than CG near the critical kappa (the 8x8 SU(3) pseudofermion example, 192 unknowns: 1.8 s
#: against 3.0-3.1 s for 256 flow-MCMC configurations at kappa = 0.265, paired in one process on one thread,
#: 2026-12-06, a training job on the other core; the correlators agree to 7e-11 relative, CG's tolerance)
DENSE_MAX_UNKNOWNS = 512

#: unit vectors per operator application while building a dense matrix here: about this many complex entries at once
_DENSE_CHUNK_ENTRIES = 2 ** 20
#: configurations per dense solve: about this many complex matrix entries at once (128 MiB in complex128)
_DENSE_MATRIX_ENTRIES = 2 ** 23


def _solve_cg(D: WilsonDirac, b: Any, tol: float, maxiter: int) -> Any:
    bnd = b.ndim - len(D.field_shape)
    if all(L % 2 == 0 for L in D.lattice.shape):
        x, _ = EvenOddDirac(D).solve(b, tol=tol, maxiter=maxiter)
        return x
    x, _ = cgne(D.apply, D.apply_dagger, b, tol=tol, maxiter=maxiter, batch_ndim=bnd, fused=D.normal_solver())
    return x


def _solve_dense(D: WilsonDirac, b: Any) -> Any:
    """``D x = b`` for ``k`` right-hand sides ``b`` ``(k, *B, *F)`` by LU: of the Schur complement ``D_sc`` on the
    even sites when every extent is even (``x_e = D_sc^{-1} (b_e - D_eo b_o)``, ``x_o = b_o - D_oe x_e``), else of
    ``D`` itself. The matrix is built by applying the operator to unit vectors (:func:`~latticekit.linalg.dense_matrix`),
    so it is exactly the operator the CG path inverts. The batch is solved in pieces of at most
    ``_DENSE_MATRIX_ENTRIES / n^2`` configurations (the matrices of one piece at once)."""
    nb = math.prod(D.batch_shape)
    piece = max(1, _DENSE_MATRIX_ENTRIES // _dense_unknowns(D) ** 2)
    if nb <= piece:
        return _solve_dense_piece(D, b)
    xp = array_namespace(b)
    k, F, B = int(b.shape[0]), tuple(D.field_shape), tuple(D.batch_shape)
    U = xp.reshape(D.U, (nb,) + tuple(D.U.shape[len(B):]))
    bf = xp.reshape(b, (k, nb) + F)
    out = []
    for a in range(0, nb, piece):
        e = min(a + piece, nb)      # the Array API leaves out-of-bounds slice stops unspecified
        Dp = WilsonDirac(U[a:e, ...], D.group, D.lattice, kappa=D.kappa, antiperiodic=D.antiperiodic)
        out.append(_solve_dense_piece(Dp, bf[:, a:e, ...]))
    return xp.reshape(xp.concat(out, axis=1), (k,) + B + F)


def _solve_dense_piece(D: WilsonDirac, b: Any) -> Any:
    xp = array_namespace(b)
    E = EvenOddDirac(D) if all(L % 2 == 0 for L in D.lattice.shape) else None
    op = E if E is not None else D
    rhs = E.prepare_source(b) if E is not None else b
    F = tuple(D.field_shape)
    N = math.prod(F)
    idx = support_indices(E.support, F) if E is not None else list(range(N))
    n, k = len(idx), int(b.shape[0])
    nb = math.prod(D.batch_shape)
    M = dense_matrix(op, chunk=max(1, _DENSE_CHUNK_ENTRIES // (max(nb, 1) * N)))    # (*B, n, n)
    dev = _device(b)
    r = xp.reshape(rhs, (k,) + D.batch_shape + (N,))
    if E is not None:
        r = xp.take(r, xp.asarray(idx, dtype=xp.int64, device=dev), axis=r.ndim - 1)
    r = xp.permute_dims(r, tuple(range(1, r.ndim - 1)) + (r.ndim - 1, 0))          # (*B, n, k)
    x = lu_linalg("solve", M, r)
    x = xp.permute_dims(x, (x.ndim - 1,) + tuple(range(x.ndim - 2)) + (x.ndim - 2,))  # (k, *B, n)
    if E is None:
        return xp.reshape(x, (k,) + D.batch_shape + F)
    # back onto the full field: the odd components read a zero appended after the n even ones
    x = xp.concat([x, xp.zeros(x.shape[:-1] + (1,), dtype=x.dtype, device=dev)], axis=x.ndim - 1)
    pos = [n] * N
    for j, i in enumerate(idx):
        pos[i] = j
    x = xp.take(x, xp.asarray(pos, dtype=xp.int64, device=dev), axis=x.ndim - 1)
    return E.reconstruct(xp.reshape(x, (k,) + D.batch_shape + F), b)


def _dense_unknowns(D: WilsonDirac) -> int:
    n = D.Ns * D.Nc * D.lattice.volume
    return n // 2 if all(L % 2 == 0 for L in D.lattice.shape) else n


def _solve(D: WilsonDirac, b: Any, tol: float, maxiter: int, method: str = "cg") -> Any:
    if method not in ("auto", "cg", "dense"):
        raise ValueError(f"method={method!r}: expected 'auto', 'cg' or 'dense'")
    if method == "dense" or (method == "auto" and _dense_unknowns(D) <= DENSE_MAX_UNKNOWNS):
        return _solve_dense(D, b)
    return _solve_cg(D, b, tol, maxiter)


def propagator(D: WilsonDirac, site: Sequence[int] | None = None, *, tol: float = 1e-10, maxiter: int = 4000,
               method: str = "auto") -> Any:
    """Point-to-all propagator ``S(x, y)`` from ``site`` = y: shape ``(Ns*Nc, *B, Ns, Nc, *L)``.

    Entry ``[s*Nc + c, ..., s', c', x]`` is ``S(x, y)_{s' c', s c}``. ``method``: ``"cg"`` solves with even/odd
    preconditioning when every extent is even (CGNE otherwise) to ``tol``; ``"dense"`` by LU of the dense matrix
    of the same system (small lattices: exact up to rounding, ``tol``/``maxiter`` unused); ``"auto"`` (default)
    takes ``"dense"`` up to :data:`DENSE_MAX_UNKNOWNS` complex unknowns and ``"cg"`` beyond.

    Examples
    --------
    >>> import latticekit as lk, numpy as np
    >>> lat = lk.Lattice((4, 4))
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.2)
    >>> S = propagator(D)
    >>> bool(np.abs(D.apply(S) - point_sources(D)).max() < 1e-8)
    True
    """
    maxiter = positive_int("maxiter", maxiter)
    b = point_sources(D, site)
    xp = array_namespace(b)
    return _solve(D, xp.asarray(b, copy=True), tol, maxiter, method)


def pion_correlator(D: WilsonDirac, site: Sequence[int] | None = None, *, tol: float = 1e-10, maxiter: int = 4000,
                    normalization: str = "kappa", method: str = "auto") -> Any:
    """``C_pi(t) = sum_x tr[S(x, y) S(x, y)^dag]`` with ``t = x_0 - y_0 mod L_0``; shape ``(*B, L0)``.

    The propagator is solved as :func:`propagator` does (``method``: ``"auto"``, ``"cg"`` or ``"dense"``).

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 2))
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.2)
    >>> pion_correlator(D).shape
    (4,)
    """
    _check_op(D)
    fac = _norm_factor(D, normalization, 2)
    site = _check_site(site, D.lattice.shape)
    S = propagator(D, site, tol=tol, maxiter=maxiter, method=method)
    xp = array_namespace(S)
    nd = D.nd
    a2 = xp.real(S) ** 2 + xp.imag(S) ** 2
    # sum over sources (axis 0), sink spin/colour and spatial directions
    spatial = tuple(range(a2.ndim - nd + 1, a2.ndim))
    C = xp.sum(a2, axis=(0,) + tuple(range(a2.ndim - nd - 2, a2.ndim - nd)) + spatial)
    t0 = site[0]
    if t0:
        C = xp.roll(C, -t0, axis=-1)
    return fac * C


def chiral_condensate(D: WilsonDirac, rng: Generator, n_noise: int = 16, *, noise: str = "z2", tol: float = 1e-10,
                      maxiter: int = 4000, normalization: str = "kappa") -> tuple[Any, Any]:
    """Stochastic ``Sigma = (1/V) Re tr D^{-1}`` per configuration: ``(mean, standard error)``, each shape ``B``.

    Parameters
    ----------
    noise : {"z2", "gaussian"}
        Z2 (real +-1 entries) or complex Gaussian noise; both have ``E[eta eta^dag] = 1``.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0)
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.2)
    >>> m, e = chiral_condensate(D, rng, 8)
    >>> m.shape, bool(e >= 0)
    ((), True)
    """
    _check_op(D)
    if not (_is_int(n_noise) and n_noise >= 2):
        raise ValueError(f"n_noise={n_noise!r}: expected an integer >= 2 (needed for an error estimate)")
    n_noise = int(n_noise)
    maxiter = positive_int("maxiter", maxiter)
    fac = _norm_factor(D, normalization, 1)
    shape = (n_noise,) + D.batch_shape + D.field_shape
    z = D.zeros()
    xp = array_namespace(z)
    if noise == "z2":
        eta = xp.astype(2 * rng.integers(0, 2, shape) - 1, z.dtype)
    elif noise == "gaussian":
        eta = xp.astype(rng.complex_normal(shape), z.dtype)
    else:
        raise ValueError(f"noise={noise!r}: expected 'z2' or 'gaussian'")
    x = _solve(D, eta, tol, maxiter)
    axes = tuple(range(1 + len(D.batch_shape), x.ndim))
    vals = xp.sum(xp.real(eta) * xp.real(x) + xp.imag(eta) * xp.imag(x), axis=axes) * (fac / D.lattice.volume)
    mean = xp.mean(vals, axis=0)
    err = xp.sqrt(xp.sum((vals - mean) ** 2, axis=0) / (n_noise - 1) / n_noise)
    return mean, err


def chiral_condensate_exact(D: WilsonDirac, *, normalization: str = "kappa") -> Any:
    """Exact ``(1/V) Re tr D^{-1}`` via a dense inverse (small lattices only), shape ``B``.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((2, 2))
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.1)
    >>> float(chiral_condensate_exact(D)) > 0
    True
    """
    _check_op(D)
    fac = _norm_factor(D, normalization, 1)
    M = dense_matrix(D)
    xp = array_namespace(M)
    Minv = lu_linalg("inv", M)              # torch's batched CPU LU is unsafe after set_num_threads
    tr = xp.sum(xp.real(xp.linalg.diagonal(Minv)), axis=-1)
    return tr * (fac / D.lattice.volume)


def dirac_condition_number(D: Any, *, method: str = "auto", k: int = 80, maxiter: int | None = None,
                           tol: float = 1e-6, rng: Generator | None = None) -> Any:
    """Condition number ``lambda_max / lambda_min`` of ``D D^dag`` per configuration (``D`` or ``D_sc``).

    The condition number of ``D`` itself is its square root. ``method``: ``"dense"`` (exact),
    ``"lanczos"`` or ``"auto"`` (dense up to ``DENSE_LIMIT`` = 1536 complex unknowns: ``Ns Nc V``, half
    that with even/odd). Lanczos runs ``k`` steps, then extends the chain (up to ``maxiter``) until both
    extremal eigenvalues are within ``tol`` relative, and warns (``EigenvalueConvergenceWarning``) when it
    does not get there (see :func:`latticekit.linalg.extremal_eigenvalues`).

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4))
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.2)
    >>> float(dirac_condition_number(D)) > 1
    True
    """
    if not isinstance(D, (WilsonDirac, EvenOddDirac)):
        raise TypeError(f"D: expected WilsonDirac or EvenOddDirac, got {type(D).__name__}")
    return condition_number(D.normal, D.field_shape, like=D.like, support=D.support, batch_shape=D.batch_shape,
                            method=method, k=k, maxiter=maxiter, tol=tol, rng=rng)
