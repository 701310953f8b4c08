"""Plaquettes: group-valued fields, per-plane and average values, and the plaquette energy density.

``P_{mu nu}(x) = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag``; the plaquette observable is
``(1/N) Re tr P`` (in [-1, 1], 1 for the cold field). Planes are ordered as ``lattice.planes()``
(``mu < nu``, lexicographic). The products are built by :class:`latticekit.loops.LoopBuilder`.
"""

from __future__ import annotations

from typing import Any

from latticekit.backends import array_namespace, fast_path
from latticekit.groups import Group
from latticekit.lattice import Lattice
from latticekit.loops import LoopBuilder

from ._util import check_gauge, check_plane, is_u1, site_axes

__all__ = ["average_plaquette", "energy_density_plaquette", "plane_plaquettes", "plaquette_field", "plaquettes"]


def plaquettes(U: Any, group: Group, lattice: Lattice, mu: int, nu: int) -> Any:
    """Group-valued plaquettes ``P_{mu nu}(x)``, shape ``(*B, *G, *L)`` (U(1): unwrapped angles).

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import random_gauge_field
    >>> lat = lk.Lattice((4, 4)); G = lk.SU(2)
    >>> U = random_gauge_field(G, lat, lk.backends.rng(0))
    >>> P = plaquettes(U, G, lat, 0, 1)
    >>> P.shape, bool(G.defect(P, nd=2).max() < 1e-12)
    ((2, 2, 4, 4), True)
    """
    check_gauge(U, group, lattice, min_nd=2)
    mu, nu = check_plane(mu, nu, lattice)
    return LoopBuilder(U, group, lattice).plaquette(mu, nu)


def _re_tr_planes(U: Any, group: Group, lattice: Lattice) -> list[Any]:
    lb = LoopBuilder(U, group, lattice)
    return [lb.re_trace_plaquette(mu, nu) for mu, nu in lattice.planes()]


def plaquette_field(U: Any, group: Group, lattice: Lattice) -> Any:
    """``(1/N) Re tr P_{mu nu}(x)`` for every plane, shape ``(*B, n_planes, *L)``.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((2, 2, 2)); G = lk.SU(3)
    >>> plaquette_field(cold_gauge_field(G, lat), G, lat).shape
    (3, 2, 2, 2)
    """
    check_gauge(U, group, lattice, min_nd=2)
    # compiled kernel where one is registered (backends/_fast.py); it returns None for inputs it
    # does not handle, and the generic code below runs
    fp = fast_path("u1_plaquette_field" if is_u1(group) else "sun_plaquette_field", U)
    out = fp(U, lattice.nd) if fp is not None else None
    if out is not None:
        return out
    xp = array_namespace(U)
    return xp.stack(_re_tr_planes(U, group, lattice), axis=-lattice.nd - 1) / group.N


def plane_plaquettes(U: Any, group: Group, lattice: Lattice) -> Any:
    """Site-averaged ``(1/N) Re tr P`` per plane, shape ``(*B, n_planes)``.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((2, 2, 2))
    >>> plane_plaquettes(cold_gauge_field(lk.U1, lat), lk.U1, lat).tolist()
    [1.0, 1.0, 1.0]
    """
    xp = array_namespace(U)
    return xp.mean(plaquette_field(U, group, lattice), axis=site_axes(lattice))


def average_plaquette(U: Any, group: Group, lattice: Lattice) -> Any:
    """``(1/N) Re tr P`` averaged over sites and planes, shape ``(*B,)``.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((4, 4, 4, 4)); G = lk.SU(2)
    >>> float(average_plaquette(cold_gauge_field(G, lat), G, lat))
    1.0
    """
    check_gauge(U, group, lattice, min_nd=2)
    fp = fast_path("u1_plaquette_cos_sum" if is_u1(group) else "sun_re_tr_plaquette_sum", U)
    tot = fp(U, lattice.nd) if fp is not None else None
    if tot is not None:   # sum over sites and planes of Re tr P
        return tot / (group.N * lattice.volume * len(lattice.planes()))
    xp = array_namespace(U)
    return xp.mean(plane_plaquettes(U, group, lattice), axis=-1)


def energy_density_plaquette(U: Any, group: Group, lattice: Lattice) -> Any:
    """Plaquette discretisation ``E = 2 sum_{mu<nu} Re tr(1 - P_{mu nu})`` averaged over sites, ``(*B,)``.

    For ``P = exp(a^2 G)`` this is ``-(1/2) sum_{mu,nu} tr G_{mu nu}^2 + O(a^6)`` in lattice units
    (Luscher's ``E``; compare :func:`latticekit.observables.energy_density_clover`).

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((4, 4)); G = lk.SU(3)
    >>> float(energy_density_plaquette(cold_gauge_field(G, lat), G, lat))
    0.0
    """
    check_gauge(U, group, lattice, min_nd=2)
    xp = array_namespace(U)
    tot = None
    for rt in _re_tr_planes(U, group, lattice):
        t = group.N - rt
        tot = t if tot is None else tot + t
    return 2.0 * xp.mean(tot, axis=site_axes(lattice))
