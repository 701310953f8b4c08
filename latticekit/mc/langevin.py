"""Langevin dynamics (Euler-Maruyama), batched and differentiable through torch.

Real fields (eq. 37 of Bachtis et al., "super-resolving normalizing flows", the batched sampler
used for IR matching)::

    phi <- phi - eps dS/dphi + sqrt(2 eps) eta,      eta ~ N(0, 1) per site.

Gauge fields (Batrouni et al., Phys. Rev. D 32 (1985) 2736), in the Lie-derivative convention of
:mod:`latticekit.groups` (``F = sum_a (d_a S) T_a``)::

    U <- exp(-eps F + sqrt(2 eps) eta) U,            eta = sum_a eta_a T_a, eta_a ~ N(0, 1).

Normalisation: in the coordinates ``omega_a`` of ``exp(sum_a omega_a T_a) U`` the update is
``d omega_a = -d_a S dt + sqrt(2 dt) eta_a``; the generator of the process is ``sum_a (d_a d_a -
(d_a S) d_a)`` (``E[omega_a omega_b] = 2 eps delta_ab`` and the second-order term of the exponential
map contributes ``eps sum_a d_a d_a``), whose stationary density is ``exp(-S)`` with respect to the
Haar measure (the ``d_a`` are divergence-free for it). The Euler scheme has an ``O(eps)`` bias: for
``S = m^2 x^2 / 2`` the stationary variance is ``1 / (m^2 (1 - m^2 eps / 2))`` (see the tests).

Differentiability: the update uses no in-place operations, so with couplings that are torch tensors
requiring grad (e.g. ``Phi4Action(lattice, kappa=torch.tensor(0.2, requires_grad=True), ...)``)
gradients of any function of the final fields flow back to the couplings ("backpropagation through
the sampler").

Examples
--------
>>> import latticekit as lk
>>> from latticekit.mc import Langevin, GaussianAction, RealField
>>> lan = Langevin(GaussianAction(1.0, event_ndim=1), RealField(1), rng=lk.backends.rng(0), step_size=0.01)
>>> x, hist = lan.run(lk.backends.rng(1).normal((4, 16)), 3)
>>> x.shape
(4, 16)
"""

from __future__ import annotations

import math
from typing import Any

from latticekit.backends import Generator, check_rng

from .base import Sampler, StepInfo, _is_int, _step_size
from .fields import FieldKind, SUNField, U1Field
from .hmc import infer_field_kind

__all__ = ["Langevin", "langevin_step"]


def langevin_step(x: Any, force: Any, noise: Any, kind: FieldKind, step_size: Any) -> Any:
    """One Euler-Maruyama step ``x <- move(x, -eps F + sqrt(2 eps) eta)``.

    Parameters
    ----------
    x : array
        Fields ``(*B, *event)``.
    force : array
        ``dS/dx`` (real fields) or the Lie-algebra force ``sum_a (d_a S) T_a``, same shape as the momenta.
    noise : array
        Standard Gaussian tangent vectors (``kind.noise(rng, x)``).
    kind : FieldKind
    step_size : float or tensor
        ``eps``.

    Examples
    --------
    >>> import numpy as np
    >>> from latticekit.mc import RealField
    >>> float(langevin_step(np.array([1.0]), np.array([1.0]), np.array([0.0]), RealField(1), 0.5)[0])
    0.5
    """
    drift = -step_size * force
    if isinstance(step_size, (int, float)):
        amp = math.sqrt(2.0 * step_size)
    else:  # a tensor step size (keeps the graph)
        amp = (2.0 * step_size) ** 0.5
    return kind.move(x, drift + amp * noise, 1.0)


class Langevin(Sampler):
    """Batched Euler-Maruyama Langevin sampler (no accept/reject; ``O(eps)`` bias).

    Parameters
    ----------
    target : object
        ``action(x)`` and ``force(x)``; only the force is used.
    kind : FieldKind, optional
        Inferred from ``target.lattice``/``target.group`` when omitted.
    rng : Generator
        Explicit random stream of the fields' backend.
    step_size : float
        Langevin time step ``eps`` (``tau`` in the super-resolving-flows paper).
    normalize_every : int or None
        Reunitarise SU(N) links / wrap U(1) angles every this many steps (None: never). Leave it
        None when differentiating through the chain (the projection is differentiable but changes
        nothing in exact arithmetic).

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.mc import Langevin, SingleLinkAction
    >>> lat = lk.Lattice((4,))
    >>> lan = Langevin(SingleLinkAction(lk.SU(2), lat, beta=1.0), rng=lk.backends.rng(0), step_size=0.05)
    >>> U, _ = lan.run(lk.gauge.cold_gauge_field(lk.SU(2), lat, (2,)), 5)
    >>> float(lk.SU(2).defect(U, nd=1).max()) < 1e-10
    True
    """

    def __init__(self, target: Any, kind: FieldKind | None = None, *, rng: Generator, step_size: float = 0.01,
                 normalize_every: int | None = None) -> None:
        if not hasattr(target, "force"):
            raise TypeError(f"target={target!r}: expected an object with force(x)")
        check_rng(rng)
        step_size = _step_size(step_size, arrays=True)   # a 0-d torch tensor stays one (autograd through Langevin)
        if normalize_every is not None and (not _is_int(normalize_every) or normalize_every < 1):
            raise ValueError(f"normalize_every={normalize_every!r}: expected a positive integer or None")
        self.target = target
        self.kind = kind if kind is not None else infer_field_kind(target)
        if not isinstance(self.kind, FieldKind):
            raise TypeError(f"kind={kind!r}: expected a FieldKind (RealField, U1Field, SUNField)")
        self.rng = rng
        self.step_size = step_size
        self.normalize_every = None if normalize_every is None else int(normalize_every)
        self.steps = 0
        self._last_out: Any = None     # the field the last step returned: a chain's next input, checked already

    def step(self, x: Any) -> tuple[Any, StepInfo]:
        """One Langevin step of every chain."""
        self.kind.check(x)
        if x is not self._last_out:
            # a NaN field or one off the group was evolved (and then reprojected) silently, as HMC's once did;
            # one pass over the field, only for a field this sampler did not produce itself
            self.kind.check_values(x)
        check_rng(self.rng, like=x)
        eta = self.kind.noise(self.rng, x)
        x = langevin_step(x, self.target.force(x), eta, self.kind, self.step_size)
        self.steps += 1
        extras = {"normalized": False}
        if (self.normalize_every is not None and self.steps % self.normalize_every == 0
                and isinstance(self.kind, (SUNField, U1Field))):
            x = self.kind.normalize(x)
            extras["normalized"] = True
        self._last_out = x
        return x, StepInfo(extras=extras)

    def __repr__(self) -> str:
        return f"Langevin(kind={self.kind!r}, step_size={self.step_size})"
