"""Hybrid (Hamiltonian) Monte Carlo over batches of independent chains, for any field kind.

Each trajectory: draw momenta ``p`` (``exp(-p^2/2)``; for SU(N) ``P = sum_a omega_a T_a`` with
``omega_a ~ N(0, 1)``), integrate ``H = p^2/2 + S(x)`` with a reversible symplectic integrator,
accept per chain with probability ``min(1, exp(-dH))`` (Duane, Kennedy, Pendleton & Roweth,
Phys. Lett. B 195 (1987) 216). Every chain (leading batch index) has its own decision; all chains
share the step size and the random stream ``rng``.

Reunitarisation: after rounding errors SU(N) links drift off the group. The sampler reprojects
(``group.normalize``) every ``reunitarize_every`` trajectories, and whenever the largest defect
exceeds ``reunitarize_tol`` (checked each trajectory when the tolerance is set). U(1) angles are
wrapped into (-pi, pi] on the same schedule.

Examples
--------
>>> import latticekit as lk
>>> from latticekit.mc import HMC, SingleLinkAction, U1Field
>>> lat = lk.Lattice((8,))
>>> target = SingleLinkAction(lk.U1, lat, beta=1.0)
>>> hmc = HMC(target, U1Field(lat), rng=lk.backends.rng(0), step_size=0.2, n_steps=5)
>>> x0 = lk.gauge.random_gauge_field(lk.U1, lat, lk.backends.rng(1), batch_shape=(16,))
>>> x, info = hmc.step(x0)
>>> info.accepted.shape, info.dH.shape
((16,), (16,))
"""

from __future__ import annotations

from typing import Any

from latticekit.backends import Generator, array_namespace, check_rng

from .base import Sampler, StepInfo, _is_int, _step_size
from .fields import FieldKind, SUNField, U1Field, field_kind
from .integrators import Integrator, integrator_from_name

__all__ = ["HMC", "infer_field_kind"]


def infer_field_kind(target: Any) -> FieldKind:
    """The field kind of ``target`` from its ``lattice`` and (optional) ``group`` attributes.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.mc import SingleLinkAction
    >>> infer_field_kind(SingleLinkAction(lk.SU(2), lk.Lattice((4,)), beta=1.0))
    SUNField(SU(2), Lattice(shape=(4,)))
    """
    lattice = getattr(target, "lattice", None)
    if lattice is None:
        raise ValueError(f"kind=None: cannot infer the field kind of target {target!r} (it has no 'lattice'); "
                         "pass kind=RealField(...), U1Field(lattice) or SUNField(group, lattice)")
    return field_kind(lattice, getattr(target, "group", None))


