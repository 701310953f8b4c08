"""Small targets with exactly known distributions, for tests, examples and sanity checks of samplers.

* :class:`GaussianAction`: ``S = (m^2 / 2) sum x^2`` on real fields (``<x^2> = 1/m^2``).
* :class:`QuarticAction`: ``S = sum (m^2 x^2 / 2 + lam x^4 / 4)`` (anharmonic, for integrator tests).
* :class:`SingleLinkAction`: ``S = -(beta / N) sum_{x, mu} Re tr U_mu(x)`` on a gauge field: every link
  is an independent one-link model. U(1): ``p(theta) = exp(beta cos theta) / (2 pi I_0(beta))``,
  ``<cos theta> = I_1(beta)/I_0(beta)``; SU(2): ``<Re tr U / 2> = I_2(beta)/I_1(beta)``.

The couplings may be torch tensors that require grad (nothing is done in place), which makes
Langevin trajectories differentiable with respect to them.

Examples
--------
>>> import numpy as np
>>> t = GaussianAction(mass2=2.0, event_ndim=1)
>>> t.action(np.ones((3, 4)))
array([4., 4., 4.])
"""

from __future__ import annotations

from typing import Any

from latticekit.backends import array_namespace
from latticekit.groups import Group, SUGroup, U1Group
from latticekit.lattice import Lattice

__all__ = ["GaussianAction", "QuarticAction", "SingleLinkAction"]


def _sum_event(a: Any, event_ndim: int) -> Any:
    xp = array_namespace(a)
    return xp.sum(a, axis=tuple(range(-event_ndim, 0))) if event_ndim else a


class GaussianAction:
    """``S = (mass2 / 2) sum x^2`` over the last ``event_ndim`` axes; force ``mass2 * x``.

    Examples
    --------
    >>> import numpy as np
    >>> GaussianAction(3.0, event_ndim=2).force(np.ones((2, 2))).tolist()
    [[3.0, 3.0], [3.0, 3.0]]
    """

    def __init__(self, mass2: Any = 1.0, event_ndim: int = 1) -> None:
        if isinstance(mass2, (int, float)) and not mass2 > 0:
            raise ValueError(f"mass2={mass2!r}: expected a positive number")
        if not isinstance(event_ndim, int) or event_ndim < 0:
            raise ValueError(f"event_ndim={event_ndim!r}: expected a non-negative integer")
        self.mass2 = mass2
        self.event_ndim = event_ndim

    def action(self, x: Any) -> Any:
        return 0.5 * self.mass2 * _sum_event(x * x, self.event_ndim)

    def force(self, x: Any) -> Any:
        return self.mass2 * x


class QuarticAction:
    """``S = sum (mass2 x^2 / 2 + lam x^4 / 4)``; force ``mass2 x + lam x^3``.

    Examples
    --------
    >>> import numpy as np
    >>> float(QuarticAction(1.0, 1.0, event_ndim=1).action(np.ones(2)))
    1.5
    """

    def __init__(self, mass2: Any = 1.0, lam: Any = 1.0, event_ndim: int = 1) -> None:
        if not isinstance(event_ndim, int) or event_ndim < 0:
            raise ValueError(f"event_ndim={event_ndim!r}: expected a non-negative integer")
        self.mass2, self.lam, self.event_ndim = mass2, lam, event_ndim

    def action(self, x: Any) -> Any:
        x2 = x * x
        return _sum_event(0.5 * self.mass2 * x2 + 0.25 * self.lam * x2 * x2, self.event_ndim)

    def force(self, x: Any) -> Any:
        return self.mass2 * x + self.lam * x * x * x


class SingleLinkAction:
    """Independent one-link models ``S = -(beta/N) sum_{x,mu} Re tr U_mu(x)`` on a gauge field.

    Force (Lie derivative ``d_a S = -(beta/N) Re tr(T_a U)``): U(1) ``beta sin(theta)``; SU(N)
    ``sum_a (d_a S) T_a = (beta / 2N) Pi(U)`` with ``Pi`` the traceless anti-Hermitian projection
    (``Re tr(T_a M) = tr(T_a Pi(M))`` and ``tr T_a T_b = -delta_ab / 2``).

    Parameters
    ----------
    group : Group
        ``latticekit.U1`` or ``latticekit.SU(N)``.
    lattice : Lattice
    beta : float or tensor

    Examples
    --------
    >>> import latticekit as lk
    >>> t = SingleLinkAction(lk.U1, lk.Lattice((2,)), beta=2.0)
    >>> U = lk.gauge.cold_gauge_field(lk.U1, lk.Lattice((2,)))
    >>> float(t.action(U))
    -4.0
    """

    def __init__(self, group: Group, lattice: Lattice, beta: Any) -> None:
        if not isinstance(group, (U1Group, SUGroup)):
            raise TypeError(f"group={group!r}: expected latticekit.U1 or an SU(N) group")
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        self.group, self.lattice, self.beta = group, lattice, beta
        self._event = 1 + len(group.element_shape) + lattice.nd

    def action(self, U: Any) -> Any:
        nd = self.lattice.nd
        rt = self.group.re_trace(U, nd=nd)  # (*B, Nd, *L)
        return -(self.beta / self.group.N) * _sum_event(rt, 1 + nd)

    def force(self, U: Any) -> Any:
        nd = self.lattice.nd
        if isinstance(self.group, U1Group):
            return self.beta * array_namespace(U).sin(U)
        return (self.beta / (2.0 * self.group.N)) * self.group.project_algebra(U, nd=nd)
