"""Stout smearing of gauge links (Morningstar and Peardon, Phys. Rev. D 69 (2004) 054501, hep-lat/0311018).

One step replaces every smeared link by ``U'_mu(x) = exp(i Q_mu(x)) U_mu(x)`` with (their notation)::

    C_mu(x)  = rho sum_{nu != mu} [ U_nu(x) U_mu(x+nu) U_nu(x+mu)^dag + U_nu(x-nu)^dag U_mu(x-nu) U_nu(x-nu+mu) ]
    Omega    = C_mu(x) U_mu(x)^dag
    i Q      = -(1/2)(Omega^dag - Omega) + (1/2N) tr(Omega^dag - Omega)
             = traceless anti-Hermitian part of Omega

for an isotropic ``rho`` over the directions ``nu`` that are smeared (``directions``; every direction by
default, the spatial ones ``(1, 2, 3)`` for the smeared spatial links of static-potential studies, the
``smear_dirs`` of Chroma's ``stout_smear``). ``exp(i Q)`` is in SU(N), so ``U'`` is too: no projection, and
``U'`` is an analytic (differentiable) function of ``U``. For U(1) the trace is not removed (a 1 x 1 matrix has
no traceless part): ``theta' = theta + Im Omega``.

In the library's notation (:func:`latticekit.actions.staples`) ``C_mu = rho A_mu^dag`` and
``Omega = (U_mu A_mu)^dag``, so ``i Q = -rho project_algebra(U_mu A_mu)`` (U(1): ``-rho Im(e^{i theta} A)``).
With every direction smeared this is ``rho Z(U)``, ``Z`` the generator of the Wilson flow
(:func:`latticekit.observables.flow_generator`, ``Z = -F`` at ``beta = 2N``, which is
``-project_algebra(U A)``; U(1): ``beta = 1``, ``Z = -Im(e^{i theta} A)``): one stout step of size
``rho`` is one Euler step of the Wilson flow of size ``rho`` (Luscher, arXiv:1006.4518, sec. 2), and ``n``
steps of ``rho = t/n`` converge to the flow at time ``t`` with an error ``O(t^2/n)`` (tested).
That case uses the flow generator (the compiled Wilson force where one is registered); a restricted set of
directions builds the staples of those planes only (:class:`latticekit.loops.LoopBuilder`).

Examples
--------
>>> import latticekit as lk
>>> from latticekit.observables import average_plaquette
>>> lat = lk.Lattice((4, 4, 4, 4)); G = lk.SU(3)
>>> U = lk.gauge.random_gauge_field(G, lat, lk.backends.rng(0), batch_shape=(1,))
>>> V = stout_smear(U, G, lat, rho=0.1, n_steps=4)
>>> bool(average_plaquette(V, G, lat)[0] > average_plaquette(U, G, lat)[0] + 0.3)   # smoother
True
>>> W = stout_smear(U, G, lat, rho=0.1, n_steps=4, directions=(1, 2, 3))   # spatial links, spatial staples
>>> bool((W[:, 0, ...] == U[:, 0, ...]).all())                                         # the time links are untouched
True
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

from latticekit.gauge import stack_links
from latticekit.groups import Group, U1Group
from latticekit.lattice import Lattice
from latticekit.loops import LoopBuilder

from .gradient_flow import _check, flow_generator

__all__ = ["stout_smear"]


def _check_directions(directions: Any, nd: int) -> tuple[int, ...] | None:
    """None for every direction, else the sorted tuple; errors name the argument."""
    if directions is None:
        return None
    try:
        dirs = list(directions)
    except TypeError:
        raise TypeError(f"directions={directions!r}: expected a sequence of lattice directions, e.g. (1, 2, 3)") \
            from None
    for d in dirs:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or not 0 <= d < nd:
            raise ValueError(f"directions={directions!r}: expected directions 0 .. {nd - 1} of the {nd}D lattice, "
                             f"got {d!r}")
    if len(set(dirs)) != len(dirs):
        raise ValueError(f"directions={directions!r}: a direction is listed twice")
    if len(dirs) < 2:
        raise ValueError(f"directions={directions!r}: the staples of a smeared link lie in planes of two smeared "
                         "directions; give at least two")
    out = tuple(sorted(int(d) for d in dirs))
    return None if out == tuple(range(nd)) else out


def _restricted_step(U: Any, group: Group, lattice: Lattice, rho: float, dirs: tuple[int, ...]) -> Any:
    """One step smearing the links of ``dirs`` with the staples of the planes of two directions of ``dirs``."""
    nd = lattice.nd
    lb = LoopBuilder(U, group, lattice)
    links = []
    for mu in range(nd):
        link = lb.link(mu)
        if mu not in dirs:
            links.append(link)
            continue
        A = None
        for nu in dirs:
            if nu == mu:
                continue
            s = group.to_matrix(lb.staple(mu, nu, 1), nd=nd) + group.to_matrix(lb.staple(mu, nu, -1), nd=nd)
            A = s if A is None else A + s
        # U_mu A_mu is a closed loop at x (LoopBuilder.staple_sum); i Q = -rho project_algebra(U_mu A_mu)
        M = group.to_matrix(link, nd=nd) * A if isinstance(group, U1Group) else group.mul(link, A, nd=nd)
        links.append(group.exp_mul(-rho * group.project_algebra(M, nd=nd), link, nd=nd))
    return stack_links(links, group, lattice)


def stout_smear(U: Any, group: Group, lattice: Lattice, rho: float, n_steps: int = 1, *,
                directions: Sequence[int] | None = None) -> Any:
    """Stout-smeared gauge field after ``n_steps`` steps of isotropic weight ``rho`` (module docstring).

    Parameters
    ----------
    U : array
        Gauge field ``(*B, Nd, *G, *L)`` of ``group`` (U(1) or SU(N)), any backend.
    group, lattice
        The gauge group and the lattice.
    rho : float
        Staple weight ``rho >= 0`` of each step (``rho_{mu nu}`` of Morningstar-Peardon for the smeared pairs).
        Common choices: 0.1-0.125 in 4D with every direction, up to about 0.2 for spatial smearing; one step of
        ``rho`` is an Euler step of size ``rho`` of the Wilson flow, so ``n_steps * rho`` is roughly the flow
        time ``t`` (smoothing radius ``sqrt(8 t)``).
    n_steps : int
        Number of smearing steps (``>= 0``; 0 returns ``U`` unchanged).
    directions : sequence of int, optional
        The link directions smeared, and the directions ``nu`` whose staples enter (at least two). Default:
        all. Time is direction 0, so ``(1, 2, 3)`` smears the spatial links of a 4D field with spatial staples.

    Returns
    -------
    array
        The smeared field, same shape, backend and device as ``U`` (``U`` is not modified).

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4)); G = lk.U1
    >>> U = lk.gauge.random_gauge_field(G, lat, lk.backends.rng(1), batch_shape=(2,))
    >>> V = stout_smear(U, G, lat, rho=0.2, n_steps=3)
    >>> V.shape, bool((stout_smear(U, G, lat, rho=0.0) == U).all())
    ((2, 2, 4, 4), True)
    """
    _check(U, group, lattice)
    if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or not math.isfinite(rho) or rho < 0:
        raise ValueError(f"rho={rho!r}: expected a finite staple weight >= 0 (typically 0.1-0.2)")
    if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 0:
        raise ValueError(f"n_steps={n_steps!r}: expected a number of smearing steps >= 0")
    n_steps = int(n_steps)
    nd = lattice.nd
    dirs = _check_directions(directions, nd)
    rho = float(rho)
    for _ in range(n_steps):
        if dirs is None:
            U = group.exp_mul(rho * flow_generator(U, group, lattice), U, nd=nd)
            continue
        U = _restricted_step(U, group, lattice, rho, dirs)
    return U
