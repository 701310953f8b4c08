"""The Wilson gauge action, its staples and its force (Lie derivative), for U(1) and SU(N).

Conventions (DESIGN.md)
-----------------------
* Plaquette ``P_{mu nu}(x) = U_mu(x) U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag``.
* Action ``S = -(beta/N) sum_x sum_{mu<nu} Re tr P_{mu nu}(x)`` (U(1): ``N = 1``,
  ``S = -beta sum cos theta_P``). There is no additive constant: the cold field has
  ``S = -beta V n_planes`` with ``n_planes = Nd (Nd - 1) / 2``.
* Staple sum (the "A" of a link): ``A_mu(x) = sum_{nu != mu} [U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag
  + U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu)]``. Every plaquette that contains the link
  ``U_mu(x)`` appears exactly once, so (no factor 1/2)
  ``S = -(beta/N) Re tr(U_mu(x) A_mu(x)) + (terms independent of U_mu(x))``.
* Lie derivative ``d_a f(U) = d/dt f(exp(t T_a) U)|_{t=0}`` and force ``F = sum_a (d_a S) T_a``
  (``latticekit.groups.base``), hence ``d_a S = -(beta/N) Re tr(T_a U_mu(x) A_mu(x))``.

Derivation of the force (SU(N), ``T_a = i lambda_a / 2``, ``tr T_a T_b = -delta_ab / 2``)::

    Let M = U_mu(x) A_mu(x) and X = project_algebra(M) = (M - M^dag)/2 - tr(M - M^dag)/(2N).
    The Hermitian part of M gives an imaginary tr(T_a .), the trace part is killed by tr T_a = 0,
    so Re tr(T_a M) = tr(T_a X).  Writing X = sum_b x_b T_b gives tr(T_a X) = -x_a / 2, i.e.
        sum_a T_a Re tr(T_a M) = -(1/2) X.
    Therefore  F = sum_a T_a d_a S = -(beta/N) * (-(1/2)) X = (beta / (2N)) project_algebra(U A).

U(1) (``T = i``, links are angles, the algebra element is stored as its real coefficient)::

    S = -beta sum_{mu<nu} cos theta_{mu nu}(x),  theta_{mu nu} = theta_mu(x) + theta_nu(x+mu)
                                                           - theta_mu(x+nu) - theta_nu(x)
    F_mu(x) = dS/dtheta_mu(x) = beta sum_{nu != mu} [sin theta_{mu nu}(x) - sin theta_{mu nu}(x-nu)]
            = beta Im(exp(i theta_mu(x)) A_mu(x))       (A_mu as a complex number)

(theta_{nu mu} = -theta_{mu nu} makes the first line valid for nu < mu as well.)  The HMC update
with these forces is ``P <- P - eps F``.
"""

from __future__ import annotations

import numbers
from typing import Any

from latticekit.backends import array_namespace, fast_path
from latticekit.gauge import check_gauge_field, stack_links
from latticekit.groups import Group
from latticekit.lattice import Lattice
from latticekit.loops import LoopBuilder

from ._checks import real_number_or_array

__all__ = ["WilsonGaugeAction", "staples", "wilson_gauge_action", "wilson_gauge_force"]


def _is_u1(group: Group) -> bool:
    return tuple(group.element_shape) == ()


def _check(U: Any, group: Group, lattice: Lattice) -> None:
    if not isinstance(group, Group):
        raise TypeError(f"group={group!r}: expected a latticekit Group (U1 or SU(N))")
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
    if lattice.nd < 2:
        raise ValueError(f"lattice={lattice}: the Wilson gauge action needs at least 2 dimensions")
    check_gauge_field(U, group, lattice, name="U")
    group.check_dtype(U, name="U")   # U(1): real angles, SU(N): complex matrices


def _check_beta(beta: Any, U: Any = None, group: Group | None = None, lattice: Lattice | None = None) -> Any:
    """``beta`` as the action uses it: a Python float for a number (a NumPy float32 scalar made ``-beta / N``
    a float32 number: the float64 action was off by 3e-8 relative at beta = 1; user probe), an array unchanged.

    A finite real number (not a string, bool or complex), or a real floating array of ``U``'s array library
    (a torch ``beta`` made the action of a NumPy field a torch tensor): one coupling per batch element (the
    trailing batch axes of U; the action failed with a bare broadcasting error otherwise)."""
    real_number_or_array("beta", beta)
    if not hasattr(beta, "shape") or isinstance(beta, numbers.Number):
        return float(beta)
    if U is not None:
        array_namespace(beta, U)     # BackendError: arrays of different libraries
    if U is not None and group is not None and lattice is not None and len(getattr(beta, "shape", ())) > 0:
        nb = U.ndim - lattice.nd - len(group.element_shape) - 1
        batch = tuple(U.shape[:nb])
        if beta.ndim > nb or tuple(beta.shape) != batch[nb - beta.ndim:]:
            raise ValueError(f"beta has shape {tuple(beta.shape)}; expected a number or one coupling per batch "
                             f"element, shape {batch}")
    return beta


