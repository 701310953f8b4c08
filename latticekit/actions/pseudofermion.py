"""Pseudofermions for Nf = 2 Wilson fermions: action, exact heatbath, force.

With ``M = D D^dag`` (or ``M = D_sc D_sc^dag`` after even/odd preconditioning) and a regulator
``mu >= 0`` (``mu = 0``: the physical action; ``mu > 0``: the regulated operator used for training
and as the last Hasenbusch monomial)::

    S_pf(U, phi) = phi^dag (M + mu)^{-1} phi                                   (eq. 12 / 35)
    det(M + mu) = (1/pi^N) int dphi exp(-S_pf)                                (eq. 10, N = ndof)

Heatbath (exact): with ``W_mu = D + i sqrt(mu) gamma_5`` one has ``W_mu W_mu^dag = D D^dag + mu``
(``gamma_5 D^dag = D gamma_5``), so ``phi = W_mu chi`` with ``chi ~ exp(-chi^dag chi)`` gives
``S_pf = chi^dag chi`` exactly: ``E[S_pf] = N`` (the number of complex components).

Force (Lie derivative ``d_a f(U) = d/dt f(exp(t T_a) U)|_0``, algebra-valued ``F = sum_a (d_a S) T_a``):
with ``X = (M + mu)^{-1} phi`` and ``Y = D^dag X``::

    dS = -X^dag dM X = -(X^dag dD Y + Y^dag dD^dag X) = -2 Re(X^dag dD Y),

and ``Re(a^dag dD b)`` per link is the operator's ``bilinear_derivative(a, b)`` (see
``WilsonDirac.hop_bilinear_derivative`` for its derivation).

Examples
--------
>>> import latticekit as lk
>>> from latticekit.actions.dirac import WilsonDirac
>>> from latticekit.actions.pseudofermion import pseudofermion_heatbath, pseudofermion_action
>>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0)
>>> D = WilsonDirac(lk.U1.random(rng, (2,), lat.shape), lk.U1, lat, kappa=0.2)
>>> phi, chi = pseudofermion_heatbath(D, rng, return_noise=True)
>>> S = pseudofermion_action(phi, D, tol=1e-12)
>>> bool(abs(S - (abs(chi) ** 2).sum()) < 1e-8)
True
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from latticekit.backends import Generator, array_namespace, check_rng
from latticekit.groups import Group
from latticekit.lattice import Lattice
from latticekit.linalg import SolverInfo, cg

from ._checks import flag, positive_int, real_number
from .dirac import WilsonDirac
from .even_odd import EvenOddDirac

__all__ = [
    "PseudofermionAction",
    "apply_twisted",
    "apply_twisted_dagger",
    "pseudofermion_action",
    "pseudofermion_force",
    "pseudofermion_force_coords",
    "pseudofermion_heatbath",
    "regulated_normal",
    "solve_normal",
]

DiracLike = Any  # WilsonDirac or EvenOddDirac (same operator interface)


def _check_mu(mu: float, name: str = "mu") -> float:
    mu = real_number(name, mu)
    if not mu >= 0:
        raise ValueError(f"{name}={mu!r}: expected a non-negative shift")
    return mu


def _check_setup(group: Any, lattice: Any) -> None:
    if not isinstance(group, Group):
        raise TypeError(f"group: expected a latticekit Group (U1, SU(N)), got {type(group).__name__}")
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice: expected a latticekit.Lattice, got {type(lattice).__name__}")


def _check_even_odd(lattice: Lattice, even_odd: bool) -> None:
    """Even/odd preconditioning needs every extent even: refused at construction, not at the first action."""
    odd = [L for L in lattice.shape if L % 2]
    if even_odd and odd:
        raise ValueError(f"even_odd=True: even/odd preconditioning needs every lattice extent even, got {lattice}")


def _check_solver(tol: Any, maxiter: Any) -> tuple[float, int]:
    """CG settings: ``tol`` a positive real number, ``maxiter`` a positive integer."""
    t = real_number("tol", tol)
    if not t > 0:
        raise ValueError(f"tol={tol!r}: expected a positive tolerance")
    return t, positive_int("maxiter", maxiter)


def _check_dirac_args(group: Group, lattice: Lattice, kw: dict[str, Any]) -> None:
    """Validate kappa/m0/antiperiodic and the lattice before any work, as :class:`WilsonDirac` does.

    The couplings are checked by the operator on a unit field of a 2^Nd lattice (a field of the real one would be
    allocated for U(1): its phases ``exp(i theta)``); the checks that need the real lattice follow here. ``L_0 = 1``
    with the antiperiodic time direction was accepted at construction and refused at the first sample (user probe).
    """
    small = Lattice(tuple(2 for _ in lattice.shape))
    D = WilsonDirac(group.identity((lattice.nd,), small.shape), group, small, **kw)
    if D.antiperiodic and lattice.shape[0] < 2:
        raise ValueError(f"lattice {lattice}: the antiperiodic time direction needs L_0 >= 2")


def _batch_ndim(op: DiracLike, phi: Any, name: str = "phi") -> int:
    op.D.check_field(phi, name) if isinstance(op, EvenOddDirac) else op.check_field(phi, name)
    return phi.ndim - len(op.field_shape)


def _broadcast_field(op: DiracLike, phi: Any, name: str = "phi") -> tuple[Any, int]:
    """``phi`` broadcast against the operator's gauge batch, as ``op.apply`` does, and its number of batch axes.

    A source with fewer batch axes than the gauge field (one source for every configuration) reached the CG
    unbroadcast and failed inside it with a bare shape error (user probe). ``check_field`` has refused batch
    shapes that do not broadcast."""
    bnd = _batch_ndim(op, phi, name)
    mine, theirs = tuple(phi.shape[:bnd]), tuple(op.batch_shape)
    n = max(len(mine), len(theirs))
    a, b = (1,) * (n - len(mine)) + mine, (1,) * (n - len(theirs)) + theirs
    batch = tuple(max(x, y) for x, y in zip(a, b))
    if batch != mine:
        phi = array_namespace(phi).broadcast_to(phi, batch + tuple(phi.shape[bnd:]))
    return phi, len(batch)


def _real_inner(a: Any, b: Any, batch_ndim: int) -> Any:
    xp = array_namespace(a, b)
    p = xp.real(a) * xp.real(b) + xp.imag(a) * xp.imag(b)
    return xp.sum(p, axis=tuple(range(batch_ndim, a.ndim)))


def regulated_normal(op: DiracLike, mu: float = 0.0) -> Callable[[Any], Any]:
    """The Hermitian positive definite operator ``psi -> (M + mu) psi`` with ``M = D D^dag``.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((2, 2))
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.1)
    >>> A = regulated_normal(D, 0.5)
    >>> A(D.zeros()).shape
    (2, 1, 2, 2)
    """
    mu = _check_mu(mu)
    return lambda psi: op.normal(psi, mu)


def apply_twisted(op: DiracLike, psi: Any, mu: float) -> Any:
    """``W_mu psi = (D + i sqrt(mu) gamma_5) psi``; ``W_mu W_mu^dag = D D^dag + mu``.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((2, 2))
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.1)
    >>> apply_twisted(D, D.zeros(), 0.3).shape
    (2, 1, 2, 2)
    """
    mu = _check_mu(mu)
    out = op.apply(psi)
    return out + (1j * math.sqrt(mu)) * op.apply_gamma5(psi) if mu else out


def apply_twisted_dagger(op: DiracLike, psi: Any, mu: float) -> Any:
    """``W_mu^dag psi = (D^dag - i sqrt(mu) gamma_5) psi``.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((2, 2))
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.1)
    >>> apply_twisted_dagger(D, D.zeros(), 0.3).shape
    (2, 1, 2, 2)
    """
    mu = _check_mu(mu)
    out = op.apply_dagger(psi)
    return out - (1j * math.sqrt(mu)) * op.apply_gamma5(psi) if mu else out


def solve_normal(op: DiracLike, b: Any, mu: float = 0.0, *, tol: float = 1e-10, maxiter: int = 2000, x0: Any = None,
                 raise_on_failure: bool = True) -> tuple[Any, SolverInfo]:
    """``(M + mu)^{-1} b`` by CG, batched over the leading axes of ``b`` with per-chain convergence.

    Examples
    --------
    >>> import latticekit as lk, numpy as np
    >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(1)
    >>> D = WilsonDirac(lk.U1.random(rng, (2,), lat.shape), lk.U1, lat, kappa=0.2)
    >>> b = D.random_field(rng, (3,))
    >>> x, info = solve_normal(D, b, tol=1e-12)
    >>> bool(np.abs(D.normal(x) - b).max() < 1e-9), info.converged.tolist()
    (True, [True, True, True])
    """
    mu = _check_mu(mu)
    b, bnd = _broadcast_field(op, b, "b")
    # operators with a compiled CG (WilsonDirac, EvenOddDirac on NumPy and torch CPU) run the whole loop in one call
    solver = getattr(op, "normal_solver", None)
    return cg(lambda v: op.normal(v, mu), op.mask(b), x0, tol=tol, maxiter=maxiter, batch_ndim=bnd,
              raise_on_failure=raise_on_failure, fused=None if solver is None else solver(mu))


def pseudofermion_action(phi: Any, op: DiracLike, mu: float = 0.0, *, tol: float = 1e-10, maxiter: int = 2000,
                         return_solution: bool = False) -> Any:
    """``S_pf = phi^dag (M + mu)^{-1} phi`` per batch element (real).

    With an :class:`EvenOddDirac` operator this is eq. (35): ``phi_e^dag (D_sc D_sc^dag + mu)^{-1} phi_e``
    (``phi`` is projected on the even sites). ``return_solution=True`` also returns
    ``X = (M + mu)^{-1} phi`` and the solver info.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((2, 2))
    >>> D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.1)
    >>> float(pseudofermion_action(D.zeros(), D))
    0.0
    """
    phi, bnd = _broadcast_field(op, phi)
    phi = op.mask(phi)
    X, info = solve_normal(op, phi, mu, tol=tol, maxiter=maxiter)
    S = _real_inner(phi, X, bnd)
    return (S, X, info) if return_solution else S


def pseudofermion_heatbath(op: DiracLike, rng: Generator, mu: float = 0.0, batch_shape: Sequence[int] | None = None,
                           *, return_noise: bool = False) -> Any:
    """Exact sample of ``phi ~ exp(-phi^dag (M + mu)^{-1} phi)``: ``phi = (D + i sqrt(mu) gamma_5) chi``.

    ``chi`` is drawn with ``rng.complex_normal`` (density ``exp(-|z|^2)/pi``); batch defaults to the
    operator's batch. Even/odd operators give fields supported on even sites.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(2)
    >>> D = WilsonDirac(lk.U1.random(rng, (5, 2), lat.shape), lk.U1, lat, kappa=0.2)
    >>> pseudofermion_heatbath(D, rng).shape
    (5, 2, 1, 4, 4)
    """
    chi = op.random_field(rng, batch_shape)
    phi = apply_twisted(op, chi, mu)
    return (phi, chi) if return_noise else phi


def pseudofermion_force_coords(phi: Any, op: DiracLike, mu: float = 0.0, *, tol: float = 1e-10,
                               maxiter: int = 2000) -> Any:
    """``d_a S_pf`` for every link and generator, shape ``(*B, Nd, dim_alg, *L)`` (real).

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(4)
    >>> D = WilsonDirac(lk.U1.random(rng, (2,), lat.shape), lk.U1, lat, kappa=0.2)
    >>> pseudofermion_force_coords(pseudofermion_heatbath(D, rng), D).shape
    (2, 1, 4, 4)
    """
    phi, _ = _broadcast_field(op, phi)
    phi = op.mask(phi)
    X, _ = solve_normal(op, phi, mu, tol=tol, maxiter=maxiter)
    Y = op.apply_dagger(X)
    return -2.0 * op.bilinear_derivative(X, Y)


def pseudofermion_force(phi: Any, op: DiracLike, mu: float = 0.0, *, tol: float = 1e-10, maxiter: int = 2000) -> Any:
    """Algebra-valued force ``F = sum_a (d_a S_pf) T_a``, laid out like the gauge field ``(*B, Nd, *G, *L)``.

    U(1): real angles (``F = d S / d theta``); SU(N): traceless anti-Hermitian matrices.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(4)
    >>> U = lk.SU(2).random(rng, (2,), lat.shape)
    >>> D = WilsonDirac(U, lk.SU(2), lat, kappa=0.2)
    >>> pseudofermion_force(pseudofermion_heatbath(D, rng), D).shape
    (2, 2, 2, 4, 4)
    """
    coords = pseudofermion_force_coords(phi, op, mu, tol=tol, maxiter=maxiter)
    return op.group.from_coords(coords, nd=op.nd)


class PseudofermionAction:
    """One Nf = 2 pseudofermion monomial ``phi^dag (M[U] + mu)^{-1} phi`` as a function of the gauge field.

    Parameters
    ----------
    group, lattice : the gauge group and lattice
    kappa, m0 : exactly one (see :class:`WilsonDirac`)
    even_odd : bool
        Use the Schur complement ``M = D_sc D_sc^dag`` on even sites (eq. 35).
    mu : float
        Regulator / shift ``mu >= 0``.
    tol, maxiter : CG settings.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0)
    >>> pf = PseudofermionAction(lk.U1, lat, kappa=0.2, even_odd=True)
    >>> U = lk.U1.random(rng, (2,), lat.shape)
    >>> phi = pf.sample(U, rng)
    >>> pf.action(U, phi).shape, pf.force(U, phi).shape
    ((), (2, 4, 4))
    """

    def __init__(self, group: Group, lattice: Lattice, kappa: float | None = None, m0: float | None = None, *,
                 even_odd: bool = False, mu: float = 0.0, tol: float = 1e-10, maxiter: int = 2000,
                 antiperiodic: bool = True) -> None:
        _check_setup(group, lattice)
        self.group, self.lattice = group, lattice
        self._kw = dict(kappa=kappa, m0=m0, antiperiodic=antiperiodic)
        self.even_odd = flag("even_odd", even_odd)
        _check_even_odd(lattice, self.even_odd)
        self.mu = _check_mu(mu)
        self.tol, self.maxiter = _check_solver(tol, maxiter)
        _check_dirac_args(group, lattice, self._kw)

    def operator(self, U: Any) -> DiracLike:
        """``D[U]`` (or its Schur complement)."""
        D = WilsonDirac(U, self.group, self.lattice, **self._kw)
        return EvenOddDirac(D) if self.even_odd else D

    def ndof(self) -> int:
        """Number of complex pseudofermion components."""
        n = (2 if self.lattice.nd == 2 else 4) * self.group.N * self.lattice.volume
        return n // 2 if self.even_odd else n

    def action(self, U: Any, phi: Any) -> Any:
        """``S_pf`` per batch element."""
        return pseudofermion_action(phi, self.operator(U), self.mu, tol=self.tol, maxiter=self.maxiter)

    def sample(self, U: Any, rng: Generator, batch_shape: Sequence[int] | None = None) -> Any:
        """Exact heatbath ``phi = (D + i sqrt(mu) gamma_5) chi``."""
        return pseudofermion_heatbath(self.operator(U), check_rng(rng, like=U), self.mu, batch_shape)

    def force(self, U: Any, phi: Any) -> Any:
        """``F = sum_a (d_a S_pf) T_a`` laid out like ``U``."""
        return pseudofermion_force(phi, self.operator(U), self.mu, tol=self.tol, maxiter=self.maxiter)

    def __repr__(self) -> str:
        return (f"PseudofermionAction({self.group.name}, {self.lattice}, {self._kw}, even_odd={self.even_odd}, "
                f"mu={self.mu})")
