"""HMC for two degenerate flavours of Wilson fermions (Nf = 2) with pseudofermions.

The target is ``p(U) ~ exp(-S_g(U)) det(D D^dag)`` (eq. 9 of the pseudofermion paper), written with
pseudofermions ``phi`` as ``exp(-S_g(U) - S_pf(U, phi))`` (eqs. 10-12). One trajectory:

1. **Heatbath** for every monomial (exact): ``phi = W chi`` with ``chi ~ exp(-chi^dag chi)``
   (``W = D + i sqrt(mu) gamma_5``; Hasenbusch ratio monomials ``phi = W_lo W_hi^{-1} chi``), see
   :mod:`latticekit.actions.pseudofermion` and :mod:`latticekit.actions.hasenbusch`.
2. **Molecular dynamics** at fixed ``phi`` for ``H = K(P) + S_g(U) + sum_i S_i(U, phi_i)`` with the
   total force ``F = F_g + sum_i F_i`` (Lie-derivative convention ``F = sum_a (d_a S) T_a``, the same as
   :class:`~latticekit.actions.WilsonGaugeAction`); momenta are kicked ``P <- P - eps F``. Either one
   time scale (any :class:`~latticekit.mc.Integrator` on the total force) or two (Sexton-Weingarten,
   :class:`MultiTimescale`: the cheap gauge force on an inner level with ``n_inner`` steps per outer drift).
3. **Metropolis** per chain with ``dH = H(end) - H(start)``; the actions are recomputed with a tight
   CG tolerance ``tol`` (default 1e-10) while the MD forces may use a looser ``md_tol``.

The fermionic part is any :class:`~latticekit.actions.PseudofermionAction` (plain or even/odd
preconditioned, eq. 35; ``mu > 0`` gives the regulated theory ``det(D D^dag + mu)``) or
:class:`~latticekit.actions.HasenbuschAction` (eq. 38, any increasing list of shifts, with or without
even/odd). CG iteration counts per chain are reported in ``StepInfo.extras``.

The whole batch of chains shares one batched CG per solve; chains that have converged freeze (see
:func:`latticekit.linalg.cg`), so iteration counts are per chain.

Examples
--------
>>> import latticekit as lk
>>> from latticekit.mc import Nf2HMC
>>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0)
>>> hmc = Nf2HMC.from_couplings(lk.U1, lat, beta=2.0, kappa=0.25, rng=rng, even_odd=True,
...                             step_size=0.2, n_steps=5)
>>> U = lk.gauge.cold_gauge_field(lk.U1, lat, (3,))
>>> U, info = hmc.step(U)
>>> info.accepted.shape, info.extras["cg_iterations"].shape
((3,), (3,))
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from latticekit.actions import (
    HasenbuschAction,
    HasenbuschMonomial,
    PseudofermionAction,
    WilsonGaugeAction,
    apply_twisted,
    apply_twisted_dagger,
    solve_normal,
)
from latticekit.backends import Generator, array_namespace, check_rng, device
from latticekit.groups import Group
from latticekit.lattice import Lattice

from .base import StepInfo, _is_int
from .fields import FieldKind
from .hmc import HMC
from .integrators import Integrator, Leapfrog, Omelyan, integrator_from_name

__all__ = ["MultiTimescale", "Nf2HMC", "Nf2Target"]

_PHASES = ("heatbath", "md", "metropolis")


def _real_inner(a: Any, b: Any, batch_ndim: int) -> Any:
    """``Re sum conj(a) b`` over the non-batch axes."""
    xp = array_namespace(a, b)
    p = xp.real(a) * xp.real(b) + xp.imag(a) * xp.imag(b)
    return xp.sum(p, axis=tuple(range(batch_ndim, a.ndim)))


class Nf2Target:
    """Wilson gauge action plus Nf = 2 pseudofermion monomials, at the pseudofermions of the current trajectory.

    This is the HMC *target* of :class:`Nf2HMC`: ``action(U)`` and ``force(U)`` evaluate
    ``S_g(U) + sum_i S_i(U, phi_i)`` and its Lie-derivative force at the pseudofermions ``phis`` set by
    :meth:`sample`. Every CG solve adds its per-chain iteration count to the counter of the current
    phase (``"heatbath"``, ``"md"``, ``"metropolis"``; see :attr:`iterations`).

    Parameters
    ----------
    gauge : WilsonGaugeAction
    fermions : PseudofermionAction or HasenbuschAction
        The fermion determinant (same group and lattice as ``gauge``). Its ``tol``/``maxiter`` are the
        defaults of ``md_tol``/``maxiter``.
    md_tol : float, optional
        Relative CG residual for the MD forces (default: ``fermions.tol``).
    tol : float
        Relative CG residual for the heatbath and for the actions entering the Metropolis test.
    maxiter : int, optional
        CG iteration limit (default: ``fermions.maxiter``).
    on_solver_failure : {"raise", "reject"}
        ``"raise"`` (default): a CG that misses its tolerance raises
        :class:`~latticekit.linalg.ConvergenceError`. ``"reject"``: the affected chains are marked in
        :attr:`failed` and :class:`Nf2HMC` rejects their proposal (``dH = NaN``) (a tiny bias if it ever happens; the
        count is reported as ``extras["cg_failed"]``).

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.actions import WilsonGaugeAction, PseudofermionAction
    >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(1)
    >>> t = Nf2Target(WilsonGaugeAction(lk.U1, lat, 2.0), PseudofermionAction(lk.U1, lat, kappa=0.2))
    >>> U = lk.gauge.random_gauge_field(lk.U1, lat, rng, (2,))
    >>> phis = t.sample(U, rng)
    >>> t.action(U).shape, t.force(U).shape, len(phis)
    ((2,), (2, 2, 4, 4), 1)
    """

    def __init__(self, gauge: WilsonGaugeAction, fermions: PseudofermionAction | HasenbuschAction, *,
                 md_tol: float | None = None, tol: float = 1e-10, maxiter: int | None = None,
                 on_solver_failure: str = "raise") -> None:
        if not isinstance(gauge, WilsonGaugeAction):
            raise TypeError(f"gauge={gauge!r}: expected a latticekit.actions.WilsonGaugeAction")
        if isinstance(fermions, PseudofermionAction):
            monomials = [HasenbuschMonomial(fermions.mu, None)]
        elif isinstance(fermions, HasenbuschAction):
            monomials = list(fermions.monomials)
        else:
            raise TypeError(f"fermions={fermions!r}: expected a PseudofermionAction or a HasenbuschAction")
        if fermions.group != gauge.group or tuple(fermions.lattice.shape) != tuple(gauge.lattice.shape):
            raise ValueError(f"fermions: group/lattice ({fermions.group}, {fermions.lattice}) differ from the gauge "
                             f"action's ({gauge.group}, {gauge.lattice})")
        md_tol = fermions.tol if md_tol is None else float(md_tol)
        if not md_tol > 0:
            raise ValueError(f"md_tol={md_tol!r}: expected a positive tolerance")
        if not float(tol) > 0:
            raise ValueError(f"tol={tol!r}: expected a positive tolerance")
        maxiter = fermions.maxiter if maxiter is None else maxiter
        if not (_is_int(maxiter) and maxiter >= 1):
            raise ValueError(f"maxiter={maxiter!r}: expected a positive integer")
        maxiter = int(maxiter)
        if on_solver_failure not in ("raise", "reject"):
            raise ValueError(f"on_solver_failure={on_solver_failure!r}: expected 'raise' or 'reject'")
        self.gauge = gauge
        self.fermions = fermions
        self.group: Group = gauge.group
        self.lattice: Lattice = gauge.lattice
        self.monomials = monomials
        self.even_odd = bool(fermions.even_odd)
        self.md_tol, self.tol, self.maxiter = md_tol, float(tol), maxiter
        self.on_solver_failure = on_solver_failure
        #: pseudofermion fields of the current trajectory (one per monomial)
        self.phis: list[Any] | None = None
        #: per-phase CG iterations per chain since :meth:`reset_counters`
        self.iterations: dict[str, Any] = {}
        #: largest iteration count of a single solve, per chain
        self.max_iterations: Any = None
        #: chains with a CG that missed its tolerance (``on_solver_failure="reject"``)
        self.failed: Any = None
        #: fermion / gauge force evaluations since :meth:`reset_counters`
        self.fermion_force_evaluations = 0
        self.gauge_force_evaluations = 0
        self.phase = "md"

    # -- bookkeeping -------------------------------------------------------------------------------
    def reset_counters(self) -> None:
        """Zero the iteration and force counters (called by :class:`Nf2HMC` at every trajectory)."""
        self.iterations = {}
        self.max_iterations = None
        self.failed = None
        self.fermion_force_evaluations = 0
        self.gauge_force_evaluations = 0

    def _count(self, info: Any) -> None:
        xp = array_namespace(info.iterations)
        it = info.iterations
        prev = self.iterations.get(self.phase)
        self.iterations[self.phase] = it if prev is None else prev + it
        self.max_iterations = it if self.max_iterations is None else xp.maximum(self.max_iterations, it)
        bad = xp.logical_not(info.converged)
        self.failed = bad if self.failed is None else xp.logical_or(self.failed, bad)

    def _solve(self, op: Any, b: Any, mu: float, tol: float) -> Any:
        x, info = solve_normal(op, b, mu, tol=tol, maxiter=self.maxiter,
                               raise_on_failure=self.on_solver_failure == "raise")
        self._count(info)
        return x

    def operator(self, U: Any) -> Any:
        """``D[U]`` (or its even/odd Schur complement)."""
        return self.fermions.operator(U)

    # -- pseudofermions ----------------------------------------------------------------------------
    def sample(self, U: Any, rng: Generator) -> list[Any]:
        """Exact heatbath of every monomial's pseudofermion at ``U``; stores and returns them.

        Plain monomial: ``phi = W_lo chi``; ratio ``(mu_lo, mu_hi)``: ``phi = W_lo W_hi^dag (M + mu_hi)^{-1} chi``
        (``= W_lo W_hi^{-1} chi``), solved to ``tol``.
        """
        op = self.operator(U)
        old, self.phase = self.phase, "heatbath"
        try:
            phis = []
            for m in self.monomials:
                chi = op.random_field(rng)
                if m.is_ratio:
                    y = self._solve(op, chi, m.mu_hi, self.tol)
                    chi = apply_twisted_dagger(op, y, m.mu_hi)
                phis.append(apply_twisted(op, chi, m.mu_lo))
        finally:
            self.phase = old
        self.phis = phis
        return phis

    def _phis(self, phis: Sequence[Any] | None) -> list[Any]:
        phis = self.phis if phis is None else list(phis)
        if phis is None:
            raise ValueError("phis: no pseudofermions yet; call sample(U, rng) first or pass phis=")
        if len(phis) != len(self.monomials):
            raise ValueError(f"phis: expected {len(self.monomials)} pseudofermion fields (one per monomial), "
                             f"got {len(phis)}")
        return phis

    # -- actions -----------------------------------------------------------------------------------
    def fermion_actions(self, U: Any, phis: Sequence[Any] | None = None, *, tol: float | None = None) -> list[Any]:
        """Per-monomial actions ``S_i(U, phi_i)`` (shape ``B`` each), solved to ``tol`` (default :attr:`tol`)."""
        phis = self._phis(phis)
        op = self.operator(U)
        tol = self.tol if tol is None else float(tol)
        out = []
        for m, phi in zip(self.monomials, phis):
            bnd = phi.ndim - len(op.field_shape)
            phi = op.mask(phi)
            S = _real_inner(phi, self._solve(op, phi, m.mu_lo, tol), bnd)
            if m.is_ratio:
                S = _real_inner(phi, phi, bnd) + (m.mu_hi - m.mu_lo) * S
            out.append(S)
        return out

    def fermion_action(self, U: Any, phis: Sequence[Any] | None = None, *, tol: float | None = None) -> Any:
        """``sum_i S_i(U, phi_i)`` per chain."""
        acts = self.fermion_actions(U, phis, tol=tol)
        out = acts[0]
        for a in acts[1:]:
            out = out + a
        return out

    def action(self, U: Any) -> Any:
        """``S_g(U) + sum_i S_i(U, phi_i)`` per chain (CG to the tight :attr:`tol`; Metropolis)."""
        old, self.phase = self.phase, "metropolis"
        try:
            return self.gauge.action(U) + self.fermion_action(U)
        finally:
            self.phase = old

    # -- forces ------------------------------------------------------------------------------------
    def fermion_force(self, U: Any, phis: Sequence[Any] | None = None) -> Any:
        """``sum_i F_i``, ``F_i = sum_a (d_a S_i) T_a``, laid out like ``U`` (CG to :attr:`md_tol`).

        With ``X = (M + mu_lo)^{-1} phi`` and ``Y = D^dag X``: ``d_a S = -2 c Re(X^dag d_a D Y)`` with
        ``c = 1`` (plain) or ``c = mu_hi - mu_lo`` (ratio; ``|phi|^2`` does not depend on ``U``).
        """
        phis = self._phis(phis)
        op = self.operator(U)
        coords = None
        for m, phi in zip(self.monomials, phis):
            phi = op.mask(phi)
            X = self._solve(op, phi, m.mu_lo, self.md_tol)
            c = -2.0 * op.bilinear_derivative(X, op.apply_dagger(X))
            if m.is_ratio:
                c = (m.mu_hi - m.mu_lo) * c
            coords = c if coords is None else coords + c
        self.fermion_force_evaluations += 1
        return self.group.from_coords(coords, nd=self.lattice.nd)

    def gauge_force(self, U: Any) -> Any:
        """The Wilson gauge force ``F_g``."""
        self.gauge_force_evaluations += 1
        return self.gauge.force(U)

    def force(self, U: Any) -> Any:
        """Total force ``F_g + sum_i F_i``."""
        return self.gauge_force(U) + self.fermion_force(U)

    def __repr__(self) -> str:
        return (f"Nf2Target({self.gauge!r}, monomials={self.monomials!r}, even_odd={self.even_odd}, "
                f"md_tol={self.md_tol:g}, tol={self.tol:g})")


def _splitting(integrator: Integrator) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Kick coefficients ``a`` and drift coefficients ``b`` of a palindromic splitting
    ``P(a0) X(b0) P(a1) ... X(b_{k-1}) P(a_k)``."""
    if isinstance(integrator, Omelyan):
        lam = integrator.lam
        return (lam, 1.0 - 2.0 * lam, lam), (0.5, 0.5)
    if isinstance(integrator, Leapfrog):
        return (0.5, 0.5), (1.0,)
    raise ValueError(f"outer={integrator!r}: MultiTimescale knows the splittings of Leapfrog and Omelyan")


