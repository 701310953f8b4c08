"""Symplectic, time-reversible integrators for molecular dynamics (HMC).

An integrator is a strategy object called as ``integrator(x, p, force, kind, eps, n_steps)`` and
returning ``(x, p)`` after ``n_steps`` steps of size ``eps``; ``force(x)`` is ``F = sum_a (d_a S) T_a``
(``dS/dx`` for real fields), ``kind`` a :class:`~latticekit.mc.fields.FieldKind`. Both integrators
below are second order: the energy violation of a trajectory of fixed length is ``O(eps^2)``.

* :class:`Leapfrog`: ``P(eps/2) [X(eps) P(eps)]^(n-1) X(eps) P(eps/2)``, one force per step.
* :class:`Omelyan`: the second-order minimum-norm scheme
  ``P(lam eps) X(eps/2) P((1 - 2 lam) eps) X(eps/2) P(lam eps)`` with
  ``lam = 0.1931833275037836`` (Omelyan, Mryglod & Folk, Comput. Phys. Commun. 151 (2003) 272;
  Takaishi & de Forcrand, Phys. Rev. E 73 (2006) 036706); two forces per step, an error
  coefficient about 10x smaller than leapfrog.

Adjacent momentum kicks of consecutive steps are merged.

Examples
--------
>>> import numpy as np
>>> from latticekit.mc import Leapfrog, RealField
>>> x, p = np.array([1.0]), np.array([0.0])
>>> x1, p1 = Leapfrog()(x, p, lambda x: x, RealField(1), 0.01, 100)    # harmonic oscillator, t = 1
>>> bool(abs(x1[0] - np.cos(1.0)) < 1e-4)
True
"""

from __future__ import annotations

from typing import Any, Callable

from .base import _is_int
from .fields import FieldKind

__all__ = ["Integrator", "Leapfrog", "Omelyan", "OMELYAN_LAMBDA", "integrator_from_name"]

#: the minimum-norm parameter of the second-order Omelyan integrator
OMELYAN_LAMBDA = 0.1931833275037836


def _check(eps: Any, n_steps: int) -> None:
    if not _is_int(n_steps) or n_steps < 1:
        raise ValueError(f"n_steps={n_steps!r}: expected an integer >= 1")
    if isinstance(eps, (int, float)) and not eps > 0:
        raise ValueError(f"eps={eps!r}: expected a positive step size")


class Integrator:
    """Base class of MD integrators (a strategy called by :class:`~latticekit.mc.HMC`)."""

    #: force evaluations per step (asymptotically)
    forces_per_step: int = 1
    name: str = "integrator"

    def __call__(self, x: Any, p: Any, force: Callable[[Any], Any], kind: FieldKind, eps: float,
                 n_steps: int) -> tuple[Any, Any]:
        raise TypeError(f"{type(self).__name__} does not implement __call__")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Leapfrog(Integrator):
    """The leapfrog (Stoermer-Verlet, PQP kick-drift-kick) integrator.

    Examples
    --------
    >>> Leapfrog().forces_per_step
    1
    """

    forces_per_step = 1
    name = "leapfrog"

    def __call__(self, x: Any, p: Any, force: Callable[[Any], Any], kind: FieldKind, eps: float,
                 n_steps: int) -> tuple[Any, Any]:
        _check(eps, n_steps)
        p = kind.kick(p, force(x), 0.5 * eps)
        for i in range(n_steps):
            x = kind.move(x, p, eps)
            p = kind.kick(p, force(x), eps if i < n_steps - 1 else 0.5 * eps)
        return x, p


class Omelyan(Integrator):
    """Second-order minimum-norm (Omelyan) integrator.

    Parameters
    ----------
    lam : float
        The splitting parameter, ``0 < lam < 1/2`` (default :data:`OMELYAN_LAMBDA`, which minimises
        the norm of the leading error terms).

    Examples
    --------
    >>> Omelyan().lam
    0.1931833275037836
    """

    forces_per_step = 2
    name = "omelyan"

    def __init__(self, lam: float = OMELYAN_LAMBDA) -> None:
        if not 0.0 < float(lam) < 0.5:
            raise ValueError(f"lam={lam!r}: expected 0 < lam < 1/2")
        self.lam = float(lam)

    def __call__(self, x: Any, p: Any, force: Callable[[Any], Any], kind: FieldKind, eps: float,
                 n_steps: int) -> tuple[Any, Any]:
        _check(eps, n_steps)
        lam = self.lam
        p = kind.kick(p, force(x), lam * eps)
        for i in range(n_steps):
            x = kind.move(x, p, 0.5 * eps)
            p = kind.kick(p, force(x), (1.0 - 2.0 * lam) * eps)
            x = kind.move(x, p, 0.5 * eps)
            p = kind.kick(p, force(x), 2.0 * lam * eps if i < n_steps - 1 else lam * eps)
        return x, p

    def __repr__(self) -> str:
        return f"Omelyan(lam={self.lam})"


def integrator_from_name(name: str | Integrator) -> Integrator:
    """``"leapfrog"`` or ``"omelyan"`` (or an :class:`Integrator`, returned unchanged).

    Examples
    --------
    >>> integrator_from_name("omelyan")
    Omelyan(lam=0.1931833275037836)
    """
    if isinstance(name, Integrator):
        return name
    key = str(name).lower()
    if key in ("leapfrog", "lf", "pqp"):
        return Leapfrog()
    if key in ("omelyan", "2mn", "omf2", "minimum_norm"):
        return Omelyan()
    raise ValueError(f"integrator={name!r}: expected 'leapfrog' or 'omelyan' or an Integrator instance")