class HMC(Sampler):
    """Hybrid Monte Carlo sampler.

    Parameters
    ----------
    target : object
        ``action(x) -> (*B,)`` and ``force(x)`` (see :mod:`latticekit.mc.base`).
    kind : FieldKind, optional
        Geometry of ``x``; inferred from ``target.lattice`` / ``target.group`` when omitted.
    rng : Generator
        Explicit random stream (``latticekit.backends.rng(seed, backend=, device=)``) of the backend
        of the fields.
    step_size : float
        MD step ``eps``.
    n_steps : int
        Steps per trajectory (trajectory length ``eps * n_steps``).
    integrator : {"leapfrog", "omelyan"} or Integrator
    reunitarize_every : int or None
        Reproject onto the group (wrap U(1) angles) every this many trajectories (None: never on schedule).
    reunitarize_tol : float or None
        Also reproject whenever the largest defect of any chain exceeds this (SU(N) only; None: no check).

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.mc import HMC, GaussianAction, RealField
    >>> hmc = HMC(GaussianAction(2.0, event_ndim=1), RealField(1), rng=lk.backends.rng(0),
    ...           step_size=0.1, n_steps=10, integrator="omelyan")
    >>> x, hist = hmc.run(lk.backends.rng(1).normal((64, 8)), 50, measure=lambda x: (x ** 2).mean())
    >>> hist.acceptance_rate > 0.95
    True
    """

    def __init__(self, target: Any, kind: FieldKind | None = None, *, rng: Generator, step_size: float = 0.1,
                 n_steps: int = 10, integrator: str | Integrator = "leapfrog", reunitarize_every: int | None = 10,
                 reunitarize_tol: float | None = 1e-10) -> None:
        if not (hasattr(target, "action") and hasattr(target, "force")):
            raise TypeError(f"target={target!r}: expected an object with action(x) and force(x)")
        check_rng(rng)
        step_size = float(_step_size(step_size, arrays=True))
        if not _is_int(n_steps) or n_steps < 1:
            raise ValueError(f"n_steps={n_steps!r}: expected an integer >= 1")
        if reunitarize_every is not None and (not _is_int(reunitarize_every) or reunitarize_every < 1):
            raise ValueError(f"reunitarize_every={reunitarize_every!r}: expected a positive integer or None")
        if reunitarize_tol is not None and (isinstance(reunitarize_tol, (bool, str)) or not float(reunitarize_tol) > 0):
            # a string passed float() here and failed at the first SU(N) step; True was stored as the tolerance
            raise ValueError(f"reunitarize_tol={reunitarize_tol!r}: expected a positive number or None")
        self.target = target
        self.kind = kind if kind is not None else infer_field_kind(target)
        if not isinstance(self.kind, FieldKind):
            raise TypeError(f"kind={kind!r}: expected a FieldKind (RealField, U1Field, SUNField)")
        self.rng = rng
        self.step_size = float(step_size)
        self.n_steps = int(n_steps)
        self.integrator = integrator_from_name(integrator)
        self.reunitarize_every = None if reunitarize_every is None else int(reunitarize_every)
        self.reunitarize_tol = None if reunitarize_tol is None else float(reunitarize_tol)
        #: number of trajectories made so far (drives the reunitarisation schedule)
        self.trajectories = 0
        self._last_out: Any = None     # the field the last step returned: a chain's next input, checked already

    # -- pieces --------------------------------------------------------------------------------
    def hamiltonian(self, x: Any, p: Any) -> Any:
        """``H = kinetic(p) + S(x)`` per chain."""
        return self.kind.kinetic(p) + self.target.action(x)

    def trajectory(self, x: Any, p: Any) -> tuple[Any, Any]:
        """Integrate the MD equations from ``(x, p)`` for ``n_steps`` steps; no accept/reject."""
        return self.integrator(x, p, self.target.force, self.kind, self.step_size, self.n_steps)

    @property
    def trajectory_length(self) -> float:
        """``step_size * n_steps``."""
        return self.step_size * self.n_steps

    # -- one update ----------------------------------------------------------------------------
    def step(self, x: Any) -> tuple[Any, StepInfo]:
        """One HMC trajectory with a Metropolis test per chain.

        Returns
        -------
        x : array
            Accepted proposals, the old configuration where rejected.
        info : StepInfo
            ``accepted`` and ``dH`` per chain; ``extras``: ``force_evaluations``, ``reunitarized``,
            ``max_defect`` (float, when checked).
        """
        self.kind.check(x)
        if x is not self._last_out:      # the chain's own last output was checked (and its defect measured) already
            self.kind.check_values(x)    # one pass; a trajectory costs n_steps force evaluations
        check_rng(self.rng, like=x)
        kind = self.kind
        p = kind.momenta(self.rng, x)
        h0 = self.hamiltonian(x, p)
        xn, pn = self.trajectory(x, p)
        h1 = self.hamiltonian(xn, pn)
        dH = h1 - h0
        xp = array_namespace(dH)
        u = self.rng.uniform(tuple(dH.shape), dtype=dH.dtype)
        accepted = xp.log(u) < -dH  # nan (overflow) compares False: rejected
        x_out = kind.select(accepted, xn, x)
        self.trajectories += 1
        extras: dict[str, Any] = {
            "force_evaluations": self.integrator.forces_per_step * self.n_steps + 1,
            "reunitarized": False,
        }
        due = self.reunitarize_every is not None and self.trajectories % self.reunitarize_every == 0
        if isinstance(kind, SUNField) and self.reunitarize_tol is not None and not due:
            worst = float(xp.max(kind.defect(x_out)))
            extras["max_defect"] = worst
            due = worst > self.reunitarize_tol
        if due and isinstance(kind, (SUNField, U1Field)):
            x_out = kind.normalize(x_out)
            extras["reunitarized"] = True
        self._last_out = x_out
        return x_out, StepInfo(accepted=accepted, dH=dH, extras=extras)

    def __repr__(self) -> str:
        return (f"HMC(kind={self.kind!r}, integrator={self.integrator!r}, step_size={self.step_size}, "
                f"n_steps={self.n_steps})")
