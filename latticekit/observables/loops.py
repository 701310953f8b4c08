"""Wilson loops and Polyakov loops.

* Rectangular Wilson loop ``W_{mu nu}(R, T; x)`` with ``T`` links along ``mu`` and ``R`` links along
  ``nu``: ``(1/N) Re tr [L_mu^T(x) L_nu^R(x + T mu) L_mu^T(x + R nu)^dag L_nu^R(x)^dag]`` with the
  straight lines ``L_mu^n(x) = U_mu(x) U_mu(x+mu) ... U_mu(x+(n-1) mu)``. ``W(1, 1)`` is the plaquette.
* Polyakov loop ``P(x_perp) = (1/N) tr prod_{t=0}^{L_mu-1} U_mu(t, x_perp)`` (complex), the product
  ordered from ``t = 0`` upwards; for U(1) it is ``exp(i sum_t theta_mu(t, x_perp))``.

Line products are built by repeated shifts (Wilson loops) or by pairwise products of slices
(Polyakov loops); there is no Python loop over sites.
"""

from __future__ import annotations

import numbers

from typing import Any

from latticekit.backends import array_namespace
from latticekit.gauge import link
from latticekit.groups import Group
from latticekit.lattice import Lattice

from ._util import check_gauge, check_plane, site_axes

__all__ = ["average_polyakov_loop", "polyakov_loop", "wilson_line", "wilson_loop", "wilson_loops"]


def _check_extent(name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:   # NumPy integers too
        raise ValueError(f"{name}={n!r}: expected a positive integer number of links")
    return int(n)


def _check_direction(mu: Any, lattice: Lattice) -> int:
    if isinstance(mu, bool) or not isinstance(mu, numbers.Integral) or not 0 <= mu < lattice.nd:
        raise ValueError(f"mu={mu!r}: expected a direction in 0..{lattice.nd - 1}")
    return int(mu)


def wilson_line(U: Any, group: Group, lattice: Lattice, mu: int, n: int) -> Any:
    """Straight line ``L_mu^n(x) = U_mu(x) U_mu(x+mu) ... U_mu(x+(n-1) mu)``, shape ``(*B, *G, *L)``.

    Examples
    --------
    >>> import numpy as np, latticekit as lk
    >>> lat = lk.Lattice((4, 4)); U = lk.U1.random(lk.backends.rng(0), (2,), lat.shape)
    >>> bool(np.allclose(wilson_line(U, lk.U1, lat, 0, 4)[0, :], U[0].sum(axis=0)))
    True
    """
    check_gauge(U, group, lattice)
    mu = _check_direction(mu, lattice)
    n = _check_extent("n", n)
    Umu = link(U, mu, group, lattice)
    out = Umu
    for k in range(1, n):
        out = group.mul(out, lattice.shift(Umu, mu, k), nd=lattice.nd)
    return out


def _loop_field(U: Any, group: Group, lattice: Lattice, R: int, T: int, mu: int, nu: int) -> Any:
    nd = lattice.nd
    Lmu = wilson_line(U, group, lattice, mu, T)
    Lnu = wilson_line(U, group, lattice, nu, R)
    a = group.mul(Lmu, lattice.shift(Lnu, mu, T), nd=nd)
    b = group.mul(Lnu, lattice.shift(Lmu, nu, R), nd=nd)
    return group.re_trace_mul_adj(a, b, nd=nd) / group.N


def wilson_loop(U: Any, group: Group, lattice: Lattice, R: int, T: int, mu: int = 0, nu: int = 1) -> Any:
    """Site-averaged ``R x T`` Wilson loop in the plane ``(mu, nu)`` (``T`` along ``mu``), shape ``(*B,)``.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((4, 4)); G = lk.SU(2)
    >>> float(wilson_loop(cold_gauge_field(G, lat), G, lat, R=2, T=3))
    1.0
    """
    check_gauge(U, group, lattice, min_nd=2)
    mu, nu = check_plane(mu, nu, lattice)
    R, T = _check_extent("R", R), _check_extent("T", T)
    xp = array_namespace(U)
    return xp.mean(_loop_field(U, group, lattice, R, T, mu, nu), axis=site_axes(lattice))


def wilson_loops(U: Any, group: Group, lattice: Lattice, R: int, T: int) -> Any:
    """``R x T`` Wilson loop averaged over sites and over all ordered planes ``(mu, nu)``, ``mu != nu``.

    Both orientations of each plane are included (``T`` links along ``mu`` and ``R`` along ``nu``, and the
    transposed loop); for ``R == T`` the two coincide and each plane is evaluated once. Shape ``(*B,)``.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import random_gauge_field
    >>> from latticekit.observables import average_plaquette
    >>> lat = lk.Lattice((4, 4, 4)); G = lk.SU(2)
    >>> U = random_gauge_field(G, lat, lk.backends.rng(0))
    >>> bool(abs(wilson_loops(U, G, lat, 1, 1) - average_plaquette(U, G, lat)) < 1e-12)
    True
    """
    check_gauge(U, group, lattice, min_nd=2)
    R, T = _check_extent("R", R), _check_extent("T", T)
    xp = array_namespace(U)
    pairs = lattice.planes()
    if R != T:
        pairs = pairs + [(nu, mu) for mu, nu in pairs]
    vals = [xp.mean(_loop_field(U, group, lattice, R, T, mu, nu), axis=site_axes(lattice)) for mu, nu in pairs]
    return xp.mean(xp.stack(vals, axis=-1), axis=-1)


def polyakov_loop(U: Any, group: Group, lattice: Lattice, mu: int = 0) -> Any:
    """Complex Polyakov-loop field ``(1/N) tr prod_t U_mu(t, x_perp)``, shape ``(*B, *L_without_mu)``.

    The ordered product along ``mu`` is taken by pairwise products of neighbouring slices (``log2 L_mu``
    rounds of whole-array products).

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((4, 3, 2)); G = lk.SU(3)
    >>> P = polyakov_loop(cold_gauge_field(G, lat), G, lat)
    >>> P.shape, complex(P[0, 0])
    ((3, 2), (1+0j))
    """
    check_gauge(U, group, lattice)
    mu = _check_direction(mu, lattice)
    xp = array_namespace(U)
    nd = lattice.nd
    tail = (slice(None),) * (nd - 1 - mu)
    X = link(U, mu, group, lattice)
    n = lattice.shape[mu]
    while n > 1:
        m = n // 2
        even = X[(..., slice(0, 2 * m, 2)) + tail]
        odd = X[(..., slice(1, 2 * m, 2)) + tail]
        prod = group.mul(even, odd, nd=nd)  # slice pairs (2k, 2k+1): the order is kept
        if n % 2:
            prod = xp.concat([prod, X[(..., slice(n - 1, n)) + tail]], axis=-nd + mu)
        X = prod
        n = X.shape[-nd + mu]
    X = X[(..., 0) + tail]
    return group.trace(X, nd=nd - 1) / group.N


def average_polyakov_loop(U: Any, group: Group, lattice: Lattice, mu: int = 0) -> Any:
    """Polyakov loop averaged over the sites orthogonal to ``mu``, complex, shape ``(*B,)``.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((4, 4))
    >>> complex(average_polyakov_loop(cold_gauge_field(lk.U1, lat), lk.U1, lat))
    (1+0j)
    """
    xp = array_namespace(U)
    P = polyakov_loop(U, group, lattice, mu)
    nrest = lattice.nd - 1
    if nrest == 0:
        return P
    return xp.mean(P, axis=tuple(range(-nrest, 0)))