class MultiTimescale:
    """Sexton-Weingarten nested integrator: slow force outside, fast force on a finer inner level.

    The outer scheme (leapfrog ``P(eps/2) X(eps) P(eps/2)`` or Omelyan
    ``P(lam eps) X(eps/2) P((1-2 lam) eps) X(eps/2) P(lam eps)``, adjacent kicks merged) kicks with the
    slow force; every drift ``X(t)`` is ``n_inner`` steps of the inner :class:`~latticekit.mc.Integrator`
    (step ``t / n_inner``) on the fast force (Sexton & Weingarten, Nucl. Phys. B 380 (1992) 665). Every
    piece is symplectic and the composition is symmetric, so the scheme is reversible, area preserving
    and second order.

    Parameters
    ----------
    outer : "leapfrog", "omelyan" or a Leapfrog/Omelyan instance
    inner : "leapfrog", "omelyan" or any Integrator
    n_inner : int
        Inner steps per outer drift (>= 1).

    Examples
    --------
    >>> import numpy as np
    >>> from latticekit.mc import RealField
    >>> mts = MultiTimescale("leapfrog", "leapfrog", n_inner=4)
    >>> x, p = mts(np.array([1.0]), np.array([0.0]), lambda x: 0.01 * x, lambda x: x, RealField(1), 0.05, 20)
    >>> bool(abs(x[0] - np.cos(np.sqrt(1.01))) < 1e-3)
    True
    """

    def __init__(self, outer: str | Integrator = "omelyan", inner: str | Integrator = "leapfrog",
                 n_inner: int = 2) -> None:
        self.outer = integrator_from_name(outer)
        self.inner = integrator_from_name(inner)
        self._a, self._b = _splitting(self.outer)
        if not _is_int(n_inner) or n_inner < 1:
            raise ValueError(f"n_inner={n_inner!r}: expected an integer >= 1")
        self.n_inner = int(n_inner)

    def slow_forces(self, n_steps: int) -> int:
        """Slow-force evaluations of ``n_steps`` outer steps."""
        return (len(self._a) - 1) * n_steps + 1

    def fast_forces(self, n_steps: int) -> int:
        """Fast-force evaluations of ``n_steps`` outer steps (the inner integrator's kicks are not merged
        across drifts)."""
        inner_calls = len(self._b) * n_steps
        per_call = self.inner.forces_per_step * self.n_inner + (1 if isinstance(self.inner, (Leapfrog, Omelyan)) else 0)
        return inner_calls * per_call

    def __call__(self, x: Any, p: Any, slow_force: Callable[[Any], Any], fast_force: Callable[[Any], Any],
                 kind: FieldKind, eps: float, n_steps: int) -> tuple[Any, Any]:
        if not _is_int(n_steps) or n_steps < 1:
            raise ValueError(f"n_steps={n_steps!r}: expected an integer >= 1")
        if not float(eps) > 0:
            raise ValueError(f"eps={eps!r}: expected a positive step size")
        a, b = self._a, self._b
        m = self.n_inner
        p = kind.kick(p, slow_force(x), a[0] * eps)
        for i in range(n_steps):
            for j, bj in enumerate(b):
                x, p = self.inner(x, p, fast_force, kind, bj * eps / m, m)
                c = a[j + 1] + (a[0] if (j == len(b) - 1 and i < n_steps - 1) else 0.0)
                p = kind.kick(p, slow_force(x), c * eps)
        return x, p

    def __repr__(self) -> str:
        return f"MultiTimescale(outer={self.outer!r}, inner={self.inner!r}, n_inner={self.n_inner})"


