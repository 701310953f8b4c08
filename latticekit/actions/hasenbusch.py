"""Hasenbusch mass-preconditioning of the Nf = 2 determinant (eqs. 36-38 of the pseudofermion paper).

With ``M = D D^dag`` (or ``D_sc D_sc^dag``) and shifts ``mu_0 < mu_1 < ... < mu_N`` (``mu_0 = 0``
for the physical theory)::

    det(M + mu_0) = det(M + mu_N) prod_{i<N} det(M + mu_i) / det(M + mu_{i+1})

Each factor is a monomial with its own pseudofermion:

* ratio ``(mu_i, mu_{i+1})``: ``S = phi^dag (M + mu_{i+1}) (M + mu_i)^{-1} phi
  = |phi|^2 + (mu_{i+1} - mu_i) phi^dag (M + mu_i)^{-1} phi`` (eq. 37 for ``mu_i = 0``);
  heatbath ``phi = W_i W_{i+1}^{-1} chi`` with ``W_mu = D + i sqrt(mu) gamma_5``; indeed
  ``W_a f(D^dag D) = f(D D^dag) W_a`` gives ``B B^dag = (M + mu_i)(M + mu_{i+1})^{-1}`` for
  ``B = W_i W_{i+1}^{-1}``, and ``W_{i+1}^{-1} chi = W_{i+1}^dag (M + mu_{i+1})^{-1} chi`` (one CG).
* last ``(mu_N,)``: ``S = phi^dag (M + mu_N)^{-1} phi``, ``phi = W_N chi``.

Each monomial integrates to ``1/det(kernel)``; the product of those is ``det(M + mu_0)``.

Examples
--------
>>> import latticekit as lk
>>> from latticekit.actions.hasenbusch import hasenbusch_monomials
>>> [repr(m) for m in hasenbusch_monomials([0.1, 0.5])]
['HasenbuschMonomial(mu_lo=0.0, mu_hi=0.1)', 'HasenbuschMonomial(mu_lo=0.1, mu_hi=0.5)', 'HasenbuschMonomial(mu_lo=0.5, mu_hi=None)']
"""

from __future__ import annotations

from typing import Any, Sequence

from latticekit.backends import Generator, array_namespace, check_rng
from latticekit.groups import Group
from latticekit.lattice import Lattice
from latticekit.linalg import eigvalsh_dense

from ._checks import flag
from .dirac import WilsonDirac
from .even_odd import EvenOddDirac
from .pseudofermion import (
    _broadcast_field,
    _check_dirac_args,
    _check_even_odd,
    _check_mu,
    _check_setup,
    _check_solver,
    _real_inner,
    apply_twisted,
    apply_twisted_dagger,
    pseudofermion_force_coords,
    solve_normal,
)

__all__ = ["HasenbuschAction", "HasenbuschMonomial", "hasenbusch_monomials"]