def _site_axes(lattice: Lattice) -> tuple[int, ...]:
    return tuple(range(-lattice.nd, 0))


def staples(U: Any, group: Group, lattice: Lattice) -> Any:
    """Staple sums ``A_mu(x)`` of every link, shape ``(*B, Nd, *G, *L)``.

    ``A_mu(x) = sum_{nu != mu} [U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag
    + U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu)]``, normalised so that
    ``S = -(beta/N) Re tr(U_mu(x) A_mu(x)) + (independent of U_mu(x))``. Built by
    :meth:`latticekit.loops.LoopBuilder.staple_sum` (4 group multiplications and 3 shifts per pair of
    directions ``mu != nu``).

    For SU(N) the result is a (non-unitary) complex matrix field; for U(1) it is the complex number
    ``sum exp(i alpha_staple)`` per link, shape ``(*B, Nd, *L)``.

    Parameters
    ----------
    U : array
        Gauge field ``(*B, Nd, *G, *L)``.
    group : Group
        ``U1`` or ``SU(N)``.
    lattice : Lattice
        The lattice of ``U``.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((4, 4, 4)); G = lk.SU(2)
    >>> A = staples(cold_gauge_field(G, lat), G, lat)
    >>> A.shape, complex(A[0, 0, 0, 0, 0, 0])     # 2 (Nd - 1) staples, each the identity
    ((3, 2, 2, 4, 4, 4), (4+0j))
    """
    _check(U, group, lattice)
    lb = LoopBuilder(U, group, lattice)
    return stack_links([lb.staple_sum(mu) for mu in range(lattice.nd)], group, lattice)


def staple_from_links(links: list[Any], mu: int, group: Group, lattice: Lattice) -> Any:
    """The staple sum ``A_mu(x)`` of one direction from the list of links ``[U_0, ..., U_{Nd-1}]``.

    The ``mu`` component of :func:`staples` without computing the other directions (heatbath updates
    need one direction at a time): :meth:`latticekit.loops.LoopBuilder.staple_sum`. SU(N):
    ``(*B, N, N, *L)``; U(1): complex ``(*B, *L)``.
    """
    return LoopBuilder.from_links(links, group, lattice).staple_sum(mu)


def wilson_gauge_action(U: Any, beta: float, group: Group, lattice: Lattice) -> Any:
    """Wilson gauge action ``S = -(beta/N) sum_x sum_{mu<nu} Re tr P_{mu nu}(x)``, shape ``(*B,)``.

    Parameters
    ----------
    U : array
        Gauge field ``(*B, Nd, *G, *L)``.
    beta : float
        Inverse coupling (``beta = 2N / g^2`` for SU(N)).
    group, lattice
        The gauge group and the lattice of ``U``.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((4, 4)); G = lk.SU(3)
    >>> float(wilson_gauge_action(cold_gauge_field(G, lat), 6.0, G, lat))   # -beta V n_planes
    -96.0
    """
    _check(U, group, lattice)
    beta = _check_beta(beta, U, group, lattice)
    # compiled kernel where one is registered (backends/_fast.py); None = declined, generic code runs
    fp = fast_path("u1_plaquette_cos_sum" if _is_u1(group) else "sun_re_tr_plaquette_sum", U)
    tot = fp(U, lattice.nd) if fp is not None else None
    if tot is not None:
        return (-beta / group.N) * tot
    xp = array_namespace(U)
    lb = LoopBuilder(U, group, lattice)
    tot = None
    for mu, nu in lattice.planes():
        rt = lb.re_trace_plaquette(mu, nu)     # two products and one Re tr(a b^dag)
        tot = rt if tot is None else tot + rt
    return (-beta / group.N) * xp.sum(tot, axis=_site_axes(lattice))


