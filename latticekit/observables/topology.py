"""Topological charge (2D U(1) geometric definition, 4D clover), clover field strength, energy density.

2D U(1) (DESIGN.md): ``Q = (1/2 pi) sum_x arg P_01(x)`` with ``arg`` in ``(-pi, pi]``. On a periodic
lattice the unwrapped plaquette angles sum to exactly zero, so ``Q`` is an integer (up to round-off).

Clover field strength (any group, any ``Nd >= 2``)::

    Q_{mu nu}(x) = sum of the four plaquettes in the (mu, nu) plane that start and end at x, all
                   traversed in the same (mu then nu) orientation
    F_{mu nu}(x) = (1/8) (Q_{mu nu} - Q_{mu nu}^dag) - (1/N) tr(...)  = (1/4) project_algebra(Q_{mu nu})

``F`` is traceless anti-Hermitian (U(1): stored as the real coefficient ``f`` of ``F = i f``,
``f = (1/4) sum_leaves sin(theta_leaf)``). With ``U_mu(x) = exp(a A_mu)`` and ``D = d + A`` one has
``F_{mu nu} = a^2 G_{mu nu} + O(a^4)``, ``G_{mu nu} = [D_mu, D_nu]`` anti-Hermitian (lattice units).

4D topological charge (sign convention of Luscher, JHEP 08 (2010) 071, anti-Hermitian ``G``)::

    q(x) = -(1 / (32 pi^2)) eps_{mu nu rho sigma} tr(F_{mu nu}(x) F_{rho sigma}(x))
         = -(1 / (4 pi^2)) [tr(F_01 F_23) - tr(F_02 F_13) + tr(F_03 F_12)],   eps_{0123} = +1,
    Q = sum_x q(x).

In this convention an abelian field with constant ``G_01 = i f1 H`` and ``G_23 = i f2 H``
(``H = diag(1, -1, 0, ...)``) has ``Q = V f1 f2 / (2 pi^2) > 0`` for ``f1 f2 > 0``. ``Q`` is odd under a
reflection of one axis and even under charge conjugation.

Energy density: ``E(x) = -(1/2) sum_{mu,nu} tr F_{mu nu}^2 = -sum_{mu<nu} tr F_{mu nu}^2`` (U(1):
``sum_{mu<nu} f_{mu nu}^2``), the clover discretisation of Luscher's ``E = (1/4) G^a G^a``.
"""

from __future__ import annotations

import math
from typing import Any

from latticekit.backends import array_namespace, namespace, normalize_device, backend_name, real_dtype
from latticekit.loops import LoopBuilder
from latticekit.groups import Group, wrap_angle
from latticekit.lattice import Lattice

from ._util import check_gauge, check_plane, is_u1, site_axes

__all__ = [
    "clover_field_strength",
    "energy_density_clover",
    "energy_density_clover_field",
    "topological_charge_clover",
    "topological_charge_density_clover",
    "topological_charge_u1_2d",
    "u1_flux_field",
]


def topological_charge_u1_2d(U: Any, lattice: Lattice) -> Any:
    """Geometric charge ``Q = (1/2 pi) sum_x arg P_01(x)``, arg in ``(-pi, pi]``, shape ``(*B,)``.

    On the periodic lattice the unwrapped plaquette angles sum to zero, so ``Q`` is an integer; it is returned
    rounded to it (the float sum differs by rounding, ~1e-17 per site, which made ``<Q^2>`` of a frozen
    charge 1e-35 instead of 0). Its derivative with respect to the links is zero either way.

    Parameters
    ----------
    U : array
        U(1) gauge field (angles) ``(*B, 2, L0, L1)``.
    lattice : Lattice
        A 2D lattice.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((8, 8))
    >>> round(float(topological_charge_u1_2d(u1_flux_field(lat, 2), lat)), 12)
    2.0
    """
    from latticekit.groups import U1

    check_gauge(U, U1, lattice, min_nd=2)
    if lattice.nd != 2:
        raise ValueError(f"lattice={lattice}: topological_charge_u1_2d needs a 2D lattice")
    xp = array_namespace(U)
    theta = LoopBuilder(U, U1, lattice).plaquette(0, 1)   # unwrapped plaquette angle
    return xp.round(xp.sum(wrap_angle(theta), axis=(-2, -1)) / (2.0 * math.pi))


def _clover_plane(loops: LoopBuilder, mu: int, nu: int) -> Any:
    """Clover field strength of one plane (algebra representation)."""
    group, nd = loops.group, loops.lattice.nd
    leaves = loops.clover_leaves(mu, nu)
    if is_u1(group):
        xp = array_namespace(leaves[0])
        return 0.25 * (xp.sin(leaves[0]) + xp.sin(leaves[1]) + xp.sin(leaves[2]) + xp.sin(leaves[3]))
    Q = leaves[0] + leaves[1] + leaves[2] + leaves[3]
    return 0.25 * group.project_algebra(Q, nd=nd)


def clover_field_strength(U: Any, group: Group, lattice: Lattice) -> Any:
    """Clover ``F_{mu nu}(x) = (1/4) project_algebra(Q_{mu nu}(x))`` for every plane ``mu < nu``.

    Returns shape ``(*B, n_planes, *G, *L)`` (planes in ``lattice.planes()`` order): traceless
    anti-Hermitian matrices for SU(N), the real coefficient ``f`` of ``F = i f`` for U(1).
    ``F_{nu mu} = -F_{mu nu}``. See the module docstring for the normalisation.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((4, 4, 4, 4)); G = lk.SU(3)
    >>> F = clover_field_strength(cold_gauge_field(G, lat), G, lat)
    >>> F.shape, float(abs(F).max())
    ((6, 3, 3, 4, 4, 4, 4), 0.0)
    """
    check_gauge(U, group, lattice, min_nd=2)
    xp = array_namespace(U)
    loops = LoopBuilder(U, group, lattice, cache=True)   # the planes share translated links
    Fs = [_clover_plane(loops, mu, nu) for mu, nu in lattice.planes()]
    return xp.stack(Fs, axis=-lattice.nd - len(group.element_shape) - 1)