class HasenbuschMonomial:
    """One factor of the Hasenbusch decomposition: a ratio ``det(M+mu_lo)/det(M+mu_hi)`` or ``det(M+mu_lo)``.

    Parameters
    ----------
    mu_lo : float
        Lower shift (``>= 0``).
    mu_hi : float or None
        Upper shift ``> mu_lo`` for a ratio monomial; None for the last (plain) monomial.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0)
    >>> D = WilsonDirac(lk.U1.random(rng, (2,), lat.shape), lk.U1, lat, kappa=0.24)
    >>> m = HasenbuschMonomial(0.0, 0.2)
    >>> phi, chi = m.sample(D, rng, return_noise=True)
    >>> bool(abs(m.action(phi, D, tol=1e-12) - (abs(chi) ** 2).sum()) < 1e-7)
    True
    """

    def __init__(self, mu_lo: float, mu_hi: float | None = None) -> None:
        self.mu_lo = _check_mu(mu_lo, "mu_lo")
        if mu_hi is not None:
            mu_hi = _check_mu(mu_hi, "mu_hi")
            if not mu_hi > self.mu_lo:
                raise ValueError(f"mu_hi={mu_hi!r}: expected mu_hi > mu_lo = {self.mu_lo}")
        self.mu_hi = mu_hi

    @property
    def is_ratio(self) -> bool:
        return self.mu_hi is not None

    def __repr__(self) -> str:
        return f"HasenbuschMonomial(mu_lo={self.mu_lo}, mu_hi={self.mu_hi})"

    def kernel(self, op: Any, psi: Any, *, tol: float = 1e-12, maxiter: int = 4000) -> Any:
        """``K psi`` with ``S = phi^dag K phi``: ``(M+mu_hi)(M+mu_lo)^{-1}`` or ``(M+mu_lo)^{-1}``."""
        X, _ = solve_normal(op, psi, self.mu_lo, tol=tol, maxiter=maxiter)
        if self.is_ratio:
            return op.mask(psi) + (self.mu_hi - self.mu_lo) * X  # type: ignore[operator]
        return X

    def action(self, phi: Any, op: Any, *, tol: float = 1e-10, maxiter: int = 2000) -> Any:
        """The monomial action per batch element."""
        phi, bnd = _broadcast_field(op, phi)
        phi = op.mask(phi)
        X, _ = solve_normal(op, phi, self.mu_lo, tol=tol, maxiter=maxiter)
        S = _real_inner(phi, X, bnd)
        if self.is_ratio:
            S = _real_inner(phi, phi, bnd) + (self.mu_hi - self.mu_lo) * S  # type: ignore[operator]
        return S

    def sample(self, op: Any, rng: Generator, batch_shape: Sequence[int] | None = None, *, tol: float = 1e-12,
               maxiter: int = 4000, return_noise: bool = False) -> Any:
        """Exact heatbath sample of this monomial's pseudofermion (see module docstring)."""
        chi = op.random_field(rng, batch_shape)
        if self.is_ratio:
            y, _ = solve_normal(op, chi, self.mu_hi, tol=tol, maxiter=maxiter)  # type: ignore[arg-type]
            x = apply_twisted_dagger(op, y, self.mu_hi)  # type: ignore[arg-type]  # W_hi^{-1} chi
            phi = apply_twisted(op, x, self.mu_lo)
        else:
            phi = apply_twisted(op, chi, self.mu_lo)
        return (phi, chi) if return_noise else phi

    def force_coords(self, phi: Any, op: Any, *, tol: float = 1e-10, maxiter: int = 2000) -> Any:
        """``d_a S`` per link and generator, shape ``(*B, Nd, dim_alg, *L)``.

        ``|phi|^2`` does not depend on ``U``, so the ratio force is ``(mu_hi - mu_lo)`` times the
        force of ``phi^dag (M + mu_lo)^{-1} phi``.
        """
        f = pseudofermion_force_coords(phi, op, self.mu_lo, tol=tol, maxiter=maxiter)
        return (self.mu_hi - self.mu_lo) * f if self.is_ratio else f  # type: ignore[operator]

    def force(self, phi: Any, op: Any, *, tol: float = 1e-10, maxiter: int = 2000) -> Any:
        """Algebra-valued force ``sum_a (d_a S) T_a``, laid out like the gauge field."""
        return op.group.from_coords(self.force_coords(phi, op, tol=tol, maxiter=maxiter), nd=op.nd)

    def log_det_dense(self, op: Any) -> Any:
        """Exact ``log`` of what this monomial integrates to (``-log det K``), via dense ``eigvalsh(M)``.

        Small lattices only; shape = operator batch.
        """
        ev = eigvalsh_dense(op.normal, op.field_shape, like=op.like, support=op.support, batch_shape=op.batch_shape)
        xp = array_namespace(ev)
        out = xp.sum(xp.log(ev + self.mu_lo), axis=-1)
        if self.is_ratio:
            out = out - xp.sum(xp.log(ev + self.mu_hi), axis=-1)
        return out


def hasenbusch_monomials(mus: Sequence[float], mu0: float = 0.0) -> list[HasenbuschMonomial]:
    """The ``N + 1`` monomials of eq. (38) for shifts ``mu0 < mus[0] < ... < mus[-1]``.

    Parameters
    ----------
    mus : sequence of float
        The increasing non-negative shifts above ``mu0`` (a list or tuple, or a 1D array; ``[]`` for none).
    mu0 : float
        The lowest shift (0: the physical determinant).

    Returns
    -------
    list of HasenbuschMonomial
        The ratio monomials ``(mu0, mus[0]), (mus[0], mus[1]), ...`` and the last plain one ``(mus[-1],)``.

    Raises
    ------
    TypeError
        ``mus`` is not a sequence (a number, None, a string), or holds something other than real numbers.
    ValueError
        The shifts are negative or not strictly increasing above ``mu0``.

    Examples
    --------
    >>> len(hasenbusch_monomials([0.05, 0.2, 1.0]))
    4
    >>> hasenbusch_monomials([])
    [HasenbuschMonomial(mu_lo=0.0, mu_hi=None)]
    """
    mus = _check_mus(mus)
    chain = [_check_mu(mu0, "mu0")] + [_check_mu(m, "mus") for m in mus]
    for a, b in zip(chain[:-1], chain[1:]):
        if not b > a:
            raise ValueError(f"mus={mus!r}: expected strictly increasing shifts above mu0={mu0}")
    out = [HasenbuschMonomial(a, b) for a, b in zip(chain[:-1], chain[1:])]
    out.append(HasenbuschMonomial(chain[-1], None))
    return out