class Nf2HMC(HMC):
    """HMC for the Wilson gauge action plus Nf = 2 Wilson pseudofermions (see the module docstring).

    Parameters
    ----------
    gauge : WilsonGaugeAction
    fermions : PseudofermionAction or HasenbuschAction
        Plain (``even_odd=False``), even/odd preconditioned (``even_odd=True``) or Hasenbusch
        (``HasenbuschAction(..., mus=[...])``) monomials.
    rng : Generator
        Explicit random stream (momenta, pseudofermions, Metropolis).
    step_size, n_steps : MD step and number of (outer) steps per trajectory.
    integrator : "leapfrog", "omelyan" or Integrator
        The (outer) integrator.
    n_inner : int or None
        None (default): one time scale, the integrator sees the total force. An integer ``k >= 1``:
        Sexton-Weingarten (:class:`MultiTimescale`) with the fermion force outside and ``k`` inner steps
        of ``inner_integrator`` on the gauge force per outer drift.
    inner_integrator : "leapfrog", "omelyan" or Integrator, optional
        Inner integrator (default: leapfrog).
    md_tol, tol, maxiter, on_solver_failure : see :class:`Nf2Target`.
    reunitarize_every, reunitarize_tol : see :class:`~latticekit.mc.HMC`.

    Notes
    -----
    ``step(U)`` returns ``StepInfo(accepted, dH, extras)``; ``extras`` holds per-chain arrays
    ``cg_iterations`` (all solves of the trajectory), ``cg_iterations_heatbath``, ``cg_iterations_md``,
    ``cg_iterations_metropolis``, ``cg_max_iterations`` (largest single solve), ``cg_failed`` (bool),
    and the integers ``force_evaluations`` (fermion forces), ``gauge_force_evaluations``, plus
    ``reunitarized``/``max_defect`` from :class:`~latticekit.mc.HMC`. The pseudofermions of the last
    trajectory are ``hmc.target.phis``.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.actions import WilsonGaugeAction, HasenbuschAction
    >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0)
    >>> hmc = Nf2HMC(WilsonGaugeAction(lk.U1, lat, 2.0),
    ...              HasenbuschAction(lk.U1, lat, kappa=0.25, mus=[0.5], even_odd=True),
    ...              rng=rng, step_size=0.25, n_steps=4, n_inner=2)
    >>> U, hist = hmc.run(lk.gauge.cold_gauge_field(lk.U1, lat, (2,)), 3)
    >>> hist.accepted.shape
    (3, 2)
    """

    def __init__(self, gauge: WilsonGaugeAction, fermions: PseudofermionAction | HasenbuschAction, *,
                 rng: Generator, step_size: float = 0.1, n_steps: int = 10, integrator: str | Integrator = "omelyan",
                 n_inner: int | None = None, inner_integrator: str | Integrator | None = None,
                 md_tol: float | None = None, tol: float = 1e-10, maxiter: int | None = None,
                 on_solver_failure: str = "raise", reunitarize_every: int | None = 10,
                 reunitarize_tol: float | None = 1e-10) -> None:
        target = Nf2Target(gauge, fermions, md_tol=md_tol, tol=tol, maxiter=maxiter,
                           on_solver_failure=on_solver_failure)
        super().__init__(target, None, rng=rng, step_size=step_size, n_steps=n_steps, integrator=integrator,
                         reunitarize_every=reunitarize_every, reunitarize_tol=reunitarize_tol)
        self.target: Nf2Target = target
        if n_inner is None:
            if inner_integrator is not None:
                raise ValueError("inner_integrator: only used with n_inner (multiple time scales)")
            self.multiscale: MultiTimescale | None = None
        else:
            self.multiscale = MultiTimescale(self.integrator, inner_integrator or "leapfrog", n_inner)

    @classmethod
    def from_couplings(cls, group: Group, lattice: Lattice, beta: float, kappa: float | None = None,
                       m0: float | None = None, *, rng: Generator, even_odd: bool = False,
                       mus: Sequence[float] | None = None, mu: float = 0.0, tol: float = 1e-10,
                       md_tol: float | None = None, maxiter: int = 2000, antiperiodic: bool = True,
                       **hmc: Any) -> "Nf2HMC":
        """Build the actions from couplings: Wilson gauge ``beta`` plus Nf = 2 at ``kappa`` (or ``m0``).

        ``mus`` (a list of increasing shifts, possibly empty) selects Hasenbusch monomials on top of
        ``mu`` (the lowest shift; 0 = the physical determinant); ``mus=None`` is a single plain monomial.
        Remaining keywords go to :class:`Nf2HMC`.

        Examples
        --------
        >>> import latticekit as lk
        >>> hmc = Nf2HMC.from_couplings(lk.U1, lk.Lattice((4, 4)), 2.0, kappa=0.26, rng=lk.backends.rng(0),
        ...                             mus=[0.1, 1.0])
        >>> len(hmc.target.monomials)
        3
        """
        gauge = WilsonGaugeAction(group, lattice, beta)
        md = tol if md_tol is None else md_tol
        if mus is None:
            ferm: Any = PseudofermionAction(group, lattice, kappa=kappa, m0=m0, even_odd=even_odd, mu=mu, tol=md,
                                            maxiter=maxiter, antiperiodic=antiperiodic)
        else:
            ferm = HasenbuschAction(group, lattice, kappa=kappa, m0=m0, mus=mus, mu0=mu, even_odd=even_odd,
                                    tol=md, maxiter=maxiter, antiperiodic=antiperiodic)
        return cls(gauge, ferm, rng=rng, tol=tol, md_tol=md, **hmc)

    # -- pieces ------------------------------------------------------------------------------------
    def hamiltonian(self, x: Any, p: Any) -> Any:
        """``H = K(p) + S_g(x) + S_pf(x, phis)`` per chain (NaN, hence a rejection, for chains whose CG
        failed, with ``on_solver_failure="reject"``)."""
        h = self.kind.kinetic(p) + self.target.action(x)
        failed = self.target.failed
        if failed is not None and self.target.on_solver_failure == "reject":
            xp = array_namespace(h)
            h = xp.where(failed, xp.full_like(h, float("nan")), h)
        return h

    def trajectory(self, x: Any, p: Any) -> tuple[Any, Any]:
        """MD at the current pseudofermions (:meth:`refresh` draws them); no accept/reject."""
        t = self.target
        t.phase = "md"
        if self.multiscale is None:
            return self.integrator(x, p, t.force, self.kind, self.step_size, self.n_steps)
        return self.multiscale(x, p, t.fermion_force, t.gauge_force, self.kind, self.step_size, self.n_steps)

    def refresh(self, x: Any) -> list[Any]:
        """Draw fresh pseudofermions at ``x`` (exact heatbath); they stay fixed for the next trajectory."""
        return self.target.sample(x, check_rng(self.rng, like=x))

    # -- one update --------------------------------------------------------------------------------
    def step(self, x: Any) -> tuple[Any, StepInfo]:
        """Pseudofermion heatbath, MD trajectory, Metropolis per chain (see the class docstring)."""
        self.kind.check(x)
        t = self.target
        t.reset_counters()
        self.refresh(x)
        x_out, info = super().step(x)
        xp = array_namespace(info.dH)
        zero = xp.zeros(tuple(info.dH.shape), dtype=xp.int64, device=device(info.dH))
        its = {ph: t.iterations.get(ph, zero) for ph in _PHASES}
        total = its["heatbath"] + its["md"] + its["metropolis"]
        extras: dict[str, Any] = {
            "cg_iterations": total,
            "cg_iterations_heatbath": its["heatbath"],
            "cg_iterations_md": its["md"],
            "cg_iterations_metropolis": its["metropolis"],
            "cg_max_iterations": zero if t.max_iterations is None else t.max_iterations,
            "cg_failed": (xp.zeros(tuple(info.dH.shape), dtype=xp.bool, device=device(info.dH))
                          if t.failed is None else t.failed),
            "force_evaluations": t.fermion_force_evaluations,
            "gauge_force_evaluations": t.gauge_force_evaluations,
        }
        info.extras.update(extras)
        return x_out, info

    def __repr__(self) -> str:
        ms = "" if self.multiscale is None else f", multiscale={self.multiscale!r}"
        return (f"Nf2HMC({self.target!r}, integrator={self.integrator!r}, step_size={self.step_size}, "
                f"n_steps={self.n_steps}{ms})")