def wilson_gauge_force(U: Any, beta: float, group: Group, lattice: Lattice) -> Any:
    """Force ``F = sum_a (d_a S) T_a`` of the Wilson action (Lie derivative ``d/dt S(exp(t T_a) U)``).

    SU(N): ``F_mu(x) = (beta / (2N)) project_algebra(U_mu(x) A_mu(x))`` (traceless anti-Hermitian,
    shape ``(*B, Nd, N, N, *L)``). U(1): the real derivative ``dS/dtheta_mu(x)``, shape
    ``(*B, Nd, *L)``. The derivation is in the module docstring.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((4, 4)); G = lk.SU(2)
    >>> F = wilson_gauge_force(cold_gauge_field(G, lat), 2.0, G, lat)
    >>> F.shape, float(abs(F).max())          # the cold field is a stationary point
    ((2, 2, 2, 4, 4), 0.0)
    """
    _check(U, group, lattice)
    beta = _check_beta(beta, U, group, lattice)
    if hasattr(beta, "shape") and len(beta.shape) > 0:
        # a coupling per batch element (the action takes one too): the force at beta = 1, scaled per element.
        # beta's axes are the *trailing* batch axes of U (as in the action's broadcast): leading unit axes for the
        # batch axes before them, trailing ones for (Nd, *G, *L) (they lined up with the leading axes; user probe)
        F1 = wilson_gauge_force(U, 1.0, group, lattice)
        xp = array_namespace(F1)
        nb = U.ndim - lattice.nd - len(group.element_shape) - 1
        shape = (1,) * (nb - beta.ndim) + tuple(beta.shape) + (1,) * (F1.ndim - nb)
        return xp.reshape(xp.astype(beta, xp.real(F1).dtype if xp.isdtype(F1.dtype, "complex floating")
                                    else F1.dtype), shape) * F1
    fp = fast_path("u1_wilson_force" if _is_u1(group) else "sun_wilson_force", U)
    F = fp(U, beta, lattice.nd) if fp is not None else None
    if F is not None:
        return F
    nd = lattice.nd
    xp = array_namespace(U)
    lb = LoopBuilder(U, group, lattice)
    if _is_u1(group):
        # one sin per plane and site: F_mu = beta sum_{nu != mu} [sin th_{mu nu}(x) - sin th_{mu nu}(x - nu)]
        acc: list[Any] = [None] * nd
        for mu, nu in lattice.planes():
            s = xp.sin(lb.plaquette(mu, nu))
            t_mu = s - lattice.shift(s, nu, -1)      # contribution to F_mu
            t_nu = lattice.shift(s, mu, -1) - s      # sin th_{nu mu} = -sin th_{mu nu}
            acc[mu] = t_mu if acc[mu] is None else acc[mu] + t_mu
            acc[nu] = t_nu if acc[nu] is None else acc[nu] + t_nu
        return beta * stack_links(acc, group, lattice)
    out = []
    for mu in range(nd):
        M = group.mul(lb.link(mu), lb.staple_sum(mu), nd=nd)      # U_mu(x) A_mu(x)
        out.append(group.project_algebra(M, nd=nd))
    return (beta / (2.0 * group.N)) * stack_links(out, group, lattice)


class WilsonGaugeAction:
    """The Wilson gauge action at fixed ``beta`` on one lattice, as a callable.

    Parameters
    ----------
    group : Group
        ``U1`` or ``SU(N)``.
    lattice : Lattice
        The lattice (at least 2 dimensions).
    beta : float
        Inverse coupling.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.gauge import random_gauge_field
    >>> lat = lk.Lattice((4, 4)); act = WilsonGaugeAction(lk.U1, lat, beta=1.0)
    >>> U = random_gauge_field(lk.U1, lat, lk.backends.rng(0), batch_shape=(3,))
    >>> act(U).shape, act.force(U).shape
    ((3,), (3, 2, 4, 4))
    """

    def __init__(self, group: Group, lattice: Lattice, beta: float) -> None:
        if not isinstance(group, Group):
            raise TypeError(f"group={group!r}: expected a latticekit Group (U1 or SU(N))")
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        if lattice.nd < 2:
            raise ValueError(f"lattice={lattice}: the Wilson gauge action needs at least 2 dimensions")
        beta = _check_beta(beta)
        self.group = group
        self.lattice = lattice
        self.beta = beta

    @property
    def field_shape(self) -> tuple[int, ...]:
        """Shape of one gauge field (without batch axes): ``(Nd, *G, *L)``."""
        return (self.lattice.nd,) + tuple(self.group.element_shape) + self.lattice.shape

    def action(self, U: Any) -> Any:
        """``S(U)``, shape ``(*B,)``."""
        return wilson_gauge_action(U, self.beta, self.group, self.lattice)

    __call__ = action

    def force(self, U: Any) -> Any:
        """``F = sum_a (d_a S) T_a``, shaped like ``U`` in the algebra representation."""
        return wilson_gauge_force(U, self.beta, self.group, self.lattice)

    def staples(self, U: Any) -> Any:
        """Staple sums ``A_mu(x)`` (see :func:`staples`)."""
        return staples(U, self.group, self.lattice)

    def __repr__(self) -> str:
        return f"WilsonGaugeAction(group={self.group!r}, lattice={self.lattice!r}, beta={self.beta!r})"