def _check_mus(mus: Any) -> list[Any]:
    """``mus`` as a list: a sequence or a 1D array, not a number, None or a string.

    A scalar or None failed with a bare "'float' object is not iterable", and a string was read character by
    character ("mus='0': expected a real number" for ``mus="0.1"``) (user probe)."""
    ok = not isinstance(mus, (str, bytes)) and (isinstance(mus, Sequence) or getattr(mus, "ndim", None) == 1)
    try:
        out = list(mus) if ok else None
    except TypeError:                   # a 1D array whose library does not iterate (array_api_strict)
        out = None
    if out is None:
        raise TypeError(f"mus={mus!r}: expected a list of increasing non-negative shifts such as [0.1, 0.5] "
                        f"([] for none), got {type(mus).__name__}")
    return out


class HasenbuschAction:
    """All Hasenbusch monomials of an Nf = 2 theory as a function of the gauge field.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0)
    >>> H = HasenbuschAction(lk.U1, lat, kappa=0.24, mus=[0.1, 0.5], even_odd=True)
    >>> U = lk.U1.random(rng, (2,), lat.shape)
    >>> phis = H.sample(U, rng)
    >>> len(phis), H.action(U, phis).shape, H.force(U, phis).shape
    (3, (), (2, 4, 4))
    """

    def __init__(self, group: Group, lattice: Lattice, kappa: float | None = None, m0: float | None = None, *,
                 mus: Sequence[float] = (), mu0: float = 0.0, even_odd: bool = False, tol: float = 1e-10,
                 maxiter: int = 2000, antiperiodic: bool = True) -> None:
        _check_setup(group, lattice)
        self.group, self.lattice = group, lattice
        self._kw = dict(kappa=kappa, m0=m0, antiperiodic=antiperiodic)
        self.monomials = hasenbusch_monomials(mus, mu0)
        self.even_odd = flag("even_odd", even_odd)
        _check_even_odd(lattice, self.even_odd)
        self.tol, self.maxiter = _check_solver(tol, maxiter)
        _check_dirac_args(group, lattice, self._kw)

    def operator(self, U: Any) -> Any:
        D = WilsonDirac(U, self.group, self.lattice, **self._kw)
        return EvenOddDirac(D) if self.even_odd else D

    def _check(self, phis: Sequence[Any]) -> None:
        if len(phis) != len(self.monomials):
            raise ValueError(f"phis: expected {len(self.monomials)} pseudofermion fields (one per monomial), "
                             f"got {len(phis)}")

    def sample(self, U: Any, rng: Generator, batch_shape: Sequence[int] | None = None) -> list[Any]:
        op = self.operator(U)
        check_rng(rng, like=U)
        return [m.sample(op, rng, batch_shape) for m in self.monomials]

    def actions(self, U: Any, phis: Sequence[Any]) -> list[Any]:
        """Per-monomial actions."""
        self._check(phis)
        op = self.operator(U)
        return [m.action(p, op, tol=self.tol, maxiter=self.maxiter) for m, p in zip(self.monomials, phis)]

    def action(self, U: Any, phis: Sequence[Any]) -> Any:
        """Sum of the monomial actions."""
        acts = self.actions(U, phis)
        out = acts[0]
        for a in acts[1:]:
            out = out + a
        return out

    def force(self, U: Any, phis: Sequence[Any]) -> Any:
        """Total algebra-valued force, laid out like ``U``."""
        self._check(phis)
        op = self.operator(U)
        f = None
        for m, p in zip(self.monomials, phis):
            c = m.force_coords(p, op, tol=self.tol, maxiter=self.maxiter)
            f = c if f is None else f + c
        return self.group.from_coords(f, nd=self.lattice.nd)