def _tr_prod(A: Any, B: Any, group: Group, nd: int) -> Any:
    """``tr(A B)`` (real) of two algebra elements."""
    if is_u1(group):
        return -(A * B)  # (i a)(i b)
    return -group.re_trace_mul_adj(A, B, nd=nd)  # B^dag = -B


def _plane(F: Any, k: int, group: Group, lattice: Lattice) -> Any:
    return F[(..., k) + (slice(None),) * (len(group.element_shape) + lattice.nd)]


def topological_charge_density_clover(U: Any, group: Group, lattice: Lattice) -> Any:
    """Clover charge density ``q(x) = -(1/32 pi^2) eps tr(F F)`` of a 4D field, shape ``(*B, *L)``.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((2, 2, 2, 2)); G = lk.SU(2)
    >>> topological_charge_density_clover(cold_gauge_field(G, lat), G, lat).shape
    (2, 2, 2, 2)
    """
    check_gauge(U, group, lattice, min_nd=4)
    if lattice.nd != 4:
        raise ValueError(f"lattice={lattice}: the clover topological charge needs a 4D lattice")
    F = clover_field_strength(U, group, lattice)
    planes = lattice.planes()
    idx = {p: k for k, p in enumerate(planes)}
    nd = lattice.nd

    def tr(p: tuple[int, int], q: tuple[int, int]) -> Any:
        return _tr_prod(_plane(F, idx[p], group, lattice), _plane(F, idx[q], group, lattice), group, nd)

    s = tr((0, 1), (2, 3)) - tr((0, 2), (1, 3)) + tr((0, 3), (1, 2))
    return (-1.0 / (4.0 * math.pi ** 2)) * s


def topological_charge_clover(U: Any, group: Group, lattice: Lattice) -> Any:
    """Clover topological charge ``Q = sum_x q(x)`` of a 4D field, shape ``(*B,)`` (module docstring).

    Integer-valued only for smooth fields (e.g. after gradient flow).

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((2, 2, 2, 2)); G = lk.SU(2)
    >>> float(topological_charge_clover(cold_gauge_field(G, lat), G, lat))
    0.0
    """
    xp = array_namespace(U)
    return xp.sum(topological_charge_density_clover(U, group, lattice), axis=site_axes(lattice))


def energy_density_clover_field(U: Any, group: Group, lattice: Lattice) -> Any:
    """Clover energy density ``E(x) = -sum_{mu<nu} tr F_{mu nu}(x)^2`` per site, shape ``(*B, *L)``.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((2, 2)); G = lk.SU(2)
    >>> energy_density_clover_field(cold_gauge_field(G, lat), G, lat).shape
    (2, 2)
    """
    check_gauge(U, group, lattice, min_nd=2)
    F = clover_field_strength(U, group, lattice)
    tot = None
    for k in range(len(lattice.planes())):
        Fk = _plane(F, k, group, lattice)
        t = -_tr_prod(Fk, Fk, group, lattice.nd)
        tot = t if tot is None else tot + t
    return tot


def energy_density_clover(U: Any, group: Group, lattice: Lattice) -> Any:
    """Site average of :func:`energy_density_clover_field`, shape ``(*B,)`` (``t^2 <E>`` after flow).

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((4, 4)); G = lk.SU(3)
    >>> float(energy_density_clover(cold_gauge_field(G, lat), G, lat))
    0.0
    """
    xp = array_namespace(U)
    return xp.mean(energy_density_clover_field(U, group, lattice), axis=site_axes(lattice))


def u1_flux_field(lattice: Lattice, n: int, mu: int = 0, nu: int = 1, *, backend: str | None = None,
                  device: Any = None, precision: Any = "double") -> Any:
    """U(1) field (angles, ``(Nd, *L)``) with ``n`` flux quanta spread uniformly over the ``(mu, nu)`` plane.

    Every plaquette ``P_{mu nu}(x)`` equals ``exp(2 pi i n / (L_mu L_nu))`` exactly; all other plaquettes
    are 1. Construction: ``theta_mu(x) = -f x_nu`` and, on the last slice ``x_nu = L_nu - 1`` only,
    ``theta_nu(x) = f L_nu x_mu`` with ``f = 2 pi n / (L_mu L_nu)`` (the boundary twist makes the field
    periodic). Fields for disjoint planes (e.g. ``(0, 1)`` and ``(2, 3)``) can be added. In 2D,
    :func:`topological_charge_u1_2d` returns ``n`` whenever ``|f| < pi``.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 6))
    >>> u1_flux_field(lat, -1).shape
    (2, 4, 6)
    """
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n={n!r}: expected an integer number of flux quanta")
    mu, nu = check_plane(mu, nu, lattice)
    xp = namespace(backend)
    dev = normalize_device(backend_name(xp), device)
    rt = real_dtype(xp, precision)
    c = xp.astype(lattice.coords(backend=backend, device=device), rt)
    Lmu, Lnu = lattice.shape[mu], lattice.shape[nu]
    f = 2.0 * math.pi * n / (Lmu * Lnu)
    zero = xp.zeros(lattice.shape, dtype=rt, device=dev)
    last = c[nu, ...] == float(Lnu - 1)
    th_mu = -f * c[nu, ...]
    th_nu = xp.where(last, (f * Lnu) * c[mu, ...], zero)
    out = [zero] * lattice.nd
    out[mu], out[nu] = th_mu, th_nu
    return xp.stack(out, axis=0)
